// Full-text search, GET /api/search (docs/PROTOCOL.md "Search"), written from
// the contract against the real binary: substrings anywhere in a word, case
// not mattering, Chinese, Japanese and Korean (three or more characters
// through the index, one- and two-character words through the short-word
// path), every word required, newest first, paging with limit and next/before
// until next is absent (no duplicates, no gaps; also past the 5,000
// candidates one request looks at), the room and from filters,
// messages found by what they say now (edited: the new text; deleted: not at
// all), snippets, every validation error with its status and code, query
// syntax taken literally, and what the caller may read: private rooms and DMs
// under auth = accounts, a token's rooms under auth = token.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { api, uniq } from '../lib/client.mjs';
import {
    accountsEnv,
    addMember,
    createRoom,
    dm,
    expectStatus,
    removeMember,
    signup,
    uname,
} from '../lib/accounts.mjs';
import { assertMessageShape, cpLen, mintToken, restDelete, restEdit, restPost } from '../lib/lifecycle.mjs';
import { RELAXED_RATE_ENV, startServer, stopAll, withLogs } from '../lib/server.mjs';

const T = { timeout: 180000 };
const enc = encodeURIComponent;
const ELLIPSIS = '\u2026';

after(stopAll);

// A word unique to this run and call, of letters that spell no English word
// and hold neither "x" nor "y" (the short-word tests look for "xy").
let nonceSeq = 0;
function nonce(prefix = 'q') {
    nonceSeq += 1;
    const abc = 'bcdfghjkmnpqrstvwz';
    let s = '';
    for (let n = process.pid * 1000 + nonceSeq * 7919 + Math.floor(Math.random() * 997); n > 0; n = Math.floor(n / abc.length)) {
        s += abc[n % abc.length];
    }
    return `${prefix}${s}${abc[nonceSeq % abc.length]}`;
}

// A room name unique to this run.
const rname = (p) => uniq(p).replace(/[^A-Za-z0-9_.-]/g, '');

// GET /api/search with the given parameters (undefined ones left out).
function searchRaw(url, params, headers) {
    const qs = Object.entries(params)
        .filter(([, v]) => v !== undefined && v !== null)
        .map(([k, v]) => `${enc(k)}=${enc(v)}`)
        .join('&');
    return api(url, `/api/search${qs ? `?${qs}` : ''}`, { headers });
}

function show(r, req = '') {
    return `${req} -> ${r.status} ${r.text.slice(0, 600)}`;
}

// One page: asserted 200 with the answer's shape.
async function search(url, params, headers) {
    const r = await searchRaw(url, params, headers);
    const req = `GET /api/search ${JSON.stringify(params)}`;
    assert.equal(r.status, 200, `expected 200: ${show(r, req)}`);
    assert.match(String(r.headers['content-type']), /^application\/json/, `content type: ${show(r, req)}`);
    assert.ok(r.json && Array.isArray(r.json.results), `{results: [...]} expected: ${show(r, req)}`);
    if ('next' in r.json) {
        assert.equal(typeof r.json.next, 'string', `next is a decimal string: ${show(r, req)}`);
        assert.match(r.json.next, /^[0-9]+$/, `next is a decimal string: ${show(r, req)}`);
    }
    for (const m of r.json.results) {
        assertMessageShape(m, req);
        assert.equal(m.deleted, false, `a result is a live message: ${JSON.stringify(m)}`);
        assert.ok(Array.isArray(m.snippet), `each result carries a snippet array: ${JSON.stringify(m)}`);
    }
    return r.json;
}

// Every result of a query, paging with before=next until next is absent.
// Resolves { results, pages } (pages: the result count of each page).
async function searchAll(url, params, headers, maxPages = 60) {
    const results = [];
    const pages = [];
    let before;
    for (let i = 0; ; i++) {
        assert.ok(i < maxPages, `more than ${maxPages} pages for ${JSON.stringify(params)}`);
        const page = await search(url, { ...params, before }, headers);
        if (params.limit !== undefined) {
            assert.ok(page.results.length <= Math.min(Number(params.limit), 100), `a page holds at most limit results: ${page.results.length}`);
        }
        results.push(...page.results);
        pages.push(page.results.length);
        if (page.next === undefined) break;
        before = page.next;
    }
    return { results, pages };
}

// Search expecting an error answer.
async function searchError(url, params, status, code, headers) {
    const r = await searchRaw(url, params, headers);
    expectStatus(r, status, code, `GET /api/search ${JSON.stringify(params)}`);
    return r;
}

const key = (m) => `${m.room}/${m.id}`;
const keys = (results) => results.map(key);
const sortedKeys = (results) => keys(results).sort();

// Results come newest first: ts never increases along the list.
function assertNewestFirst(results, ctx = '') {
    for (let i = 1; i < results.length; i++) {
        assert.ok(
            results[i].ts <= results[i - 1].ts,
            `${ctx}: results newest first, but ${key(results[i - 1])} (ts ${results[i - 1].ts}) comes before ${key(results[i])} (ts ${results[i].ts})`,
        );
    }
}

function assertNoDuplicates(results, ctx = '') {
    const seen = new Set();
    for (const k of keys(results)) {
        assert.ok(!seen.has(k), `${ctx}: ${k} appears twice`);
        seen.add(k);
    }
}

