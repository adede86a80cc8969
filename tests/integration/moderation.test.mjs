// Room moderation (issue 10, part 5; docs/PROTOCOL.md "Moderation: mute and
// ban"): a moderator mutes a user (their send, reply, edit and react are
// forbidden, over the WebSocket and REST, while reading, joining and deleting
// their own messages still work), bans a user (each of their connections in
// the room gets left {reason: "banned"}, join and every REST path of the room
// are forbidden) and lifts either; the events are updates of the room's log;
// who may moderate under auth = token, accounts and off; validation errors.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { api, connect, uniq } from '../lib/client.mjs';
import { accountsEnv, answerOf, createRoom, expectStatus, http, show, signup, tryJoin, uname, wsSession } from '../lib/accounts.mjs';
import {
    allEvents,
    assertRestError,
    assertWsError,
    mintToken,
    restDelete,
    restEdit,
    restPost,
    restReact,
    wsDelete,
    wsEdit,
    wsReact,
    wsSend,
} from '../lib/lifecycle.mjs';
import { RELAXED_RATE_ENV, startServer, stopAll, withLogs } from '../lib/server.mjs';

const T = { timeout: 120000 };
const SECRET = 'moderation-secret-0123456789abcdef';
const PW = 'moderation password 123';
const enc = encodeURIComponent;

after(stopAll);

const bearer = (t) => ({ Authorization: `Bearer ${t}` });

// PUT or DELETE of a mute or ban (what: 'mutes' | 'bans') as the holder of headers.
function sanction(url, headers, room, what, user, put = true) {
    return http(url, `/api/rooms/${enc(room)}/${what}/${enc(user)}`, { method: put ? 'PUT' : 'DELETE', headers });
}

function moderation(url, headers, room) {
    return http(url, `/api/rooms/${enc(room)}/moderation`, { headers });
}

// The update of a moderation event as a member of the room sees it.
function nextSanction(c, room, kind, member) {
    return c.next((x) => x.type === 'update' && x.room === room && x.kind === kind && x.member === member);
}

function assertSanctionEvent(r, { room, kind, user, member }, ctx) {
    expectStatus(r, 200, undefined, ctx);
    const e = r.json;
    assert.equal(e.room, room, `${ctx}: ${show(r)}`);
    assert.equal(e.kind, kind, `${ctx}: ${show(r)}`);
    assert.equal(e.user, user, `${ctx}: the moderator: ${show(r)}`);
    assert.equal(e.member, member, `${ctx}: the user: ${show(r)}`);
    assert.ok(Number.isInteger(e.id) && e.id > 0, `${ctx}: id: ${show(r)}`);
    assert.equal(typeof e.ts, 'number', `${ctx}: ts: ${show(r)}`);
    return e;
}

