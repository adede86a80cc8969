// Authentication of docs/PROTOCOL.md (auth_secret set): HS256 tokens on the
// WebSocket hello and on every /api/ request, the rooms claim, refused tokens,
// the open endpoints, and `turbochat token`.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { api, connect, uniq } from '../lib/client.mjs';
import { binaryPath, RELAXED_RATE_ENV, startServer, stopAll, withLogs } from '../lib/server.mjs';

const T = { timeout: 120000 };
const SECRET = 'integration-test-secret-0123456789abcdef';
const JSON_CT = 'application/json; charset=utf-8';

let srv;

before(async () => {
    srv = await startServer({ env: { ...RELAXED_RATE_ENV, TURBOCHAT_AUTH_SECRET: SECRET } });
});

after(stopAll);

const b64url = (x) => Buffer.from(x).toString('base64url');

// A JWT; alg HS256 unless told otherwise ('none' leaves the signature empty).
function jwt(claims, { secret = SECRET, alg = 'HS256' } = {}) {
    const head = b64url(JSON.stringify({ alg, typ: 'JWT' }));
    const body = b64url(JSON.stringify(claims));
    let sig = '';
    if (alg === 'HS256') sig = b64url(crypto.createHmac('sha256', secret).update(`${head}.${body}`).digest());
    if (alg === 'HS512') sig = b64url(crypto.createHmac('sha512', secret).update(`${head}.${body}`).digest());
    return `${head}.${body}.${sig}`;
}

const inAnHour = () => Math.floor(Date.now() / 1000) + 3600;
const bearer = (token) => ({ Authorization: `Bearer ${token}` });

async function helloToken(token) {
    const c = await connect(srv.wsUrl);
    c.send({ type: 'hello', token });
    const f = await c.next((x) => x.type === 'welcome' || x.type === 'error');
    return { c, f };
}

function assertJsonError(r, status, ctx) {
    assert.equal(r.status, status, `${ctx}: expected HTTP ${status}, got ${r.status} ${r.text.slice(0, 200)}`);
    assert.equal(r.headers['content-type'], JSON_CT, `${ctx}: content-type`);
    assert.equal(typeof r.json?.error?.code, 'string', `${ctx}: error body ${r.text.slice(0, 200)}`);
}

describe('WebSocket hello with a token', () => {
    it('a valid token: welcome with the user from sub', T, withLogs(async () => {
        const { c, f } = await helloToken(jwt({ sub: 'alice', exp: inAnHour() }));
        assert.equal(f.type, 'welcome', JSON.stringify(f));
        assert.equal(f.user, 'alice');
        await c.join(uniq('any'));
        await c.close();
    }));

    it('a hello with a name but no token is refused and closed 1008', T, withLogs(async () => {
        const c = await connect(srv.wsUrl);
        c.send({ type: 'hello', name: 'mallory' });
        const f = await c.next('error');
        assert.ok(['unauthorized', 'bad_request'].includes(f.code), JSON.stringify(f));
        assert.equal((await c.closed).code, 1008);
    }));

    const refused = [
        ['bad signature', () => jwt({ sub: 'eve', exp: inAnHour() }, { secret: 'another-secret' })],
        ['expired', () => jwt({ sub: 'eve', exp: Math.floor(Date.now() / 1000) - 120 })],
        ['alg none', () => jwt({ sub: 'eve', exp: inAnHour() }, { alg: 'none' })],
        ['alg HS512', () => jwt({ sub: 'eve', exp: inAnHour() }, { alg: 'HS512' })],
        ['no exp', () => jwt({ sub: 'eve' })],
        ['no sub', () => jwt({ exp: inAnHour() })],
        ['garbage', () => 'not.a.token'],
        ['tampered payload', () => {
            const [h, , s] = jwt({ sub: 'eve', exp: inAnHour() }).split('.');
            return `${h}.${b64url(JSON.stringify({ sub: 'admin', exp: inAnHour() }))}.${s}`;
        }],
    ];
    for (const [what, make] of refused) {
        it(`refused token (${what}): unauthorized then close 1008`, T, withLogs(async () => {
            const { c, f } = await helloToken(make());
            assert.equal(f.type, 'error', `${what} must be refused: ${JSON.stringify(f)}`);
            const codes = what.startsWith('no ') || what === 'garbage' ? ['unauthorized', 'bad_request'] : ['unauthorized'];
            assert.ok(codes.includes(f.code), `${what}: ${JSON.stringify(f)}`);
            assert.equal((await c.closed).code, 1008);
        }));
    }

    it('the rooms claim allows listed rooms and prefixes; other rooms are forbidden', T, withLogs(async () => {
        const { c, f } = await helloToken(jwt({ sub: 'carol', exp: inAnHour(), rooms: ['lobby', 'team-*'] }));
        assert.equal(f.type, 'welcome', JSON.stringify(f));
        await c.join('lobby');
        await c.join('team-a');
        await c.join('team-');
        for (const room of ['general', 'lobby2', 'team', 'xteam-a']) {
            c.send({ type: 'join', room });
            const e = await c.next((x) => (x.type === 'error' || x.type === 'joined') && (x.room === room || x.room === undefined));
            assert.equal(e.type, 'error', `join ${room} must be refused: ${JSON.stringify(e)}`);
            assert.equal(e.code, 'forbidden', JSON.stringify(e));
        }
        // the connection stays open and works in the allowed room
        const ack = await c.sendMessage('team-a', 'allowed');
        assert.equal(ack.type, 'ack', JSON.stringify(ack));
        await c.ping();
        await c.close();
    }));
});

