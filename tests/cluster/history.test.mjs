// Cluster history: after concurrent bursts of WebSocket and REST sends from
// every node, every node serves the same REST history (newest page, before=
// and after= paging, room list), with ids 1..N without gaps.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { api, connectUser, uniq } from '../lib/client.mjs';
import { stopAll, withLogs } from '../lib/server.mjs';
import { startNodes, startValkey, stopAllValkey, waitHistoryCount } from '../lib/valkey.mjs';

const T = { timeout: 120000 };

after(async () => {
    try {
        await stopAll();
    } finally {
        await stopAllValkey();
    }
});

async function getJson(node, path) {
    const r = await api(node.url, path);
    assert.equal(r.status, 200, `${path} on ${node.url}: ${r.status} ${r.text}`);
    return r.json;
}

// Page backwards with before= from the newest page; returns all messages.
async function pageBackwards(node, room, limit) {
    let page = await getJson(node, `/api/rooms/${room}/messages?limit=${limit}`);
    const pages = [page];
    while (page.has_more) {
        page = await getJson(node, `/api/rooms/${room}/messages?limit=${limit}&before=${page.messages[0].id}`);
        pages.push(page);
    }
    return pages;
}

async function pageForwards(node, room, limit) {
    const pages = [];
    let after = 0;
    for (;;) {
        const page = await getJson(node, `/api/rooms/${room}/messages?limit=${limit}&after=${after}`);
        pages.push(page);
        if (!page.has_more) break;
        after = page.messages[page.messages.length - 1].id;
    }
    return pages;
}

describe('cluster history', () => {
    it('identical REST history on every node after concurrent bursts from every node', T, withLogs(async () => {
        const vk = await startValkey({ mode: 'plain' });
        const nodes = await startNodes(vk.env, 3);
        const rooms = [uniq('hist'), uniq('hist2')];
        // two WebSocket senders per node, each in both rooms
        const clients = [];
        for (let i = 0; i < 3; i++) {
            for (let k = 0; k < 2; k++) clients.push(await connectUser(nodes[i].wsUrl, `w${i}${k}`, rooms));
        }
        const WS_PER_CLIENT = 30; // alternating rooms
        const REST_PER_NODE = 12;
        const work = [];
        for (const [ci, c] of clients.entries()) {
            for (let m = 0; m < WS_PER_CLIENT; m++) {
                work.push(c.sendMessage(rooms[m % 2], `ws c${ci} m${m}`).then((a) => ({ a, text: `ws c${ci} m${m}` })));
            }
        }
        for (let i = 0; i < 3; i++) {
            for (let m = 0; m < REST_PER_NODE; m++) {
                const room = rooms[m % 2];
                const text = `rest n${i} m${m}`;
                work.push(
                    api(nodes[i].url, `/api/rooms/${room}/messages`, {
                        method: 'POST',
                        body: { user: `r${i}`, text, ref: `rest-${i}-${m}` },
                    }).then((r) => {
                        assert.equal(r.status, 201, `REST send on node ${i}: ${r.text}`);
                        return { a: { type: 'ack', room, id: r.json.id }, text };
                    }),
                );
            }
        }
        const results = await Promise.all(work);
        for (const { a } of results) assert.equal(a.type, 'ack', JSON.stringify(a));
        const total = clients.length * WS_PER_CLIENT + 3 * REST_PER_NODE;
        assert.equal(results.length, total);

        for (const room of rooms) {
            const acked = results.filter(({ a }) => a.room === room);
            const n = acked.length;
            assert.deepEqual(
                acked.map(({ a }) => a.id).sort((x, y) => x - y),
                Array.from({ length: n }, (_, k) => k + 1),
                `acked ids of ${room} are 1..${n}`,
            );
            const hs = await waitHistoryCount(nodes, room, n);
            for (let i = 0; i < 3; i++) {
                assert.equal(hs[i].length, n, `no extra messages on node ${i}`);
                assert.deepEqual(hs[i].map((m) => m.id), Array.from({ length: n }, (_, k) => k + 1));
            }
            for (let i = 1; i < 3; i++) assert.deepEqual(hs[i], hs[0], `full history of ${room}: node ${i} equals node 0`);
            const byId = new Map(hs[0].map((m) => [m.id, m]));
            for (const { a, text } of acked) assert.equal(byId.get(a.id).text, text, `stored text of id ${a.id}`);

            // newest 200 (clamped from 500), before= paging, after= paging
            const newest = await Promise.all(nodes.map((nd) => getJson(nd, `/api/rooms/${room}/messages?limit=500`)));
            for (let i = 0; i < 3; i++) {
                assert.deepEqual(newest[i], newest[0], `newest page of ${room} on node ${i}`);
            }
            assert.equal(newest[0].messages.length, Math.min(200, n));
            const back = await Promise.all(nodes.map((nd) => pageBackwards(nd, room, 7)));
            const fwd = await Promise.all(nodes.map((nd) => pageForwards(nd, room, 13)));
            for (let i = 0; i < 3; i++) {
                assert.deepEqual(back[i], back[0], `before= pages of ${room} on node ${i}`);
                assert.deepEqual(fwd[i], fwd[0], `after= pages of ${room} on node ${i}`);
            }
            assert.deepEqual(
                back[0].reverse().flatMap((p) => p.messages),
                hs[0],
                'before= pages cover the whole history',
            );
            assert.deepEqual(fwd[0].flatMap((p) => p.messages), hs[0], 'after= pages cover the whole history');
        }

        const lists = await Promise.all(nodes.map((nd) => getJson(nd, '/api/rooms')));
        for (const room of rooms) {
            const lids = lists.map((l) => (l.rooms.find((r) => r.name === room) || {}).last_id);
            const n = results.filter(({ a }) => a.room === room).length;
            assert.deepEqual(lids, [n, n, n], `last_id of ${room} in GET /api/rooms on each node`);
        }
        for (const c of clients) await c.close();
        await stopAll();
        await vk.stop();
    }));
});
