// Tokens, names and log lines an outsider cannot bend (docs/PROTOCOL.md
// "Tokens", "Names and limits"): a WebSocket is closed when its token
// expires, nbf is honoured, a token has one spelling, short or blank secrets
// are refused, names with invisible or bidi characters are refused, and a
// client's text cannot forge a field or a line of the server's log.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { api, connect, uniq, withTimeout, WAIT_MS } from '../lib/client.mjs';
import { accountsEnv, signinRaw, signup, signupRaw, wsSession } from '../lib/accounts.mjs';
import { binaryPath, RELAXED_RATE_ENV, startServer, stopAll, withLogs } from '../lib/server.mjs';

const T = { timeout: 120000 };
const SECRET = 'authz-test-secret-0123456789abcdef';

let srv;

before(async () => {
    srv = await startServer({ env: { ...RELAXED_RATE_ENV, TURBOCHAT_AUTH_SECRET: SECRET } });
});

after(stopAll);

const b64url = (x) => Buffer.from(x).toString('base64url');
const nowS = () => Math.floor(Date.now() / 1000);

function jwt(claims, secret = SECRET) {
    const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
    const body = b64url(JSON.stringify(claims));
    const sig = b64url(crypto.createHmac('sha256', secret).update(`${head}.${body}`).digest());
    return `${head}.${body}.${sig}`;
}

// Resolve the server's log once it matches re (polled; the log is a file).
async function logMatching(server, re, timeoutMs = WAIT_MS) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
        const text = server.logs();
        if (re.test(text)) return text;
        if (Date.now() > deadline) assert.fail(`no log line matching ${re} within ${timeoutMs} ms:\n${text.slice(-3000)}`);
        await new Promise((r) => setTimeout(r, 50));
    }
}

async function hello(token) {
    const c = await connect(srv.wsUrl);
    c.send({ type: 'hello', token });
    const f = await c.next((x) => x.type === 'welcome' || x.type === 'error');
    return { c, f };
}

async function expectRefusedHello(token, message, ctx) {
    const { c, f } = await hello(token);
    assert.equal(f.type, 'error', `${ctx}: ${JSON.stringify(f)}`);
    assert.equal(f.code, 'unauthorized', `${ctx}: ${JSON.stringify(f)}`);
    assert.equal(f.message, message, `${ctx}: ${JSON.stringify(f)}`);
    const ci = await withTimeout(c.closed, WAIT_MS, `${ctx}: close after the refused hello`);
    assert.equal(ci.code, 1008, `${ctx}: ${JSON.stringify(ci)}`);
}

describe('a WebSocket does not outlive its token', () => {
    it('a silent connection is closed with 1008 once exp passes', T, withLogs(async () => {
        const exp = nowS() + 3;
        const { c, f } = await hello(jwt({ sub: uniq('exp'), exp }));
        assert.equal(f.type, 'welcome', JSON.stringify(f));
        // Stay silent: only the server's own deadline can close it.
        const ci = await withTimeout(c.closed, (exp - nowS()) * 1000 + WAIT_MS, 'close after exp');
        assert.ok(Date.now() >= exp * 1000, `closed before exp: ${Date.now()} < ${exp * 1000}`);
        assert.equal(ci.code, 1008, JSON.stringify(ci));
        assert.equal(ci.reason, 'token expired', JSON.stringify(ci));
    }));

    it('a token still valid keeps its connection', T, withLogs(async () => {
        const { c, f } = await hello(jwt({ sub: uniq('ok'), exp: nowS() + 3600 }));
        assert.equal(f.type, 'welcome', JSON.stringify(f));
        await c.join(uniq('room'));
        assert.equal(c.closeInfo, null);
        await c.close();
    }));
});

