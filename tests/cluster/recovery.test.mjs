// Recovery across nodes and idempotency across nodes:
// - a client that moves to another node recovers with join + since: exactly
//   the missed messages, in id order, before live ones, recovered: true;
// - the same (user, room, ref) sent on several nodes, over WebSocket and
//   REST, is stored once, broadcast once, and always answers the same id.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { api, connectUser, uniq } from '../lib/client.mjs';
import { stopAll, withLogs } from '../lib/server.mjs';
import { startNodes, startValkey, stopAllValkey, waitHistoryCount } from '../lib/valkey.mjs';

const T = { timeout: 120000 };

let vk;
let nodes;

async function cluster() {
    if (!nodes) {
        vk = await startValkey({ mode: 'plain' });
        nodes = await startNodes(vk.env, 3);
    }
    return nodes;
}

after(async () => {
    try {
        await stopAll();
    } finally {
        await stopAllValkey();
    }
});

const isMsg = (room) => (f) => f.type === 'message' && f.room === room;

describe('cluster recovery', () => {
    it('a client that moves to another node recovers exactly the missed messages with since', T, withLogs(async () => {
        const [A, B, C] = await cluster();
        const room = uniq('move');
        const other = uniq('move-other');
        const bob = await connectUser(B.wsUrl, 'bob', [room, other]);
        const carol = await connectUser(C.wsUrl, 'carol', [room]);
        let alice = await connectUser(A.wsUrl, 'alice', [room]);
        for (let k = 1; k <= 5; k++) {
            const ack = await (k % 2 ? bob : carol).sendMessage(room, `seen ${k}`);
            assert.equal(ack.id, k);
            await alice.message(room, k);
        }
        const lastSeen = 5;
        await alice.close();
        // missed while away: sent on every node, and noise in another room
        const missed = [];
        for (let k = 0; k < 9; k++) {
            const sender = [bob, carol][k % 2];
            const text = `missed ${k}`;
            const ack = await sender.sendMessage(room, text);
            assert.equal(ack.type, 'ack');
            missed.push({ id: ack.id, text });
            await bob.sendMessage(other, `noise ${k}`);
        }
        const r = await api(A.url, `/api/rooms/${room}/messages`, { method: 'POST', body: { user: 'rest', text: 'missed via REST on A' } });
        assert.equal(r.status, 201, r.text);
        missed.push({ id: r.json.id, text: 'missed via REST on A' });
        const lastId = missed[missed.length - 1].id;
        // make sure the target node has them all (it serves the replay)
        await waitHistoryCount([C], room, lastId);

        // alice comes back on C
        alice = await connectUser(C.wsUrl, 'alice');
        const j = await alice.join(room, lastSeen);
        assert.equal(j.recovered, true, `joined: ${JSON.stringify(j)}`);
        assert.equal(j.last_id, lastId);
        // then a live message, sent on B after the join
        const live = await bob.sendMessage(room, 'live after rejoin');
        const got = [];
        for (;;) {
            const m = await alice.next(isMsg(room));
            got.push(m);
            if (m.id === live.id) break;
        }
        assert.deepEqual(
            got.map((m) => [m.id, m.text]),
            [...missed.map((m) => [m.id, m.text]), [live.id, 'live after rejoin']],
            'exactly the missed messages in id order, then the live one',
        );
        assert.equal(alice.seen(isMsg(other)).length, 0, 'nothing of another room');

        // and back from C to A with since: the one live message
        const seenUpTo = live.id - 1;
        await alice.close();
        const alice2 = await connectUser(A.wsUrl, 'alice');
        const j2 = await alice2.join(room, seenUpTo);
        assert.equal(j2.recovered, true);
        const m = await alice2.next(isMsg(room));
        assert.equal(m.id, live.id);
        assert.equal(m.text, 'live after rejoin');
        // since = last_id: nothing to replay
        const alice3 = await connectUser(B.wsUrl, 'alice');
        const j3 = await alice3.join(room, live.id);
        assert.equal(j3.recovered, true);
        const sentinel = await carol.sendMessage(room, 'sentinel');
        const m3 = await alice3.next(isMsg(room));
        assert.equal(m3.id, sentinel.id, 'no replay when since is the last id');
        for (const c of [alice2, alice3, bob, carol]) await c.close();
    }));

    it('the same ref on several nodes (WS and REST) is stored once, broadcast once, same id', T, withLogs(async () => {
        const [A, B, C] = await cluster();
        const room = uniq('ref');
        const watchers = [];
        for (const [i, nd] of [A, B, C].entries()) watchers.push(await connectUser(nd.wsUrl, `watch${i}`, [room]));
        const uA = await connectUser(A.wsUrl, 'dana', [room]);
        const uB = await connectUser(B.wsUrl, 'dana', [room]);

        // WS on A, then WS on B, then REST on C: same id
        const a1 = await uA.sendMessage(room, 'original', 'r-1');
        assert.equal(a1.type, 'ack', JSON.stringify(a1));
        const a2 = await uB.sendMessage(room, 'different text, same ref', 'r-1');
        assert.equal(a2.type, 'ack', JSON.stringify(a2));
        assert.equal(a2.id, a1.id, 'same id on another node');
        const r3 = await api(C.url, `/api/rooms/${room}/messages`, {
            method: 'POST',
            body: { user: 'dana', text: 'third try', ref: 'r-1' },
        });
        assert.equal(r3.status, 200, `a known ref over REST answers 200: ${r3.text}`);
        assert.equal(r3.json.id, a1.id);
        assert.equal(r3.json.text, 'original', 'the original message is returned');

        // REST on B first, then WS on A
        const r4 = await api(B.url, `/api/rooms/${room}/messages`, {
            method: 'POST',
            body: { user: 'dana', text: 'rest first', ref: 'r-2' },
        });
        assert.equal(r4.status, 201, r4.text);
        const a5 = await uA.sendMessage(room, 'ws second', 'r-2');
        assert.equal(a5.type, 'ack', JSON.stringify(a5));
        assert.equal(a5.id, r4.json.id);

        // the same ref from another user is another message
        const e = await api(C.url, `/api/rooms/${room}/messages`, {
            method: 'POST',
            body: { user: 'erin', text: 'erin r-1', ref: 'r-1' },
        });
        assert.equal(e.status, 201, e.text);
        assert.notEqual(e.json.id, a1.id);

        // the same ref on two nodes at the same time
        const [c1, c2] = await Promise.all([
            uA.sendMessage(room, 'race A', 'r-3'),
            uB.sendMessage(room, 'race B', 'r-3'),
        ]);
        assert.equal(c1.type, 'ack', JSON.stringify(c1));
        assert.equal(c2.type, 'ack', JSON.stringify(c2));
        assert.equal(c1.id, c2.id, 'concurrent sends with the same ref get one id');

        // sentinel: once every watcher has it, earlier duplicates would have
        // arrived before it
        const s = await uA.sendMessage(room, 'sentinel', 'r-4');
        const expectedIds = [a1.id, r4.json.id, e.json.id, c1.id, s.id].sort((x, y) => x - y);
        assert.deepEqual(expectedIds, [1, 2, 3, 4, 5], 'ids without gaps: a refused duplicate takes no id');
        for (const [i, w] of [...watchers, uA, uB].entries()) {
            await w.seenOrNext((f) => f.type === 'message' && f.room === room && f.id === s.id);
            const ids = w.seen(isMsg(room)).map((f) => f.id);
            assert.deepEqual(ids, expectedIds, `client ${i} received each message once`);
        }
        const hs = await waitHistoryCount([A, B, C], room, 5);
        for (const h of hs) {
            assert.deepEqual(h.map((m) => m.id), expectedIds);
            assert.deepEqual(h, hs[0]);
        }
        const texts = hs[0].map((m) => m.text);
        assert.equal(texts.filter((t) => t === 'original').length, 1);
        assert.ok(!texts.includes('different text, same ref') && !texts.includes('third try') && !texts.includes('ws second'));
        assert.equal(texts.filter((t) => t === 'race A' || t === 'race B').length, 1);
        for (const c of [...watchers, uA, uB]) await c.close();
    }));
});
