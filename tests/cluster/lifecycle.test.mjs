// The life of a message in a cluster (docs/PROTOCOL.md version 2):
// - read your own writes: after an ack (WS) or a 201/200 (REST), an immediate
//   GET on the same node shows the message or the change, many times over;
// - an edit on node A and a delete of the same message on node B at once end
//   the same on all three nodes (and concurrent edits: the highest id wins);
// - join with since on another node replays the changes, in id order;
// - a mention sent on node A reaches the mentioned user's connections on
//   the other nodes, joined or not;
// - the same ref for a change on several nodes is stored once.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { api, connectUser, fetchAllMessages, uniq } from '../lib/client.mjs';
import {
    allEvents,
    assertChangeAck,
    assertMessageShape,
    assertUpdateShape,
    nextMention,
    nextUpdate,
    proj,
    restDelete,
    restEdit,
    restEvents,
    restGet,
    restPost,
    restReact,
    wsDelete,
    wsEdit,
    wsReact,
    wsSend,
} from '../lib/lifecycle.mjs';
import { stopAll, withLogs } from '../lib/server.mjs';
import { startNodes, startValkey, stopAllValkey, waitFor } from '../lib/valkey.mjs';

const T = { timeout: 180000 };

let vk;
let trio;

async function cluster3() {
    if (!trio) {
        vk = vk || (await startValkey({ mode: 'plain' }));
        trio = await startNodes(vk.env, 3);
    }
    return trio;
}

after(async () => {
    try {
        await stopAll();
    } finally {
        await stopAllValkey();
    }
});

async function ack(p, ctx) {
    const f = await p;
    assert.equal(f.type, 'ack', `${ctx}: expected ack, got ${JSON.stringify(f)}`);
    return f;
}

// Wait until every node's /events of room ends at lastId with the same
// number of events; resolve with the events and histories of every node.
async function converged(nodes, room, lastId, timeoutMs = 20000) {
    let evs = [];
    await waitFor(
        async () => {
            evs = await Promise.all(nodes.map((n) => allEvents(n.url, room)));
            return evs.every((e) => e.length > 0 && e[e.length - 1].id === lastId && e.length === evs[0].length);
        },
        { timeoutMs, what: `every node's events of ${room} up to ${lastId}` },
    ).catch((err) => {
        err.message += ` (last ids: ${evs.map((e) => (e.length ? `${e[e.length - 1].id}/${e.length}` : '-')).join(', ')})`;
        throw err;
    });
    const hs = await Promise.all(nodes.map((n) => fetchAllMessages(n.url, room)));
    return { evs, hs };
}

function assertSameEverywhere({ evs, hs }, room) {
    for (let i = 1; i < evs.length; i++) {
        assert.deepEqual(evs[i].map(proj), evs[0].map(proj), `events of ${room} on node ${i} equal node 0's`);
        assert.deepEqual(hs[i].map(proj), hs[0].map(proj), `history of ${room} on node ${i} equals node 0's`);
    }
    const ids = evs[0].map((e) => e.id);
    assert.deepEqual(ids, Array.from({ length: ids.length }, (_, k) => k + 1), `ids of ${room} are 1..N without gaps`);
}

