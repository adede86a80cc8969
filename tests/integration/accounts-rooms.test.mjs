// Rooms with accounts on one node (issue 9, docs/PROTOCOL.md, "Accounts"): rooms
// made with POST /api/rooms (general exists from the start), private rooms
// invisible to non-members over WebSocket and every REST path exactly like a
// room that does not exist, owners adding and removing members and making
// owners, membership changes as `member` events of the room's log, the
// `left {reason: removed}` frame, direct-message rooms, and the read state
// (read frames, unread and mention counts in GET /api/rooms and joined).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { api, sendMany, uniq } from '../lib/client.mjs';
import {
    accountsEnv,
    addMember,
    addMemberRaw,
    answerOf,
    createRoom,
    createRoomRaw,
    dm,
    dmRaw,
    expectStatus,
    http,
    listRooms,
    removeMember,
    roomGet,
    roomNameOf,
    show,
    signup,
    tryJoin,
    uname,
    wsSession,
} from '../lib/accounts.mjs';
import { allEvents } from '../lib/lifecycle.mjs';
import { startServer, stopAll, withLogs } from '../lib/server.mjs';
import { waitFor } from '../lib/valkey.mjs';

const T = { timeout: 60000 };
const PW = 'rooms password 123';
const enc = encodeURIComponent;

let srv;
let U; // name -> session

before(async () => {
    srv = await startServer({ env: accountsEnv() });
    U = {};
    await signup(srv.url, uname('root'), PW); // the admin; the others are plain users
    for (const who of ['alice', 'bob', 'carol', 'dave', 'mallory']) U[who] = await signup(srv.url, uname(who), PW);
});

after(stopAll);

const rname = (p) => uniq(p).replace(/[^A-Za-z0-9_.-]/g, '');

// An error answer with the room's name replaced, so that a private room's
// answer compares with a missing room's.
function norm(text, room) {
    return text.split(room).join('<room>');
}

async function ackOf(p, ctx) {
    const f = await p;
    assert.equal(f.type, 'ack', `${ctx}: ${JSON.stringify(f)}`);
    return f;
}

function say(c, room, text) {
    const ref = uniq('ref');
    c.send({ type: 'send', room, text, ref });
    return ackOf(answerOf(c, room, ref), `send in ${room}`);
}

