// The life of a message on a single node (docs/PROTOCOL.md version 2), over
// WebSocket and REST, written from the contract: edit, delete, react and
// unreact with their acks and update frames; replies with their quote;
// mentions and mention frames; history, GET one message and GET /events in
// current state; idempotency on ref; join with since replaying messages and
// updates in id order; every refusal (another user's message, the edit window,
// no moderators with auth off) and every bad input (unknown id, an id of
// another room, a change's id, oversize text, a non-emoji, too many
// reactions, missing and ill-typed fields) with its REST status.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { api, connect, connectUser, fetchAllMessages, uniq } from '../lib/client.mjs';
import {
    allEvents,
    assertChangeAck,
    assertFresh,
    assertMessageShape,
    assertRestError,
    assertUpdateShape,
    assertWsError,
    cpLen,
    nextMention,
    nextUpdate,
    proj,
    restDelete,
    restEdit,
    restEvents,
    restGet,
    restPost,
    restReact,
    untilTime,
    wsDelete,
    wsEdit,
    wsRaw,
    wsReact,
    wsSend,
} from '../lib/lifecycle.mjs';
import { RELAXED_RATE_ENV, startServer, stopAll, withLogs } from '../lib/server.mjs';

const T = { timeout: 120000 };
const MAX_REACTIONS = 3;

let srv;

before(async () => {
    srv = await startServer({ env: { ...RELAXED_RATE_ENV, TURBOCHAT_MAX_REACTIONS: String(MAX_REACTIONS) } });
});

after(stopAll);

// A user name unique to this run, letters and digits only (mentions match names).
const TAG = process.pid.toString(36).replace(/[^a-z0-9]/g, '');
let nameSeq = 0;
const uname = (base) => `${base}${TAG}${(++nameSeq).toString(36)}`;

async function ack(p, ctx) {
    const f = await p;
    assert.equal(f.type, 'ack', `${ctx}: expected ack, got ${JSON.stringify(f)}`);
    return f;
}

// Send a message and wait for the ack and for the sender's own message frame.
async function say(c, room, text, opts = {}) {
    const a = await ack(wsSend(c, room, text, opts), `send ${JSON.stringify(text).slice(0, 40)}`);
    await c.message(room, a.id);
    return a;
}

async function lastId(room) {
    const evs = await allEvents(srv.url, room);
    return evs.length ? evs[evs.length - 1].id : 0;
}

async function getMsg(room, id) {
    const r = await restGet(srv.url, room, id);
    assert.equal(r.status, 200, `GET ${room}/${id}: ${r.status} ${r.text.slice(0, 300)}`);
    assertMessageShape(r.json, `GET ${room}/${id}`);
    return r.json;
}

// The contract's fields of o, without type (REST objects need not carry it).
function noType(o) {
    const { type, ...rest } = proj(o);
    return rest;
}

// A ping round trip: frames the server queued for c before it have arrived
// (used before asserting that something was NOT delivered).
async function settle(...clients) {
    for (const c of clients) await c.ping();
}

describe('message objects of version 2', () => {
    it('welcome says protocol 2; message, ack, POST and GET carry every new field', T, withLogs(async () => {
        const room = uniq('shape');
        const c = await connect(srv.wsUrl);
        const w = await c.hello(uname('sh'));
        assert.equal(w.protocol, 2, `welcome: ${JSON.stringify(w)}`);
        await c.join(room);
        const a = await ack(wsSend(c, room, '  plain text  '), 'send');
        assert.equal(a.id, 1);
        const m = await c.message(room, a.id);
        assertFresh(m, 'live message');
        assert.equal(m.text, 'plain text');
        assert.equal(m.reply_to, null);
        assert.deepEqual(m.mentions, []);
        const g = await getMsg(room, a.id);
        assertFresh(g, 'GET');
        assert.deepEqual(noType(g), noType(m), 'GET equals the live frame');
        const p = await restPost(srv.url, room, { user: 'poster', text: 'by REST' });
        assert.equal(p.status, 201, p.text);
        assertFresh(p.json, 'POST 201 body');
        assert.equal(p.json.id, 2);
        const h = await fetchAllMessages(srv.url, room);
        assert.deepEqual(h.map((x) => x.id), [1, 2]);
        for (const x of h) assertFresh(x, 'history');
        await c.close();
    }));
});

describe('edit', () => {
    it('WS edit: ack with the edit\'s own id, update to every member, current state everywhere', T, withLogs(async () => {
        const room = uniq('edit');
        const alice = uname('alice');
        const a1 = await connectUser(srv.wsUrl, alice, [room]);
        const a2 = await connectUser(srv.wsUrl, alice, [room]); // second connection of the author
        const b = await connectUser(srv.wsUrl, uname('bob'), [room]);
        const outsider = await connectUser(srv.wsUrl, uname('out'), [uniq('elsewhere')]);
        const m = await say(a1, room, 'helo wrold');

        const ref = uniq('edref');
        const e = await wsEdit(a1, room, m.id, '  hello world \n', { ref });
        assertChangeAck(e, { room, ref, target: m.id, kind: 'edit' }, 'edit ack');
        assert.equal(e.id, m.id + 1, 'the edit takes the next id of the room');
        // read your own writes on a single node: right after the ack
        const g = await getMsg(room, m.id);
        assert.equal(g.text, 'hello world', 'edited text, trimmed');
        assert.equal(g.edited_ts, e.ts, 'edited_ts is the edit\'s ts');
        assert.equal(g.ts, m.ts, 'ts is unchanged');
        assert.equal(g.user, alice);
        assert.equal(g.deleted, false);

        for (const [who, c] of [['author', a1], ['author 2nd conn', a2], ['member', b]]) {
            const u = await nextUpdate(c, room, e.id);
            assertUpdateShape(u, 'edit', `update to ${who}`);
            assert.deepEqual(
                { target: u.target, user: u.user, text: u.text, ts: u.ts },
                { target: m.id, user: alice, text: 'hello world', ts: e.ts },
                `update to ${who}`,
            );
        }
        await settle(outsider);
        assert.deepEqual(outsider.seen((f) => f.type === 'update'), [], 'a connection not in the room gets no update');

        // a second edit: the latest wins
        const e2 = await ack(wsEdit(a2, room, m.id, 'hello, world!'), 'second edit');
        assert.equal(e2.id, e.id + 1);
        const g2 = await getMsg(room, m.id);
        assert.equal(g2.text, 'hello, world!');
        assert.equal(g2.edited_ts, e2.ts);
        await nextUpdate(b, room, e2.id);

        // history lists messages only, in current state; events list all three
        const h = await fetchAllMessages(srv.url, room);
        assert.deepEqual(h.map((x) => [x.id, x.text]), [[m.id, 'hello, world!']]);
        const evs = await allEvents(srv.url, room);
        assert.deepEqual(evs.map((x) => [x.type, x.id]), [['message', m.id], ['update', e.id], ['update', e2.id]]);
        assertMessageShape(evs[0], 'event 0');
        assert.equal(evs[0].text, 'hello, world!', 'a message event is in its current state');
        assertUpdateShape(evs[1], 'edit', 'event 1');
        assert.deepEqual(noType(evs[1]), noType(b.seen((f) => f.type === 'update' && f.id === e.id)[0]), 'the edit event equals the update frame');
        assert.equal(evs[2].text, 'hello, world!');
        for (const c of [a1, a2, b, outsider]) await c.close();
    }));

    it('REST PATCH: 200 with the update object, broadcast to WS members', T, withLogs(async () => {
        const room = uniq('patch');
        const u = uname('pat');
        const w = await connectUser(srv.wsUrl, uname('watch'), [room]);
        const p = await restPost(srv.url, room, { user: u, text: 'first draft' });
        assert.equal(p.status, 201, p.text);
        const r = await restEdit(srv.url, room, p.json.id, { user: u, text: 'final text' });
        assert.equal(r.status, 200, r.text);
        assertUpdateShape(r.json, 'edit', 'PATCH body');
        assert.deepEqual(
            { room: r.json.room, target: r.json.target, user: r.json.user, text: r.json.text },
            { room, target: p.json.id, user: u, text: 'final text' },
        );
        assert.equal(r.json.id, p.json.id + 1);
        const g = await getMsg(room, p.json.id);
        assert.equal(g.text, 'final text');
        assert.equal(g.edited_ts, r.json.ts);
        const f = await nextUpdate(w, room, r.json.id);
        assert.deepEqual(proj(f), { ...proj(r.json), type: 'update' }, 'the frame equals the REST update object');
        await w.close();
    }));
});