describe('read your own writes (two nodes, one Valkey)', () => {
    it('after every ack or 201/200 an immediate GET on the same node shows it', T, withLogs(async () => {
        vk = vk || (await startValkey({ mode: 'plain' }));
        const [A, B] = await startNodes(vk.env, 2);
        const room = uniq('ryow');
        const a = await connectUser(A.wsUrl, 'ry-a', [room]);
        const b = await connectUser(B.wsUrl, 'ry-b', [room]); // traffic from the other node too
        const misses = [];
        const miss = (what, r) => misses.push(`${what}: ${r.status} ${r.text.slice(0, 200)}`);
        const N = 200;
        const emoji = ['👍', '🎉', '🚀'];
        for (let i = 0; i < N; i++) {
            // WS send on A, GET on A
            const s = await ack(wsSend(a, room, `ws ${i}`), `send ${i}`);
            let r = await restGet(A.url, room, s.id);
            if (r.status !== 200 || r.json.text !== `ws ${i}`) miss(`GET after send ack ${s.id}`, r);
            // the history page too (the read a version-1 client makes)
            r = await api(A.url, `/api/rooms/${room}/messages?after=${s.id - 1}&limit=1`);
            if (r.status !== 200 || r.json.messages?.[0]?.id !== s.id) miss(`history after send ack ${s.id}`, r);
            // a change of it over WS, GET on A
            if (i % 3 === 0) {
                const e = await ack(wsEdit(a, room, s.id, `ws ${i} edited`), `edit ${i}`);
                r = await restGet(A.url, room, s.id);
                if (r.status !== 200 || r.json.text !== `ws ${i} edited` || r.json.edited_ts !== e.ts) miss(`GET after edit ack ${e.id}`, r);
            } else if (i % 3 === 1) {
                const x = await ack(wsReact(a, room, s.id, emoji[i % 3]), `react ${i}`);
                r = await restGet(A.url, room, s.id);
                if (r.status !== 200 || !(r.json.reactions?.[emoji[i % 3]] || []).includes('ry-a')) miss(`GET after react ack ${x.id}`, r);
            } else {
                const d = await ack(wsDelete(a, room, s.id), `delete ${i}`);
                r = await restGet(A.url, room, s.id);
                if (r.status !== 200 || r.json.deleted !== true) miss(`GET after delete ack ${d.id}`, r);
                r = await restEvents(A.url, room, { after: d.id - 1, limit: 1 });
                if (r.status !== 200 || r.json.events?.[0]?.id !== d.id) miss(`GET /events after delete ack ${d.id}`, r);
            }
            // REST on B, GET on B
            if (i % 2 === 0) {
                const p = await restPost(B.url, room, { user: 'ry-rest', text: `rest ${i}` });
                if (p.status !== 201) {
                    miss(`POST ${i}`, p);
                    continue;
                }
                r = await restGet(B.url, room, p.json.id);
                if (r.status !== 200 || r.json.text !== `rest ${i}`) miss(`GET after 201 ${p.json.id}`, r);
                r = await api(B.url, `/api/rooms/${room}/messages?after=${p.json.id - 1}&limit=1`);
                if (r.status !== 200 || r.json.messages?.[0]?.id !== p.json.id) miss(`history after 201 ${p.json.id}`, r);
                const pe = await restEdit(B.url, room, p.json.id, { user: 'ry-rest', text: `rest ${i} edited` });
                if (pe.status !== 200) {
                    miss(`PATCH ${i}`, pe);
                    continue;
                }
                r = await restGet(B.url, room, p.json.id);
                if (r.status !== 200 || r.json.text !== `rest ${i} edited`) miss(`GET after PATCH 200 ${pe.json.id}`, r);
                const pr = await restReact(B.url, room, p.json.id, '👀', true, { user: 'ry-rest' });
                if (pr.status !== 200) {
                    miss(`PUT reaction ${i}`, pr);
                    continue;
                }
                r = await restGet(B.url, room, p.json.id);
                if (r.status !== 200 || !(r.json.reactions?.['👀'] || []).includes('ry-rest')) miss(`GET after PUT 200 ${pr.json.id}`, r);
            }
            assert.ok(misses.length < 10, `read-your-own-writes misses:\n${misses.join('\n')}`);
        }
        assert.deepEqual(misses, [], `read-your-own-writes misses (${misses.length}):\n${misses.slice(0, 10).join('\n')}`);
        const evsA = await allEvents(A.url, room);
        const res = await converged([A, B], room, evsA[evsA.length - 1].id);
        assertSameEverywhere(res, room);
        await a.close();
        await b.close();
        await A.stop();
        await B.stop();
    }));
});

