// WebSocket protocol of docs/PROTOCOL.md on a single node (no Valkey): hello,
// join/leave, send/ack/message, typing, ping, presence, validation errors,
// limits, idempotent refs, id assignment and replay with since.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { api, connect, connectUser, fetchAllMessages, uniq } from '../lib/client.mjs';
import { RELAXED_RATE_ENV, startServer, stopAll, withLogs } from '../lib/server.mjs';

const T = { timeout: 120000 };

let srv;

before(async () => {
    srv = await startServer({ env: RELAXED_RATE_ENV });
});

after(stopAll);

// Send a message through `client` in `room` and wait until `watcher` has seen
// it: a barrier proving that frames queued for watcher before it have arrived.
async function barrier(client, watcher, room) {
    const ack = await client.sendMessage(room, `barrier ${uniq('b')}`);
    assert.equal(ack.type, 'ack', `barrier send failed: ${JSON.stringify(ack)}`);
    await watcher.message(room, ack.id);
    return ack;
}

function assertError(frame, code, ctx = '') {
    assert.equal(frame.type, 'error', `${ctx} expected error ${code}, got ${JSON.stringify(frame)}`);
    assert.equal(frame.code, code, `${ctx} expected error ${code}, got ${JSON.stringify(frame)}`);
    assert.equal(typeof frame.message, 'string', `${ctx} error.message must be a string: ${JSON.stringify(frame)}`);
}

async function expectStillOpen(c) {
    await c.ping();
    assert.equal(c.closeInfo, null);
}

describe('hello', () => {
    it('welcome carries user, node, server_time and protocol 1', T, withLogs(async () => {
        const c = await connect(srv.wsUrl);
        const before = Date.now();
        const w = await c.hello('alice');
        assert.equal(w.type, 'welcome');
        assert.equal(w.user, 'alice');
        assert.equal(w.node, `test-${srv.port}`);
        assert.equal(w.protocol, 2);
        assert.ok(Number.isInteger(w.server_time), `server_time must be an integer: ${w.server_time}`);
        assert.ok(Math.abs(w.server_time - before) < 60000, `server_time ${w.server_time} far from now ${before}`);
        await c.close();
    }));

    it('trims the user name and accepts 32 code points', T, withLogs(async () => {
        const c = await connect(srv.wsUrl);
        assert.equal((await c.hello('  bob  ')).user, 'bob');
        const d = await connect(srv.wsUrl);
        const name32 = 'é'.repeat(31) + 'x';
        assert.equal((await d.hello(name32)).user, name32);
        await c.close();
        await d.close();
    }));

    it('any frame before hello gets hello_required and the connection stays open', T, withLogs(async () => {
        const c = await connect(srv.wsUrl);
        c.send({ type: 'join', room: 'general' });
        assertError(await c.next('error'), 'hello_required', 'join before hello:');
        c.send({ type: 'send', room: 'general', text: 'hi', ref: 'x' });
        assertError(await c.next('error'), 'hello_required', 'send before hello:');
        c.send({ type: 'ping', ref: 'p0' });
        assertError(await c.next('error'), 'hello_required', 'ping before hello:');
        assert.equal(c.closeInfo, null);
        const w = await c.hello('late');
        assert.equal(w.user, 'late');
        await c.join('general');
        await c.close();
    }));

    const badNames = [
        ['missing name', { type: 'hello' }],
        ['empty name', { type: 'hello', name: '' }],
        ['blank name', { type: 'hello', name: '   ' }],
        ['33 chars', { type: 'hello', name: 'a'.repeat(33) }],
        ['control char', { type: 'hello', name: 'bad\u0007name' }],
        ['NUL', { type: 'hello', name: 'bad\u0000name' }],
        ['number', { type: 'hello', name: 42 }],
        ['object', { type: 'hello', name: { a: 1 } }],
    ];
    for (const [what, frame] of badNames) {
        it(`refused hello (${what}) gets bad_request then close 1008`, T, withLogs(async () => {
            const c = await connect(srv.wsUrl);
            c.send(frame);
            const err = await c.next('error');
            assertError(err, 'bad_request', `hello ${what}:`);
            const closed = await c.closed;
            assert.equal(closed.code, 1008, `close code after refused hello: ${JSON.stringify(closed)}`);
        }));
    }

    it('a server with a foreign Origin refuses the upgrade; its own origin is accepted', T, withLogs(async () => {
        // 403, not a hang-up (PROTOCOL.md): a proxy takes a hang-up for a failed node
        await assert.rejects(connect(srv.wsUrl, { origin: 'http://evil.example' }), (err) => {
            assert.equal(err.statusCode, 403, `expected the upgrade to be refused with 403, got ${err.message}`);
            return true;
        });
        const c = await connect(srv.wsUrl, { origin: srv.url });
        await c.hello('origin-ok');
        await c.close();
    }));

    it('TURBOCHAT_ALLOWED_ORIGINS admits the listed origins only', T, withLogs(async () => {
        const s = await startServer({ env: { TURBOCHAT_ALLOWED_ORIGINS: 'http://chat.example,https://other.example' } });
        try {
            for (const origin of ['http://chat.example', 'https://other.example']) {
                const c = await connect(s.wsUrl, { origin });
                await c.hello('listed');
                await c.close();
            }
            await assert.rejects(connect(s.wsUrl, { origin: 'http://evil.example' }));
        } finally {
            await s.stop();
        }
    }));
});

