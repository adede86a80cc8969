// REST interface of docs/PROTOCOL.md on a single node: rooms, history paging,
// posting, members, errors, health, metrics and the static UI.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { api, connectUser, fetchAllMessages, uniq } from '../lib/client.mjs';
import { RELAXED_RATE_ENV, startServer, stopAll, withLogs } from '../lib/server.mjs';

const T = { timeout: 120000 };
const JSON_CT = 'application/json; charset=utf-8';

let srv;

before(async () => {
    srv = await startServer({ env: RELAXED_RATE_ENV });
});

after(stopAll);

function assertJsonError(r, status, code, ctx = '') {
    assert.equal(r.status, status, `${ctx} expected HTTP ${status}, got ${r.status}: ${r.text.slice(0, 300)}`);
    assert.equal(r.headers['content-type'], JSON_CT, `${ctx} content-type of an error`);
    assert.ok(r.json && r.json.error, `${ctx} error body must be {"error":{...}}: ${r.text.slice(0, 300)}`);
    assert.equal(typeof r.json.error.code, 'string', `${ctx} error.code`);
    assert.equal(typeof r.json.error.message, 'string', `${ctx} error.message`);
    if (code) assert.equal(r.json.error.code, code, `${ctx} error code`);
}

function post(room, body, headers) {
    return api(srv.url, `/api/rooms/${room}/messages`, { method: 'POST', body, headers });
}

async function seed(room, n, user = 'seeder') {
    for (let i = 1; i <= n; i++) {
        const r = await post(room, { user, text: `msg ${i}` });
        assert.equal(r.status, 201, `seed ${i}: ${r.status} ${r.text}`);
        assert.equal(r.json.id, i);
    }
}

const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe('health, readiness, metrics', () => {
    it('GET /healthz is 200 {"status":"ok","node":ID}', T, withLogs(async () => {
        const r = await api(srv.url, '/healthz');
        assert.equal(r.status, 200);
        assert.equal(r.headers['content-type'], JSON_CT);
        assert.deepEqual(r.json, { status: 'ok', node: `test-${srv.port}` });
    }));

    it('GET /readyz is 200 in single-node mode', T, withLogs(async () => {
        const r = await api(srv.url, '/readyz');
        assert.equal(r.status, 200, r.text);
    }));

    it('GET /metrics is Prometheus text with turbochat_ series', T, withLogs(async () => {
        const room = uniq('met');
        assert.equal((await post(room, { user: 'm', text: 'count me' })).status, 201);
        const r = await api(srv.url, '/metrics');
        assert.equal(r.status, 200);
        assert.match(r.headers['content-type'] || '', /^text\/plain/);
        assert.match(r.text, /^turbochat_[a-z0-9_]+(\{[^}]*\})? [0-9.eE+-]+$/m, 'a sample line turbochat_*');
        assert.match(r.text, /^# TYPE turbochat_[a-z0-9_]+ (counter|gauge|histogram|summary|untyped)$/m);
        for (const line of r.text.split('\n')) {
            if (line === '' || line.startsWith('#')) continue;
            assert.match(line, /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? [-+0-9.eEInfNa]+( [0-9]+)?$/, `bad exposition line: ${line}`);
        }
    }));
});

describe('static UI', () => {
    it('GET / serves HTML with an ETag; If-None-Match answers 304', T, withLogs(async () => {
        const r = await api(srv.url, '/');
        assert.equal(r.status, 200);
        assert.match(r.headers['content-type'] || '', /^text\/html/);
        assert.match(r.text, /<html|<!doctype html/i);
        const etag = r.headers.etag;
        assert.ok(etag, 'ETag header on /');
        const r2 = await api(srv.url, '/', { headers: { 'If-None-Match': etag } });
        assert.equal(r2.status, 304);
        assert.equal(r2.text, '');
        const r3 = await api(srv.url, '/', { headers: { 'If-None-Match': '"something-else"' } });
        assert.equal(r3.status, 200);
    }));
});