describe('concurrent changes on three nodes', () => {
    it('an edit on A and a delete on B of the same message at once end identical on every node', T, withLogs(async () => {
        const [A, B, C] = await cluster3();
        const room = uniq('race');
        const onA = await connectUser(A.wsUrl, 'rita', [room]);
        const onB = await connectUser(B.wsUrl, 'rita', [room]); // the author on another node
        const onC = await connectUser(C.wsUrl, 'carl', [room]);
        const K = 12;
        const msgs = [];
        for (let k = 0; k < K; k++) msgs.push(await ack(wsSend(onA, room, `original ${k}`), `send ${k}`));
        // the users on B and C have seen the messages (their nodes have them)
        // before they change them
        for (const m of msgs) for (const c of [onB, onC]) await c.seenOrNext((f) => f.type === 'message' && f.room === room && f.id === m.id);
        // every message: edit on A, delete on B, a reaction on C, all at once
        const results = await Promise.all(
            msgs.map((m, k) =>
                Promise.all([
                    wsEdit(onA, room, m.id, `racing edit ${k}`),
                    wsDelete(onB, room, m.id),
                    wsReact(onC, room, m.id, '🔥'),
                ]),
            ),
        );
        let maxId = 0;
        for (const [k, [e, d, r]] of results.entries()) {
            assertChangeAck(d, { room, target: msgs[k].id, kind: 'delete' }, `delete ${k}`);
            for (const [what, f] of [['edit', e], ['react', r]]) {
                assert.ok(
                    f.type === 'ack' || (f.type === 'error' && f.code === 'not_found'),
                    `${what} ${k} racing a delete: an ack, or not_found once the delete is known: ${JSON.stringify(f)}`,
                );
                if (f.type === 'ack') maxId = Math.max(maxId, f.id);
            }
            maxId = Math.max(maxId, d.id);
        }
        const res = await converged([A, B, C], room, maxId);
        assertSameEverywhere(res, room);
        for (const [i, h] of res.hs.entries()) {
            for (const m of h) {
                assertMessageShape(m, `node ${i} message ${m.id}`);
                assert.deepEqual(
                    [m.deleted, m.deleted_by, m.text, m.reactions, m.user],
                    [true, 'rita', '', {}, 'rita'],
                    `message ${m.id} on node ${i} is a tombstone`,
                );
            }
            const dump = JSON.stringify(res.evs[i]);
            assert.ok(!/racing edit|original/.test(dump), `no text of a deleted message or its edits on node ${i}: ${dump.slice(0, 500)}`);
        }
        // live members saw the same changes in the same order on every node
        for (const c of [onA, onB, onC]) {
            await c.seenOrNext((f) => f.type === 'update' && f.room === room && f.id === maxId);
        }
        const seq = (c) => c.seen((f) => f.type === 'update' && f.room === room).map((f) => [f.id, f.kind, f.target]);
        assert.deepEqual(seq(onB), seq(onA), 'updates on B equal A');
        assert.deepEqual(seq(onC), seq(onA), 'updates on C equal A');
        for (const c of [onA, onB, onC]) await c.close();
    }));

    it('concurrent edits of one message on two nodes: the highest id gives the text everywhere', T, withLogs(async () => {
        const [A, B, C] = await cluster3();
        const room = uniq('edits');
        const onA = await connectUser(A.wsUrl, 'eve', [room]);
        const onB = await connectUser(B.wsUrl, 'eve', [room]);
        const K = 8;
        const msgs = [];
        for (let k = 0; k < K; k++) msgs.push(await ack(wsSend(onA, room, `text ${k}`), `send ${k}`));
        for (const m of msgs) await onB.seenOrNext((f) => f.type === 'message' && f.room === room && f.id === m.id);
        const results = await Promise.all(
            msgs.map((m, k) => Promise.all([wsEdit(onA, room, m.id, `A wins ${k}`), wsEdit(onB, room, m.id, `B wins ${k}`)])),
        );
        let maxId = 0;
        const want = new Map();
        for (const [k, [ea, eb]] of results.entries()) {
            assertChangeAck(ea, { room, target: msgs[k].id, kind: 'edit' }, `edit on A ${k}`);
            assertChangeAck(eb, { room, target: msgs[k].id, kind: 'edit' }, `edit on B ${k}`);
            const win = ea.id > eb.id ? [`A wins ${k}`, ea.ts] : [`B wins ${k}`, eb.ts];
            want.set(msgs[k].id, win);
            maxId = Math.max(maxId, ea.id, eb.id);
        }
        const res = await converged([A, B, C], room, maxId);
        assertSameEverywhere(res, room);
        for (const [i, h] of res.hs.entries()) {
            for (const m of h) {
                assert.deepEqual([m.text, m.edited_ts], want.get(m.id), `message ${m.id} on node ${i}: the edit with the highest id`);
            }
        }
        await onA.close();
        await onB.close();
    }));
});