describe('rooms', () => {
    it('join answers joined with last_id, members and recovered; leave answers left', T, withLogs(async () => {
        const room = uniq('room');
        const a = await connectUser(srv.wsUrl, 'ann');
        const j = await a.join(room);
        assert.equal(j.room, room);
        assert.equal(j.last_id, 0);
        assert.deepEqual(j.members, ['ann']);
        assert.equal(j.recovered, true);

        const ack = await a.sendMessage(room, 'hello');
        assert.equal(ack.type, 'ack');

        const b = await connectUser(srv.wsUrl, 'ben');
        const jb = await b.join(room);
        assert.equal(jb.last_id, ack.id);
        assert.deepEqual([...jb.members].sort(), ['ann', 'ben']);
        assert.equal(jb.recovered, true);

        // a second connection of ann: members stay distinct
        const a2 = await connectUser(srv.wsUrl, 'ann');
        const ja2 = await a2.join(room);
        assert.deepEqual([...ja2.members].sort(), ['ann', 'ben']);

        const left = await b.leave(room);
        assert.deepEqual({ type: left.type, room: left.room }, { type: 'left', room });
        const s = await b.sendMessage(room, 'after leave');
        assertError(s, 'not_joined', 'send after leave:');
        await Promise.all([a.close(), a2.close(), b.close()]);
    }));

    it('send to a room not joined gets not_joined and is not stored', T, withLogs(async () => {
        const room = uniq('nj');
        const c = await connectUser(srv.wsUrl, 'nj');
        const e = await c.sendMessage(room, 'nope', 'nj-ref');
        assertError(e, 'not_joined');
        assert.equal(e.ref, 'nj-ref');
        const r = await api(srv.url, `/api/rooms/${room}/messages`);
        if (r.status === 200) assert.deepEqual(r.json.messages, []);
        await expectStillOpen(c);
        await c.close();
    }));

    const badRooms = [
        ['empty', ''],
        ['65 chars', 'r'.repeat(65)],
        ['leading dot', '.hidden'],
        ['space', 'a b'],
        ['slash', 'a/b'],
        ['non-ASCII', 'caf\u00e9'],
        ['only dot', '.'],
    ];
    for (const [what, room] of badRooms) {
        it(`join with an invalid room (${what}) gets room_invalid`, T, withLogs(async () => {
            const c = await connectUser(srv.wsUrl, 'rv');
            c.send({ type: 'join', room });
            assertError(await c.next('error'), 'room_invalid', `room ${JSON.stringify(room)}:`);
            await expectStillOpen(c);
            await c.close();
        }));
    }

    it('valid room names: 64 chars, [A-Za-z0-9_.-], case-sensitive', T, withLogs(async () => {
        const c = await connectUser(srv.wsUrl, 'rn');
        const r64 = 'R'.repeat(63) + '9';
        await c.join(r64);
        await c.join('a.b-c_D9');
        await c.join('-dash');
        const base = uniq('Case');
        await c.join(base);
        await c.join(base.toLowerCase());
        const ack = await c.sendMessage(base, 'upper');
        assert.equal(ack.type, 'ack');
        const ack2 = await c.sendMessage(base.toLowerCase(), 'lower');
        assert.equal(ack2.type, 'ack');
        assert.equal(ack.id, 1);
        assert.equal(ack2.id, 1, 'rooms differing by case must be distinct rooms');
        await c.close();
    }));

    it('the 51st join gets too_many_rooms; leaving one frees a slot', T, withLogs(async () => {
        const c = await connectUser(srv.wsUrl, 'many');
        const prefix = uniq('tmr');
        for (let i = 0; i < 50; i++) await c.join(`${prefix}-${i}`);
        c.send({ type: 'join', room: `${prefix}-50` });
        assertError(await c.next((f) => f.type === 'error' || (f.type === 'joined' && f.room === `${prefix}-50`)), 'too_many_rooms');
        await expectStillOpen(c);
        await c.leave(`${prefix}-0`);
        await c.join(`${prefix}-50`);
        await c.close();
    }));
});

