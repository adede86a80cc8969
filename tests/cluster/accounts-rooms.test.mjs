// Private rooms, DMs and read state across a cluster (issue 9,
// docs/PROTOCOL.md, "Accounts"), three nodes on one Valkey:
// - a private room made on A: a member added on A joins and chats on B; a
//   non-member on C gets not_found / 404 there, as for a missing room;
//   membership events are the same on every node; a member removed on A is
//   told `left {reason: removed}` on B and gets nothing more;
// - a DM between users on different nodes: both get the same room name (also
//   when they ask at once), messages flow both ways, a third user gets 404;
// - read state moves from one device to another across nodes: a read frame
//   on A reaches the account's connection on B, and GET /api/rooms and
//   joined on B and C show the drop.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { uniq } from '../lib/client.mjs';
import {
    accountsEnv,
    addMember,
    answerOf,
    createRoom,
    createRoomRaw,
    dm,
    expectStatus,
    listRooms,
    me,
    removeMember,
    roomGet,
    show,
    signup,
    tryJoin,
    uname,
    wsSession,
} from '../lib/accounts.mjs';
import { allEvents } from '../lib/lifecycle.mjs';
import { stopAll, withLogs } from '../lib/server.mjs';
import { startNodes, startValkey, stopAllValkey, waitFor } from '../lib/valkey.mjs';

const T = { timeout: 90000 };
const PW = 'cluster rooms password';

let vk;
let A;
let B;
let C;
let U;

const rname = (p) => uniq(p).replace(/[^A-Za-z0-9_.-]/g, '');

before(async () => {
    vk = await startValkey({ mode: 'plain' });
    [A, B, C] = await startNodes(vk.env, 3, { env: accountsEnv() });
    U = {};
    await signup(A.url, uname('root'), PW);
    for (const who of ['alice', 'bob', 'carol', 'dave']) U[who] = await signup(A.url, uname(who), PW);
    // every session known on every node
    for (const n of [A, B, C]) {
        for (const s of Object.values(U)) {
            await waitFor(async () => (await me(n.url, s)).status === 200, { timeoutMs: 15000, what: `session of ${s.name} on ${n.url}` });
        }
    }
});

after(async () => {
    try {
        await stopAll();
    } finally {
        await stopAllValkey();
    }
});

async function say(c, room, text) {
    const ref = uniq('ref');
    c.send({ type: 'send', room, text, ref });
    const f = await answerOf(c, room, ref);
    assert.equal(f.type, 'ack', `send in ${room} by ${c.user}: ${JSON.stringify(f)}`);
    return f;
}

// Join room on c, retrying while the node has not yet learned of the room or
// the membership (not_found); resolves the joined frame.
async function joinEventually(c, room, timeoutMs = 15000) {
    let last;
    await waitFor(
        async () => {
            last = await tryJoin(c, room);
            return last.type === 'joined';
        },
        { timeoutMs, what: `join of ${room} by ${c.user} on ${c.url}` },
    ).catch((err) => {
        err.message += ` (last: ${JSON.stringify(last)})`;
        throw err;
    });
    return last;
}

// GET /api/rooms item of room for s on url, once pred holds for it.
async function roomItemEventually(url, s, room, pred, what, timeoutMs = 10000) {
    let item;
    await waitFor(
        async () => {
            item = (await listRooms(url, s)).find((x) => x.name === room);
            return item && pred(item);
        },
        { timeoutMs, what: `${what} (${s.name} on ${url})` },
    ).catch((err) => {
        err.message += ` (last item: ${JSON.stringify(item)})`;
        throw err;
    });
    return item;
}

