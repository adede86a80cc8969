// Cluster delivery: three nodes on one Valkey behave as one chat server.
// Users on different nodes chat; every member on every node receives each
// message with the same id; ids of a room are 1..N without gaps, also when
// every node sends at once. Runs against a plain Valkey and an Aiven-like one
// (TLS with a CA generated at test time, ACL user, default user off); the
// third node is configured with REDIS_URL, the others with REDIS_HOST...
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { api, connectUser, uniq } from '../lib/client.mjs';
import { stopAll, withLogs } from '../lib/server.mjs';
import { startNode, startValkey, stopAllValkey, waitHistoryCount } from '../lib/valkey.mjs';

const T = { timeout: 120000 };

after(async () => {
    try {
        await stopAll();
    } finally {
        await stopAllValkey();
    }
});

// Collect the message frames of room on client c until it has count of them.
async function messagesOf(c, room, count) {
    const out = [];
    while (out.length < count) out.push(await c.next((f) => f.type === 'message' && f.room === room));
    return out;
}

for (const mode of ['plain', 'aiven']) {
    describe(`cluster delivery (${mode} Valkey)`, () => {
        it('three nodes: same ids everywhere, acks, ids 1..N per room', T, withLogs(async () => {
            const vk = await startValkey({ mode });
            const nodes = await Promise.all([
                startNode(vk.env),
                startNode(vk.env),
                startNode(vk.urlEnv), // REDIS_URL form
            ]);
            const room = uniq('dlv');
            const names = ['alice', 'bob', 'carol'];
            const clients = [];
            for (let i = 0; i < 3; i++) {
                const c = await connectUser(nodes[i].wsUrl, names[i]);
                const j = await c.join(room);
                assert.equal(j.last_id, 0, 'a new room starts empty');
                clients.push(c);
            }
            // distinct node ids
            assert.equal(new Set(clients.map((c) => c.welcome.node)).size, 3, 'three distinct node ids');

            // Round robin, one at a time: each message reaches all three.
            const N1 = 9;
            for (let k = 0; k < N1; k++) {
                const from = k % 3;
                const text = `rr ${k} from ${names[from]} \u00e9\u{1F600}`;
                const ack = await clients[from].sendMessage(room, text);
                assert.equal(ack.type, 'ack', `send on node ${from}: ${JSON.stringify(ack)}`);
                assert.equal(ack.room, room);
                assert.equal(ack.id, k + 1, 'ids 1..N in send order');
                assert.equal(typeof ack.ts, 'number');
                for (let i = 0; i < 3; i++) {
                    const m = await clients[i].message(room, ack.id);
                    assert.equal(m.text, text, `text on node ${i}`);
                    assert.equal(m.user, names[from], `user on node ${i}`);
                    assert.equal(m.ts, ack.ts, `ts on node ${i}`);
                }
            }

            // Everyone at once: 3 x 15 sends in flight.
            const N2 = 15;
            const sends = [];
            const textOf = new Map();
            for (let k = 0; k < N2; k++) {
                for (let i = 0; i < 3; i++) {
                    const text = `burst ${k} from ${names[i]}`;
                    sends.push(clients[i].sendMessage(room, text).then((a) => ({ a, text, i })));
                }
            }
            const acks = await Promise.all(sends);
            for (const { a, i } of acks) assert.equal(a.type, 'ack', `burst send on node ${i}: ${JSON.stringify(a)}`);
            for (const { a, text } of acks) textOf.set(a.id, text);
            const got = acks.map(({ a }) => a.id).sort((x, y) => x - y);
            assert.deepEqual(got, Array.from({ length: 3 * N2 }, (_, k) => N1 + 1 + k), 'burst ids are contiguous');
            // per sender, acks come in increasing id order
            for (let i = 0; i < 3; i++) {
                const mine = acks.filter((x) => x.i === i).map((x) => x.a.id);
                assert.deepEqual(mine, [...mine].sort((x, y) => x - y), `acks on node ${i} in id order`);
            }
            // every client sees every burst message exactly once, in id order
            for (let i = 0; i < 3; i++) {
                const ms = await messagesOf(clients[i], room, 3 * N2);
                assert.deepEqual(ms.map((m) => m.id), got, `message ids in order on node ${i}`);
                for (const m of ms) assert.equal(m.text, textOf.get(m.id), `text of ${m.id} on node ${i}`);
            }
            // REST send on node C reaches WebSocket members on A and B
            const r = await api(nodes[2].url, `/api/rooms/${room}/messages`, {
                method: 'POST',
                body: { user: 'rest-user', text: 'via REST on C' },
            });
            assert.equal(r.status, 201, r.text);
            assert.equal(r.json.id, N1 + 3 * N2 + 1);
            for (let i = 0; i < 3; i++) {
                const m = await clients[i].message(room, r.json.id);
                assert.equal(m.text, 'via REST on C');
                assert.equal(m.user, 'rest-user');
            }
            // no duplicates were delivered anywhere
            const total = N1 + 3 * N2 + 1;
            for (let i = 0; i < 3; i++) {
                const mids = clients[i].seen((f) => f.type === 'message' && f.room === room).map((f) => f.id);
                assert.deepEqual(mids, Array.from({ length: total }, (_, k) => k + 1), `node ${i} got 1..${total} once`);
            }
            // a second room has its own ids, starting at 1
            const room2 = uniq('dlv2');
            await clients[1].join(room2);
            const a2 = await clients[1].sendMessage(room2, 'first of room2');
            assert.equal(a2.id, 1);
            // every node stored everything
            const hs = await waitHistoryCount(nodes, room, total);
            for (let i = 1; i < 3; i++) assert.deepEqual(hs[i], hs[0], `history on node ${i} equals node 0`);
            for (const c of clients) await c.close();
            await stopAll();
            await vk.stop();
        }));
    });
}