describe('messages', () => {
    it('send: ack with ref, room, id, ts to the sender; message to every member incl. sender', T, withLogs(async () => {
        const room = uniq('msg');
        const a = await connectUser(srv.wsUrl, 'amy', [room]);
        const b = await connectUser(srv.wsUrl, 'bo', [room]);
        const other = await connectUser(srv.wsUrl, 'outsider', [uniq('elsewhere')]);
        const t0 = Date.now();
        const ack = await a.sendMessage(room, 'hello world', 'ref-1');
        assert.equal(ack.type, 'ack', JSON.stringify(ack));
        assert.equal(ack.ref, 'ref-1');
        assert.equal(ack.room, room);
        assert.equal(ack.id, 1);
        assert.ok(Number.isInteger(ack.ts) && Math.abs(ack.ts - t0) < 60000, `ack.ts ${ack.ts}`);
        for (const c of [a, b]) {
            const m = await c.message(room, ack.id);
            assert.equal(m.user, 'amy');
            assert.equal(m.text, 'hello world');
            assert.equal(m.ts, ack.ts);
        }
        // outsider is in no common room: barrier through its own room
        const oroom = other.seen('joined')[0].room;
        await barrier(other, other, oroom);
        assert.equal(other.seen((f) => f.type === 'message' && f.room === room).length, 0);
        await Promise.all([a.close(), b.close(), other.close()]);
    }));

    it('ack.ref is null when the send had no ref', T, withLogs(async () => {
        const room = uniq('noref');
        const a = await connectUser(srv.wsUrl, 'noref', [room]);
        const ack = await a.sendMessage(room, 'no ref here', null);
        assert.equal(ack.type, 'ack', JSON.stringify(ack));
        assert.ok('ref' in ack, `ack must carry ref (null): ${JSON.stringify(ack)}`);
        assert.equal(ack.ref, null);
        await a.close();
    }));

    it('ids start at 1 and increase by one per room, also with concurrent senders', T, withLogs(async () => {
        const room = uniq('ids');
        const room2 = uniq('ids2');
        const senders = await Promise.all([0, 1, 2].map((i) => connectUser(srv.wsUrl, `s${i}`, [room, room2])));
        const acks = await Promise.all(
            senders.flatMap((c, i) => Array.from({ length: 20 }, (_, k) => c.sendMessage(room, `s${i} m${k}`))),
        );
        for (const a of acks) assert.equal(a.type, 'ack', JSON.stringify(a));
        const ids = acks.map((a) => a.id).sort((x, y) => x - y);
        assert.deepEqual(ids, Array.from({ length: 60 }, (_, i) => i + 1));
        // every member saw the messages in id order
        for (const c of senders) {
            await c.message(room, 60);
            const seenIds = c.seen((f) => f.type === 'message' && f.room === room).map((f) => f.id);
            assert.deepEqual(seenIds, Array.from({ length: 60 }, (_, i) => i + 1));
        }
        const other = await senders[0].sendMessage(room2, 'first of room2');
        assert.equal(other.id, 1, 'each room numbers from 1');
        const hist = await fetchAllMessages(srv.url, room);
        assert.deepEqual(hist.map((m) => m.id), Array.from({ length: 60 }, (_, i) => i + 1));
        await Promise.all(senders.map((c) => c.close()));
    }));

    it('typing goes to the other members only', T, withLogs(async () => {
        const room = uniq('typ');
        const a = await connectUser(srv.wsUrl, 'typer', [room]);
        const b = await connectUser(srv.wsUrl, 'reader', [room]);
        a.send({ type: 'typing', room });
        const t = await b.next('typing');
        assert.deepEqual({ type: t.type, room: t.room, user: t.user }, { type: 'typing', room, user: 'typer' });
        // barrier: a's own next message reaches a after any typing frame would have
        await barrier(a, a, room);
        assert.equal(a.seen('typing').length, 0, 'the sender must not get its own typing frame');
        // typing is not stored
        const hist = await fetchAllMessages(srv.url, room);
        assert.equal(hist.length, 1);
        await Promise.all([a.close(), b.close()]);
    }));

    it('ping answers pong with the same ref', T, withLogs(async () => {
        const c = await connectUser(srv.wsUrl, 'pinger');
        const p = await c.ping('abc-123');
        assert.equal(p.ref, 'abc-123');
        c.send({ type: 'ping' });
        const p2 = await c.next('pong');
        assert.equal(p2.ref ?? null, null);
        await c.close();
    }));
});