describe('delete', () => {
    it('WS delete: tombstone everywhere, the text of the message and of its edits erased', T, withLogs(async () => {
        const room = uniq('del');
        const al = uname('al');
        const a = await connectUser(srv.wsUrl, al, [room]);
        const b = await connectUser(srv.wsUrl, uname('be'), [room]);
        await say(b, room, 'I exist'); // so that @be is a name of the room
        const m = await say(a, room, `secret text @${b.user}`);
        const mm = await getMsg(room, m.id);
        assert.deepEqual(mm.mentions, [b.user]);
        const reply = await say(b, room, 'an answer', { reply_to: m.id });
        const e = await ack(wsEdit(a, room, m.id, 'secret edited'), 'edit');
        const r = await ack(wsReact(b, room, m.id, '👍'), 'react');

        const ref = uniq('delref');
        const d = await wsDelete(a, room, m.id, { ref });
        assertChangeAck(d, { room, ref, target: m.id, kind: 'delete' }, 'delete ack');
        assert.equal(d.id, r.id + 1);
        const g = await getMsg(room, m.id);
        assert.deepEqual(
            { id: g.id, user: g.user, ts: g.ts, text: g.text, deleted: g.deleted, deleted_by: g.deleted_by, reactions: g.reactions, mentions: g.mentions },
            { id: m.id, user: al, ts: m.ts, text: '', deleted: true, deleted_by: al, reactions: {}, mentions: [] },
            'tombstone',
        );
        for (const c of [a, b]) {
            const u = await nextUpdate(c, room, d.id);
            assertUpdateShape(u, 'delete', 'delete update');
            assert.equal(u.target, m.id);
            assert.equal(u.user, al);
        }
        // the reply keeps pointing at it, its quote erased
        const gr = await getMsg(room, reply.id);
        assert.deepEqual(gr.reply_to, { id: m.id, user: al, text: '' }, 'quote of a deleted message');
        // the events: the edit's text erased too; no trace of the text anywhere
        const evs = await allEvents(srv.url, room);
        const ev = evs.find((x) => x.id === e.id);
        assertUpdateShape(ev, 'edit', 'edit event after the delete');
        assert.equal(ev.text, '', 'an edit of a deleted message has text ""');
        const msgEv = evs.find((x) => x.id === m.id);
        assert.equal(msgEv.deleted, true);
        const all = JSON.stringify(evs) + JSON.stringify(await fetchAllMessages(srv.url, room));
        assert.ok(!all.includes('secret'), `the deleted text is nowhere in events or history: ${all.slice(0, 600)}`);
        // history still lists the tombstone (ids stay gapless)
        const h = await fetchAllMessages(srv.url, room);
        assert.ok(h.some((x) => x.id === m.id && x.deleted === true), 'the tombstone is in the history');

        // nothing changes a deleted message any more
        assertWsError(await wsEdit(a, room, m.id, 'again'), 'not_found', 'edit of a deleted message');
        assertWsError(await wsDelete(a, room, m.id), 'not_found', 'delete of a deleted message');
        assertWsError(await wsReact(b, room, m.id, '🎉'), 'not_found', 'react to a deleted message');
        assertWsError(await wsReact(b, room, m.id, '👍', false), 'not_found', 'unreact on a deleted message');
        assertWsError(await wsSend(b, room, 'reply to deleted', { reply_to: m.id }), 'not_found', 'reply to a deleted message');
        assertRestError(await restEdit(srv.url, room, m.id, { user: al, text: 'x' }), 404, 'not_found', 'PATCH deleted');
        assertRestError(await restDelete(srv.url, room, m.id, { user: al }), 404, 'not_found', 'DELETE deleted');
        assertRestError(await restReact(srv.url, room, m.id, '🎉', true, { user: al }), 404, 'not_found', 'PUT reaction on deleted');
        assertRestError(await restPost(srv.url, room, { user: al, text: 'r', reply_to: m.id }), 404, 'not_found', 'POST reply_to deleted');
        assert.equal(await lastId(room), d.id, 'nothing was stored by the refused changes');
        // a deleted reply keeps no quote
        await ack(wsDelete(b, room, reply.id), 'delete the reply');
        const gd = await getMsg(room, reply.id);
        assert.deepEqual([gd.deleted, gd.reply_to, gd.edited_ts], [true, null, null], 'a deleted reply has reply_to null');
        await a.close();
        await b.close();
    }));

    it('REST DELETE ?user=: 200 with the update object; the message becomes a tombstone', T, withLogs(async () => {
        const room = uniq('rdel');
        const u = uname('rd');
        const w = await connectUser(srv.wsUrl, uname('w'), [room]);
        const p = await restPost(srv.url, room, { user: u, text: 'to be removed' });
        assert.equal(p.status, 201, p.text);
        const r = await restDelete(srv.url, room, p.json.id, { user: u });
        assert.equal(r.status, 200, r.text);
        assertUpdateShape(r.json, 'delete', 'DELETE body');
        assert.deepEqual([r.json.room, r.json.target, r.json.user], [room, p.json.id, u]);
        const g = await getMsg(room, p.json.id);
        assert.equal(g.deleted, true);
        assert.equal(g.deleted_by, u);
        assert.equal(g.text, '');
        const f = await nextUpdate(w, room, r.json.id);
        assert.deepEqual(proj(f), { ...proj(r.json), type: 'update' });
        await w.close();
    }));
});