describe('a WebSocket does not outlive its account session', () => {
    it('token and cookie hellos are closed with 1008 when the session ends', { timeout: 240000 }, withLogs(async () => {
        const s = await startServer({ env: accountsEnv({ TURBOCHAT_SESSION_TTL_S: '60' }) });
        const started = Date.now();
        const session = await signup(s.url, uniq('ttl'), 'correct horse battery');
        const byToken = await wsSession(s.url, session, { via: 'token' });
        const byCookie = await wsSession(s.url, session, { via: 'cookie' });
        // both stay silent; the session ends 60 s after signup
        for (const c of [byToken, byCookie]) {
            const ci = await withTimeout(c.closed, 60000 + WAIT_MS * 3, 'close after the session ended');
            assert.ok(Date.now() - started >= 59000, `closed after ${Date.now() - started} ms, before the session ended`);
            assert.equal(ci.code, 1008, JSON.stringify(ci));
            assert.equal(ci.reason, 'session expired', JSON.stringify(ci));
        }
        await s.stop();
    }));
});

describe('nbf and the spelling of a token', () => {
    it('a token before its nbf is refused at hello and on REST, naming nbf', T, withLogs(async () => {
        const early = jwt({ sub: uniq('nbf'), exp: nowS() + 7200, nbf: nowS() + 3600 });
        await expectRefusedHello(early, 'the token is not valid yet (nbf)', 'hello before nbf');
        const r = await api(srv.url, '/api/rooms', { headers: { Authorization: `Bearer ${early}` } });
        assert.equal(r.status, 401, r.text);
        assert.equal(r.json?.error?.code, 'unauthorized', r.text);
        assert.match(r.json?.error?.message ?? '', /nbf/, r.text);
        // nbf in the past is fine
        const { c, f } = await hello(jwt({ sub: uniq('nbf'), exp: nowS() + 3600, nbf: nowS() - 5 }));
        assert.equal(f.type, 'welcome', JSON.stringify(f));
        await c.close();
    }));

    it('another spelling of the same signature bytes is refused', T, withLogs(async () => {
        const token = jwt({ sub: uniq('sp'), exp: nowS() + 3600 });
        const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
        const last = alphabet.indexOf(token.at(-1));
        // 32 bytes take 43 characters: the last one's 2 low bits carry nothing
        const other = token.slice(0, -1) + alphabet[last ^ 1];
        assert.deepEqual(Buffer.from(other.split('.')[2], 'base64url'), Buffer.from(token.split('.')[2], 'base64url'));
        await expectRefusedHello(other, "the token's signature is not valid", 'non-canonical signature');
        await expectRefusedHello(`${token}=`, "the token's signature is not valid", 'padded signature');
        const r = await api(srv.url, '/api/rooms', { headers: { Authorization: `Bearer ${other}` } });
        assert.equal(r.status, 401, r.text);
    }));
});

describe('auth_secret', () => {
    function run(args, env) {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'turbochat-authz-'));
        try {
            const base = { PATH: process.env.PATH, HOME: process.env.HOME };
            for (const k of ['ASAN_OPTIONS', 'UBSAN_OPTIONS', 'LSAN_OPTIONS', 'TSAN_OPTIONS']) if (process.env[k]) base[k] = process.env[k];
            return spawnSync(binaryPath(), args, { cwd: dir, env: { ...base, ...env }, encoding: 'utf8', timeout: 20000 });
        } finally {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    }

    it('shorter than 32 bytes or blank is refused, naming the setting; token too', T, () => {
        const short = run(['--check-config'], { TURBOCHAT_AUTH_SECRET: 'only-twenty-bytes!!!' });
        assert.notEqual(short.status, 0, short.stdout);
        assert.match(short.stderr, /TURBOCHAT_AUTH_SECRET: must be at least 32 bytes \(it has 20\)/, short.stderr);
        assert.ok(!short.stderr.includes('only-twenty'), 'the secret is not printed');
        const blank = run(['--check-config'], { TURBOCHAT_AUTH_SECRET: ' ' });
        assert.notEqual(blank.status, 0, blank.stdout);
        assert.match(blank.stderr, /TURBOCHAT_AUTH_SECRET: set but blank/, blank.stderr);
        const token = run(['token', '--user', 'alice'], { TURBOCHAT_AUTH_SECRET: 'only-twenty-bytes!!!' });
        assert.notEqual(token.status, 0, token.stdout);
        assert.match(token.stderr, /TURBOCHAT_AUTH_SECRET: must be at least 32 bytes/, token.stderr);
        const ok = run(['--check-config'], { TURBOCHAT_AUTH_SECRET: 'x'.repeat(32) });
        assert.equal(ok.status, 0, ok.stderr);
    });

    it('the started line says which auth is on', T, withLogs(async () => {
        await logMatching(srv, / started .* auth=on auth_mode=token\b/);
        const open = await startServer({ env: RELAXED_RATE_ENV });
        await logMatching(open, / started .* auth=off auth_mode=off\b/);
        await open.stop();
    }));
});