describe('moderation under auth = token', () => {
    let srv;
    const tok = {};

    before(async () => {
        srv = await startServer({ env: { ...RELAXED_RATE_ENV, TURBOCHAT_AUTH_SECRET: SECRET } });
        tok.bob = mintToken(SECRET, { user: 'bob', rooms: 'team-*,lobby-*' });
        tok.carol = mintToken(SECRET, { user: 'carol', rooms: 'team-*,lobby-*' });
        tok.mod = mintToken(SECRET, { user: 'maude', rooms: 'team-*', role: 'mod' });
        tok.admin = mintToken(SECRET, { user: 'ada', role: 'admin' });
    });

    async function client(who, rooms = []) {
        const c = await connect(srv.wsUrl);
        c.send({ type: 'hello', token: tok[who] });
        const w = await c.next((x) => x.type === 'welcome' || x.type === 'error');
        assert.equal(w.type, 'welcome', `hello of ${who}: ${JSON.stringify(w)}`);
        c.user = w.user;
        for (const r of rooms) await c.join(r);
        return c;
    }

    it('mute: send, reply, edit and react are forbidden (WebSocket and REST), deleting and reading still work; unmute lifts it', T, withLogs(async () => {
        const room = uniq('team');
        const bob = await client('bob', [room]);
        const carol = await client('carol', [room]);
        const a1 = await wsSend(bob, room, 'before the mute');
        assert.equal(a1.type, 'ack', JSON.stringify(a1));
        const a2 = await wsSend(bob, room, 'a second one');
        assert.equal(a2.type, 'ack', JSON.stringify(a2));

        const ev = assertSanctionEvent(await sanction(srv.url, bearer(tok.mod), room, 'mutes', 'bob'), { room, kind: 'mute', user: 'maude', member: 'bob' }, 'mute bob');
        const seen = await nextSanction(carol, room, 'mute', 'bob');
        assert.equal(seen.id, ev.id, `carol sees the mute as an update: ${JSON.stringify(seen)}`);
        assert.equal(seen.user, 'maude');

        const s = await wsSend(bob, room, 'while muted');
        assertWsError(s, 'forbidden', 'send while muted');
        assert.ok(s.message.includes(`muted in ${room}`), `the message names the mute and the room: ${s.message}`);
        assertWsError(await wsSend(bob, room, 'a reply', { reply_to: a1.id }), 'forbidden', 'reply while muted');
        assertWsError(await wsEdit(bob, room, a1.id, 'edited'), 'forbidden', 'edit while muted');
        assertWsError(await wsReact(bob, room, a1.id, '👍'), 'forbidden', 'react while muted');
        assertRestError(await restPost(srv.url, room, { text: 'rest while muted' }, bearer(tok.bob)), 403, 'forbidden', 'REST send while muted');
        assertRestError(await restEdit(srv.url, room, a1.id, { text: 'x' }, bearer(tok.bob)), 403, 'forbidden', 'REST edit while muted');
        assertRestError(await restReact(srv.url, room, a1.id, '👍', true, {}, bearer(tok.bob)), 403, 'forbidden', 'REST react while muted');
        // A muted user's typing reaches nobody: carol gets a message sent
        // after it (bob's refused send proves his typing was handled) and no
        // typing of bob's before it.
        const maude = await client('mod', [room]);
        bob.send({ type: 'typing', room });
        assertWsError(await wsSend(bob, room, 'after typing'), 'forbidden', 'send after typing while muted');
        const mark = await wsSend(maude, room, 'after bob typed');
        await carol.next((x) => x.type === 'message' && x.id === mark.id);
        assert.deepEqual(carol.seen((x) => x.type === 'typing' && x.user === 'bob'), [], 'no typing of a muted user');
        // Reading, joining and deleting one's own message still work.
        const d = await wsDelete(bob, room, a2.id);
        assert.equal(d.type, 'ack', `a muted user deletes their own message: ${JSON.stringify(d)}`);
        const hist = await api(srv.url, `/api/rooms/${enc(room)}/messages`, { headers: bearer(tok.bob) });
        assert.equal(hist.status, 200, hist.text);
        await bob.leave(room);
        const rejoined = await bob.join(room);
        assert.equal(rejoined.muted, true, `joined says the joiner is muted: ${JSON.stringify(rejoined)}`);
        // Another user is not muted.
        assert.equal((await wsSend(carol, room, 'carol speaks')).type, 'ack');

        const list = await moderation(srv.url, bearer(tok.mod), room);
        expectStatus(list, 200, undefined, 'moderation list');
        assert.deepEqual(list.json.muted.map((m) => [m.user, m.by]), [['bob', 'maude']], show(list));
        assert.deepEqual(list.json.banned, [], show(list));
        assert.equal(typeof list.json.muted[0].ts, 'number');

        assertSanctionEvent(await sanction(srv.url, bearer(tok.mod), room, 'mutes', 'bob', false), { room, kind: 'unmute', user: 'maude', member: 'bob' }, 'unmute bob');
        const ok = await wsSend(bob, room, 'after the unmute');
        await bob.leave(room);
        assert.equal((await bob.join(room)).muted, false, 'joined after the unmute');
        assert.equal(ok.type, 'ack', `send after the unmute: ${JSON.stringify(ok)}`);
        bob.send({ type: 'typing', room });
        await carol.next((x) => x.type === 'typing' && x.room === room && x.user === 'bob');
        const r = await restPost(srv.url, room, { text: 'rest after the unmute' }, bearer(tok.bob));
        assert.equal(r.status, 201, r.text);
        assert.deepEqual((await moderation(srv.url, bearer(tok.mod), room)).json.muted, []);
        const kinds = (await allEvents(srv.url, room, bearer(tok.admin))).map((e) => e.kind || e.type);
        assert.ok(kinds.includes('mute') && kinds.includes('unmute'), `the log holds the events: ${kinds}`);
        for (const c of [bob, carol, maude]) c.terminate();
    }));

    it('ban: every connection of the user gets left {reason: banned}, join and REST are forbidden; unban lets them in again', T, withLogs(async () => {
        const room = uniq('team');
        const bob1 = await client('bob', [room]);
        const bob2 = await client('bob', [room]);
        const carol = await client('carol', [room]);
        const other = uniq('team');
        await bob1.join(other);
        const word = uniq('plan').replace(/[^a-z0-9]/gi, '');
        assert.equal((await wsSend(carol, room, `the ${word} for later`)).type, 'ack');
        // What bob can see of the room without joining it: the room list and search.
        const visible = async () => {
            const rooms = await api(srv.url, '/api/rooms', { headers: bearer(tok.bob) });
            assert.equal(rooms.status, 200, rooms.text);
            const found = await api(srv.url, `/api/search?q=${enc(word)}`, { headers: bearer(tok.bob) });
            assert.equal(found.status, 200, found.text);
            return { listed: rooms.json.rooms.some((r) => r.name === room), found: found.json.results.length };
        };
        assert.deepEqual(await visible(), { listed: true, found: 1 }, 'before the ban');

        const ev = assertSanctionEvent(await sanction(srv.url, bearer(tok.admin), room, 'bans', 'BOB'), { room, kind: 'ban', user: 'ada', member: 'BOB' }, 'ban bob');
        for (const c of [bob1, bob2]) {
            const left = await c.next((x) => x.type === 'left' && x.room === room);
            assert.equal(left.reason, 'banned', JSON.stringify(left));
        }
        const seen = await nextSanction(carol, room, 'ban', 'BOB');
        assert.equal(seen.id, ev.id);
        // Out of the room: a send and a join are forbidden, saying why; the other room is unaffected.
        const s = await wsSend(bob1, room, 'still here?');
        assertWsError(s, 'forbidden', 'send after the ban');
        assert.ok(s.message.includes(`banned from ${room}`), s.message);
        const j = await tryJoin(bob1, room);
        assertWsError(j, 'forbidden', 'join while banned');
        assert.ok(j.message.includes(`banned from ${room}`), j.message);
        assert.equal((await wsSend(bob1, other, 'elsewhere')).type, 'ack', 'the ban is of one room');
        assertRestError(await restPost(srv.url, room, { text: 'rest' }, bearer(tok.bob)), 403, 'forbidden', 'REST send while banned');
        assertRestError(await api(srv.url, `/api/rooms/${enc(room)}/messages`, { headers: bearer(tok.bob) }), 403, 'forbidden', 'REST history while banned');
        assert.deepEqual(await visible(), { listed: false, found: 0 }, 'neither listed nor searched while banned');
        const inRoom = await api(srv.url, `/api/search?q=${enc(word)}&room=${enc(room)}`, { headers: bearer(tok.bob) });
        assertRestError(inRoom, 403, 'forbidden', 'search of the room while banned');
        const list = await moderation(srv.url, bearer(tok.mod), room);
        assert.deepEqual(list.json.banned.map((m) => [m.user, m.by]), [['BOB', 'ada']], show(list));

        assertSanctionEvent(await sanction(srv.url, bearer(tok.mod), room, 'bans', 'bob', false), { room, kind: 'unban', user: 'maude', member: 'bob' }, 'unban bob');
        await bob1.join(room);
        assert.equal((await wsSend(bob1, room, 'back')).type, 'ack');
        assert.deepEqual(await visible(), { listed: true, found: 1 }, 'after the unban');
        for (const c of [bob1, bob2, carol]) c.terminate();
    }));

    it('who may: a plain user, a mod outside its rooms and anyone about themselves are refused; an admin token is never held back', T, withLogs(async () => {
        const team = uniq('team');
        const lobby = uniq('lobby');
        assertRestError(await sanction(srv.url, bearer(tok.carol), team, 'mutes', 'bob'), 403, 'forbidden', 'a plain user mutes');
        assertRestError(await sanction(srv.url, bearer(tok.carol), team, 'bans', 'bob'), 403, 'forbidden', 'a plain user bans');
        assertRestError(await moderation(srv.url, bearer(tok.carol), team), 403, 'forbidden', 'a plain user lists');
        assertRestError(await sanction(srv.url, bearer(tok.mod), lobby, 'mutes', 'bob'), 403, 'forbidden', 'a mod of team-* in a lobby room');
        const self = await sanction(srv.url, bearer(tok.mod), team, 'bans', 'Maude');
        assertRestError(self, 403, 'forbidden', 'a mod bans themselves');
        assert.match(self.json.error.message, /themselves/);
        // The admin's own token passes a mute of the name.
        assertSanctionEvent(await sanction(srv.url, bearer(tok.mod), team, 'mutes', 'ada'), { room: team, kind: 'mute', user: 'maude', member: 'ada' }, 'mute the name ada');
        const ada = await client('admin', [team]);
        assert.equal((await wsSend(ada, team, 'admins speak')).type, 'ack');
        // A ban of the name neither takes the admin's connection out nor keeps it from joining.
        assertSanctionEvent(await sanction(srv.url, bearer(tok.mod), team, 'bans', 'ada'), { room: team, kind: 'ban', user: 'maude', member: 'ada' }, 'ban the name ada');
        await ada.next((x) => x.type === 'update' && x.kind === 'ban' && x.member === 'ada');
        assert.equal((await wsSend(ada, team, 'still here')).type, 'ack', 'the admin stays in the room');
        assert.equal(ada.frames.filter((f) => f.type === 'left').length, 0, 'no left for the admin');
        const ada2 = await client('admin', [team]);
        ada.terminate();
        ada2.terminate();
        // Nothing was published by the refusals.
        const kinds = (await allEvents(srv.url, team, bearer(tok.admin))).filter((e) => e.type === 'update').map((e) => `${e.kind}:${e.member}`);
        assert.deepEqual(kinds, ['mute:ada', 'ban:ada'], `only the allowed changes are in the log: ${kinds}`);
    }));

    it('validation: bad room, bad user, wrong method, no user; the token must allow the room', T, withLogs(async () => {
        const room = uniq('team');
        assertRestError(await sanction(srv.url, bearer(tok.admin), 'bad room!', 'mutes', 'bob'), 400, 'room_invalid', 'bad room name');
        assertRestError(await sanction(srv.url, bearer(tok.admin), room, 'mutes', 'x'.repeat(40)), 400, 'bad_request', 'a user name too long');
        assertRestError(await sanction(srv.url, bearer(tok.admin), room, 'bans', '   '), 400, 'bad_request', 'a blank user name');
        const post = await http(srv.url, `/api/rooms/${enc(room)}/mutes/bob`, { method: 'POST', headers: bearer(tok.admin) });
        assertRestError(post, 405, undefined, 'POST of a mute');
        const del = await http(srv.url, `/api/rooms/${enc(room)}/moderation`, { method: 'DELETE', headers: bearer(tok.admin) });
        assertRestError(del, 405, undefined, 'DELETE of the list');
        assertRestError(await http(srv.url, `/api/rooms/${enc(room)}/mutes/`, { method: 'PUT', headers: bearer(tok.admin) }), 404, 'not_found', 'no user');
        assertRestError(await sanction(srv.url, {}, room, 'mutes', 'bob'), 401, 'unauthorized', 'no token');
        assertRestError(await sanction(srv.url, bearer(tok.mod), 'elsewhere', 'mutes', 'bob'), 403, 'forbidden', 'a room the token does not allow');
    }));
});