describe('reactions', () => {
    it('WS react and unreact: acks, updates, {emoji: [users]} in order; a repeat adds nothing', T, withLogs(async () => {
        const room = uniq('react');
        const a = await connectUser(srv.wsUrl, uname('ra'), [room]);
        const b = await connectUser(srv.wsUrl, uname('rb'), [room]);
        const m = await say(a, room, 'react to me');

        const ref = uniq('rref');
        const r1 = await wsReact(b, room, m.id, '👍', true, { ref });
        assertChangeAck(r1, { room, ref, target: m.id, kind: 'react' }, 'react ack');
        assert.equal(r1.id, m.id + 1);
        assert.deepEqual((await getMsg(room, m.id)).reactions, { '👍': [b.user] });
        for (const c of [a, b]) {
            const u = await nextUpdate(c, room, r1.id);
            assertUpdateShape(u, 'react', 'react update');
            assert.deepEqual([u.target, u.user, u.emoji], [m.id, b.user, '👍']);
        }
        const r2 = await ack(wsReact(a, room, m.id, '❤️'), 'a ❤️');
        const r3 = await ack(wsReact(a, room, m.id, '👍'), 'a 👍');
        assert.deepEqual(
            (await getMsg(room, m.id)).reactions,
            { '👍': [b.user, a.user], '❤️': [a.user] },
            'emoji in the order first added, users in the order they reacted',
        );
        // adding one the user already has: ack with the id that added it, nothing stored
        const before = await lastId(room);
        const again = await wsReact(b, room, m.id, '👍');
        assert.equal(again.type, 'ack', JSON.stringify(again));
        assert.equal(again.id, r1.id, 'a repeated reaction acks the event that added it');
        assert.equal(await lastId(room), before, 'nothing new stored');
        // unreact
        const uref = uniq('uref');
        const u1 = await wsReact(b, room, m.id, '👍', false, { ref: uref });
        assertChangeAck(u1, { room, ref: uref, target: m.id, kind: 'unreact' }, 'unreact ack');
        assert.equal(u1.id, before + 1);
        for (const c of [a, b]) {
            const u = await nextUpdate(c, room, u1.id);
            assertUpdateShape(u, 'unreact', 'unreact update');
            assert.deepEqual([u.target, u.user, u.emoji], [m.id, b.user, '👍']);
        }
        assert.deepEqual((await getMsg(room, m.id)).reactions, { '👍': [a.user], '❤️': [a.user] });
        // no update was broadcast for the repeated add
        await settle(a);
        const ids = a.seen((f) => f.type === 'update' && f.room === room).map((f) => f.id);
        assert.deepEqual(ids, [r1.id, r2.id, r3.id, u1.id], 'updates seen by a member');
        // removing one the user does not have
        assertWsError(await wsReact(b, room, m.id, '👍', false), 'not_found', 'unreact not had');
        assertWsError(await wsReact(b, room, m.id, '🎉', false), 'not_found', 'unreact of an emoji nobody has');
        // the last user of an emoji leaves: the emoji is gone
        await ack(wsReact(a, room, m.id, '❤️', false), 'a un-❤️');
        assert.deepEqual((await getMsg(room, m.id)).reactions, { '👍': [a.user] });
        // the events carry react and unreact in id order
        const evs = await allEvents(srv.url, room);
        assert.deepEqual(
            evs.map((x) => (x.type === 'update' ? `${x.kind}:${x.emoji}:${x.user === a.user ? 'a' : 'b'}` : 'message')),
            ['message', 'react:👍:b', 'react:❤️:a', 'react:👍:a', 'unreact:👍:b', 'unreact:❤️:a'],
        );
        await a.close();
        await b.close();
    }));

    it('REST PUT and DELETE of a reaction, percent-encoded emoji, ?user= and ?ref=', T, withLogs(async () => {
        const room = uniq('rreact');
        const u = uname('rr');
        const w = await connectUser(srv.wsUrl, uname('w'), [room]);
        const p = await restPost(srv.url, room, { user: 'author', text: 'react over REST' });
        const id = p.json.id;
        const put = await restReact(srv.url, room, id, '🎉', true, { user: u });
        assert.equal(put.status, 200, put.text);
        assertUpdateShape(put.json, 'react', 'PUT body');
        assert.deepEqual([put.json.target, put.json.user, put.json.emoji], [id, u, '🎉']);
        assert.deepEqual(proj(await nextUpdate(w, room, put.json.id)), { ...proj(put.json), type: 'update' });
        assert.deepEqual((await getMsg(room, id)).reactions, { '🎉': [u] });
        const again = await restReact(srv.url, room, id, '🎉', true, { user: u });
        assert.equal(again.status, 200, `PUT of a reaction already there: ${again.status} ${again.text}`);
        assert.equal(again.json.id, put.json.id, 'PUT of a reaction already there answers the event that added it');
        const del = await restReact(srv.url, room, id, '🎉', false, { user: u, ref: 'rm-1' });
        assert.equal(del.status, 200, del.text);
        assertUpdateShape(del.json, 'unreact', 'DELETE reaction body');
        assert.equal(del.json.id, put.json.id + 1);
        assert.deepEqual((await getMsg(room, id)).reactions, {});
        // the same ref again is the original, not a 404
        const delAgain = await restReact(srv.url, room, id, '🎉', false, { user: u, ref: 'rm-1' });
        assert.equal(delAgain.status, 200, `DELETE reaction retried with the same ref: ${delAgain.status} ${delAgain.text}`);
        assert.equal(delAgain.json.id, del.json.id);
        assertRestError(await restReact(srv.url, room, id, '🎉', false, { user: u }), 404, 'not_found', 'DELETE reaction not had');
        assert.equal(await lastId(room), del.json.id);
        await w.close();
    }));

    it(`at most ${MAX_REACTIONS} distinct emoji per message: too_many_reactions, 409`, T, withLogs(async () => {
        const room = uniq('many');
        const a = await connectUser(srv.wsUrl, uname('ma'), [room]);
        const b = await connectUser(srv.wsUrl, uname('mb'), [room]);
        const m = await say(a, room, 'popular');
        const emoji = ['😀', '🚀', '🐱', '🍕'];
        for (const e of emoji.slice(0, MAX_REACTIONS)) await ack(wsReact(a, room, m.id, e), `react ${e}`);
        const before = await lastId(room);
        assertWsError(await wsReact(b, room, m.id, emoji[MAX_REACTIONS]), 'too_many_reactions', 'one emoji too many');
        assertRestError(
            await restReact(srv.url, room, m.id, emoji[MAX_REACTIONS], true, { user: b.user }),
            409,
            'too_many_reactions',
            'PUT one emoji too many',
        );
        assert.equal(await lastId(room), before, 'nothing stored');
        // an emoji already there may still be added by another user
        await ack(wsReact(b, room, m.id, emoji[0]), 'existing emoji by another user');
        // after the last user of one emoji removes it, a new one fits
        await ack(wsReact(a, room, m.id, emoji[1], false), 'remove one');
        await ack(wsReact(b, room, m.id, emoji[MAX_REACTIONS]), 'a new emoji fits again');
        assert.deepEqual(Object.keys((await getMsg(room, m.id)).reactions), [emoji[0], emoji[2], emoji[3]]);
        await a.close();
        await b.close();
    }));

    it('emoji validation: real emoji are accepted, anything else is bad_request naming emoji / 400', T, withLogs(async () => {
        const room = uniq('emoji');
        const a = await connectUser(srv.wsUrl, uname('em'), [room]);
        const good = ['👍', '❤️', '👍🏽', '👨‍👩‍👧', '🇫🇷', '1️⃣', '#️⃣', '🏳️‍🌈'];
        const bad = [
            ['a letter', 'a'],
            ['a word', 'ok'],
            ['empty', ''],
            ['a smiley in ASCII', ':)'],
            ['a digit alone', '7'],
            ['an emoji and a letter', '👍x'],
            ['space around', ' 👍 '],
            ['17 code points', '😀'.repeat(17)],
            ['a CJK character', '漢'],
            ['a control char', '\u0007'],
            ['a number', 5],
            ['null', null],
            ['an array', ['👍']],
        ];
        // a fresh message per few emoji keeps under max_reactions
        for (let i = 0; i < good.length; i++) {
            const m = await say(a, room, `good ${i}`);
            const f = await wsReact(a, room, m.id, good[i]);
            assert.equal(f.type, 'ack', `emoji ${JSON.stringify(good[i])} must be accepted: ${JSON.stringify(f)}`);
            assert.deepEqual(Object.keys((await getMsg(room, m.id)).reactions), [good[i]]);
        }
        const m = await say(a, room, 'bad emoji target');
        for (const [what, e] of bad) {
            const f = await wsReact(a, room, m.id, e);
            assertWsError(f, 'bad_request', `emoji ${what}`);
            assert.match(f.message, /emoji/i, `the error names emoji: ${JSON.stringify(f)}`);
            if (typeof e === 'string' && e !== '') {
                assertRestError(await restReact(srv.url, room, m.id, e, true, { user: a.user }), 400, 'bad_request', `PUT emoji ${what}`);
            }
        }
        const missing = await wsRaw(a, { type: 'react', room, id: m.id, add: true });
        assertWsError(missing, 'bad_request', 'react without emoji');
        assert.deepEqual((await getMsg(room, m.id)).reactions, {});
        await a.close();
    }));
});