describe('rooms and members', () => {
    it('GET /api/rooms lists name, last_id and distinct online users', T, withLogs(async () => {
        const room = uniq('lobby');
        await seed(room, 3, 'poster');
        const a1 = await connectUser(srv.wsUrl, 'ronline', [room]);
        const a2 = await connectUser(srv.wsUrl, 'ronline', [room]);
        const b = await connectUser(srv.wsUrl, 'ronline2', [room]);
        const r = await api(srv.url, '/api/rooms');
        assert.equal(r.status, 200);
        assert.equal(r.headers['content-type'], JSON_CT);
        assert.ok(Array.isArray(r.json.rooms));
        const entry = r.json.rooms.find((x) => x.name === room);
        assert.ok(entry, `room ${room} missing from ${r.text.slice(0, 500)}`);
        assert.equal(entry.last_id, 3);
        assert.equal(entry.online, 2, 'online counts distinct users');

        const m = await api(srv.url, `/api/rooms/${room}/members`);
        assert.equal(m.status, 200);
        assert.equal(m.headers['content-type'], JSON_CT);
        assert.equal(m.json.room, room);
        assert.deepEqual([...m.json.members].sort(), ['ronline', 'ronline2']);

        await b.close();
        await a1.next((f) => f.type === 'presence' && f.user === 'ronline2' && f.event === 'leave');
        const m2 = await api(srv.url, `/api/rooms/${room}/members`);
        assert.deepEqual(m2.json.members, ['ronline']);
        const r2 = await api(srv.url, '/api/rooms');
        assert.equal(r2.json.rooms.find((x) => x.name === room).online, 1);
        await Promise.all([a1.close(), a2.close()]);
    }));
});

describe('history paging', () => {
    const room = uniq('paging');
    const N = 230;
    const url = (q) => `/api/rooms/${room}/messages${q}`;
    const ids = (r) => r.json.messages.map((m) => m.id);

    before(async () => {
        await seed(room, N);
    });

    it('without before/after: the newest 50 by default, ascending, has_more', T, withLogs(async () => {
        const r = await api(srv.url, url(''));
        assert.equal(r.status, 200);
        assert.equal(r.headers['content-type'], JSON_CT);
        assert.equal(r.json.room, room);
        assert.deepEqual(ids(r), range(N - 49, N));
        assert.equal(r.json.has_more, true);
        const m = r.json.messages[0];
        assert.deepEqual(Object.keys(m).filter((k) => ['room', 'id', 'user', 'text', 'ts'].includes(k)).sort(), ['id', 'room', 'text', 'ts', 'user']);
        assert.equal(m.room, room);
        assert.equal(m.user, 'seeder');
        assert.equal(m.text, `msg ${m.id}`);
        assert.ok(Number.isInteger(m.ts));
    }));

    it('limit: explicit, clamped to 200, and 0/-1/abc/empty refused with 400', T, withLogs(async () => {
        const r10 = await api(srv.url, url('?limit=10'));
        assert.deepEqual(ids(r10), range(N - 9, N));
        assert.equal(r10.json.has_more, true);
        for (const lim of [201, 500, 100000]) {
            const r = await api(srv.url, url(`?limit=${lim}`));
            assert.equal(r.status, 200);
            assert.deepEqual(ids(r), range(N - 199, N), `limit=${lim} clamps to 200`);
            assert.equal(r.json.has_more, true);
        }
        const all = await api(srv.url, url('?after=0&limit=1000'));
        assert.deepEqual(ids(all), range(1, 200));
        assert.equal(all.json.has_more, true);
        for (const lim of ['0', '-1', 'abc', '', '1.5x']) {
            assertJsonError(await api(srv.url, url(`?limit=${lim}`)), 400, 'bad_request', `limit=${lim}:`);
        }
    }));

    it('before: the newest limit with id < before; has_more towards older', T, withLogs(async () => {
        let r = await api(srv.url, url('?before=20&limit=10'));
        assert.deepEqual(ids(r), range(10, 19));
        assert.equal(r.json.has_more, true);
        r = await api(srv.url, url('?before=11&limit=10'));
        assert.deepEqual(ids(r), range(1, 10));
        assert.equal(r.json.has_more, false);
        r = await api(srv.url, url('?before=5&limit=10'));
        assert.deepEqual(ids(r), range(1, 4));
        assert.equal(r.json.has_more, false);
        r = await api(srv.url, url('?before=1'));
        assert.deepEqual(ids(r), []);
        assert.equal(r.json.has_more, false);
        r = await api(srv.url, url(`?before=${N + 100}&limit=5`));
        assert.deepEqual(ids(r), range(N - 4, N));
        assert.equal(r.json.has_more, true);
    }));

    it('after: the oldest limit with id > after; has_more towards newer', T, withLogs(async () => {
        let r = await api(srv.url, url('?after=100&limit=10'));
        assert.deepEqual(ids(r), range(101, 110));
        assert.equal(r.json.has_more, true);
        r = await api(srv.url, url(`?after=${N - 10}&limit=10`));
        assert.deepEqual(ids(r), range(N - 9, N));
        assert.equal(r.json.has_more, false);
        r = await api(srv.url, url(`?after=${N - 5}&limit=10`));
        assert.deepEqual(ids(r), range(N - 4, N));
        assert.equal(r.json.has_more, false);
        r = await api(srv.url, url(`?after=${N}`));
        assert.deepEqual(ids(r), []);
        assert.equal(r.json.has_more, false);
        r = await api(srv.url, url('?after=0'));
        assert.deepEqual(ids(r), range(1, 50));
        assert.equal(r.json.has_more, true);
    }));

    it('paging backwards with before covers everything exactly once', T, withLogs(async () => {
        const got = [];
        let q = '?limit=37';
        for (let pages = 0; pages < 20; pages++) {
            const r = await api(srv.url, url(q));
            assert.equal(r.status, 200);
            got.unshift(...ids(r));
            if (!r.json.has_more) break;
            q = `?limit=37&before=${ids(r)[0]}`;
        }
        assert.deepEqual(got, range(1, N));
        const forward = await fetchAllMessages(srv.url, room);
        assert.deepEqual(forward.map((m) => m.id), range(1, N));
    }));

    it('an empty room answers an empty page', T, withLogs(async () => {
        const r = await api(srv.url, `/api/rooms/${uniq('empty')}/messages`);
        assert.equal(r.status, 200, r.text);
        assert.deepEqual(r.json.messages, []);
        assert.equal(r.json.has_more, false);
    }));
});