describe('presence', () => {
    it('join on the first connection of a user, leave on the last (leave frame and disconnect)', T, withLogs(async () => {
        const room = uniq('pres');
        const watcher = await connectUser(srv.wsUrl, 'watcher', [room]);
        const isPres = (user, event) => (f) => f.type === 'presence' && f.room === room && f.user === user && f.event === event;

        const b1 = await connectUser(srv.wsUrl, 'pbob', [room]);
        await watcher.next(isPres('pbob', 'join'));

        // second connection of the same user: no presence
        const b2 = await connectUser(srv.wsUrl, 'pbob', [room]);
        await barrier(b2, watcher, room);
        assert.equal(watcher.seen(isPres('pbob', 'join')).length, 1, 'second connection must not announce a join');

        // the second connection leaves: still online through b1
        await b2.leave(room);
        await barrier(b1, watcher, room);
        assert.equal(watcher.seen(isPres('pbob', 'leave')).length, 0, 'leave with another connection still joined');

        // last connection leaves with a leave frame
        await b1.leave(room);
        await watcher.next(isPres('pbob', 'leave'));

        // join again, then disconnect abruptly
        await b1.join(room);
        await watcher.next(isPres('pbob', 'join'));
        b1.terminate();
        await watcher.next(isPres('pbob', 'leave'));

        // a normal close also counts
        const c = await connectUser(srv.wsUrl, 'pcarl', [room]);
        await watcher.next(isPres('pcarl', 'join'));
        await c.close();
        await watcher.next(isPres('pcarl', 'leave'));

        const m = await api(srv.url, `/api/rooms/${room}/members`);
        assert.equal(m.status, 200);
        assert.deepEqual(m.json.members, ['watcher']);
        await Promise.all([watcher.close(), b2.close()]);
    }));
});