describe('replies', () => {
    it('send with reply_to carries {id, user, text} as the original was when replied to', T, withLogs(async () => {
        const room = uniq('reply');
        const a = await connectUser(srv.wsUrl, uname('qa'), [room]);
        const b = await connectUser(srv.wsUrl, uname('qb'), [room]);
        const orig = await say(a, room, 'the original words');
        const rep = await ack(wsSend(b, room, 'my answer', { reply_to: orig.id }), 'reply');
        for (const c of [a, b]) {
            const f = await c.message(room, rep.id);
            assertMessageShape(f, 'reply frame');
            assert.deepEqual(f.reply_to, { id: orig.id, user: a.user, text: 'the original words' });
        }
        assert.deepEqual((await getMsg(room, rep.id)).reply_to, { id: orig.id, user: a.user, text: 'the original words' });
        // an edit of the original later does not change the quote
        await ack(wsEdit(a, room, orig.id, 'changed words'), 'edit original');
        assert.equal((await getMsg(room, rep.id)).reply_to.text, 'the original words', 'the quote is a snapshot');
        // a reply after the edit quotes the edited text
        const rep2 = await ack(wsSend(b, room, 'second answer', { reply_to: orig.id }), 'reply 2');
        assert.deepEqual((await getMsg(room, rep2.id)).reply_to, { id: orig.id, user: a.user, text: 'changed words' });
        // replying to a reply is fine
        const rep3 = await ack(wsSend(a, room, 'nested', { reply_to: rep.id }), 'reply to a reply');
        assert.deepEqual((await getMsg(room, rep3.id)).reply_to, { id: rep.id, user: b.user, text: 'my answer' });
        // over REST
        const p = await restPost(srv.url, room, { user: 'rester', text: 'rest reply', reply_to: orig.id });
        assert.equal(p.status, 201, p.text);
        assert.deepEqual(p.json.reply_to, { id: orig.id, user: a.user, text: 'changed words' });
        await a.close();
        await b.close();
    }));

    it('the quote is the first 100 code points, cut at a word, with …', T, withLogs(async () => {
        const room = uniq('quote');
        const a = await connectUser(srv.wsUrl, uname('lq'), [room]);
        const words = [];
        for (let i = 0; words.join(' ').length < 300; i++) words.push(`wörd${i}é`);
        const long = words.join(' ');
        const orig = await say(a, room, long);
        const rep = await ack(wsSend(a, room, 'answer', { reply_to: orig.id }), 'reply');
        const q = (await getMsg(room, rep.id)).reply_to.text;
        assert.ok(q.endsWith('…'), `a cut quote ends with …: ${JSON.stringify(q)}`);
        assert.ok(cpLen(q) <= 101, `at most 100 code points plus …: ${cpLen(q)} ${JSON.stringify(q)}`);
        const body = q.slice(0, -1).trimEnd();
        assert.ok(long.startsWith(body), `the quote is the start of the text: ${JSON.stringify(q)}`);
        assert.ok(cpLen(body) >= 80, `cut near 100 code points, not much earlier: ${JSON.stringify(q)}`);
        assert.equal(long[body.length], ' ', `cut at a word boundary: ${JSON.stringify(q)}`);
        // a short original is quoted whole, without …
        const short = await say(a, room, 'x'.repeat(100));
        const rep2 = await ack(wsSend(a, room, 'answer 2', { reply_to: short.id }), 'reply 2');
        assert.equal((await getMsg(room, rep2.id)).reply_to.text, 'x'.repeat(100), '100 code points are quoted whole');
        await a.close();
    }));

    it('a reply_to that is not a message of the room is not_found (404); ill-typed is bad_request (400)', T, withLogs(async () => {
        const room = uniq('rbad');
        const other = uniq('rbad-other');
        const a = await connectUser(srv.wsUrl, uname('rx'), [room, other]);
        const inOther = await say(a, other, 'only in the other room');
        await say(a, other, 'more in the other room');
        await say(a, other, 'and more');
        const m = await say(a, room, 'in this room');
        const e = await ack(wsEdit(a, room, m.id, 'edited'), 'edit'); // id 2: a change
        assert.equal(e.id, 2);
        const before = await lastId(room);
        const cases = [
            ['an unknown id', 9999],
            ['an id of another room only', 3],
            ['an id that is a change, not a message', e.id],
        ];
        assert.ok(inOther.id <= 3);
        for (const [what, id] of cases) {
            assertWsError(await wsSend(a, room, 'reply', { reply_to: id }), 'not_found', `reply_to ${what}`);
            assertRestError(await restPost(srv.url, room, { user: a.user, text: 'reply', reply_to: id }), 404, 'not_found', `POST reply_to ${what}`);
        }
        for (const [what, id] of [['a string', '1'], ['a fraction', 1.5], ['an object', { id: 1 }], ['a boolean', true]]) {
            assertWsError(await wsSend(a, room, 'reply', { reply_to: id }), 'bad_request', `reply_to ${what}`);
            assertRestError(await restPost(srv.url, room, { user: a.user, text: 'reply', reply_to: id }), 400, 'bad_request', `POST reply_to ${what}`);
        }
        assert.equal(await lastId(room), before, 'nothing stored');
        // reply_to null is no reply
        const n = await ack(wsSend(a, room, 'no reply', { reply_to: null }), 'reply_to null');
        assert.equal((await getMsg(room, n.id)).reply_to, null);
        await a.close();
    }));
});