// The snippet of a result: parts {text} and {text, match: true}; every match
// part holds one of the words (case-insensitively); the parts put together
// are the text, or pieces of it with … where it was cut. Resolves the joined
// snippet.
function assertSnippet(m, words, ctx = '') {
    const s = JSON.stringify(m.snippet);
    assert.ok(Array.isArray(m.snippet) && m.snippet.length > 0, `${ctx}: snippet must be a non-empty array: ${s}`);
    for (const p of m.snippet) {
        assert.equal(typeof p.text, 'string', `${ctx}: snippet part text: ${s}`);
        assert.ok(p.match === undefined || p.match === true, `${ctx}: match is true or absent: ${s}`);
    }
    const matches = m.snippet.filter((p) => p.match === true);
    assert.ok(matches.length > 0, `${ctx}: the snippet marks the match (a part with match: true): ${s} of text ${JSON.stringify(m.text)}`);
    const lower = words.map((w) => w.toLowerCase());
    for (const p of matches) {
        const t = p.text.split(ELLIPSIS).join('').toLowerCase();
        assert.ok(
            lower.some((w) => t.includes(w) || w.includes(t)),
            `${ctx}: match part ${JSON.stringify(p.text)} holds one of ${JSON.stringify(words)}: ${s}`,
        );
    }
    const joined = m.snippet.map((p) => p.text).join('');
    if (joined !== m.text) {
        assert.ok(joined.includes(ELLIPSIS), `${ctx}: a snippet that is not the whole text shows … where it was cut: ${JSON.stringify(joined)}`);
        for (const piece of joined.split(ELLIPSIS)) {
            assert.ok(m.text.includes(piece), `${ctx}: snippet piece ${JSON.stringify(piece)} is not in the text ${JSON.stringify(m.text)}`);
        }
    }
    return joined;
}

// ------------------------------------------------------------------ auth off

