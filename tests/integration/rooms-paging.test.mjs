// GET /api/rooms in pages (issue 11): with 100,000 rooms one unpaged call
// cost 0.6 s of CPU and 4.4 MB, and 48 callers took every SQLite reader. A
// page holds `limit` rooms (default 200, at most 500) after `after`, sorted by
// name, with `next` while more exist; every room comes exactly once.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { api } from '../lib/client.mjs';
import { restPost } from '../lib/lifecycle.mjs';
import { RELAXED_RATE_ENV, startServer, stopAll, withLogs } from '../lib/server.mjs';

const T = { timeout: 120000 };
const ROOMS = 1234;

let srv;
const names = [];

before(async () => {
    srv = await startServer({ env: RELAXED_RATE_ENV });
    for (let i = 0; i < ROOMS; i++) names.push(`r${String(i).padStart(5, '0')}`);
    for (let i = 0; i < ROOMS; i += 50) {
        await Promise.all(names.slice(i, i + 50).map(async (room) => {
            const r = await restPost(srv.url, room, { user: 'filler', text: `hello ${room}` });
            assert.equal(r.status, 201, r.text);
        }));
    }
});

after(stopAll);

async function page(query) {
    const r = await api(srv.url, `/api/rooms${query}`);
    assert.equal(r.status, 200, r.text);
    return r.json;
}

describe('GET /api/rooms', () => {
    it('pages of 200 by default, every room once, in order', T, withLogs(async () => {
        const seen = [];
        let next = '';
        let pages = 0;
        do {
            const body = await page(next ? `?after=${encodeURIComponent(next)}` : '');
            assert.ok(body.rooms.length <= 200, `page of ${body.rooms.length}`);
            seen.push(...body.rooms.map((r) => r.name));
            next = body.next || '';
            pages++;
        } while (next);
        assert.deepEqual(seen, names, 'every room once, sorted');
        assert.equal(pages, Math.ceil(ROOMS / 200));
    }));

    it('limit is clamped to 500 and bad paging parameters are 400', T, withLogs(async () => {
        const big = await page('?limit=100000');
        assert.equal(big.rooms.length, 500);
        assert.equal(big.next, names[499]);
        const last = await page(`?after=${names[ROOMS - 2]}`);
        assert.deepEqual(last.rooms.map((r) => r.name), [names[ROOMS - 1]]);
        assert.equal(last.next, undefined, 'no next after the last page');
        for (const q of ['?limit=0', '?limit=x', '?after=.accounts', '?after=a%20b']) {
            const r = await api(srv.url, `/api/rooms${q}`);
            assert.equal(r.status, 400, `${q}: ${r.status} ${r.text}`);
            assert.equal(r.json.error.code, 'bad_request');
        }
    }));
});