describe('text validation', () => {
    const bad = [
        ['empty', ''],
        ['blank after trim', ' \t\n\r '],
        ['4001 code points', 'a'.repeat(4001)],
        ['4001 astral code points', '\u{1F600}'.repeat(4001)],
        ['NUL', 'a\u0000b'],
        ['SOH', 'a\u0001b'],
        ['ESC', '\u001b[31mred'],
        ['unit separator', 'a\u001fb'],
        ['lone surrogate', 'a\ud800b'],
    ];
    for (const [what, text] of bad) {
        it(`text_invalid: ${what}`, T, withLogs(async () => {
            const room = uniq('tv');
            const c = await connectUser(srv.wsUrl, 'tv', [room]);
            c.send({ type: 'send', room, text, ref: 'tv-ref' });
            const e = await c.next((f) => f.type === 'error' || (f.type === 'ack' && f.ref === 'tv-ref'));
            if (what === 'lone surrogate' && e.type === 'error' && e.code === 'bad_json') {
                // "\ud800" cannot become valid UTF-8: bad_json is acceptable too
            } else {
                assertError(e, 'text_invalid', `text ${what}:`);
                if (e.ref !== undefined) assert.equal(e.ref, 'tv-ref', 'an error with a ref carries the ref of the send');
            }
            const hist = await fetchAllMessages(srv.url, room);
            assert.equal(hist.length, 0, 'refused text must not be stored');
            await expectStillOpen(c);
            await c.close();
        }));
    }

    it('tab, newline and CR are allowed; surrounding white space is trimmed and the trimmed text stored', T, withLogs(async () => {
        const room = uniq('tok');
        const c = await connectUser(srv.wsUrl, 'tok', [room]);
        const cases = [
            ['a\tb', 'a\tb'],
            ['line1\nline2', 'line1\nline2'],
            ['x\r\ny', 'x\r\ny'],
            ['  padded  ', 'padded'],
            ['\n\t hi there \r\n', 'hi there'],
            ['\u{1F600}'.repeat(4000), '\u{1F600}'.repeat(4000)],
            [`  ${'b'.repeat(4000)}  `, 'b'.repeat(4000)],
            ['<script>alert(1)</script> & "q"', '<script>alert(1)</script> & "q"'],
        ];
        const ids = [];
        for (const [sent, stored] of cases) {
            const ack = await c.sendMessage(room, sent);
            assert.equal(ack.type, 'ack', `text ${JSON.stringify(sent.slice(0, 40))}: ${JSON.stringify(ack).slice(0, 300)}`);
            const m = await c.message(room, ack.id);
            assert.equal(m.text, stored);
            ids.push(ack.id);
        }
        const hist = await fetchAllMessages(srv.url, room);
        assert.deepEqual(hist.map((m) => m.text), cases.map(([, s]) => s));
        await c.close();
    }));
});

describe('rate limit', () => {
    it('after the burst of 20 sends, rate_limited and the message is not accepted', T, withLogs(async () => {
        const limited = await startServer(); // default limits: 5/s, burst 20
        try {
            const room = uniq('rl');
            const c = await connectUser(limited.wsUrl, 'rl', [room]);
            const t0 = Date.now();
            const refs = Array.from({ length: 30 }, (_, i) => `rl-${i}`);
            const answers = await Promise.all(refs.map((ref) => c.sendMessage(room, `burst ${ref}`, ref)));
            const elapsed = (Date.now() - t0) / 1000;
            const acks = answers.filter((a) => a.type === 'ack');
            const limitedErrs = answers.filter((a) => a.type === 'error');
            for (const e of limitedErrs) assertError(e, 'rate_limited');
            assert.ok(acks.length >= 20, `the burst of 20 must be accepted, got ${acks.length} acks`);
            const allowed = 20 + Math.ceil(elapsed * 5) + 1;
            assert.ok(acks.length <= allowed, `${acks.length} acks in ${elapsed}s exceeds burst+rate (${allowed})`);
            // 30 sends in under 2 s outrun a burst of 20 refilled at 5/s
            if (elapsed < 2) assert.ok(limitedErrs.length >= 1, `some of 30 sends in ${elapsed}s must be rate_limited`);
            // refused messages are neither stored nor broadcast
            const last = Math.max(...acks.map((a) => a.id));
            await c.message(room, last);
            const hist = await fetchAllMessages(limited.url, room);
            const limitedRefs = new Set(limitedErrs.map((e) => e.ref));
            assert.equal(hist.length, acks.length);
            for (const m of hist) assert.ok(!limitedRefs.has(m.text.slice(6)), `rate-limited message stored: ${m.text}`);
            const broadcast = c.seen((f) => f.type === 'message' && f.room === room);
            assert.equal(broadcast.length, acks.length);
            await expectStillOpen(c);
            await c.close();
        } finally {
            await limited.stop();
        }
    }));
});