describe('search with auth off', () => {
    let srv;

    before(async () => {
        srv = await startServer({ env: RELAXED_RATE_ENV });
    });

    after(async () => {
        if (srv) await srv.stop();
    });

    async function post(room, user, text) {
        const r = await restPost(srv.url, room, { user, text });
        assert.equal(r.status, 201, `POST in ${room}: ${r.status} ${r.text.slice(0, 300)}`);
        return r.json;
    }

    it('finds a substring inside a word, without regard to case', T, withLogs(async () => {
        const room = rname('sub');
        const hello = await post(room, 'ann', 'Hello wonderful World');
        const jello = await post(room, 'ann', 'jello shots for everyone');
        await post(room, 'ann', 'help me out'); // "hel" but not "ello"
        const shout = await post(room, 'bo', 'SHOUTING LOUDLY HERE');

        const ello = await search(srv.url, { q: 'ello', room });
        assert.deepEqual(sortedKeys(ello.results), keys([hello, jello]).sort(), 'ello finds Hello and jello, not help');
        const upper = await search(srv.url, { q: 'ELLO', room });
        assert.deepEqual(sortedKeys(upper.results), keys([hello, jello]).sort(), 'ELLO finds the same');
        const mixed = await search(srv.url, { q: 'hElLo', room });
        assert.deepEqual(keys(mixed.results), keys([hello]), 'hElLo finds Hello');
        const inside = await search(srv.url, { q: 'nderfu', room });
        assert.deepEqual(keys(inside.results), keys([hello]), 'the middle of a word');
        const lower = await search(srv.url, { q: 'shouting', room });
        assert.deepEqual(keys(lower.results), keys([shout]), 'lower case finds upper case');
        const m = lower.results[0];
        assert.equal(m.text, 'SHOUTING LOUDLY HERE');
        assert.equal(m.user, 'bo');
        assert.equal(m.room, room);
        const none = await search(srv.url, { q: 'wonderfull', room });
        assert.deepEqual(none.results, [], 'a longer word than the text has finds nothing');

        // without a room filter, a unique piece of a word finds just its message
        const w = nonce('in');
        const tagged = await post(rname('any'), 'cy', `pre${w}post and more`);
        const found = await search(srv.url, { q: w.slice(1).toUpperCase() });
        assert.deepEqual(keys(found.results), keys([tagged]));
        assert.equal(found.next, undefined, 'no next when everything was seen');
    }));

    it('finds Chinese, Japanese and Korean, also two-character words', T, withLogs(async () => {
        const room = rname('cjk');
        const meeting = await post(room, 'ken', '今日は東京で会議があります');
        const duck = await post(room, 'li', '我们明天去北京吃烤鸭');
        const tower = await post(room, 'ken', '東京タワーは高いです');
        const osaka = await post(room, 'ken', '昨日は大阪にいました');
        const korean = await post(room, 'min', '안녕하세요 여러분 반갑습니다');

        const cases = [
            ['会議があり', [meeting]],
            ['京で会', [meeting]],
            ['北京吃烤鸭', [duck]],
            ['明天去', [duck]],
            ['タワー', [tower]],
            ['하세요', [korean]],
            ['東京', [tower, meeting]], // two characters: the short-word path
            ['大阪', [osaka]],
            ['北京', [duck]],
            ['京', [tower, duck, meeting]], // one character
            ['東京 会議', [meeting]], // two two-character words
            ['東京 タワー', [tower]],
            ['大阪 東京', []],
        ];
        for (const [q, want] of cases) {
            const page = await search(srv.url, { q, room });
            assert.deepEqual(sortedKeys(page.results), keys(want).sort(), `q=${q}`);
            assertNewestFirst(page.results, `q=${q}`);
            for (const m of page.results) assertSnippet(m, q.split(' '), `q=${q}`);
        }
    }));

    it('requires every word, long and short, in any order', T, withLogs(async () => {
        const room = rname('words');
        const redApplePie = await post(room, 'ann', 'red apple pie');
        const greenAppleTart = await post(room, 'ann', 'green apple tart');
        const redCherryPie = await post(room, 'ann', 'red cherry pie');

        const cases = [
            ['apple red', [redApplePie]],
            ['pie red', [redApplePie, redCherryPie]],
            ['RED   pie', [redApplePie, redCherryPie]],
            ['red apple tart', []],
            ['apple re', [redApplePie, greenAppleTart]], // "re": short, checked on each candidate
            ['ap pi', [redApplePie]], // only short words
            ['ta ap gr', [greenAppleTart]],
            ['e', [redApplePie, greenAppleTart, redCherryPie]],
        ];
        for (const [q, want] of cases) {
            const page = await search(srv.url, { q, room });
            assert.deepEqual(sortedKeys(page.results), keys(want).sort(), `q=${q}`);
        }
        // words split at any white space
        const tabbed = await search(srv.url, { q: 'apple\tred\n', room });
        assert.deepEqual(keys(tabbed.results), keys([redApplePie]), 'q split at tab and newline');
        // eight words are allowed
        const eight = await search(srv.url, { q: 'r e d a p p l e', room });
        assert.deepEqual(keys(eight.results), keys([redApplePie]), 'eight one-letter words');
    }));

    it('pages through 45 results newest first with limit and next, no duplicates, no gaps', T, withLogs(async () => {
        const room = rname('page');
        const w = nonce('pg');
        const want = [];
        for (let i = 0; i < 54; i++) {
            if (i % 6 === 5) {
                await post(room, 'hay', `haystack number ${i}`); // matches neither query
            } else {
                want.push(await post(room, i % 2 ? 'odd' : 'even', `needle ${w} number ${i} xy`));
            }
        }
        assert.equal(want.length, 45, 'setup: 45 matching messages');
        // ids of one room grow with time: newest first is descending id
        const newestFirst = [...want].sort((a, b) => b.id - a.id);

        for (const [label, params] of [
            ['trigram word, room filter', { q: w, room, limit: 10 }],
            ['trigram word, every room', { q: w, limit: 10 }],
            ['two words', { q: `needle ${w.toUpperCase()}`, limit: 10 }],
            ['short word, room filter', { q: 'xy', room, limit: 10 }],
            ['limit 7', { q: w, room, limit: 7 }],
        ]) {
            const { results, pages } = await searchAll(srv.url, params);
            assertNoDuplicates(results, label);
            assert.deepEqual(sortedKeys(results), keys(want).sort(), `${label}: every matching message, once (pages ${pages})`);
            assertNewestFirst(results, label);
            const tsOrdered = results.map((m) => m.ts);
            assert.deepEqual(tsOrdered, newestFirst.map((m) => m.ts), `${label}: newest first`);
            assert.equal(pages[0], params.limit, `${label}: the first page is full (pages ${pages})`);
            for (const m of results) assert.ok(m.text.includes(w), `${label}: ${JSON.stringify(m)}`);
        }

        // the default limit is 20
        const first = await search(srv.url, { q: w, room });
        assert.equal(first.results.length, 20, 'default limit 20');
        assert.equal(typeof first.next, 'string', 'more results: next is present');
        assert.deepEqual(first.results.map((m) => m.ts), newestFirst.slice(0, 20).map((m) => m.ts), 'the newest 20');
        // a message that arrives while a client pages is newer than the pages
        // still to come: they go on without repeating or skipping one
        const p1 = await search(srv.url, { q: w, room, limit: 15 });
        const late = await post(room, 'late', `needle ${w} came late xy`);
        const seen = [...p1.results];
        for (let next = p1.next; next !== undefined; ) {
            const p = await search(srv.url, { q: w, room, limit: 15, before: next });
            seen.push(...p.results);
            next = p.next;
        }
        assertNoDuplicates(seen, 'paging while a message arrives');
        assert.deepEqual(sortedKeys(seen), keys(want).sort(), 'the pages after it hold exactly the older ones');
        const fresh = await search(srv.url, { q: w, room, limit: 1 });
        assert.deepEqual(keys(fresh.results), keys([late]), 'a new search starts with it');
        // limit 1 walks them one by one
        const one = await searchAll(srv.url, { q: w, room, limit: 1 });
        assert.equal(one.results.length, 46, `limit 1: 46 pages of one (pages ${one.pages.length})`);
        assertNoDuplicates(one.results, 'limit 1');
    }));

    it('clamps limit to 100', T, withLogs(async () => {
        const room = rname('clamp');
        const w = nonce('cl');
        const want = [];
        for (let i = 0; i < 103; i++) want.push(await post(room, 'cl', `clamp ${w} ${i}`));
        const big = await search(srv.url, { q: w, limit: 100000 });
        assert.equal(big.results.length, 100, 'limit above 100 is clamped to 100');
        assert.equal(typeof big.next, 'string', 'next after a full page of 100');
        const rest = await search(srv.url, { q: w, limit: 100000, before: big.next });
        assert.equal(rest.results.length, 3, 'the 3 that remain');
        assert.equal(rest.next, undefined, 'no next at the end');
        const all = [...big.results, ...rest.results];
        assertNoDuplicates(all, 'clamp');
        assert.deepEqual(sortedKeys(all), keys(want).sort());
    }));

    it('filters by room and by author (ASCII case-insensitive)', T, withLogs(async () => {
        const w = nonce('fl');
        const r1 = rname('f1');
        const r2 = rname('f2');
        const a1 = await post(r1, 'Alice', `${w} one`);
        const b1 = await post(r1, 'bob', `${w} two`);
        const a2 = await post(r2, 'alice', `${w} three`);
        const b2 = await post(r2, 'Bob', `${w} four`);

        const every = await search(srv.url, { q: w });
        assert.deepEqual(sortedKeys(every.results), keys([a1, b1, a2, b2]).sort(), 'no filter: every room');
        const inR1 = await search(srv.url, { q: w, room: r1 });
        assert.deepEqual(sortedKeys(inR1.results), keys([a1, b1]).sort(), 'room filter');
        for (const from of ['alice', 'ALICE', 'Alice', ' alice ']) {
            const byAlice = await search(srv.url, { q: w, from });
            assert.deepEqual(sortedKeys(byAlice.results), keys([a1, a2]).sort(), `from=${JSON.stringify(from)}`);
        }
        const both = await search(srv.url, { q: w, room: r2, from: 'BOB' });
        assert.deepEqual(keys(both.results), keys([b2]), 'room and from together');
        const nobody = await search(srv.url, { q: w, from: 'carol' });
        assert.deepEqual(nobody.results, [], 'from a user who wrote none');
        const otherRoom = await search(srv.url, { q: w, room: rname('empty') });
        assert.deepEqual(otherRoom.results, [], 'room without such messages');
        // from is the author, not a word of the text
        const named = await post(r1, 'dan', `${w} alice was here`);
        const notByName = await search(srv.url, { q: w, from: 'alice' });
        assert.ok(!keys(notByName.results).includes(key(named)), 'a message naming alice is not from alice');
    }));

    it('finds an edited message by its new text and not its old', T, withLogs(async () => {
        const room = rname('edit');
        const w = nonce('ed');
        const m = await post(room, 'eve', `the quick brownfox ${w}`);
        const before0 = await search(srv.url, { q: `brownfox ${w}` });
        assert.deepEqual(keys(before0.results), keys([m]), 'found before the edit');
        const e = await restEdit(srv.url, room, m.id, { text: `a lazy sleepydog ${w}`, user: 'eve' });
        assert.equal(e.status, 200, `PATCH: ${e.status} ${e.text}`);

        const old = await search(srv.url, { q: 'brownfox', room });
        assert.deepEqual(old.results, [], 'the old text finds nothing');
        const neu = await search(srv.url, { q: `sleepydog ${w}` });
        assert.deepEqual(keys(neu.results), keys([m]), 'the new text finds the message');
        const r = neu.results[0];
        assert.equal(r.text, `a lazy sleepydog ${w}`, 'the result is the message as it is now');
        assert.equal(typeof r.edited_ts, 'number', 'edited_ts set');
        assertSnippet(r, ['sleepydog', w], 'edited');

        // a second edit: again only the newest text counts
        const e2 = await restEdit(srv.url, room, m.id, { text: `third version ${w}`, user: 'eve' });
        assert.equal(e2.status, 200, `PATCH 2: ${e2.status} ${e2.text}`);
        assert.deepEqual((await search(srv.url, { q: 'sleepydog', room })).results, [], 'the first edit is forgotten');
        const third = await search(srv.url, { q: w });
        assert.deepEqual(keys(third.results), keys([m]), 'still found, once');
        assert.equal(third.results[0].text, `third version ${w}`);
        // a short word of the old text only (the short-word path reads the message as it is now)
        assert.deepEqual((await search(srv.url, { q: 'fo', room })).results, [], 'short word of the old text');
    }));

    it('does not find a deleted message', T, withLogs(async () => {
        const room = rname('del');
        const w = nonce('dl');
        const keep = await post(room, 'fay', `keep this ${w}`);
        const gone = await post(room, 'fay', `secretword erase this ${w} ai`);
        assert.equal((await search(srv.url, { q: w })).results.length, 2, 'both found before the delete');
        const d = await restDelete(srv.url, room, gone.id, { user: 'fay' });
        assert.equal(d.status, 200, `DELETE: ${d.status} ${d.text}`);

        const after0 = await search(srv.url, { q: w });
        assert.deepEqual(keys(after0.results), keys([keep]), 'only the live message');
        assert.deepEqual((await search(srv.url, { q: 'secretword' })).results, [], 'a word only the deleted one had');
        assert.deepEqual((await search(srv.url, { q: 'ai', room })).results, [], 'short-word path skips it too');
        assert.deepEqual((await search(srv.url, { q: 'er', room })).results, [], 'a short word only the deleted text had');
    }));

    it('snippets mark the matches and cut long texts with …', T, withLogs(async () => {
        const room = rname('snip');
        const short = await post(room, 'gil', 'Hello there General Kenobi');
        const s1 = await search(srv.url, { q: 'kenobi', room });
        assert.deepEqual(keys(s1.results), keys([short]));
        const j1 = assertSnippet(s1.results[0], ['kenobi'], 'short text');
        assert.equal(j1, 'Hello there General Kenobi', 'a short text is shown whole');
        const match1 = s1.results[0].snippet.filter((p) => p.match);
        assert.deepEqual(match1.map((p) => p.text), ['Kenobi'], 'the match part is the text as written');

        const two = await search(srv.url, { q: 'GENERAL hello', room });
        assert.deepEqual(keys(two.results), keys([short]));
        assertSnippet(two.results[0], ['general', 'hello'], 'two words');
        assert.deepEqual(two.results[0].snippet.filter((p) => p.match).map((p) => p.text), ['Hello', 'General'], 'each match marked');

        const filler = (n, tag) => Array.from({ length: n }, (_, i) => `${tag}${i}`).join(' ');
        const longText = `${filler(120, 'lorem')} the hidden treasure lies here ${filler(120, 'ipsum')}`;
        assert.ok(cpLen(longText) > 1000, 'setup: a long text');
        const long = await post(room, 'gil', longText);
        const s2 = await search(srv.url, { q: 'TREASURE', room });
        assert.deepEqual(keys(s2.results), keys([long]));
        assert.equal(s2.results[0].text, longText, 'the result carries the whole text');
        const j2 = assertSnippet(s2.results[0], ['treasure'], 'long text');
        assert.ok(cpLen(j2) < cpLen(longText), `the snippet is shorter than the text: ${cpLen(j2)} of ${cpLen(longText)}`);
        assert.ok(cpLen(j2) <= 240, `the snippet is about 160 characters: ${cpLen(j2)}: ${JSON.stringify(j2)}`);
        assert.ok(j2.startsWith(ELLIPSIS) && j2.endsWith(ELLIPSIS), `cut at both ends: ${JSON.stringify(j2)}`);
        assert.ok(j2.includes('the hidden treasure lies here'), `around the match: ${JSON.stringify(j2)}`);

        // the match at the very start and at the very end of a long text
        const head = await post(room, 'gil', `Beginningword ${filler(150, 'dolor')}`);
        const s3 = await search(srv.url, { q: 'beginningword', room });
        assert.deepEqual(keys(s3.results), keys([head]));
        const j3 = assertSnippet(s3.results[0], ['beginningword'], 'match at the start');
        assert.ok(j3.startsWith('Beginningword') && j3.endsWith(ELLIPSIS), `not cut before, cut after: ${JSON.stringify(j3)}`);
        const tailM = await post(room, 'gil', `${filler(150, 'sit')} Endingword`);
        const s4 = await search(srv.url, { q: 'endingword', room });
        assert.deepEqual(keys(s4.results), keys([tailM]));
        const j4 = assertSnippet(s4.results[0], ['endingword'], 'match at the end');
        assert.ok(j4.startsWith(ELLIPSIS) && j4.endsWith('Endingword'), `cut before, not after: ${JSON.stringify(j4)}`);

        // Japanese: a long text of multi-byte characters
        const jp = `${'あいうえお'.repeat(60)}重要な会議${'かきくけこ'.repeat(60)}`;
        const jpm = await post(room, 'gil', jp);
        const s5 = await search(srv.url, { q: '重要な会議', room });
        assert.deepEqual(keys(s5.results), keys([jpm]));
        const j5 = assertSnippet(s5.results[0], ['重要な会議'], 'Japanese');
        assert.ok(cpLen(j5) < cpLen(jp), 'Japanese snippet shorter than the text');
        const s6 = await search(srv.url, { q: '会議', room }); // short-word path
        assert.deepEqual(keys(s6.results), keys([jpm]));
        assertSnippet(s6.results[0], ['会議'], 'Japanese two-character word');
    }));

    it('case does not matter outside ASCII for words of three or more characters', T, withLogs(async () => {
        const room = rname('fold');
        const munich = await post(room, 'hal', 'Grüße aus MÜNCHEN heute');
        const greek = await post(room, 'hal', 'Ελληνικά ΚΑΛΗΜΕΡΑ');
        assert.deepEqual(keys((await search(srv.url, { q: 'münchen', room })).results), keys([munich]), 'münchen finds MÜNCHEN');
        assert.deepEqual(keys((await search(srv.url, { q: 'GRÜ', room })).results), keys([munich]), 'GRÜ finds Grüße');
        assert.deepEqual(keys((await search(srv.url, { q: 'καλημερα', room })).results), keys([greek]), 'καλημερα finds ΚΑΛΗΜΕΡΑ');
    }));

    // Case outside ASCII: found by the short-word path and marked in snippets.
    it('a snippet marks a match that differs from the word in non-ASCII case', T, withLogs(async () => {
        const room = rname('foldsnip');
        const munich = await post(room, 'hal', 'Grüße aus MÜNCHEN heute');
        const s1 = await search(srv.url, { q: 'münchen', room });
        assert.deepEqual(keys(s1.results), keys([munich]), 'münchen finds MÜNCHEN');
        assertSnippet(s1.results[0], ['münchen'], 'münchen: the snippet marks MÜNCHEN');
        assert.deepEqual(s1.results[0].snippet.filter((p) => p.match).map((p) => p.text), ['MÜNCHEN']);
    }));

    it('case does not matter outside ASCII for one- and two-character words', T, withLogs(async () => {
        const room = rname('foldshort');
        const beer = await post(room, 'hal', 'øl er godt');
        const greek = await post(room, 'hal', 'Ελληνικά ΚΑΛΗΜΕΡΑ');
        assert.deepEqual(keys((await search(srv.url, { q: 'øl', room })).results), keys([beer]), 'øl finds øl');
        assert.deepEqual(keys((await search(srv.url, { q: 'ØL', room })).results), keys([beer]), 'ØL finds øl');
        assert.deepEqual(keys((await search(srv.url, { q: 'ελ', room })).results), keys([greek]), 'ελ finds Ελληνικά');
        assert.deepEqual(keys((await search(srv.url, { q: 'Με', room })).results), keys([greek]), 'Με finds ΚΑΛΗΜΕΡΑ');
    }));

    it('answers every bad parameter with 400 naming it, a bad room with room_invalid, another method with 405', T, withLogs(async () => {
        const room = rname('bad');
        await post(room, 'ivy', 'something to find');
        const bad = [
            [{}, 'missing q'],
            [{ q: '' }, 'empty q'],
            [{ q: '   ' }, 'blank q'],
            [{ q: ' \t\n ' }, 'white space q'],
            [{ q: 'a'.repeat(257) }, 'q of 257 bytes'],
            [{ q: 'é'.repeat(129) }, 'q of 258 bytes in 129 characters'],
            [{ q: 'a b c d e f g h i' }, '9 words'],
            [{ q: 'x', limit: '0' }, 'limit 0'],
            [{ q: 'x', limit: '-1' }, 'limit -1'],
            [{ q: 'x', limit: 'abc' }, 'limit abc'],
            [{ q: 'x', limit: '' }, 'limit empty'],
            [{ q: 'x', limit: '1.5' }, 'limit 1.5'],
            [{ q: 'x', before: 'abc' }, 'before abc'],
            [{ q: 'x', before: '-5' }, 'before -5'],
            [{ q: 'x', before: '12x' }, 'before 12x'],
            [{ q: 'x', before: '' }, 'before empty'],
        ];
        for (const [params, what] of bad) {
            const r = await searchError(srv.url, params, 400, 'bad_request');
            assert.ok(r.json.error.message.length > 0, `${what}: the message says what was wrong`);
        }
        // the message names the parameter
        for (const [params, name] of [
            [{}, 'q'],
            [{ q: 'x', limit: 'abc' }, 'limit'],
            [{ q: 'x', before: 'abc' }, 'before'],
        ]) {
            const r = await searchError(srv.url, params, 400, 'bad_request');
            assert.match(r.json.error.message, new RegExp(`\\b${name}\\b`), `the message names ${name}: ${r.text}`);
        }
        // invalid UTF-8 in q, a control character in from
        expectStatus(await api(srv.url, '/api/search?q=%FF%FEabc'), 400, 'bad_request', 'q not UTF-8');
        expectStatus(await api(srv.url, '/api/search?q=abc&from=%01x'), 400, 'bad_request', 'from with a control character');

        for (const bad of ['bad name!', '.hidden', 'a'.repeat(65), 'with space', 'sl/ash', '']) {
            await searchError(srv.url, { q: 'something', room: bad }, 400, 'room_invalid');
        }

        // right at the limits: 256 bytes, 8 words
        await search(srv.url, { q: 'a'.repeat(256) });
        await search(srv.url, { q: 'é'.repeat(128) });
        await search(srv.url, { q: 'a b c d e f g h' });
        await search(srv.url, { q: '  a b c d e f g h  ' });

        for (const method of ['POST', 'PUT', 'PATCH', 'DELETE']) {
            const r = await api(srv.url, '/api/search?q=something', {
                method,
                headers: { 'Content-Length': 0 },
            });
            assert.equal(r.status, 405, `${method} /api/search: ${r.status} ${r.text}`);
            assert.ok(r.json && r.json.error && typeof r.json.error.code === 'string', `${method}: error body: ${r.text}`);
        }
    }));

    it('takes quotes, *, AND, NOT, -, parentheses and colons literally', T, withLogs(async () => {
        const room = rname('lit');
        const quoted = await post(room, 'jo', 'she said "hi" loudly');
        const star = await post(room, 'jo', 'compute a*b today');
        const plain = await post(room, 'jo', 'compute ab today');
        const nope = await post(room, 'jo', 'NOT this one');
        const dash = await post(room, 'jo', 'use -x flag');
        const ops = await post(room, 'jo', 'OR AND NEAR(x, y) col:value ^caret {braces} [brackets]');
        const apostrophe = await post(room, 'jo', "it's o'clock");

        const cases = [
            ['"', [quoted]],
            ['"hi"', [quoted]],
            ['"hi', [quoted]],
            ['said "hi" loudly', [quoted]],
            ['"she said"', []], // a phrase in quotes is two words, "she and said" (with the quotes)
            ['a*b', [star]],
            ['a*', [star]],
            ['*', [star]],
            ['ab', [plain]],
            ['NOT', [nope]],
            ['not', [nope]],
            ['NOT compute', []],
            ['-x', [dash]],
            ['-x flag', [dash]],
            ['compute -ab', []],
            ['AND', [ops]],
            ['OR', [ops]], // also inside other words? none of the other texts has "or"
            ['NEAR(x,', [ops]],
            ['NEAR(x', [ops]],
            ['(x,', [ops]],
            ['col:value', [ops]],
            ['col:', [ops]],
            [':value', [ops]],
            ['^caret', [ops]],
            ['{braces}', [ops]],
            ['[brackets]', [ops]],
            ["it's", [apostrophe]],
            ["o'clock", [apostrophe]],
            ['""""', []],
            ['\\', []],
            ['%', []],
            ['_', []],
            ['?', []],
        ];
        for (const [q, want] of cases) {
            const r = await searchRaw(srv.url, { q, room });
            assert.ok(r.status < 500, `q=${JSON.stringify(q)} must not be a server error: ${r.status} ${r.text}`);
            assert.equal(r.status, 200, `q=${JSON.stringify(q)}: ${r.status} ${r.text}`);
            assert.deepEqual(sortedKeys(r.json.results), keys(want).sort(), `q=${JSON.stringify(q)}`);
        }
        // and across every room: no 5xx for syntax of any kind
        for (const q of ['"', '""', '"""', 'a"b"c', '*', 'a*b', 'NOT', 'AND OR NOT', '-x', 'NEAR(a b)', '^', 'x:y', '(', ')', '{}', "'", '%', '_']) {
            const r = await searchRaw(srv.url, { q });
            assert.equal(r.status, 200, `q=${JSON.stringify(q)} in every room: ${r.status} ${r.text}`);
        }
    }));

    // Last of this server's tests: the short-word queries above look at the
    // newest 5,000 messages, which after this are fillers.
    it('a query of short words reads 5,000 messages a request and goes on with next', T, withLogs(async () => {
        const room = rname('bounded');
        const rare = await post(room, 'kim', 'the whale 鯨 was here');
        const FILL = 5100;
        let n = 0;
        const worker = async () => {
            while (n < FILL) {
                const i = n++;
                const r = await restPost(srv.url, rname('fill'), { user: 'fill', text: `filler ${i}` });
                assert.equal(r.status, 201, `filler ${i}: ${r.status} ${r.text}`);
            }
        };
        await Promise.all(Array.from({ length: 8 }, worker));

        // the newest 5,000 messages hold no 鯨: a page without results, with next
        const first = await search(srv.url, { q: '鯨' });
        assert.deepEqual(first.results, [], 'the first 5,000 candidates hold no match');
        assert.equal(typeof first.next, 'string', 'next: there may be more');
        const { results, pages } = await searchAll(srv.url, { q: '鯨' });
        assert.deepEqual(keys(results), keys([rare]), `found on a later page (pages ${pages})`);
        assert.ok(pages.length >= 2, `more than one request (pages ${pages})`);
        // the index answers a word of three or more characters at once
        const whale = await search(srv.url, { q: 'whale 鯨' });
        assert.deepEqual(keys(whale.results), keys([rare]), 'through the index');
        assert.equal(whale.next, undefined, 'the index has no more');
        // with room= too
        const inRoom = await searchAll(srv.url, { q: '鯨', room });
        assert.deepEqual(keys(inRoom.results), keys([rare]), `room filter (pages ${inRoom.pages})`);
    }));
});

