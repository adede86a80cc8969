// Moderation of docs/PROTOCOL.md version 2 with auth on (auth_secret set):
// tokens minted by `turbochat token --role mod|admin`; a `mod` may delete
// anyone's message in the rooms its token allows, an `admin` in every room;
// nobody else may delete or edit another user's message; nobody, moderators
// included, edits another user's message; REST changes take the user from the
// token, never from the body or the query string.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { api, connect, uniq } from '../lib/client.mjs';
import {
    assertChangeAck,
    assertRestError,
    assertUpdateShape,
    assertWsError,
    mintToken,
    nextUpdate,
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
import { RELAXED_RATE_ENV, startServer, stopAll, withLogs } from '../lib/server.mjs';

const T = { timeout: 120000 };
const SECRET = 'lifecycle-auth-secret-0123456789abcdef';

let srv;
const tok = {};

before(async () => {
    srv = await startServer({ env: { ...RELAXED_RATE_ENV, TURBOCHAT_AUTH_SECRET: SECRET } });
    tok.alice = mintToken(SECRET, { user: 'alice', rooms: 'team-*,lobby-*' });
    tok.bob = mintToken(SECRET, { user: 'bob', rooms: 'team-*,lobby-*' });
    tok.mod = mintToken(SECRET, { user: 'maude', rooms: 'team-*', role: 'mod' });
    tok.admin = mintToken(SECRET, { user: 'ada', role: 'admin' });
});

after(stopAll);

const bearer = (t) => ({ Authorization: `Bearer ${t}` });

async function client(who, rooms = []) {
    const c = await connect(srv.wsUrl);
    c.send({ type: 'hello', token: tok[who] });
    const w = await c.next((x) => x.type === 'welcome' || x.type === 'error');
    assert.equal(w.type, 'welcome', `hello of ${who}: ${JSON.stringify(w)}`);
    c.user = w.user;
    for (const r of rooms) await c.join(r);
    return c;
}

async function post(who, room, text) {
    const r = await restPost(srv.url, room, { text }, bearer(tok[who]));
    assert.equal(r.status, 201, `POST by ${who} in ${room}: ${r.status} ${r.text}`);
    return r.json;
}

async function getMsg(room, id) {
    const r = await restGet(srv.url, room, id, bearer(tok.admin));
    assert.equal(r.status, 200, `GET ${room}/${id}: ${r.status} ${r.text}`);
    return r.json;
}

async function lastId(room) {
    const r = await restEvents(srv.url, room, { after: 0, limit: 200 }, bearer(tok.admin));
    assert.equal(r.status, 200, r.text);
    const e = r.json.events;
    return e.length ? e[e.length - 1].id : 0;
}

describe('moderation with auth on', () => {
    it('a plain user may neither delete nor edit another user\'s message (forbidden, 403)', T, withLogs(async () => {
        const room = uniq('team');
        const bob = await client('bob', [room]);
        const m = await post('alice', room, 'alice speaks');
        const before = await lastId(room);
        assertWsError(await wsDelete(bob, room, m.id), 'forbidden', 'bob deletes alice\'s message');
        assertWsError(await wsEdit(bob, room, m.id, 'bob was here'), 'forbidden', 'bob edits alice\'s message');
        assertRestError(await restDelete(srv.url, room, m.id, {}, bearer(tok.bob)), 403, 'forbidden', 'REST DELETE by bob');
        assertRestError(await restEdit(srv.url, room, m.id, { text: 'x' }, bearer(tok.bob)), 403, 'forbidden', 'PATCH by bob');
        // the user comes from the token, not from the body or the query
        assertRestError(
            await restEdit(srv.url, room, m.id, { text: 'x', user: 'alice' }, bearer(tok.bob)),
            403,
            'forbidden',
            'PATCH by bob claiming user alice in the body',
        );
        assertRestError(
            await restDelete(srv.url, room, m.id, { user: 'alice' }, bearer(tok.bob)),
            403,
            'forbidden',
            'DELETE by bob with ?user=alice',
        );
        assert.equal(await lastId(room), before, 'nothing stored');
        const g = await getMsg(room, m.id);
        assert.equal(g.text, 'alice speaks');
        assert.equal(g.deleted, false);
        // the author herself may, and the update names her (not the body's user)
        const e = await restEdit(srv.url, room, m.id, { text: 'alice edits', user: 'bob' }, bearer(tok.alice));
        assert.equal(e.status, 200, e.text);
        assert.equal(e.json.user, 'alice', 'the editor is the token\'s user');
        const r = await restReact(srv.url, room, m.id, '👍', true, { user: 'alice' }, bearer(tok.bob));
        assert.equal(r.status, 200, r.text);
        assert.equal(r.json.user, 'bob', 'the reacting user is the token\'s');
        assert.deepEqual((await getMsg(room, m.id)).reactions, { '👍': ['bob'] });
        // no token at all: 401 for every change and the new reads
        for (const [what, p] of [
            ['PATCH', restEdit(srv.url, room, m.id, { text: 'x', user: 'alice' })],
            ['DELETE', restDelete(srv.url, room, m.id, { user: 'alice' })],
            ['PUT reaction', restReact(srv.url, room, m.id, '🎉', true, { user: 'alice' })],
            ['GET one', restGet(srv.url, room, m.id)],
            ['GET events', restEvents(srv.url, room)],
        ]) {
            assertRestError(await p, 401, undefined, `${what} without a token`);
        }
        await bob.close();
    }));

    it('a mod deletes anyone\'s message in its rooms (WS and REST), deleted_by names it; it may not edit them', T, withLogs(async () => {
        const room = uniq('team');
        const mod = await client('mod', [room]);
        const alice = await client('alice', [room]);
        const m1 = await post('alice', room, 'first');
        const m2 = await post('bob', room, 'second');
        const m3 = await post('alice', room, 'third');
        const d = await wsDelete(mod, room, m1.id, { ref: 'mod-d1' });
        assertChangeAck(d, { room, ref: 'mod-d1', target: m1.id, kind: 'delete' }, 'mod deletes over WS');
        for (const c of [mod, alice]) {
            const u = await nextUpdate(c, room, d.id);
            assertUpdateShape(u, 'delete', 'delete update');
            assert.equal(u.user, 'maude', 'the update names the moderator');
        }
        const g1 = await getMsg(room, m1.id);
        assert.deepEqual([g1.deleted, g1.deleted_by, g1.user, g1.text], [true, 'maude', 'alice', '']);
        const r = await restDelete(srv.url, room, m2.id, {}, bearer(tok.mod));
        assert.equal(r.status, 200, `REST DELETE by the mod: ${r.status} ${r.text}`);
        assertUpdateShape(r.json, 'delete', 'DELETE body');
        assert.equal(r.json.user, 'maude');
        const g2 = await getMsg(room, m2.id);
        assert.deepEqual([g2.deleted, g2.deleted_by, g2.user], [true, 'maude', 'bob']);
        // moderating is deleting, not editing
        const before = await lastId(room);
        assertWsError(await wsEdit(mod, room, m3.id, 'mod rewrites'), 'forbidden', 'mod edits alice\'s message');
        assertRestError(await restEdit(srv.url, room, m3.id, { text: 'mod rewrites' }, bearer(tok.mod)), 403, 'forbidden', 'PATCH by the mod');
        assert.equal(await lastId(room), before);
        // a mod's own message is its to edit
        const own = await wsSend(mod, room, 'mod message');
        assert.equal(own.type, 'ack', JSON.stringify(own));
        const oe = await wsEdit(mod, room, own.id, 'mod message, edited');
        assert.equal(oe.type, 'ack', JSON.stringify(oe));
        await mod.close();
        await alice.close();
    }));

    it('a mod is no moderator outside the rooms its token allows', T, withLogs(async () => {
        const room = uniq('lobby');
        const m = await post('alice', room, 'in the lobby');
        assertRestError(await restDelete(srv.url, room, m.id, {}, bearer(tok.mod)), 403, 'forbidden', 'mod DELETE outside its rooms');
        const mod = await client('mod');
        mod.send({ type: 'join', room });
        const j = await mod.next((x) => (x.type === 'joined' || x.type === 'error') && x.room === room);
        assertWsError(j, 'forbidden', 'mod joins a room outside its token');
        // both codes fit the contract here: the room is neither allowed nor joined
        const d = await wsDelete(mod, room, m.id);
        assert.equal(d.type, 'error', `mod deletes in a room it could not join: ${JSON.stringify(d)}`);
        assert.ok(['forbidden', 'not_joined'].includes(d.code), `mod deletes in a room it could not join: ${JSON.stringify(d)}`);
        const g = await getMsg(room, m.id);
        assert.equal(g.deleted, false);
        await mod.close();
    }));

    it('an admin deletes anyone\'s message in any room (WS and REST); it may not edit them', T, withLogs(async () => {
        const lobby = uniq('lobby');
        const team = uniq('team');
        const admin = await client('admin', [lobby, team]);
        const m1 = await post('alice', lobby, 'lobby message');
        const m2 = await post('bob', team, 'team message');
        const m3 = await post('alice', team, 'another');
        const d = await wsDelete(admin, lobby, m1.id);
        assertChangeAck(d, { room: lobby, target: m1.id, kind: 'delete' }, 'admin deletes over WS');
        const g1 = await getMsg(lobby, m1.id);
        assert.deepEqual([g1.deleted, g1.deleted_by], [true, 'ada']);
        const r = await restDelete(srv.url, team, m2.id, {}, bearer(tok.admin));
        assert.equal(r.status, 200, r.text);
        assert.equal(r.json.user, 'ada');
        assert.equal((await getMsg(team, m2.id)).deleted_by, 'ada');
        assertWsError(await wsEdit(admin, team, m3.id, 'admin rewrites'), 'forbidden', 'admin edits another user\'s message');
        assertRestError(await restEdit(srv.url, team, m3.id, { text: 'x' }, bearer(tok.admin)), 403, 'forbidden', 'PATCH by the admin');
        // reacting is anyone's
        const rr = await wsReact(admin, team, m3.id, '👀');
        assert.equal(rr.type, 'ack', JSON.stringify(rr));
        // a delete by the author after the admin's is not_found
        const alice = await client('alice', [lobby]);
        assertWsError(await wsDelete(alice, lobby, m1.id), 'not_found', 'delete of a message already deleted by the admin');
        await admin.close();
        await alice.close();
    }));

    it('a plain user gets no moderation from a role it does not have (token claims are checked)', T, withLogs(async () => {
        const room = uniq('team');
        const m = await post('bob', room, 'bob\'s words');
        // a token minted without --role is not a moderator
        const plain = mintToken(SECRET, { user: 'maude', rooms: 'team-*' });
        assertRestError(await restDelete(srv.url, room, m.id, {}, bearer(plain)), 403, 'forbidden', 'same name, no role');
        // a role claimed in a token signed with another secret is refused outright
        const forged = mintToken('some-other-secret-0123456789abcdef', { user: 'mallory', role: 'admin' });
        assertRestError(await restDelete(srv.url, room, m.id, {}, bearer(forged)), 401, undefined, 'forged admin token');
        const r = await api(srv.url, `/api/rooms/${room}/messages/${m.id}`, { headers: bearer(tok.bob) });
        assert.equal(r.status, 200, r.text);
        assert.equal(r.json.deleted, false);
    }));
});