describe('idempotent ref', () => {
    it('same user+room+ref over WebSocket: same id, not stored or broadcast twice', T, withLogs(async () => {
        const room = uniq('idem');
        const a = await connectUser(srv.wsUrl, 'idem', [room]);
        const w = await connectUser(srv.wsUrl, 'idemw', [room]);
        const first = await a.sendMessage(room, 'original', 'dup-1');
        assert.equal(first.type, 'ack');
        await w.message(room, first.id);
        const again = await a.sendMessage(room, 'different text', 'dup-1');
        assert.equal(again.type, 'ack', JSON.stringify(again));
        assert.equal(again.id, first.id);
        assert.equal(again.ref, 'dup-1');
        // a retry after a reconnect (new connection, same user)
        const a2 = await connectUser(srv.wsUrl, 'idem', [room]);
        const third = await a2.sendMessage(room, 'third try', 'dup-1');
        assert.equal(third.type, 'ack');
        assert.equal(third.id, first.id);
        // another user or another room with the same ref is a new message
        const otherUser = await w.sendMessage(room, 'other user', 'dup-1');
        assert.equal(otherUser.id, first.id + 1);
        await w.message(room, otherUser.id);
        await a.message(room, otherUser.id);
        assert.equal(w.seen((f) => f.type === 'message' && f.id === first.id).length, 1, 'broadcast twice');
        assert.equal(a.seen((f) => f.type === 'message' && f.id === first.id).length, 1, 'sender got it twice');
        const hist = await fetchAllMessages(srv.url, room);
        assert.deepEqual(hist.map((m) => [m.id, m.text]), [[first.id, 'original'], [otherUser.id, 'other user']]);
        await Promise.all([a.close(), a2.close(), w.close()]);
    }));

    it('a ref used over REST and retried over WebSocket (and back) keeps the original id', T, withLogs(async () => {
        const room = uniq('idemx');
        const a = await connectUser(srv.wsUrl, 'xuser', [room]);
        const post = await api(srv.url, `/api/rooms/${room}/messages`, {
            method: 'POST',
            body: { user: 'xuser', text: 'via rest', ref: 'x-1' },
        });
        assert.equal(post.status, 201, post.text);
        await a.message(room, post.json.id);
        const ack = await a.sendMessage(room, 'via ws', 'x-1');
        assert.equal(ack.type, 'ack');
        assert.equal(ack.id, post.json.id);

        const ack2 = await a.sendMessage(room, 'ws first', 'x-2');
        const post2 = await api(srv.url, `/api/rooms/${room}/messages`, {
            method: 'POST',
            body: { user: 'xuser', text: 'rest retry', ref: 'x-2' },
        });
        assert.equal(post2.status, 200, post2.text);
        assert.equal(post2.json.id, ack2.id);
        assert.equal(post2.json.text, 'ws first');
        await barrier(a, a, room);
        const hist = await fetchAllMessages(srv.url, room);
        assert.deepEqual(hist.map((m) => m.text).slice(0, 2), ['via rest', 'ws first']);
        assert.equal(a.seen((f) => f.type === 'message' && f.id === post.json.id).length, 1);
        assert.equal(a.seen((f) => f.type === 'message' && f.id === ack2.id).length, 1);
        await a.close();
    }));

    it('a ref longer than 64 chars is bad_request', T, withLogs(async () => {
        const room = uniq('longref');
        const a = await connectUser(srv.wsUrl, 'lr', [room]);
        a.send({ type: 'send', room, text: 'x', ref: 'r'.repeat(65) });
        assertError(await a.next((f) => f.type === 'error' || f.type === 'ack'), 'bad_request');
        assert.deepEqual(await fetchAllMessages(srv.url, room), []);
        const ok = await a.sendMessage(room, 'x', 'r'.repeat(64));
        assert.equal(ok.type, 'ack');
        await a.close();
    }));
});