describe('REST with auth on', () => {
    it('every /api/ request needs a valid bearer token (401 otherwise)', T, withLogs(async () => {
        assertJsonError(await api(srv.url, '/api/rooms'), 401, 'no token');
        assertJsonError(await api(srv.url, '/api/rooms', { headers: bearer('junk') }), 401, 'junk token');
        assertJsonError(
            await api(srv.url, '/api/rooms', { headers: bearer(jwt({ sub: 'x', exp: inAnHour() }, { secret: 'nope' })) }),
            401,
            'bad signature',
        );
        assertJsonError(
            await api(srv.url, '/api/rooms/general/messages', { headers: bearer(jwt({ sub: 'x', exp: 1000 })) }),
            401,
            'expired',
        );
        assertJsonError(
            await api(srv.url, '/api/rooms/general/messages', { method: 'POST', body: { user: 'x', text: 'hi' } }),
            401,
            'POST without a token',
        );
        const ok = await api(srv.url, '/api/rooms', { headers: bearer(jwt({ sub: 'dave', exp: inAnHour() })) });
        assert.equal(ok.status, 200, ok.text);
    }));

    it('a room outside the rooms claim is 403; POST takes the user from the token', T, withLogs(async () => {
        const token = jwt({ sub: 'erin', exp: inAnHour(), rooms: ['ok-*'] });
        const room = uniq('ok');
        assertJsonError(await api(srv.url, '/api/rooms/secret/messages', { headers: bearer(token) }), 403, 'GET other room');
        assertJsonError(await api(srv.url, '/api/rooms/secret/members', { headers: bearer(token) }), 403, 'members of other room');
        assertJsonError(
            await api(srv.url, '/api/rooms/secret/messages', { method: 'POST', headers: bearer(token), body: { text: 'x' } }),
            403,
            'POST other room',
        );
        const p = await api(srv.url, `/api/rooms/${room}/messages`, {
            method: 'POST',
            headers: bearer(token),
            body: { user: 'mallory', text: 'from erin' },
        });
        assert.equal(p.status, 201, p.text);
        assert.equal(p.json.user, 'erin', 'with auth on the user comes from the token');
        const h = await api(srv.url, `/api/rooms/${room}/messages`, { headers: bearer(token) });
        assert.equal(h.status, 200);
        assert.deepEqual(h.json.messages.map((m) => [m.user, m.text]), [['erin', 'from erin']]);
    }));

    it('/healthz, /readyz, /metrics and the UI need no token', T, withLogs(async () => {
        for (const p of ['/healthz', '/readyz', '/metrics', '/']) {
            const r = await api(srv.url, p);
            assert.equal(r.status, 200, `${p}: ${r.status}`);
        }
    }));
});

describe('turbochat token', () => {
    it('mints a token the server accepts, with the rooms it was given', T, withLogs(async () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'turbochat-token-'));
        try {
            const env = { PATH: process.env.PATH, HOME: process.env.HOME, TURBOCHAT_AUTH_SECRET: SECRET };
            for (const k of ['ASAN_OPTIONS', 'UBSAN_OPTIONS', 'LSAN_OPTIONS', 'TSAN_OPTIONS']) if (process.env[k]) env[k] = process.env[k];
            // blanks around list items are not part of them (they used to mint "fr-* ")
            const r = spawnSync(binaryPath(), ['token', '--user', 'frank', '--rooms', 'fr-* , lobby', '--ttl', '1h'], {
                cwd: dir,
                env,
                encoding: 'utf8',
                timeout: 20000,
            });
            assert.equal(r.status, 0, `turbochat token failed: ${r.stdout}\n${r.stderr}`);
            const token = r.stdout.trim().split('\n').pop().trim();
            assert.match(token, /^[\w-]+\.[\w-]+\.[\w-]+$/, `not a JWT: ${r.stdout}`);
            const claims = JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString());
            assert.equal(claims.sub, 'frank');
            assert.deepEqual(claims.rooms, ['fr-*', 'lobby']);
            const exp = claims.exp - Math.floor(Date.now() / 1000);
            assert.ok(exp > 3000 && exp <= 3700, `exp ${exp} s from now for --ttl 1h`);
            const { c, f } = await helloToken(token);
            assert.equal(f.type, 'welcome', JSON.stringify(f));
            assert.equal(f.user, 'frank');
            await c.join('lobby');
            await c.join('fr-1');
            c.send({ type: 'join', room: 'general' });
            assert.equal((await c.next('error')).code, 'forbidden');
            await c.close();
        } finally {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    }));
});