describe('rooms with accounts', () => {
    it('general exists; other rooms are made with POST /api/rooms; a missing room is not_found; 409 exists', T, withLogs(async () => {
        const a = await wsSession(srv.url, U.alice);
        await a.join('general');
        const missing = rname('nosuch');
        const j = await tryJoin(a, missing);
        assert.equal(j.type, 'error', `join of a room that does not exist: ${JSON.stringify(j)}`);
        assert.equal(j.code, 'not_found', JSON.stringify(j));
        const ref = uniq('ref');
        a.send({ type: 'send', room: missing, text: 'hello?', ref });
        const s = await answerOf(a, missing, ref);
        assert.equal(s.code, 'not_found', `send to a room that does not exist: ${JSON.stringify(s)}`);
        const pub = rname('pub');
        const r = await createRoomRaw(srv.url, U.alice, pub, false);
        expectStatus(r, 201, undefined, 'create a public room');
        const room = r.json.room;
        assert.equal(room.name, pub, show(r));
        assert.equal(room.private, false, show(r));
        assert.equal(room.dm, false, show(r));
        for (const k of ['last_id', 'online', 'unread', 'mentions']) assert.equal(typeof room[k], 'number', `${k}: ${show(r)}`);
        expectStatus(await createRoomRaw(srv.url, U.bob, pub, true), 409, 'exists', 'the same name again, by another user');
        expectStatus(await createRoomRaw(srv.url, U.alice, 'general', false), 409, 'exists', 'general');
        expectStatus(await createRoomRaw(srv.url, U.alice, `dm-${'0'.repeat(24)}`, true), 400, 'room_invalid', 'a name starting with dm-');
        expectStatus(await createRoomRaw(srv.url, U.alice, 'dm-mine', false), 400, 'room_invalid', 'a name starting with dm-');
        const priv = rname('priv');
        await createRoom(srv.url, U.alice, priv, true);
        expectStatus(await createRoomRaw(srv.url, U.mallory, priv, false), 409, 'exists', 'the name of a private room the caller cannot see');
        // a public room is listed for everyone and joinable by anyone
        for (const who of ['bob', 'mallory']) {
            const rooms = await listRooms(srv.url, U[who]);
            assert.ok(rooms.some((x) => x.name === pub && x.private === false), `${who} sees the public room: ${JSON.stringify(rooms)}`);
        }
        const m = await wsSession(srv.url, U.mallory);
        await m.join(pub);
        await say(m, pub, 'public hello');
        await a.close();
        await m.close();
    }));

    it('a private room is invisible to a non-member over WebSocket: join, send and changes answer as for a missing room', T, withLogs(async () => {
        const priv = rname('secret');
        const missing = rname('missing');
        await createRoom(srv.url, U.alice, priv, true);
        const a = await wsSession(srv.url, U.alice, { rooms: [priv] });
        const secret = await say(a, priv, 'the secret plans');
        const m = await wsSession(srv.url, U.mallory, { rooms: ['general'] });
        const frames = [
            { type: 'join', room: '$' },
            { type: 'join', room: '$', since: 0 },
            { type: 'send', room: '$', text: 'let me in' },
            { type: 'edit', room: '$', id: secret.id, text: 'defaced' },
            { type: 'delete', room: '$', id: secret.id },
            { type: 'react', room: '$', id: secret.id, emoji: '👍', add: true },
            { type: 'typing', room: '$' },
        ];
        for (const f of frames) {
            if (f.type === 'typing') continue; // no answer either way
            const answers = [];
            for (const room of [priv, missing]) {
                const ref = uniq('x');
                m.send({ ...f, room, ref });
                const ans = await m.next((x) => (x.type === 'error' || x.type === 'ack' || x.type === 'joined') && (x.ref === ref || x.room === room));
                answers.push(ans);
            }
            const [p, n] = answers;
            assert.equal(p.type, 'error', `${f.type} of a private room by a non-member: ${JSON.stringify(p)}`);
            assert.equal(p.code, 'not_found', `${f.type} of a private room by a non-member: ${JSON.stringify(p)}`);
            assert.equal(
                norm(JSON.stringify({ ...p, ref: undefined }), priv),
                norm(JSON.stringify({ ...n, ref: undefined }), missing),
                `${f.type}: the private room's answer must be the missing room's`,
            );
        }
        for (const f of frames.filter((x) => x.type === 'typing')) m.send({ ...f, room: priv });
        // nothing of the room reached mallory; the room's content is unchanged
        await say(a, priv, 'more secrets');
        await m.ping();
        assert.deepEqual(m.seen((x) => x.room === priv && x.type !== 'error'), [], 'no frame of the private room reaches a non-member');
        assert.ok(!JSON.stringify(m.frames).includes('secret plans'), 'the text never reaches a non-member');
        const cur = await roomGet(srv.url, U.alice, priv, `/messages/${secret.id}`);
        expectStatus(cur, 200, undefined, 'the message, as its owner');
        assert.equal(cur.json.text, 'the secret plans');
        assert.deepEqual(cur.json.reactions, {});
        assert.equal(a.seen((x) => x.type === 'typing' && x.room === priv).length, 0, 'a non-member\'s typing is not relayed');
        await a.close();
        await m.close();
    }));

    it('a private room answers 404 to a non-member on every REST path, as a missing room does, and is not listed', T, withLogs(async () => {
        const priv = rname('vault');
        const missing = rname('absent');
        await createRoom(srv.url, U.alice, priv, true);
        const a = await wsSession(srv.url, U.alice, { rooms: [priv] });
        const msg = await say(a, priv, 'vault contents');
        const e = encodeURIComponent('👍');
        const paths = [
            ['GET', '/messages'],
            ['GET', '/messages?after=0&limit=10'],
            [`GET`, `/messages/${msg.id}`],
            ['GET', '/events'],
            ['GET', '/events?after=0'],
            ['GET', '/members'],
            ['POST', '/messages', { text: 'intruder' }],
            ['PATCH', `/messages/${msg.id}`, { text: 'defaced' }],
            ['DELETE', `/messages/${msg.id}`],
            ['PUT', `/messages/${msg.id}/reactions/${e}`],
            ['DELETE', `/messages/${msg.id}/reactions/${e}`],
            ['POST', '/members', { user: U.mallory.name }],
            ['DELETE', `/members/${enc(U.alice.name)}`],
            ['DELETE', `/members/${enc(U.mallory.name)}`],
        ];
        for (const [method, rest, body] of paths) {
            const rp = await http(srv.url, `/api/rooms/${enc(priv)}${rest}`, { method, body, headers: U.mallory.bearer() });
            const rn = await http(srv.url, `/api/rooms/${enc(missing)}${rest}`, { method, body, headers: U.mallory.bearer() });
            expectStatus(rp, 404, 'not_found', `non-member ${method} ${rest} of a private room`);
            assert.equal(rn.status, 404, `${method} ${rest} of a missing room: ${show(rn)}`);
            assert.equal(norm(rp.text, priv), norm(rn.text, missing), `${method} ${rest}: private room ${show(rp)} vs missing room ${show(rn)}`);
        }
        const listed = await listRooms(srv.url, U.mallory);
        assert.ok(!listed.some((x) => x.name === priv), `GET /api/rooms of a non-member lists the private room: ${JSON.stringify(listed)}`);
        const own = (await listRooms(srv.url, U.alice)).find((x) => x.name === priv);
        assert.ok(own, 'a member sees the private room in GET /api/rooms');
        assert.equal(own.private, true);
        assert.equal(own.dm, false);
        // nothing changed
        const cur = await roomGet(srv.url, U.alice, priv, `/messages/${msg.id}`);
        assert.equal(cur.json.text, 'vault contents');
        const hist = await roomGet(srv.url, U.alice, priv, '/messages');
        assert.deepEqual(hist.json.messages.map((x) => x.text), ['vault contents'], 'no message of the non-member was stored');
        await a.close();
    }));

    it('owners add and remove members and make owners; members may leave; each change is a member event in id order', T, withLogs(async () => {
        const { alice, bob, carol, dave, mallory } = U;
        const room = rname('club');
        await createRoom(srv.url, alice, room, true);
        const a = await wsSession(srv.url, alice, { rooms: [room] });
        await say(a, room, 'founding message');
        const add = await addMember(srv.url, alice, room, bob.name);
        assert.deepEqual({ room: add.room, user: add.user, role: add.role }, { room, user: bob.name, role: 'member' }, JSON.stringify(add));
        const b = await wsSession(srv.url, bob, { rooms: [room] });
        const fromBob = await say(b, room, 'bob was here');
        await a.next((x) => x.type === 'message' && x.id === fromBob.id);
        // a member who is not an owner may not add; an unknown account is 404; a non-member sees nothing
        expectStatus(await addMemberRaw(srv.url, bob, room, carol.name), 403, 'forbidden', 'a plain member adds someone');
        expectStatus(await addMemberRaw(srv.url, alice, room, uname('ghost')), 404, undefined, 'adding an account that does not exist');
        expectStatus(await addMemberRaw(srv.url, mallory, room, mallory.name), 404, 'not_found', 'a non-member adds themselves');
        // bob becomes an owner and adds carol and dave
        const own = await addMember(srv.url, alice, room, bob.name, 'owner');
        assert.equal(own.role, 'owner', JSON.stringify(own));
        const addCarol = await addMember(srv.url, bob, room, carol.name);
        await addMember(srv.url, bob, room, dave.name);
        // live members see each change as an update of kind member
        const live = await a.next((x) => x.type === 'update' && x.room === room && x.kind === 'member' && x.member === carol.name);
        assert.equal(live.present, true, `live member update: ${JSON.stringify(live)}; add answered ${JSON.stringify(addCarol)}`);
        await a.next((x) => x.type === 'update' && x.room === room && x.kind === 'member' && x.member === dave.name);
        const mem = await roomGet(srv.url, carol, room, '/members');
        expectStatus(mem, 200, undefined, 'members of a private room');
        assert.ok(Array.isArray(mem.json.members), show(mem));
        const roster = Object.fromEntries(mem.json.roster.map((x) => [x.user, x.role]));
        assert.deepEqual(roster, { [alice.name]: 'owner', [bob.name]: 'owner', [carol.name]: 'member', [dave.name]: 'member' }, show(mem));
        assert.ok(mem.json.members.includes(alice.name) && mem.json.members.includes(bob.name), `online members: ${show(mem)}`);
        const pubMem = await roomGet(srv.url, carol, 'general', '/members');
        assert.ok(!('roster' in pubMem.json), `roster only for a private room: ${show(pubMem)}`);
        // a plain member may not remove another
        const d = await wsSession(srv.url, dave, { rooms: [room] });
        const fromDave = await say(d, room, 'dave says hi'); // so @dave is a mention in this room
        expectStatus(await removeMember(srv.url, dave, room, carol.name), 403, 'forbidden', 'a plain member removes another');
        // carol leaves by herself
        const c = await wsSession(srv.url, carol, { rooms: [room] });
        expectStatus(await removeMember(srv.url, carol, room, carol.name), 200, undefined, 'a member leaves');
        await c.next((x) => x.type === 'left' && x.room === room);
        const cj = await tryJoin(c, room);
        assert.equal(cj.code, 'not_found', `join after leaving: ${JSON.stringify(cj)}`);
        // an owner removes dave while he is in the room: left {reason: removed}, then nothing more
        const rm = await removeMember(srv.url, bob, room, dave.name);
        expectStatus(rm, 200, undefined, 'an owner removes a member');
        assert.deepEqual({ room: rm.json.room, user: rm.json.user }, { room, user: dave.name }, show(rm));
        const left = await d.next((x) => x.type === 'left' && x.room === room);
        assert.equal(left.reason, 'removed', JSON.stringify(left));
        const after = await say(a, room, `after dave left, @${dave.name} cannot read this`);
        await b.next((x) => x.type === 'message' && x.id === after.id);
        await d.ping();
        assert.equal(d.seen((x) => x.type === 'message' && x.id === after.id).length, 0, 'a removed member gets nothing more of the room');
        assert.deepEqual(d.seen((x) => x.type === 'mention' && x.room === room && x.id > fromDave.id), [], 'no mention of a private room reaches a removed member');
        const stored = await roomGet(srv.url, alice, room, `/messages/${after.id}`);
        assert.deepEqual(stored.json.mentions, [], `a message's mentions keep only users who may enter the room: ${show(stored)}`);
        expectStatus(await roomGet(srv.url, dave, room, '/messages'), 404, 'not_found', 'history after removal');
        assert.equal((await tryJoin(d, room)).code, 'not_found', 'join after removal');
        assert.ok(!(await listRooms(srv.url, dave)).some((x) => x.name === room), 'not listed after removal');
        // the log: a room event first, then member events in id order among the messages
        const evs = await allEvents(srv.url, room, alice.bearer());
        const ids = evs.map((x) => x.id);
        assert.deepEqual(ids, [...ids].sort((x, y) => x - y), 'events in id order');
        assert.equal(new Set(ids).size, ids.length, 'ids unique');
        const first = evs[0];
        assert.ok(first && (first.kind === 'room' || first.type === 'room'), `the first event says the room is private: ${JSON.stringify(first)}`);
        const members = evs.filter((x) => x.kind === 'member');
        for (const e of members) {
            const j = JSON.stringify(e);
            assert.equal(e.type, 'update', `a member event is an update: ${j}`);
            assert.equal(typeof e.member, 'string', `member: ${j}`);
            assert.ok(['member', 'owner'].includes(e.role) || e.role === null || e.present === false, `role: ${j}`);
            assert.equal(typeof e.present, 'boolean', `present: ${j}`);
            assert.ok(!('target' in e) || e.target === null || e.target === undefined, `no target: ${j}`);
        }
        const byWho = (n) => members.filter((e) => e.member === n).map((e) => [e.role, e.present]);
        assert.deepEqual(byWho(carol.name).map((x) => x[1]), [true, false], `carol added then left: ${JSON.stringify(members)}`);
        assert.deepEqual(byWho(dave.name).map((x) => x[1]), [true, false], `dave added then removed: ${JSON.stringify(members)}`);
        assert.deepEqual(byWho(bob.name), [['member', true], ['owner', true]], `bob added, then made owner: ${JSON.stringify(members)}`);
        assert.ok(members.length >= 6, `6 membership changes (bob added, made owner, carol and dave added, carol left, dave removed) as member events: ${JSON.stringify(evs)}`);
        const bobAdd = members.find((x) => JSON.stringify(x).includes(bob.name));
        assert.ok(bobAdd && bobAdd.id < fromBob.id, `bob's addition comes before his message in the log: ${JSON.stringify(members)}`);
        const daveOut = members[members.length - 1];
        assert.ok(JSON.stringify(daveOut).includes(dave.name) && daveOut.id < after.id, `dave's removal is the last member event, before the next message: ${JSON.stringify(members)}`);
        // a replay (join with since) carries the member events too, in id order
        const r = await wsSession(srv.url, alice);
        r.send({ type: 'join', room, since: 0 });
        await r.next((x) => x.type === 'joined' && x.room === room);
        await r.next((x) => x.room === room && x.id === after.id);
        const replayed = r.seen((x) => x.room === room && typeof x.id === 'number').map((x) => x.id);
        const wantIds = evs.filter((x) => x.id <= after.id).map((x) => x.id);
        for (const e of members) assert.ok(replayed.includes(e.id), `member event ${e.id} in the replay: ${replayed.join(',')}`);
        assert.deepEqual(replayed.filter((id) => wantIds.includes(id)), [...replayed.filter((id) => wantIds.includes(id))].sort((x, y) => x - y), 'replay in id order');
        await r.close();
        // history lists messages only
        const hist = await roomGet(srv.url, alice, room, '/messages');
        assert.ok(hist.json.messages.every((x) => typeof x.text === 'string' && x.kind === undefined), `history holds messages only: ${show(hist)}`);
        for (const x of [a, b, c, d]) await x.close();
    }));

    it('a DM: the same room for the same people, private, listed with dm and members; a third user gets 404', T, withLogs(async () => {
        const { alice, bob, carol, mallory } = U;
        const r1 = await dmRaw(srv.url, alice, [bob.name]);
        expectStatus(r1, 200, undefined, 'alice starts a DM with bob');
        const room = roomNameOf(r1.json.room);
        assert.match(String(room), /^dm-[0-9a-f]{24}$/, show(r1));
        assert.equal(await dm(srv.url, bob, [alice.name]), room, 'bob gets the same room');
        assert.equal(await dm(srv.url, alice, [bob.name]), room, 'again the same room');
        const group = await dm(srv.url, alice, [bob.name, carol.name]);
        assert.notEqual(group, room, 'another set of people, another room');
        assert.equal(await dm(srv.url, carol, [bob.name, alice.name]), group, 'the same group in another order');
        for (const who of [alice, bob]) {
            const x = (await listRooms(srv.url, who)).find((y) => y.name === room);
            assert.ok(x, `${who.name} has the DM in GET /api/rooms`);
            assert.equal(x.dm, true, JSON.stringify(x));
            assert.equal(x.private, true, JSON.stringify(x));
            assert.deepEqual([...x.members].sort(), [alice.name, bob.name].sort(), `members of the DM: ${JSON.stringify(x)}`);
        }
        // messages flow
        const a = await wsSession(srv.url, alice, { rooms: [room] });
        const b = await wsSession(srv.url, bob, { rooms: [room] });
        const m1 = await say(a, room, 'hi bob, privately');
        await b.next((x) => x.type === 'message' && x.id === m1.id && x.text === 'hi bob, privately');
        const m2 = await say(b, room, 'hi alice');
        await a.next((x) => x.type === 'message' && x.id === m2.id);
        // its members are fixed: nobody is added to a DM
        const addToDm = await addMemberRaw(srv.url, alice, room, carol.name);
        assert.ok(addToDm.status >= 400 && addToDm.status < 500, `adding someone to a DM must be refused: ${show(addToDm)}`);
        const stillTwo = (await listRooms(srv.url, alice)).find((y) => y.name === room);
        assert.deepEqual([...stillTwo.members].sort(), [alice.name, bob.name].sort(), `the DM's members after a refused add: ${JSON.stringify(stillTwo)}`);
        // a third person sees nothing
        expectStatus(await roomGet(srv.url, mallory, room, '/messages'), 404, 'not_found', 'a third user reads the DM');
        expectStatus(await roomGet(srv.url, carol, room, '/events'), 404, 'not_found', 'a third user reads the DM events');
        const m = await wsSession(srv.url, mallory);
        assert.equal((await tryJoin(m, room)).code, 'not_found', 'a third user joins the DM');
        assert.ok(!(await listRooms(srv.url, mallory)).some((x) => x.name === room), 'not listed for a third user');
        // bad requests
        expectStatus(await dmRaw(srv.url, alice, []), 400, 'bad_request', 'a DM with nobody');
        const many = [];
        for (let i = 0; i < 8; i++) many.push((await signup(srv.url, uname('dm8'), PW)).name);
        const r8 = await dmRaw(srv.url, alice, many);
        expectStatus(r8, 400, 'bad_request', 'a DM with 8 others (9 people)');
        expectStatus(await dmRaw(srv.url, alice, many.slice(0, 7)), 200, undefined, 'a DM with 7 others');
        const ghost = await dmRaw(srv.url, alice, [uname('ghost')]);
        assert.ok(ghost.status === 404 || ghost.status === 400, `a DM with an account that does not exist: ${show(ghost)}`);
        for (const x of [a, b, m]) await x.close();
    }));
});