describe('moderation under auth = off', () => {
    it('nobody moderates: 403 forbidden saying why', T, withLogs(async () => {
        const srv = await startServer({ env: RELAXED_RATE_ENV });
        const r = await sanction(srv.url, {}, 'general', 'mutes', 'bob');
        assertRestError(r, 403, 'forbidden', 'mute with auth off');
        assert.match(r.json.error.message, /auth = off/);
        assertRestError(await moderation(srv.url, {}, 'general'), 403, 'forbidden', 'list with auth off');
    }));
});

describe('moderation under auth = accounts', () => {
    let srv;
    const U = {};

    before(async () => {
        srv = await startServer({ env: accountsEnv() });
        U.root = await signup(srv.url, uname('root'), PW); // the first account: admin
        for (const who of ['alice', 'bob', 'carol']) U[who] = await signup(srv.url, uname(who), PW);
    });

    it('the owner of a public room mutes and bans; an admin moderates every room; others, admins and unknown accounts are refused', T, withLogs(async () => {
        const room = uniq('pub').replace(/[^A-Za-z0-9_.-]/g, '');
        await createRoom(srv.url, U.alice, room, false);
        const bob = await wsSession(srv.url, U.bob, { rooms: [room] });
        const alice = await wsSession(srv.url, U.alice, { rooms: [room] });

        assertRestError(await sanction(srv.url, U.carol.bearer(), room, 'mutes', U.bob.name), 403, 'forbidden', 'a member who is no owner');
        assertRestError(await sanction(srv.url, U.alice.bearer(), room, 'mutes', U.root.name), 403, 'forbidden', 'mute an admin');
        assertRestError(await sanction(srv.url, U.alice.bearer(), room, 'bans', 'nobody-here'), 404, 'not_found', 'an unknown account');
        assertRestError(await sanction(srv.url, U.alice.bearer(), 'general', 'mutes', U.bob.name), 403, 'forbidden', 'alice owns no general');
        assertRestError(await sanction(srv.url, U.alice.bearer(), uniq('none').replace(/[^A-Za-z0-9_.-]/g, ''), 'mutes', U.bob.name), 404, 'not_found', 'no such room');

        // The owner mutes (the name as the account spells it), bob's send is forbidden.
        assertSanctionEvent(await sanction(srv.url, U.alice.bearer(), room, 'mutes', U.bob.name.toUpperCase()), { room, kind: 'mute', user: U.alice.name, member: U.bob.name }, 'owner mutes');
        await nextSanction(alice, room, 'mute', U.bob.name);
        const ref = uniq('m');
        bob.send({ type: 'send', room, text: 'muted?', ref });
        assertWsError(await answerOf(bob, room, ref), 'forbidden', 'send while muted');
        assertSanctionEvent(await sanction(srv.url, U.alice.bearer(), room, 'mutes', U.bob.name, false), { room, kind: 'unmute', user: U.alice.name, member: U.bob.name }, 'owner unmutes');
        const ref2 = uniq('m');
        bob.send({ type: 'send', room, text: 'free', ref: ref2 });
        assert.equal((await answerOf(bob, room, ref2)).type, 'ack');

        // The admin bans in general, which nobody owns.
        const g = await wsSession(srv.url, U.bob, { rooms: ['general'] });
        assertSanctionEvent(await sanction(srv.url, U.root.bearer(), 'general', 'bans', U.bob.name), { room: 'general', kind: 'ban', user: U.root.name, member: U.bob.name }, 'admin bans in general');
        const left = await g.next((x) => x.type === 'left' && x.room === 'general');
        assert.equal(left.reason, 'banned');
        assertWsError(await tryJoin(g, 'general'), 'forbidden', 'join general while banned');
        expectStatus(await http(srv.url, '/api/rooms/general/messages', { headers: U.bob.bearer() }), 403, 'forbidden', 'history while banned');
        const list = await moderation(srv.url, U.root.bearer(), 'general');
        assert.deepEqual(list.json.banned.map((b) => b.user), [U.bob.name], show(list));
        assertRestError(await moderation(srv.url, U.alice.bearer(), 'general'), 403, 'forbidden', 'alice lists general');
        assertSanctionEvent(await sanction(srv.url, U.root.bearer(), 'general', 'bans', U.bob.name, false), { room: 'general', kind: 'unban', user: U.root.name, member: U.bob.name }, 'admin unbans');
        const j = await tryJoin(g, 'general');
        assert.equal(j.type, 'joined', JSON.stringify(j));
        for (const c of [bob, alice, g]) c.terminate();
    }));
});