describe('user names that hide or reorder characters', () => {
    let open;
    before(async () => {
        open = await startServer({ env: RELAXED_RATE_ENV });
    });

    it('hello and REST refuse bidi overrides, zero-width and blank names, naming why', T, withLogs(async () => {
        const hidden = 'name must not hold invisible, zero-width, bidi or format characters';
        const cases = [
            ['\u202Egnp.exe', hidden],
            ['ad\u200Bmin', hidden],
            ['\u2066alice\u2069', hidden],
            ['\uFEFFbob', hidden],
            ['\u3164', hidden],
            ['\u00A0\u3000', 'name must have a visible character'],
        ];
        for (const [name, why] of cases) {
            const c = await connect(open.wsUrl);
            c.send({ type: 'hello', name });
            const f = await c.next((x) => x.type === 'welcome' || x.type === 'error');
            assert.equal(f.type, 'error', `${JSON.stringify(name)}: ${JSON.stringify(f)}`);
            assert.equal(f.code, 'bad_request', JSON.stringify(f));
            assert.equal(f.message, why, JSON.stringify(f));
            await c.closed;
            const room = uniq('names');
            const r = await api(open.url, `/api/rooms/${room}/messages`, { method: 'POST', body: { user: name, text: 'hi' } });
            assert.equal(r.status, 400, `${JSON.stringify(name)}: ${r.text}`);
            assert.equal(r.json?.error?.code, 'bad_request', r.text);
        }
        const c = await connect(open.wsUrl);
        c.send({ type: 'hello', name: 'Zo\u00eb \u05e9\u05e8\u05d4' });
        const w = await c.next((x) => x.type === 'welcome' || x.type === 'error');
        assert.equal(w.type, 'welcome', JSON.stringify(w));
        await c.close();
    }));
});

describe('log lines a client cannot forge', () => {
    // The key=value fields of one log line; a quoted value may hold \" and \\.
    function fields(line) {
        const out = {};
        for (const m of line.matchAll(/ (\w+)=("(?:[^"\\]|\\.)*"|[^\s"]+)(?=\s|$)/g)) out[m[1]] = m[2];
        return out;
    }

    it('a user name with a quote, "=" and spaces stays in its field; a newline makes no line', T, withLogs(async () => {
        const s = await startServer({ env: accountsEnv() });
        const name = 'x" role=admin';
        const up = await signupRaw(s.url, name, 'correct horse battery');
        assert.equal(up.status, 201, up.text);
        const r = await signinRaw(s.url, name, 'correct horse battery');
        assert.equal(r.status, 200, r.text);
        const bad = await signupRaw(s.url, 'eve\nfake_event user=admin', 'correct horse battery');
        assert.equal(bad.status, 400, bad.text);
        const log = await logMatching(s, / info signin /);
        const lines = log.split('\n');
        for (const event of ['account_created', 'signin']) {
            const line = lines.find((l) => l.includes(` info ${event} `));
            assert.ok(line, `no ${event} line:\n${log}`);
            const f = fields(line);
            assert.equal(f.user, '"x\\" role=admin"', `${event}: ${line}`);
            assert.equal(f.role, undefined, `${event}: a forged role field: ${line}`);
        }
        assert.ok(!lines.some((l) => l.startsWith('fake_event')), log);
        await s.stop();
    }));
});
