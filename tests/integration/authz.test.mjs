// Tokens, names and log lines an outsider cannot bend (docs/PROTOCOL.md
// "Tokens", "Names and limits"): a WebSocket is closed when its token
// expires, nbf is honoured, a token has one spelling, short or blank secrets
// are refused, names with invisible or bidi characters are refused, and a
// client's text cannot forge a field or a line of the server's log.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { api, connect, uniq, withTimeout, WAIT_MS } from '../lib/client.mjs';
import { RELAXED_RATE_ENV, startServer, stopAll, withLogs } from '../lib/server.mjs';

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