describe('replay with since', () => {
    it('join with since replays exactly the missing messages in order, before live ones', T, withLogs(async () => {
        const room = uniq('since');
        const a = await connectUser(srv.wsUrl, 'writer', [room]);
        for (let i = 1; i <= 10; i++) assert.equal((await a.sendMessage(room, `m${i}`)).id, i);

        // since = 3 while the writer keeps sending live messages
        const b = await connectUser(srv.wsUrl, 'reader');
        const live = (async () => {
            const acks = [];
            for (let i = 11; i <= 20; i++) acks.push(await a.sendMessage(room, `m${i}`));
            return acks;
        })();
        const j = await b.join(room, 3);
        assert.equal(j.recovered, true);
        assert.ok(j.last_id >= 10, `last_id ${j.last_id}`);
        const acks = await live;
        assert.deepEqual(acks.map((x) => x.id), Array.from({ length: 10 }, (_, i) => i + 11));
        await b.message(room, 20);
        const frames = b.frames.filter((f) => f.room === room && (f.type === 'message' || f.type === 'joined'));
        assert.equal(frames[0].type, 'joined', 'joined comes before the replay');
        const ids = frames.slice(1).map((f) => f.id);
        assert.deepEqual(ids, Array.from({ length: 17 }, (_, i) => i + 4), 'replay then live, in order, no gaps or duplicates');
        assert.deepEqual(frames.slice(1).map((f) => f.text), ids.map((i) => `m${i}`));

        // since = 0: everything; since = last: nothing until the next live message
        const c = await connectUser(srv.wsUrl, 'c0');
        const j0 = await c.join(room, 0);
        assert.equal(j0.recovered, true);
        await c.message(room, 20);
        assert.deepEqual(c.seen((f) => f.type === 'message').map((f) => f.id), Array.from({ length: 20 }, (_, i) => i + 1));

        const d = await connectUser(srv.wsUrl, 'd0');
        const jd = await d.join(room, 20);
        assert.equal(jd.last_id, 20);
        assert.equal(jd.recovered, true);
        const n = await a.sendMessage(room, 'm21');
        await d.message(room, n.id);
        assert.deepEqual(d.seen('message').map((f) => f.id), [21]);

        // without since: no replay, recovered true
        const e = await connectUser(srv.wsUrl, 'e0');
        const je = await e.join(room);
        assert.equal(je.recovered, true);
        assert.equal(je.last_id, 21);
        const n2 = await a.sendMessage(room, 'm22');
        await e.message(room, n2.id);
        assert.deepEqual(e.seen('message').map((f) => f.id), [22]);
        await Promise.all([a, b, c, d, e].map((x) => x.close()));
    }));
});

describe('malformed frames', () => {
    it('bad_json for text that is not JSON; the connection stays open', T, withLogs(async () => {
        const c = await connectUser(srv.wsUrl, 'bj');
        for (const raw of ['not json', '{', '{"type":"ping",}', '', '\u0000']) {
            c.sendRaw(raw);
            assertError(await c.next('error'), 'bad_json', `frame ${JSON.stringify(raw)}:`);
        }
        for (const raw of ['[1,2]', '"hello"', '42', 'null']) {
            c.sendRaw(raw);
            const e = await c.next('error');
            assert.ok(['bad_json', 'bad_request'].includes(e.code), `non-object ${raw}: ${JSON.stringify(e)}`);
        }
        await expectStillOpen(c);
        await c.close();
    }));

    it('bad_request for missing fields, wrong types and unknown types', T, withLogs(async () => {
        const room = uniq('br');
        const c = await connectUser(srv.wsUrl, 'br', [room]);
        const frames = [
            {},
            { type: 5 },
            { type: null },
            { type: 'frobnicate' },
            { type: 'join' },
            { type: 'join', room: 5 },
            { type: 'join', room, since: 'abc' },
            { type: 'leave' },
            { type: 'send', room },
            { type: 'send', text: 'no room' },
            { type: 'send', room, text: 5 },
            { type: 'send', room, text: 'x', ref: 7 },
            { type: 'typing' },
        ];
        for (const f of frames) {
            c.send(f);
            assertError(await c.next('error'), 'bad_request', `frame ${JSON.stringify(f)}:`);
        }
        await expectStillOpen(c);
        const hist = await fetchAllMessages(srv.url, room);
        assert.equal(hist.length, 0);
        await c.close();
    }));
});