describe('private rooms across nodes', () => {
    it('made on A, a member chats on B, a non-member on C sees nothing; removal on A reaches B', T, withLogs(async () => {
        const { alice, bob, carol, dave } = U;
        const room = rname('xpriv');
        await createRoom(A.url, alice, room, true);
        const a = await wsSession(A.url, alice, { rooms: [room] });
        const m0 = await say(a, room, 'made on A');
        await addMember(A.url, alice, room, bob.name);
        await addMember(A.url, alice, room, dave.name);
        const b = await wsSession(B.url, bob);
        await joinEventually(b, room);
        const d = await wsSession(C.url, dave);
        await joinEventually(d, room);
        const m1 = await say(b, room, 'bob on B');
        await a.next((x) => x.type === 'message' && x.id === m1.id);
        await d.next((x) => x.type === 'message' && x.id === m1.id);
        const m2 = await say(a, room, 'alice on A');
        await b.next((x) => x.type === 'message' && x.id === m2.id);
        // carol, a non-member on C: as for a missing room
        const missing = rname('xmissing');
        const c = await wsSession(C.url, carol, { rooms: ['general'] });
        for (const r of [room, missing]) {
            const j = await tryJoin(c, r);
            assert.equal(j.code, 'not_found', `join of ${r === room ? 'the private room' : 'a missing room'} by a non-member on C: ${JSON.stringify(j)}`);
            const ref = uniq('ref');
            c.send({ type: 'send', room: r, text: 'intrude', ref });
            const s = await answerOf(c, r, ref);
            assert.equal(s.code, 'not_found', `send: ${JSON.stringify(s)}`);
        }
        for (const rest of ['/messages', `/messages/${m0.id}`, '/events', '/members']) {
            const rp = await roomGet(C.url, carol, room, rest);
            const rn = await roomGet(C.url, carol, missing, rest);
            expectStatus(rp, 404, 'not_found', `non-member GET ${rest} on C`);
            assert.equal(rp.text.split(room).join('<r>'), rn.text.split(missing).join('<r>'), `${rest}: as for a missing room`);
        }
        for (const n of [A, B, C]) assert.ok(!(await listRooms(n.url, carol)).some((x) => x.name === room), `not listed for a non-member on ${n.url}`);
        assert.ok(!JSON.stringify(c.frames).includes('bob on B'), 'no message reaches a non-member');
        // every node has the same log, member events included
        const last = m2.id;
        let evs;
        await waitFor(async () => {
            evs = await Promise.all([A, B, C].map((n) => allEvents(n.url, room, alice.bearer())));
            return evs.every((e) => e.length && e[e.length - 1].id >= last);
        }, { timeoutMs: 15000, what: `every node's events of ${room} up to ${last}` });
        const key = (e) => evs[0] && e.map((x) => `${x.id}:${x.kind || x.type}`).join(',');
        assert.equal(key(evs[1]), key(evs[0]), 'B has the same events as A');
        assert.equal(key(evs[2]), key(evs[0]), 'C has the same events as A');
        assert.equal(evs[0].filter((x) => x.kind === 'member').length, 2, `two member events: ${key(evs[0])}`);
        // removal on A reaches bob's connection on B
        expectStatus(await removeMember(A.url, alice, room, bob.name), 200, undefined, 'remove bob on A');
        const left = await b.next((x) => x.type === 'left' && x.room === room);
        assert.equal(left.reason, 'removed', JSON.stringify(left));
        const m3 = await say(a, room, 'after bob left');
        await d.next((x) => x.type === 'message' && x.id === m3.id);
        await b.ping();
        assert.equal(b.seen((x) => x.type === 'message' && x.id === m3.id).length, 0, 'a removed member on B gets nothing more');
        await waitFor(async () => (await roomGet(B.url, bob, room, '/messages')).status === 404, { timeoutMs: 10000, what: 'history 404 for bob on B after removal' });
        assert.equal((await tryJoin(b, room)).code, 'not_found', 'join on B after removal');
        for (const x of [a, b, c, d]) await x.close();
    }));
});