describe('since and mentions across nodes', () => {
    it('join with since on another node replays the changes made elsewhere, in id order', T, withLogs(async () => {
        const [A, B, C] = await cluster3();
        const room = uniq('since');
        const bob = await connectUser(B.wsUrl, 'sbob', [room]);
        const carol = await connectUser(C.wsUrl, 'scarol', [room]);
        let alice = await connectUser(A.wsUrl, 'salice', [room]);
        const m1 = await ack(wsSend(alice, room, 'one'), 'm1');
        const m2 = await ack(wsSend(bob, room, 'two'), 'm2');
        const m3 = await ack(wsSend(carol, room, 'three'), 'm3');
        await alice.message(room, m3.id);
        // each user changes only what their node already has
        for (const c of [bob, carol]) await c.seenOrNext((f) => f.type === 'message' && f.room === room && f.id === m3.id);
        await carol.seenOrNext((f) => f.type === 'message' && f.room === room && f.id === m1.id);
        const since = m3.id;
        await alice.close();
        // missed while away: changes from B and C, over WS and REST
        await ack(wsEdit(bob, room, m2.id, 'two, edited on B'), 'edit on B');
        await ack(wsReact(carol, room, m1.id, '👍'), 'react on C');
        await ack(wsReact(bob, room, m1.id, '👍'), 'react on B');
        const rp = await restReact(C.url, room, m1.id, '👍', false, { user: 'scarol' });
        assert.equal(rp.status, 200, rp.text);
        const m4 = await ack(wsSend(bob, room, 'four', { reply_to: m3.id }), 'm4 on B');
        await ack(wsDelete(carol, room, m3.id), 'delete on C');
        const pe = await restEdit(B.url, room, m4.id, { user: 'sbob', text: 'four, edited by REST on B' });
        assert.equal(pe.status, 200, pe.text);
        let lastId = pe.json.id;

        for (const node of [A, C]) {
            // every node has every event so far (the second pass includes the
            // live reaction of the first)
            const res = await converged([A, B, C], room, lastId);
            assertSameEverywhere(res, room);
            const want = res.evs[0].filter((e) => e.id > since);
            assert.equal(want.length, lastId - since);
            const c = await connectUser(node.wsUrl, 'salice');
            const j = await c.join(room, since);
            assert.equal(j.recovered, true, JSON.stringify(j));
            assert.equal(j.last_id, lastId);
            const got = [];
            while (got.length < want.length) got.push(await c.next((f) => (f.type === 'message' || f.type === 'update') && f.room === room));
            assert.deepEqual(got.map(proj), want.map(proj), `the replay on ${node === A ? 'A' : 'C'} equals the events after since`);
            const m4r = got.find((f) => f.type === 'message' && f.id === m4.id);
            assert.equal(m4r.text, 'four, edited by REST on B', 'a replayed message is in its current state');
            assert.deepEqual(m4r.reply_to, { id: m3.id, user: 'scarol', text: '' }, 'the quote of a deleted original is erased');
            assert.deepEqual(
                got.filter((f) => f.type === 'update').map((f) => f.kind).slice(0, 6),
                ['edit', 'react', 'react', 'unreact', 'delete', 'edit'],
            );
            // then a live change from another node
            const live = await ack(wsReact(bob, room, m4.id, node === A ? '🍎' : '🍏'), 'live react on B');
            const lf = await c.next((f) => (f.type === 'message' || f.type === 'update') && f.room === room);
            assert.equal(lf.id, live.id, 'live after the replay');
            assertUpdateShape(lf, 'react', 'live update');
            lastId = live.id;
            await c.close();
        }
        await bob.close();
        await carol.close();
    }));

    it('a mention sent on node A reaches every connection of the user on B and C, joined or not', T, withLogs(async () => {
        const [A, B, C] = await cluster3();
        const room = uniq('mention');
        const zoeB = await connectUser(B.wsUrl, 'Zoe Q', [room]);
        const zoeC = await connectUser(C.wsUrl, 'Zoe Q'); // never joins the room
        const author = await connectUser(A.wsUrl, 'mal', [room]);
        const other = await connectUser(C.wsUrl, 'nat', [room]);
        const z = await ack(wsSend(zoeB, room, 'zoe was here'), 'zoe writes on B');
        // the author's node must know zoe wrote in the room
        await author.message(room, z.id);
        const text = 'ping @zoe q: are you there?';
        const m = await ack(wsSend(author, room, text), 'mention on A');
        for (const [what, c] of [['B (joined)', zoeB], ['C (not joined)', zoeC]]) {
            const f = await nextMention(c, room, m.id);
            assert.deepEqual(
                { room: f.room, id: f.id, user: f.user, text: f.text, ts: f.ts },
                { room, id: m.id, user: 'mal', text, ts: m.ts },
                `mention frame on ${what}`,
            );
        }
        const mf = await other.message(room, m.id);
        assert.deepEqual(mf.mentions, ['Zoe Q']);
        // REST POST on A mentioning her: C again
        const p = await restPost(A.url, room, { user: 'bot', text: '@Zoe Q, a bot says hi' });
        assert.equal(p.status, 201, p.text);
        assert.deepEqual(p.json.mentions, ['Zoe Q']);
        assert.equal((await nextMention(zoeC, room, p.json.id)).user, 'bot');
        await other.ping();
        await author.ping();
        assert.deepEqual(other.seen('mention'), [], 'nat is not mentioned');
        assert.deepEqual(author.seen('mention'), [], 'the author gets no mention');
        for (const c of [zoeB, zoeC, author, other]) await c.close();
    }));

    it('the same ref for a change on several nodes (WS and REST) is stored once', T, withLogs(async () => {
        const [A, B, C] = await cluster3();
        const room = uniq('cref');
        const onA = await connectUser(A.wsUrl, 'rex', [room]);
        const onB = await connectUser(B.wsUrl, 'rex', [room]);
        const w = await connectUser(C.wsUrl, 'watch', [room]);
        const m = await ack(wsSend(onA, room, 'to change'), 'send');
        for (const c of [onB, w]) await c.seenOrNext((f) => f.type === 'message' && f.room === room && f.id === m.id);
        const e1 = await ack(wsEdit(onA, room, m.id, 'first edit', { ref: 'x-edit' }), 'edit on A');
        const e2 = await ack(wsEdit(onB, room, m.id, 'second edit', { ref: 'x-edit' }), 'edit on B, same ref');
        assert.equal(e2.id, e1.id);
        const e3 = await restEdit(C.url, room, m.id, { user: 'rex', text: 'third edit', ref: 'x-edit' });
        assert.equal(e3.status, 200, e3.text);
        assert.equal(e3.json.id, e1.id);
        const r1 = await restReact(C.url, room, m.id, '🌟', true, { user: 'rex', ref: 'x-react' });
        assert.equal(r1.status, 200, r1.text);
        const r2 = await ack(wsReact(onA, room, m.id, '🌙', true, { ref: 'x-react' }), 'react on A, same ref');
        assert.equal(r2.id, r1.json.id);
        const d1 = await ack(wsDelete(onB, room, m.id, { ref: 'x-del' }), 'delete on B');
        const d2 = await restDelete(A.url, room, m.id, { user: 'rex', ref: 'x-del' });
        assert.equal(d2.status, 200, d2.text);
        assert.equal(d2.json.id, d1.id);
        const res = await converged([A, B, C], room, d1.id);
        assertSameEverywhere(res, room);
        assert.deepEqual(res.evs[0].map((e) => e.id), [m.id, e1.id, r1.json.id, d1.id]);
        await nextUpdate(w, room, d1.id);
        assert.deepEqual(
            w.seen((f) => f.type === 'update' && f.room === room).map((f) => f.id),
            [e1.id, r1.json.id, d1.id],
            'each change broadcast once',
        );
        for (const c of [onA, onB, w]) await c.close();
    }));
});