describe('POST messages', () => {
    it('201 with the stored message, broadcast to members; a retried ref answers 200 with the original', T, withLogs(async () => {
        const room = uniq('post');
        const w = await connectUser(srv.wsUrl, 'pw', [room]);
        const r = await post(room, { user: 'poster', text: '  hello rest  ', ref: 'p-1' });
        assert.equal(r.status, 201, r.text);
        assert.equal(r.headers['content-type'], JSON_CT);
        assert.equal(r.json.room, room);
        assert.equal(r.json.id, 1);
        assert.equal(r.json.user, 'poster');
        assert.equal(r.json.text, 'hello rest');
        assert.ok(Number.isInteger(r.json.ts));
        const m = await w.message(room, 1);
        assert.equal(m.text, 'hello rest');
        assert.equal(m.user, 'poster');
        assert.equal(m.ts, r.json.ts);

        const again = await post(room, { user: 'poster', text: 'changed', ref: 'p-1' });
        assert.equal(again.status, 200, again.text);
        assert.equal(again.json.id, r.json.id);
        assert.equal(again.json.text, 'hello rest');
        assert.equal(again.json.ts, r.json.ts);

        const noRef = await post(room, { user: 'poster', text: 'no ref' });
        assert.equal(noRef.status, 201);
        assert.equal(noRef.json.id, 2);
        await w.message(room, 2);
        assert.equal(w.seen((f) => f.type === 'message' && f.id === 1).length, 1, 'a retried ref must not be broadcast again');
        const hist = await fetchAllMessages(srv.url, room);
        assert.deepEqual(hist.map((x) => x.text), ['hello rest', 'no ref']);
        await w.close();
    }));

    const invalid = [
        ['missing user', { text: 'x' }, 'bad_request'],
        ['missing text', { user: 'u' }, 'bad_request'],
        ['user not a string', { user: 5, text: 'x' }, 'bad_request'],
        ['text not a string', { user: 'u', text: ['x'] }, 'bad_request'],
        ['ref not a string', { user: 'u', text: 'x', ref: 1 }, 'bad_request'],
        ['ref of 65 chars', { user: 'u', text: 'x', ref: 'r'.repeat(65) }, 'bad_request'],
        ['user of 33 chars', { user: 'u'.repeat(33), text: 'x' }, 'bad_request'],
        ['empty user', { user: '  ', text: 'x' }, 'bad_request'],
        ['user with control char', { user: 'a\u0001', text: 'x' }, 'bad_request'],
        ['empty text', { user: 'u', text: '' }, 'text_invalid'],
        ['blank text', { user: 'u', text: ' \n ' }, 'text_invalid'],
        ['4001 code points', { user: 'u', text: 'z'.repeat(4001) }, 'text_invalid'],
        ['NUL in text', { user: 'u', text: 'a\u0000b' }, 'text_invalid'],
        ['ESC in text', { user: 'u', text: 'a\u001bb' }, 'text_invalid'],
    ];
    for (const [what, body, code] of invalid) {
        it(`400 ${code}: ${what}`, T, withLogs(async () => {
            const room = uniq('inv');
            assertJsonError(await post(room, body), 400, code, `${what}:`);
            const hist = await api(srv.url, `/api/rooms/${room}/messages`);
            if (hist.status === 200) assert.deepEqual(hist.json.messages, []);
        }));
    }

    it('400 bad_json for a body that is not JSON or not an object', T, withLogs(async () => {
        const room = uniq('bj');
        assertJsonError(await post(room, 'not json'), 400, 'bad_json', 'not json:');
        assertJsonError(await post(room, '{"user":"u",'), 400, 'bad_json', 'truncated:');
        const arr = await post(room, '[1,2,3]');
        assertJsonError(arr, 400, undefined, 'array body:');
        assert.ok(['bad_json', 'bad_request'].includes(arr.json.error.code));
        const empty = await post(room, '');
        assertJsonError(empty, 400, undefined, 'empty body:');
    }));

    it('400 room_invalid for a bad room name in the path', T, withLogs(async () => {
        for (const room of ['.hidden', 'r'.repeat(65), 'caf%C3%A9', 'a%20b']) {
            assertJsonError(await post(room, { user: 'u', text: 'x' }), 400, 'room_invalid', `POST room ${room}:`);
            assertJsonError(await api(srv.url, `/api/rooms/${room}/messages`), 400, 'room_invalid', `GET room ${room}:`);
        }
        const ok = await post('R'.repeat(64), { user: 'u', text: 'x' });
        assert.equal(ok.status, 201, ok.text);
    }));

    it('rooms whose names end in dots are their own rooms over REST, as over WebSocket', T, withLogs(async () => {
        const base = uniq('dot');
        const rooms = [base, `${base}.`, `${base}..`, `${base}.x`];
        const member = await connectUser(srv.wsUrl, 'dotty', [`${base}.`]);
        for (const room of rooms) assert.equal((await post(room, { user: 'u', text: `in ${room}` })).status, 201);
        for (const room of rooms) {
            const texts = (await fetchAllMessages(srv.url, room)).map((m) => m.text);
            assert.deepEqual(texts, [`in ${room}`], `history of ${room}`);
        }
        const live = await member.next((f) => f.type === 'message');
        assert.equal(live.room, `${base}.`);
        assert.equal(live.text, `in ${base}.`);
        await member.close();
    }));

    it('a POST from a foreign browser Origin is refused (403) and not stored; the own origin is accepted', T, withLogs(async () => {
        const room = uniq('origin');
        const evil = await post(room, { user: 'u', text: 'csrf' }, { Origin: 'http://evil.example' });
        assertJsonError(evil, 403, undefined, 'foreign origin:');
        const own = await post(room, { user: 'u', text: 'same origin' }, { Origin: srv.url });
        assert.equal(own.status, 201, own.text);
        const hist = await fetchAllMessages(srv.url, room);
        assert.deepEqual(hist.map((m) => m.text), ['same origin']);
    }));

    it('413 for an oversize body', T, withLogs(async () => {
        const big = JSON.stringify({ user: 'u', text: 'x'.repeat(200 * 1024) });
        assertJsonError(await post(uniq('big'), big), 413, undefined, 'oversize body:');
        const h = await api(srv.url, '/healthz');
        assert.equal(h.status, 200);
    }));
});

describe('errors', () => {
    it('404 with a JSON error for unknown paths under /api', T, withLogs(async () => {
        for (const p of ['/api/nope', '/api/rooms/x/nope', '/api/rooms/x/messages/extra', '/api/']) {
            assertJsonError(await api(srv.url, p), 404, undefined, `GET ${p}:`);
        }
    }));

    it('405 with a JSON error for a wrong method', T, withLogs(async () => {
        const cases = [
            ['DELETE', '/api/rooms'],
            ['POST', '/api/rooms'],
            ['PUT', '/api/rooms/x/messages'],
            ['DELETE', '/api/rooms/x/messages'],
            ['POST', '/api/rooms/x/members'],
        ];
        for (const [method, p] of cases) {
            const body = method === 'GET' ? undefined : '{}';
            assertJsonError(await api(srv.url, p, { method, body }), 405, undefined, `${method} ${p}:`);
        }
    }));
});
