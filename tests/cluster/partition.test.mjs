// One node loses Valkey (its connections go through a TCP proxy that the
// test cuts) while the others keep chatting. While cut off it answers
// unavailable and /readyz 503 but keeps serving history; when the link is
// back it becomes ready by itself, repairs the gap from the replay window,
// delivers the missed messages to its clients in id order before newer live
// ones, and its history becomes identical to the others'.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { api, connectUser, uniq } from '../lib/client.mjs';
import { stopAll, withLogs } from '../lib/server.mjs';
import {
    historyOf,
    startNode,
    startNodes,
    startProxy,
    startValkey,
    stopAllValkey,
    waitHistoryCount,
    waitReady,
} from '../lib/valkey.mjs';

const T = { timeout: 120000 };
let proxy;

after(async () => {
    try {
        if (proxy) await proxy.close();
        await stopAll();
    } finally {
        await stopAllValkey();
    }
});

// Value of an unlabelled Prometheus sample, NaN when absent.
function metric(text, name) {
    const m = new RegExp(`^${name} ([0-9.eE+-]+)$`, 'm').exec(text);
    return m ? Number(m[1]) : NaN;
}

describe('cluster: one node cut off from Valkey', () => {
    it('the cut-off node refuses sends, then catches up and delivers the missed messages in order', T, withLogs(async () => {
        const vk = await startValkey({ mode: 'plain' });
        proxy = await startProxy(vk.port);
        const [A, B] = await startNodes(vk.env, 2);
        const X = await startNode(proxy.env(vk.env));
        const room = uniq('part');
        const a = await connectUser(A.wsUrl, 'anna', [room]);
        const x = await connectUser(X.wsUrl, 'xavier', [room]);
        const xr = await connectUser(X.wsUrl, 'reader', [room]);
        for (let k = 0; k < 5; k++) {
            const ack = await (k % 2 ? x : a).sendMessage(room, `before ${k}`);
            assert.equal(ack.type, 'ack', JSON.stringify(ack));
        }
        await xr.message(room, 5);

        await proxy.cut();
        await waitReady(X, { want: 503, timeoutMs: 15000 });
        assert.equal((await api(A.url, '/readyz')).status, 200, 'the others stay ready');
        const refused = await x.sendMessage(room, 'from the cut-off node', 'x-cut');
        assert.equal(refused.type, 'error', JSON.stringify(refused));
        assert.equal(refused.code, 'unavailable');
        // the rest of the cluster goes on; X misses these
        const missed = [];
        for (let k = 0; k < 20; k++) {
            const ack = await a.sendMessage(room, `missed ${k}`);
            assert.equal(ack.type, 'ack', JSON.stringify(ack));
            missed.push(ack.id);
        }
        const r = await api(B.url, `/api/rooms/${room}/messages`, { method: 'POST', body: { user: 'bea', text: 'missed via B' } });
        assert.equal(r.status, 201, r.text);
        missed.push(r.json.id);
        assert.deepEqual(missed, Array.from({ length: 21 }, (_, k) => 6 + k), 'the refused send took no id');
        // X still serves its (older) history
        assert.equal(metric((await api(X.url, '/metrics')).text, 'turbochat_broker_connected'), 0);
        const hx = await historyOf(X, room);
        assert.deepEqual(hx.map((m) => m.id), [1, 2, 3, 4, 5]);

        await proxy.restore();
        await waitReady(X, { timeoutMs: 30000 });
        // the retry with the same ref is accepted now
        const retry = await x.sendMessage(room, 'from the cut-off node', 'x-cut');
        assert.equal(retry.type, 'ack', JSON.stringify(retry));
        assert.equal(retry.id, 27);
        const live = await a.sendMessage(room, 'live after the cut');
        assert.equal(live.id, 28);
        // the reader on X got 6..28 in order, each once
        await xr.seenOrNext((f) => f.type === 'message' && f.room === room && f.id === live.id);
        const ids = xr.seen((f) => f.type === 'message' && f.room === room).map((f) => f.id);
        assert.deepEqual(ids, Array.from({ length: 28 }, (_, k) => k + 1), 'missed messages delivered in id order before live ones');
        const hs = await waitHistoryCount([A, B, X], room, 28);
        assert.deepEqual(hs[1], hs[0]);
        assert.deepEqual(hs[2], hs[0], 'the cut-off node converged');
        assert.equal(hs[0].filter((m) => m.text === 'from the cut-off node').length, 1);
        // metrics of the broker link on the node that was cut off
        const mx = (await api(X.url, '/metrics')).text;
        assert.ok(metric(mx, 'turbochat_broker_reconnects_total') >= 1, 'reconnects counted');
        assert.ok(metric(mx, 'turbochat_broker_gaps_repaired_total') >= 21, 'the 21 missed messages counted as repaired');
        assert.equal(metric(mx, 'turbochat_broker_connected'), 1);
        assert.ok(metric(mx, 'turbochat_publish_seconds_count') >= 3, 'publish latency observed');
        for (const c of [a, x, xr]) await c.close();
        await stopAll();
        await proxy.close();
        await vk.stop();
    }));
});