// ------------------------------------------------------------------ accounts

describe('search under auth = accounts', () => {
    const PW = 'search password 123';
    let srv;
    let root;
    let alice;
    let bob;
    let carol;

    before(async () => {
        srv = await startServer({ env: accountsEnv() });
        root = await signup(srv.url, uname('root'), PW); // the first account: admin
        alice = await signup(srv.url, uname('alice'), PW);
        bob = await signup(srv.url, uname('bob'), PW);
        carol = await signup(srv.url, uname('carol'), PW);
    });

    after(async () => {
        if (srv) await srv.stop();
    });

    async function post(s, room, text) {
        const r = await restPost(srv.url, room, { text }, s.bearer());
        assert.equal(r.status, 201, `POST by ${s.name} in ${room}: ${r.status} ${r.text.slice(0, 300)}`);
        return r.json;
    }

    it('finds a private room\'s messages for its members only; room= of it is 404 to others', T, withLogs(async () => {
        const w = nonce('pv');
        const priv = rname('priv');
        await createRoom(srv.url, alice, priv, true);
        await addMember(srv.url, alice, priv, bob.name);
        const pub = rname('pub');
        await createRoom(srv.url, alice, pub, false);
        const secret = await post(alice, priv, `secret plan ${w}`);
        const open = await post(alice, pub, `open plan ${w}`);
        const inGeneral = await post(carol, 'general', `general plan ${w}`);

        for (const s of [alice, bob]) {
            const page = await search(srv.url, { q: w }, s.bearer());
            assert.deepEqual(sortedKeys(page.results), keys([secret, open, inGeneral]).sort(), `member ${s.name} finds all three`);
            const only = await search(srv.url, { q: w, room: priv }, s.bearer());
            assert.deepEqual(keys(only.results), keys([secret]), `member ${s.name} with room=${priv}`);
            assert.equal(only.results[0].text, `secret plan ${w}`);
        }
        const c = await search(srv.url, { q: w }, carol.bearer());
        assert.deepEqual(sortedKeys(c.results), keys([open, inGeneral]).sort(), 'a non-member does not find the private message');
        const cs = await search(srv.url, { q: 'secret plan' }, carol.bearer());
        assert.ok(!keys(cs.results).includes(key(secret)), 'not by its other words either');
        // the admin is not a member either: the contract lists public rooms and the caller's private rooms and DMs
        const a = await search(srv.url, { q: w }, root.bearer());
        assert.ok(!keys(a.results).includes(key(secret)), `an admin who is no member does not find it: ${JSON.stringify(keys(a.results))}`);

        // room= of the private room: 404 not_found, exactly as for a room that does not exist
        const hidden = await searchError(srv.url, { q: w, room: priv }, 404, 'not_found', carol.bearer());
        const missing = await searchError(srv.url, { q: w, room: rname('nosuch') }, 404, 'not_found', carol.bearer());
        assert.equal(hidden.json.error.message, missing.json.error.message, 'a private room answers like a missing one');
        assert.ok(!hidden.text.includes('secret'), `nothing of the room leaks: ${hidden.text}`);
        // the public room with room=
        const p = await search(srv.url, { q: w, room: pub }, carol.bearer());
        assert.deepEqual(keys(p.results), keys([open]));

        // short-word path too
        const shortWord = await search(srv.url, { q: 'pl', room: undefined, from: alice.name }, carol.bearer());
        assert.ok(!keys(shortWord.results).includes(key(secret)), 'short-word path hides it from a non-member');
        const shortMember = await search(srv.url, { q: 'pl', from: alice.name }, bob.bearer());
        assert.ok(keys(shortMember.results).includes(key(secret)), 'short-word path finds it for a member');

        // a member removed no longer finds it
        const rm = await removeMember(srv.url, alice, priv, bob.name);
        expectStatus(rm, 200, undefined, 'remove bob');
        const gone = await search(srv.url, { q: w }, bob.bearer());
        assert.deepEqual(sortedKeys(gone.results), keys([open, inGeneral]).sort(), 'a removed member no longer finds it');
        await searchError(srv.url, { q: w, room: priv }, 404, 'not_found', bob.bearer());
    }));

    it('finds a DM\'s messages for its members only', T, withLogs(async () => {
        const w = nonce('dm');
        const room = await dm(srv.url, alice, [bob.name]);
        const m = await post(alice, room, `just between us ${w}`);
        const reply = await post(bob, room, `agreed ${w}`);
        for (const s of [alice, bob]) {
            const page = await search(srv.url, { q: w }, s.bearer());
            assert.deepEqual(sortedKeys(page.results), keys([m, reply]).sort(), `DM member ${s.name}`);
            assertNewestFirst(page.results, `DM member ${s.name}`);
            const inRoom = await search(srv.url, { q: 'between', room }, s.bearer());
            assert.deepEqual(keys(inRoom.results), keys([m]), `DM member ${s.name} with room=`);
        }
        for (const s of [carol, root]) {
            const page = await search(srv.url, { q: w }, s.bearer());
            assert.deepEqual(page.results, [], `${s.name} is not in the DM`);
            await searchError(srv.url, { q: w, room }, 404, 'not_found', s.bearer());
        }
    }));

    it('needs a session; never searches the server\'s own logs', T, withLogs(async () => {
        expectStatus(await searchRaw(srv.url, { q: 'plan' }), 401, 'unauthorized', 'no session');
        expectStatus(await searchRaw(srv.url, { q: 'plan' }, { Authorization: 'Bearer tcs_nope' }), 401, 'unauthorized', 'bad session');
        // an account made now is an event of the accounts log; reading a room is one of the read log
        const name = uname('zqlog');
        const s = await signup(srv.url, name, PW);
        const page = await search(srv.url, { q: name }, s.bearer());
        assert.deepEqual(page.results, [], `the accounts log is not searched: ${JSON.stringify(page.results).slice(0, 300)}`);
        const admin = await search(srv.url, { q: name }, root.bearer());
        assert.deepEqual(admin.results, [], 'not for an admin either');
        const hash = await search(srv.url, { q: 'argon2id' }, root.bearer());
        assert.deepEqual(hash.results, [], 'no password hash is found');
    }));
});