describe('mentions', () => {
    it('@name is recorded and every connection of the user gets a mention frame, joined or not; not the author', T, withLogs(async () => {
        const room = uniq('ment');
        const mia = uname('Mia');
        const bob = uname('bob');
        const mia1 = await connectUser(srv.wsUrl, mia, [room]);
        const mia2 = await connectUser(srv.wsUrl, mia); // never joins the room
        const b = await connectUser(srv.wsUrl, bob, [room]);
        const carl = await connectUser(srv.wsUrl, uname('carl'), [room]);
        await say(mia1, room, 'hi all'); // mia is now a name of the room
        await say(b, room, 'hello'); // and bob
        const text = `hey @${mia.toUpperCase()}, see this (and @${bob} too) @nobody${TAG}`;
        const m = await ack(wsSend(b, room, text), 'mentioning send');
        const f = await carl.message(room, m.id);
        assertMessageShape(f, 'mentioning message frame');
        assert.deepEqual(f.mentions, [mia, ...(f.mentions.includes(bob) ? [bob] : [])], `mentions of ${JSON.stringify(f)}`);
        assert.ok(f.mentions.includes(mia), 'mia is mentioned, spelled as she spells it');
        for (const [what, c] of [['joined', mia1], ['not joined', mia2]]) {
            const mf = await nextMention(c, room, m.id);
            assert.deepEqual(
                { room: mf.room, id: mf.id, user: mf.user, text: mf.text, ts: mf.ts },
                { room, id: m.id, user: bob, text, ts: m.ts },
                `mention frame on the ${what} connection`,
            );
        }
        assert.ok((await getMsg(room, m.id)).mentions.includes(mia));
        await settle(b, carl, mia2);
        assert.deepEqual(b.seen('mention'), [], 'the author gets no mention frame (even naming himself)');
        assert.deepEqual(carl.seen('mention'), [], 'a member not mentioned gets none');
        assert.equal(mia2.seen((x) => x.type === 'message').length, 0, 'the unjoined connection gets no message frame');
        // REST POST mentions too
        const p = await restPost(srv.url, room, { user: 'bot', text: `@${mia} ping` });
        assert.equal(p.status, 201, p.text);
        assert.deepEqual(p.json.mentions, [mia]);
        const mf = await nextMention(mia2, room, p.json.id);
        assert.equal(mf.user, 'bot');
        for (const c of [mia1, mia2, b, carl]) await c.close();
    }));

    it('mention matching: start or after a non-alphanumeric, end or before space/punctuation, longest name, known names only', T, withLogs(async () => {
        const room = uniq('match');
        const ann = uname('Ann');
        const annLee = `${ann} Lee`;
        const a1 = await connectUser(srv.wsUrl, ann, [room]);
        const a2 = await connectUser(srv.wsUrl, annLee, [room]);
        const w = await connectUser(srv.wsUrl, uname('writer'), [room]);
        const stranger = uname('stranger');
        const st = await connectUser(srv.wsUrl, stranger, [uniq('elsewhere')]); // never wrote in room
        await say(a1, room, 'I am Ann');
        await say(a2, room, 'I am Ann Lee');
        const cases = [
            [`@${ann.toLowerCase()} lee, hello`, [annLee]],
            [`@${ann}, hello`, [ann]],
            [`(@${ann}) and @${annLee}!`, [ann, annLee]],
            [`@${ann}`, [ann]],
            [`mail me at x@${ann} please`, []],
            [`@${ann}x is not her`, []],
            [`@${stranger} never wrote here`, []],
            [`@${ann} @${ann} twice`, [ann]],
        ];
        for (const [text, want] of cases) {
            const m = await ack(wsSend(w, room, text), `send ${text}`);
            const got = (await getMsg(room, m.id)).mentions;
            assert.deepEqual([...got].sort(), [...want].sort(), `mentions of ${JSON.stringify(text)}`);
        }
        await settle(st);
        assert.deepEqual(st.seen('mention'), [], 'a user who never wrote in the room is not mentioned');
        for (const c of [a1, a2, w, st]) await c.close();
    }));
});

describe('mention limit', () => {
    it('at most 20 distinct names are recorded on one message', T, withLogs(async () => {
        const room = uniq('many-ment');
        const names = [];
        for (let i = 0; i < 22; i++) {
            const n = uname('m');
            names.push(n);
            const p = await restPost(srv.url, room, { user: n, text: 'here' });
            assert.equal(p.status, 201, p.text);
        }
        const text = names.map((n) => `@${n}`).join(' ');
        const p = await restPost(srv.url, room, { user: 'caller', text });
        assert.equal(p.status, 201, p.text);
        assertMessageShape(p.json, 'POST body');
        assert.ok(p.json.mentions.length > 0 && p.json.mentions.length <= 20, `at most 20 mentions: ${JSON.stringify(p.json.mentions)}`);
        assert.equal(new Set(p.json.mentions).size, p.json.mentions.length, 'distinct');
        for (const n of p.json.mentions) assert.ok(names.includes(n), `mention ${n} is one of the names`);
        assert.deepEqual((await getMsg(room, p.json.id)).mentions, p.json.mentions);
    }));
});