describe('room names across nodes', () => {
    it('one room name made on A and B at once: exactly one 201, the other 409 exists', T, withLogs(async () => {
        const { alice, bob } = U;
        for (let i = 0; i < 4; i++) {
            const name = rname(`race${i}`);
            const rs = await Promise.all([createRoomRaw(A.url, alice, name, i % 2 === 0), createRoomRaw(B.url, bob, name, i % 2 === 1)]);
            const ctx = rs.map(show).join(' | ');
            assert.equal(rs.filter((r) => r.status === 201).length, 1, `exactly one room ${name}: ${ctx}`);
            for (const r of rs) if (r.status !== 201) expectStatus(r, 409, 'exists', ctx);
        }
    }));
});

describe('DMs across nodes', () => {
    it('alice on A and bob on B get the same DM room, also asking at once; messages flow; carol on C gets 404', T, withLogs(async () => {
        const { alice, bob, carol } = U;
        const [ra, rb] = await Promise.all([dm(A.url, alice, [bob.name]), dm(B.url, bob, [alice.name])]);
        assert.equal(ra, rb, 'both ends get the same room, asked at once on two nodes');
        const room = ra;
        assert.equal(await dm(C.url, alice, [bob.name]), room, 'asked again on C');
        const a = await wsSession(A.url, alice);
        await joinEventually(a, room);
        const b = await wsSession(B.url, bob);
        await joinEventually(b, room);
        const m1 = await say(a, room, 'from A to B');
        const got = await b.next((x) => x.type === 'message' && x.id === m1.id);
        assert.equal(got.user, alice.name);
        const m2 = await say(b, room, 'from B to A');
        await a.next((x) => x.type === 'message' && x.id === m2.id && x.text === 'from B to A');
        const item = await roomItemEventually(B.url, bob, room, () => true, 'the DM listed for bob on B');
        assert.equal(item.dm, true, JSON.stringify(item));
        assert.equal(item.private, true, JSON.stringify(item));
        assert.deepEqual([...item.members].sort(), [alice.name, bob.name].sort(), JSON.stringify(item));
        for (const n of [A, B, C]) {
            expectStatus(await roomGet(n.url, carol, room, '/messages'), 404, 'not_found', `a third user reads the DM on ${n.url}`);
            assert.ok(!(await listRooms(n.url, carol)).some((x) => x.name === room), `not listed for a third user on ${n.url}`);
        }
        const c = await wsSession(C.url, carol);
        assert.equal((await tryJoin(c, room)).code, 'not_found', 'a third user joins the DM on C');
        // the history is the same on both ends
        await waitFor(async () => {
            const hs = await Promise.all([[A, alice], [B, bob]].map(async ([n, s]) => (await roomGet(n.url, s, room, '/messages')).json.messages.map((x) => x.id)));
            return hs[0].join() === hs[1].join() && hs[0].length === 2;
        }, { timeoutMs: 10000, what: 'the same DM history on A and B' });
        for (const x of [a, b, c]) await x.close();
    }));
});