// ------------------------------------------------------------------ tokens

describe('search under auth = token', () => {
    const SECRET = 'search-test-secret-0123456789abcdef';
    let srv;

    before(async () => {
        srv = await startServer({ env: { ...RELAXED_RATE_ENV, TURBOCHAT_AUTH_SECRET: SECRET } });
    });

    after(async () => {
        if (srv) await srv.stop();
    });

    const bearer = (t) => ({ Authorization: `Bearer ${t}` });

    it('a token whose rooms leave a room out never sees its messages', T, withLogs(async () => {
        const w = nonce('tk');
        const everything = mintToken(SECRET, { user: 'olga' });
        const teamOnly = mintToken(SECRET, { user: 'pete', rooms: 'team-*,lobby' });
        const team = `team-${rname('t')}`;
        const vault = `vault-${rname('v')}`;
        const inTeam = await restPost(srv.url, team, { text: `budget ${w} team` }, bearer(everything));
        assert.equal(inTeam.status, 201, inTeam.text);
        const inVault = await restPost(srv.url, vault, { text: `budget ${w} vault` }, bearer(everything));
        assert.equal(inVault.status, 201, inVault.text);
        const inLobby = await restPost(srv.url, 'lobby', { text: `budget ${w} lobby` }, bearer(teamOnly));
        assert.equal(inLobby.status, 201, inLobby.text);

        const all = await search(srv.url, { q: w }, bearer(everything));
        assert.deepEqual(sortedKeys(all.results), keys([inTeam.json, inVault.json, inLobby.json]).sort(), 'a token without rooms sees every room');
        const some = await search(srv.url, { q: w }, bearer(teamOnly));
        assert.deepEqual(sortedKeys(some.results), keys([inTeam.json, inLobby.json]).sort(), 'the vault is not among the token\'s rooms');
        for (const q of ['vault', `${w} vault`, 'va', 'budget']) {
            const r = await search(srv.url, { q }, bearer(teamOnly));
            assert.ok(!keys(r.results).includes(key(inVault.json)), `q=${q}: the vault's message is not found`);
        }
        const paged = await searchAll(srv.url, { q: 'budget', limit: 1 }, bearer(teamOnly));
        assert.ok(!keys(paged.results).includes(key(inVault.json)), 'nor on any page');
        // room= of a room the token does not allow: 403, as every /api/ request for it (Tokens)
        await searchError(srv.url, { q: w, room: vault }, 403, 'forbidden', bearer(teamOnly));
        const t = await search(srv.url, { q: w, room: team }, bearer(teamOnly));
        assert.deepEqual(keys(t.results), keys([inTeam.json]));

        expectStatus(await searchRaw(srv.url, { q: w }), 401, 'unauthorized', 'no token');
        expectStatus(await searchRaw(srv.url, { q: w }, bearer('not.a.token')), 401, 'unauthorized', 'bad token');
    }));
});