describe('read state on one node', () => {
    it('a read frame reaches the account\'s other connections; unread and mentions drop; joined carries them', T, withLogs(async () => {
        const { alice, bob } = U;
        const room = rname('reading');
        await createRoom(srv.url, bob, room, false);
        const a1 = await wsSession(srv.url, alice, { rooms: [room] });
        const a2 = await wsSession(srv.url, alice, { rooms: [room] });
        const b = await wsSession(srv.url, bob, { rooms: [room] });
        const own = await say(a1, room, 'alice speaks first'); // so @alice is a mention
        const sent = [];
        for (const text of ['one', `hey @${alice.name} look`, 'three']) sent.push(await say(b, room, text));
        const last = sent[sent.length - 1].id;
        await a2.next((x) => x.type === 'message' && x.id === last);
        const unreadOf = async () => (await listRooms(srv.url, alice)).find((x) => x.name === room);
        let st = await unreadOf();
        assert.equal(st.unread, 3, `three messages by others after no read: ${JSON.stringify(st)}`);
        assert.equal(st.mentions, 1, `one of them mentions alice: ${JSON.stringify(st)}`);
        const bobView = (await listRooms(srv.url, bob)).find((x) => x.name === room);
        assert.equal(bobView.unread, 1, `bob has alice's one message unread: ${JSON.stringify(bobView)}`);
        const a3 = await wsSession(srv.url, alice);
        const j0 = await a3.join(room);
        assert.deepEqual({ unread: j0.unread, mentions: j0.mentions, last_read: j0.last_read }, { unread: 3, mentions: 1, last_read: 0 }, JSON.stringify(j0));
        // read on a1: a2 and a3 get the read frame, a1 does not
        a1.send({ type: 'read', room, id: last });
        const r2 = await a2.next((x) => x.type === 'read' && x.room === room);
        assert.equal(r2.id, last, JSON.stringify(r2));
        const r3 = await a3.next((x) => x.type === 'read' && x.room === room);
        assert.equal(r3.id, last);
        await a1.ping();
        const echoed = a1.seen((x) => x.type === 'read'); // checked at the end, so the rest runs whatever it shows
        assert.equal(b.seen((x) => x.type === 'read').length, 0, 'another account gets no read frame');
        await waitFor(async () => {
            st = await unreadOf();
            return st.unread === 0 && st.mentions === 0;
        }, { timeoutMs: 5000, what: 'unread and mentions 0 after the read' }).catch((err) => {
            err.message += ` (${JSON.stringify(st)})`;
            throw err;
        });
        const a4 = await wsSession(srv.url, alice);
        const j1 = await a4.join(room);
        assert.deepEqual({ unread: j1.unread, mentions: j1.mentions, last_read: j1.last_read }, { unread: 0, mentions: 0, last_read: last }, JSON.stringify(j1));
        // the last read only moves forward
        a1.send({ type: 'read', room, id: own.id });
        await a1.ping();
        const newer = await say(b, room, 'four');
        await waitFor(async () => (await unreadOf()).unread === 1, { timeoutMs: 5000, what: 'unread 1 after one more message' });
        const a5 = await wsSession(srv.url, alice);
        const j2 = await a5.join(room);
        assert.equal(j2.last_read, last, `a read of an older id does not move the last read back: ${JSON.stringify(j2)}`);
        assert.equal(j2.unread, 1, JSON.stringify(j2));
        // alice's own messages are not unread for her
        await say(a1, room, 'alice again');
        st = await unreadOf();
        assert.equal(st.unread, 1, `own messages are not unread: ${JSON.stringify(st)}`);
        a2.send({ type: 'read', room, id: newer.id });
        await a1.next((x) => x.type === 'read' && x.room === room);
        await waitFor(async () => (await unreadOf()).unread === 0, { timeoutMs: 5000, what: 'unread 0 after reading on a2' });
        for (const x of [a1, a2, a3, a4, a5, b]) await x.close();
        assert.deepEqual(echoed, [], 'the reading connection gets no read frame (no answer)');
    }));

    it('unread stops at 999', T, withLogs(async () => {
        const { alice, bob } = U;
        const room = rname('flood');
        await createRoom(srv.url, bob, room, false);
        const b = await wsSession(srv.url, bob, { rooms: [room] });
        const ids = await sendMany(b, room, 1003, (i) => `flood ${i}`, { window: 32 });
        const a = await wsSession(srv.url, alice);
        const j = await a.join(room);
        assert.equal(j.unread, 999, `joined.unread is capped: ${JSON.stringify(j)}`);
        const x = (await listRooms(srv.url, alice)).find((y) => y.name === room);
        assert.equal(x.unread, 999, `GET /api/rooms unread is capped: ${JSON.stringify(x)}`);
        a.send({ type: 'read', room, id: ids[ids.length - 4] });
        await waitFor(async () => (await listRooms(srv.url, alice)).find((y) => y.name === room).unread === 3, { timeoutMs: 5000, what: 'unread 3 after reading all but three' });
        await a.close();
        await b.close();
    }));

    it('with auth off, rooms carry private false, dm false, unread and mentions 0', T, withLogs(async () => {
        const off = await startServer();
        const room = rname('offroom');
        const r = await http(off.url, `/api/rooms/${room}/messages`, { method: 'POST', body: { user: 'someone', text: 'hello' } });
        expectStatus(r, 201, undefined, 'a message in auth off');
        const list = await api(off.url, '/api/rooms');
        const x = list.json.rooms.find((y) => y.name === room);
        assert.ok(x, show(list));
        assert.deepEqual({ private: x.private, dm: x.dm, unread: x.unread, mentions: x.mentions }, { private: false, dm: false, unread: 0, mentions: 0 }, JSON.stringify(x));
        // read is bad_request without accounts; joined carries zeros
        const { connectUser } = await import('../lib/client.mjs');
        const c = await connectUser(off.wsUrl, 'reader', []);
        const j = await c.join(room);
        assert.deepEqual({ unread: j.unread, mentions: j.mentions, last_read: j.last_read }, { unread: 0, mentions: 0, last_read: 0 }, JSON.stringify(j));
        c.send({ type: 'read', room, id: 1 });
        const e = await c.next((f) => f.type === 'error');
        assert.equal(e.code, 'bad_request', `read under auth off: ${JSON.stringify(e)}`);
        await c.close();
        await off.stop();
    }));
});