describe('idempotency on ref', () => {
    it('each change with a ref already accepted answers the original id and stores nothing (WS and REST)', T, withLogs(async () => {
        const room = uniq('idem');
        const a = await connectUser(srv.wsUrl, uname('ia'), [room]);
        const m = await say(a, room, 'original');
        const m2 = await say(a, room, 'second');

        const e1 = await ack(wsEdit(a, room, m.id, 'edit one', { ref: 'ed' }), 'edit');
        const e2 = await ack(wsEdit(a, room, m.id, 'edit two, same ref', { ref: 'ed' }), 'edit again');
        assert.equal(e2.id, e1.id, 'same ref, same id');
        const rp = await restEdit(srv.url, room, m.id, { user: a.user, text: 'edit three, same ref', ref: 'ed' });
        assert.equal(rp.status, 200, rp.text);
        assert.equal(rp.json.id, e1.id, 'PATCH with the same ref answers the original');
        assert.equal((await getMsg(room, m.id)).text, 'edit one');

        const r1 = await ack(wsReact(a, room, m.id, '👍', true, { ref: 'rx' }), 'react');
        const r2 = await ack(wsReact(a, room, m.id, '🎉', true, { ref: 'rx' }), 'react again, another emoji');
        assert.equal(r2.id, r1.id);
        const rr = await restReact(srv.url, room, m.id, '🚀', true, { user: a.user, ref: 'rx' });
        assert.equal(rr.status, 200, rr.text);
        assert.equal(rr.json.id, r1.id);
        assert.deepEqual((await getMsg(room, m.id)).reactions, { '👍': [a.user] });

        const d1 = await ack(wsDelete(a, room, m2.id, { ref: 'dl' }), 'delete');
        const d2 = await ack(wsDelete(a, room, m2.id, { ref: 'dl' }), 'delete again: not not_found');
        assert.equal(d2.id, d1.id);
        const rd = await restDelete(srv.url, room, m2.id, { user: a.user, ref: 'dl' });
        assert.equal(rd.status, 200, rd.text);
        assert.equal(rd.json.id, d1.id);

        // REST first, then WS with the same ref
        const pe = await restEdit(srv.url, room, m.id, { user: a.user, text: 'rest edit', ref: 'rest-ed' });
        assert.equal(pe.status, 200, pe.text);
        const we = await ack(wsEdit(a, room, m.id, 'ws edit', { ref: 'rest-ed' }), 'WS after REST');
        assert.equal(we.id, pe.json.id);
        assert.equal((await getMsg(room, m.id)).text, 'rest edit');

        const evs = await allEvents(srv.url, room);
        assert.deepEqual(evs.map((x) => x.id), [m.id, m2.id, e1.id, r1.id, d1.id, pe.json.id], 'one event per ref');
        assert.deepEqual(evs.map((x) => x.id), [1, 2, 3, 4, 5, 6], 'ids stay gapless');
        await settle(a);
        const ups = a.seen((f) => f.type === 'update' && f.room === room).map((f) => f.id);
        assert.deepEqual(ups, [e1.id, r1.id, d1.id, pe.json.id], 'each change broadcast once');
        await a.close();
    }));
});

describe('join with since', () => {
    it('replays messages in current state and update frames, in id order, equal to /events; then live', T, withLogs(async () => {
        const room = uniq('since');
        const a = await connectUser(srv.wsUrl, uname('sa'), [room]);
        const b = await connectUser(srv.wsUrl, uname('sb'), [room]);
        const m1 = await say(a, room, 'one');
        const m2 = await say(b, room, 'two');
        const since = m2.id;
        const m3 = await say(a, room, 'three');
        await ack(wsEdit(a, room, m1.id, 'one, edited'), 'edit m1 (before since)');
        await ack(wsReact(b, room, m3.id, '👍'), 'react m3');
        await ack(wsEdit(a, room, m3.id, 'three, edited'), 'edit m3');
        const m4 = await say(b, room, 'four');
        await ack(wsDelete(b, room, m2.id), 'delete m2');
        await ack(wsReact(a, room, m4.id, '🔥'), 'react m4');
        await ack(wsReact(a, room, m4.id, '🔥', false), 'unreact m4');
        await ack(wsEdit(a, room, m3.id, 'three, edited twice'), 'edit m3 again');
        const last = await lastId(room);

        const want = (await restEvents(srv.url, room, { after: since, limit: 200 })).json.events;
        assert.deepEqual(want.map((x) => x.id), Array.from({ length: last - since }, (_, k) => since + k + 1), 'events after since');

        const c = await connectUser(srv.wsUrl, uname('sc'));
        const j = await c.join(room, since);
        assert.equal(j.recovered, true);
        assert.equal(j.last_id, last);
        const got = [];
        while (got.length < want.length) {
            got.push(await c.next((f) => (f.type === 'message' || f.type === 'update') && f.room === room));
        }
        assert.deepEqual(got.map(proj), want.map(proj), 'the replay equals GET /events?after=since');
        const m3r = got.find((f) => f.type === 'message' && f.id === m3.id);
        assert.equal(m3r.text, 'three, edited twice', 'a replayed message is in its current state');
        assert.deepEqual(m3r.reactions, { '👍': [b.user] });
        assert.ok(got.every((f) => f.type !== 'message' || f.id > since), 'no message at or before since');
        assert.ok(got.some((f) => f.type === 'update' && f.target === m2.id && f.kind === 'delete'), 'a delete of an older message is replayed');
        // then live
        const e = await ack(wsEdit(b, room, m4.id, 'four, live edit'), 'live edit');
        const lf = await c.next((f) => (f.type === 'message' || f.type === 'update') && f.room === room);
        assert.equal(lf.id, e.id, 'the live change comes after the replay');
        assert.equal(lf.text, 'four, live edit');
        // a version-1 style join (since = 0) replays everything
        const d = await connectUser(srv.wsUrl, uname('sd'));
        await d.join(room, 0);
        const all = await allEvents(srv.url, room);
        const got0 = [];
        while (got0.length < all.length) got0.push(await d.next((f) => (f.type === 'message' || f.type === 'update') && f.room === room));
        assert.deepEqual(got0.map(proj), all.map(proj));
        for (const x of [a, b, c, d]) await x.close();
    }));
});