describe('read state across nodes', () => {
    it('a read on the phone (A) reaches the laptop (B) and clears the counts on every node', T, withLogs(async () => {
        const { alice, bob } = U;
        const room = rname('xread');
        await createRoom(C.url, bob, room, false);
        const phone = await wsSession(A.url, alice);
        await joinEventually(phone, room);
        const laptop = await wsSession(B.url, alice);
        await joinEventually(laptop, room);
        const b = await wsSession(C.url, bob);
        await joinEventually(b, room);
        await say(phone, room, 'alice was here'); // so @alice mentions
        const ids = [];
        for (const text of ['one', `ping @${alice.name}`, 'three', `again @${alice.name}!`]) ids.push((await say(b, room, text)).id);
        const last = ids[ids.length - 1];
        await laptop.next((x) => x.type === 'message' && x.id === last);
        await phone.next((x) => x.type === 'message' && x.id === last);
        for (const n of [A, B, C]) await roomItemEventually(n.url, alice, room, (x) => x.unread === 4 && x.mentions === 2, 'unread 4, mentions 2 before reading');
        const tablet = await wsSession(C.url, alice);
        const j0 = await joinEventually(tablet, room);
        assert.deepEqual({ unread: j0.unread, mentions: j0.mentions, last_read: j0.last_read }, { unread: 4, mentions: 2, last_read: 0 }, `joined on C before reading: ${JSON.stringify(j0)}`);
        // read two of them on the phone
        phone.send({ type: 'read', room, id: ids[1] });
        const r1 = await laptop.next((x) => x.type === 'read' && x.room === room);
        assert.equal(r1.id, ids[1], JSON.stringify(r1));
        await tablet.next((x) => x.type === 'read' && x.room === room && x.id === ids[1]);
        for (const n of [A, B, C]) await roomItemEventually(n.url, alice, room, (x) => x.unread === 2 && x.mentions === 1, 'unread 2, mentions 1 after reading two');
        // then everything on the laptop
        laptop.send({ type: 'read', room, id: last });
        const r2 = await phone.next((x) => x.type === 'read' && x.room === room && x.id === last);
        assert.equal(r2.id, last);
        for (const n of [A, B, C]) await roomItemEventually(n.url, alice, room, (x) => x.unread === 0 && x.mentions === 0, 'unread 0 after reading all');
        const pc = await wsSession(A.url, alice);
        const j1 = await pc.join(room);
        assert.deepEqual({ unread: j1.unread, mentions: j1.mentions, last_read: j1.last_read }, { unread: 0, mentions: 0, last_read: last }, `joined on A after reading: ${JSON.stringify(j1)}`);
        // a stale read from another node does not move it back; a read of
        // another room sent after it, once seen on A and B, shows both nodes
        // have handled the stale one
        const aside = rname('xread-aside');
        await createRoom(C.url, bob, aside, false);
        await joinEventually(b, aside);
        const asideMsg = await say(b, aside, 'aside');
        tablet.send({ type: 'read', room, id: ids[0] });
        tablet.send({ type: 'read', room: aside, id: asideMsg.id });
        for (const device of [phone, laptop]) await device.next((x) => x.type === 'read' && x.room === aside && x.id === asideMsg.id);
        const more = await say(b, room, 'five');
        await phone.next((x) => x.type === 'message' && x.id === more.id);
        for (const n of [A, B, C]) await roomItemEventually(n.url, alice, room, (x) => x.unread === 1, 'unread 1: the stale read did not move the last read back');
        const pc2 = await wsSession(B.url, alice);
        const j2 = await pc2.join(room);
        assert.equal(j2.last_read, last, `last_read after a stale read: ${JSON.stringify(j2)}`);
        // bob's counts are his own
        const bv = await roomItemEventually(A.url, bob, room, () => true, 'bob\'s view');
        assert.equal(bv.unread, 1, `bob has alice's message unread, not alice's state: ${JSON.stringify(bv)}`);
        assert.equal(b.seen((x) => x.type === 'read').length, 0, 'another account never gets read frames');
        // two devices read at once on two nodes: every node ends at the higher id
        const m6 = await say(b, room, 'six');
        const m7 = await say(b, room, 'seven');
        await phone.next((x) => x.type === 'message' && x.id === m7.id);
        await laptop.next((x) => x.type === 'message' && x.id === m7.id);
        phone.send({ type: 'read', room, id: m7.id });
        laptop.send({ type: 'read', room, id: m6.id });
        for (const n of [A, B, C]) await roomItemEventually(n.url, alice, room, (x) => x.unread === 0, 'unread 0 after concurrent reads (the higher id wins)');
        for (const n of [A, B, C]) {
            const w = await wsSession(n.url, alice);
            const j = await w.join(room);
            assert.equal(j.last_read, m7.id, `last_read on ${n.url} after concurrent reads: ${JSON.stringify(j)}`);
            await w.close();
        }
        for (const x of [phone, laptop, tablet, b, pc, pc2]) await x.close();
    }));
});
