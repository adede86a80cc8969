// The latency histograms across two nodes on a real Valkey: a message sent
// on one node is counted by the other's delivery histogram (event ts to its
// frames queued there, the Valkey hop included), and by the sender's publish
// histogram. tests/integration/metrics.test.mjs covers the exposition itself.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { api, connectUser, uniq } from '../lib/client.mjs';
import { stopAll, withLogs } from '../lib/server.mjs';
import { startNodes, startValkey, stopAllValkey, waitFor } from '../lib/valkey.mjs';

const T = { timeout: 120000 };

after(async () => {
    try {
        await stopAll();
    } finally {
        await stopAllValkey();
    }
});

// Value of an unlabelled sample, NaN when absent.
function metric(text, name) {
    const escaped = name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    const m = new RegExp(`^${escaped} ([0-9.eE+-]+)$`, 'm').exec(text);
    return m ? Number(m[1]) : NaN;
}

async function scrape(node) {
    const r = await api(node.url, '/metrics');
    assert.equal(r.status, 200, r.text);
    return r.text;
}

describe('cluster: latency histograms', () => {
    it('a message sent on A is counted by B delivery histogram and A publish histogram', T, withLogs(async () => {
        const vk = await startValkey({ mode: 'plain' });
        const [A, B] = await startNodes(vk.env, 2);
        const room = uniq('cmet');
        const a = await connectUser(A.wsUrl, 'anna', [room]);
        const b = await connectUser(B.wsUrl, 'bob', [room]);
        const beforeA = await scrape(A);
        const beforeB = await scrape(B);
        const n = 4;
        for (let i = 1; i <= n; i++) {
            const ack = await a.sendMessage(room, `across ${i}`);
            assert.equal(ack.type, 'ack', JSON.stringify(ack));
            await b.message(room, ack.id);
        }
        const grew = (text, before, name) => metric(text, name) - metric(before, name);
        let textA;
        let textB;
        await waitFor(
            async () => {
                textA = await scrape(A);
                textB = await scrape(B);
                return (
                    grew(textB, beforeB, 'turbochat_delivery_seconds_count') >= n &&
                    grew(textA, beforeA, 'turbochat_publish_seconds_count') >= n
                );
            },
            { what: 'B to count the deliveries and A the publishes' },
        );
        // B accepted none of them: its publish histogram did not move.
        assert.equal(grew(textB, beforeB, 'turbochat_publish_seconds_count'), 0, 'B published nothing');
        assert.ok(grew(textB, beforeB, 'turbochat_store_commit_seconds_count') >= 1, 'B committed them');
        assert.equal(
            metric(textB, 'turbochat_delivery_seconds_bucket{le="+Inf"}'),
            metric(textB, 'turbochat_delivery_seconds_count'),
        );
        await a.close();
        await b.close();
    }));
});