describe('REST reads', () => {
    it('GET /events: after, limit, has_more, type; GET /messages/{id}; history lists messages only', T, withLogs(async () => {
        const room = uniq('evs');
        const a = await connectUser(srv.wsUrl, uname('ev'), [room]);
        const ids = [];
        for (let i = 0; i < 4; i++) ids.push((await say(a, room, `m${i}`)).id);
        const e = await ack(wsEdit(a, room, ids[0], 'm0 edited'), 'edit');
        const r = await ack(wsReact(a, room, ids[1], '👍'), 'react');
        const m5 = await say(a, room, 'm5');
        // 7 events: 1..4 messages, 5 edit, 6 react, 7 message
        const full = await restEvents(srv.url, room);
        assert.equal(full.status, 200, full.text);
        assert.equal(full.json.room, room);
        assert.equal(full.json.has_more, false);
        assert.deepEqual(full.json.events.map((x) => [x.id, x.type]), [
            [1, 'message'], [2, 'message'], [3, 'message'], [4, 'message'], [e.id, 'update'], [r.id, 'update'], [m5.id, 'message'],
        ]);
        for (const x of full.json.events) {
            if (x.type === 'message') assertMessageShape(x, `event ${x.id}`);
            else assertUpdateShape(x, undefined, `event ${x.id}`);
        }
        const p1 = await restEvents(srv.url, room, { after: 3, limit: 2 });
        assert.equal(p1.status, 200, p1.text);
        assert.deepEqual(p1.json.events.map((x) => x.id), [4, 5]);
        assert.equal(p1.json.has_more, true);
        const p2 = await restEvents(srv.url, room, { after: 5, limit: 2 });
        assert.deepEqual(p2.json.events.map((x) => x.id), [6, 7]);
        assert.equal(p2.json.has_more, false);
        const p3 = await restEvents(srv.url, room, { after: 7 });
        assert.deepEqual(p3.json.events, []);
        assert.equal(p3.json.has_more, false);
        for (const bad of ['0', '-1', 'abc']) {
            assertRestError(await api(srv.url, `/api/rooms/${room}/events?limit=${bad}`), 400, 'bad_request', `events limit=${bad}`);
        }
        const big = await restEvents(srv.url, room, { limit: 100000 });
        assert.equal(big.status, 200, 'a large limit is clamped, not refused');
        // history: messages only, current state
        const h = await fetchAllMessages(srv.url, room);
        assert.deepEqual(h.map((x) => x.id), [1, 2, 3, 4, m5.id]);
        assert.equal(h[0].text, 'm0 edited');
        assert.deepEqual(h[1].reactions, { '👍': [a.user] });
        const page = await api(srv.url, `/api/rooms/${room}/messages?limit=2`);
        assert.deepEqual(page.json.messages.map((x) => x.id), [4, m5.id], 'newest 2 messages, change events skipped');
        assert.equal(page.json.has_more, true);
        // GET one
        assert.equal((await getMsg(room, 1)).text, 'm0 edited');
        assertRestError(await restGet(srv.url, room, 9999), 404, 'not_found', 'GET unknown id');
        assertRestError(await restGet(srv.url, room, e.id), 404, 'not_found', 'GET the id of a change');
        assertRestError(await restGet(srv.url, uniq('empty'), 1), 404, 'not_found', 'GET in a room without messages');
        await a.close();
    }));
});

describe('permissions (auth off: no moderators)', () => {
    it('editing or deleting another user\'s message is forbidden (403); changes need the room joined', T, withLogs(async () => {
        const room = uniq('perm');
        const a = await connectUser(srv.wsUrl, uname('pa'), [room]);
        const b = await connectUser(srv.wsUrl, uname('pb'), [room]);
        const m = await say(a, room, 'mine');
        const before = await lastId(room);
        assertWsError(await wsEdit(b, room, m.id, 'not yours'), 'forbidden', 'edit another user\'s message');
        assertWsError(await wsDelete(b, room, m.id), 'forbidden', 'delete another user\'s message');
        assertRestError(await restEdit(srv.url, room, m.id, { user: b.user, text: 'not yours' }), 403, 'forbidden', 'PATCH another user\'s');
        assertRestError(await restDelete(srv.url, room, m.id, { user: b.user }), 403, 'forbidden', 'DELETE another user\'s');
        // a name that looks like a moderator is nobody special with auth off
        assertRestError(await restDelete(srv.url, room, m.id, { user: 'admin' }), 403, 'forbidden', 'DELETE as "admin" with auth off');
        // reacting to another user's message is anyone's right
        await ack(wsReact(b, room, m.id, '👍'), 'react to another user\'s message');
        // not joined on this connection
        const c = await connectUser(srv.wsUrl, a.user); // the author, not in the room here
        assertWsError(await wsEdit(c, room, m.id, 'x'), 'not_joined', 'edit without join');
        assertWsError(await wsDelete(c, room, m.id), 'not_joined', 'delete without join');
        assertWsError(await wsReact(c, room, m.id, '🎉'), 'not_joined', 'react without join');
        assert.equal(await lastId(room), before + 1, 'only the reaction was stored');
        const g = await getMsg(room, m.id);
        assert.equal(g.text, 'mine');
        assert.equal(g.deleted, false);
        for (const x of [a, b, c]) await x.close();
    }));
});

describe('bad input', () => {
    it('unknown id, an id of another room, the id of a change: not_found (404)', T, withLogs(async () => {
        const roomA = uniq('badA');
        const roomB = uniq('badB');
        const a = await connectUser(srv.wsUrl, uname('ba'), [roomA, roomB]);
        // roomA has ids 1..5, roomB only 1
        for (let i = 0; i < 5; i++) await say(a, roomA, `a${i}`);
        const b1 = await say(a, roomB, 'b0');
        const chg = await ack(wsEdit(a, roomB, b1.id, 'b0 edited'), 'edit in B'); // id 2 of B
        const before = await lastId(roomB);
        const cases = [['an unknown id', 9999], ['an id of room A only', 4], ['the id of a change', chg.id]];
        for (const [what, id] of cases) {
            assertWsError(await wsEdit(a, roomB, id, 'x'), 'not_found', `edit ${what}`);
            assertWsError(await wsDelete(a, roomB, id), 'not_found', `delete ${what}`);
            assertWsError(await wsReact(a, roomB, id, '👍'), 'not_found', `react ${what}`);
            assertRestError(await restGet(srv.url, roomB, id), 404, 'not_found', `GET ${what}`);
            assertRestError(await restEdit(srv.url, roomB, id, { user: a.user, text: 'x' }), 404, 'not_found', `PATCH ${what}`);
            assertRestError(await restDelete(srv.url, roomB, id, { user: a.user }), 404, 'not_found', `DELETE ${what}`);
            assertRestError(await restReact(srv.url, roomB, id, '👍', true, { user: a.user }), 404, 'not_found', `PUT reaction ${what}`);
        }
        assert.equal(await lastId(roomB), before, 'nothing stored in B');
        assert.equal((await getMsg(roomA, 4)).text, 'a3', 'room A untouched');
        await a.close();
    }));

    it('edit text follows the message rules: text_invalid over WS and 400 over REST', T, withLogs(async () => {
        const room = uniq('etext');
        const a = await connectUser(srv.wsUrl, uname('et'), [room]);
        const m = await say(a, room, 'short');
        const before = await lastId(room);
        const bad = [
            ['4001 code points', '😀'.repeat(4001)],
            ['4001 ASCII chars', 'y'.repeat(4001)],
            ['empty', ''],
            ['blank', ' \n\t '],
            ['a NUL', 'a\u0000b'],
            ['a control char', 'a\u0001b'],
        ];
        for (const [what, text] of bad) {
            assertWsError(await wsEdit(a, room, m.id, text), 'text_invalid', `edit ${what}`);
            if (!text.includes('😀')) {
                assertRestError(await restEdit(srv.url, room, m.id, { user: a.user, text }), 400, 'text_invalid', `PATCH ${what}`);
            }
        }
        assert.equal(await lastId(room), before, 'nothing stored');
        assert.equal((await getMsg(room, m.id)).text, 'short');
        // the limit itself is fine
        const ok = await ack(wsEdit(a, room, m.id, '😀'.repeat(4000)), '4000 code points');
        assert.equal((await getMsg(room, m.id)).text, '😀'.repeat(4000));
        const ok2 = await ack(wsEdit(a, room, m.id, 'tab\tnew\nline'), 'tab and newline');
        assert.equal(ok2.id, ok.id + 1);
        await a.close();
    }));

    it('missing or ill-typed fields: bad_request (400)', T, withLogs(async () => {
        const room = uniq('fields');
        const a = await connectUser(srv.wsUrl, uname('bf'), [room]);
        const m = await say(a, room, 'target');
        const before = await lastId(room);
        const bad = [
            ['edit without id', { type: 'edit', room, text: 'x' }],
            ['edit with a string id', { type: 'edit', room, id: String(m.id), text: 'x' }],
            ['edit with a fractional id', { type: 'edit', room, id: 1.5, text: 'x' }],
            ['edit without text', { type: 'edit', room, id: m.id }],
            ['edit with a number text', { type: 'edit', room, id: m.id, text: 5 }],
            ['edit with null text', { type: 'edit', room, id: m.id, text: null }],
            ['delete without id', { type: 'delete', room }],
            ['delete with an array id', { type: 'delete', room, id: [m.id] }],
            ['react without add', { type: 'react', room, id: m.id, emoji: '👍' }],
            ['react with add "true"', { type: 'react', room, id: m.id, emoji: '👍', add: 'true' }],
            ['react with add 1', { type: 'react', room, id: m.id, emoji: '👍', add: 1 }],
            ['react without id', { type: 'react', room, emoji: '👍', add: true }],
            ['edit with a ref of 65 chars', { type: 'edit', room, id: m.id, text: 'x', ref: 'r'.repeat(65) }],
            ['delete with a number ref', { type: 'delete', room, id: m.id, ref: 7 }],
        ];
        for (const [what, frame] of bad) assertWsError(await wsRaw(a, frame), 'bad_request', what);
        const noRoom = await wsRaw(a, { type: 'edit', id: m.id, text: 'x' });
        assert.equal(noRoom.type, 'error', `edit without room: ${JSON.stringify(noRoom)}`);
        assert.ok(['bad_request', 'room_invalid'].includes(noRoom.code), `edit without room: ${JSON.stringify(noRoom)}`);
        const u = a.user;
        assertRestError(await restEdit(srv.url, room, m.id, { user: u }), 400, 'bad_request', 'PATCH without text');
        assertRestError(await restEdit(srv.url, room, m.id, { user: u, text: 7 }), 400, 'bad_request', 'PATCH with a number text');
        const bj = await api(srv.url, `/api/rooms/${room}/messages/${m.id}`, { method: 'PATCH', body: '{"text": ' });
        assert.equal(bj.status, 400, `PATCH with broken JSON: ${bj.status} ${bj.text}`);
        assert.ok(['bad_json', 'bad_request'].includes(bj.json?.error?.code), bj.text);
        const nid = await restEdit(srv.url, room, 'abc', { user: u, text: 'x' });
        assert.ok([400, 404].includes(nid.status), `PATCH a non-numeric id: ${nid.status} ${nid.text}`);
        assertRestError(await restEdit(srv.url, room, m.id, { text: 'no user' }), 400, 'bad_request', 'PATCH without a user (auth off)');
        assertRestError(await restDelete(srv.url, room, m.id), 400, 'bad_request', 'DELETE without a user (auth off)');
        assertRestError(await restReact(srv.url, room, m.id, '👍', true), 400, 'bad_request', 'PUT reaction without a user (auth off)');
        assert.equal(await lastId(room), before, 'nothing stored');
        await a.close();
    }));
});

describe('edit window', () => {
    it('TURBOCHAT_EDIT_WINDOW_S=1: an edit after the window is edit_window (403); delete and react still work', T, withLogs(async () => {
        const s = await startServer({ env: { ...RELAXED_RATE_ENV, TURBOCHAT_EDIT_WINDOW_S: '1' } });
        const room = uniq('win');
        const a = await connectUser(s.wsUrl, uname('wa'), [room]);
        const m1 = await ack(wsSend(a, room, 'edit me in time'), 'send 1');
        const m2 = await ack(wsSend(a, room, 'edit me late'), 'send 2');
        await ack(wsEdit(a, room, m1.id, 'edited in time'), 'edit within the window');
        // wait until the window has certainly passed for m2 (server and tests share the clock)
        await untilTime(m2.ts + 1000 + 300);
        const before = (await allEvents(s.url, room)).length;
        assertWsError(await wsEdit(a, room, m2.id, 'too late'), 'edit_window', 'WS edit after the window');
        assertRestError(await restEdit(s.url, room, m2.id, { user: a.user, text: 'too late' }), 403, 'edit_window', 'PATCH after the window');
        assertWsError(await wsEdit(a, room, m1.id, 'too late too'), 'edit_window', 'a second edit after the window');
        assert.equal((await allEvents(s.url, room)).length, before, 'nothing stored');
        const g = await restGet(s.url, room, m2.id);
        assert.equal(g.json.text, 'edit me late');
        // the window is about edits only
        await ack(wsReact(a, room, m2.id, '👍'), 'react after the window');
        const d = await ack(wsDelete(a, room, m2.id), 'delete after the window');
        assert.equal(d.kind, 'delete');
        await a.close();
        await s.stop();
    }));
});
