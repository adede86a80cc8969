// Security of accounts (issue 9, docs/PROTOCOL.md, "Accounts"):
// - password guessing is limited: after signin_rate_limit failures per
//   account, and separately per client address, sign-in answers 429
//   rate_limited with Retry-After, the right password included; the test
//   client varies its source address (127.0.0.x) to tell the two apart, and
//   an X-Forwarded-For header does not make a new address;
// - no password or Argon2 hash ever appears in the server's log (debug
//   level), in /metrics or in any answer, whatever the request.
// (A session cookie refused after sign-out and the CSRF rule are in
// accounts.test.mjs; sessions ended on every node in cluster/accounts.)
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { uniq } from '../lib/client.mjs';
import {
    accountsEnv,
    adminCall,
    ARGON_MARK,
    assertNoSecret,
    expectStatus,
    http,
    show,
    signin,
    signinRaw,
    signup,
    signupRaw,
    uname,
    wsSession,
} from '../lib/accounts.mjs';
import { startServer, stopAll, withLogs } from '../lib/server.mjs';

const T = { timeout: 60000 };
const LIMIT = 4;

let srv;
let addr = 20;
const nextAddr = () => `127.0.0.${addr++}`;

before(async () => {
    srv = await startServer({ env: accountsEnv({ TURBOCHAT_SIGNIN_RATE_LIMIT: String(LIMIT) }) });
});

after(stopAll);

function expectLimited(r, ctx) {
    expectStatus(r, 429, 'rate_limited', ctx);
    const ra = r.headers['retry-after'];
    assert.ok(ra !== undefined, `${ctx}: Retry-After header: ${JSON.stringify(r.headers)}`);
    assert.match(String(ra), /^\d+$/, `${ctx}: Retry-After in seconds: ${ra}`);
    assert.ok(Number(ra) >= 1 && Number(ra) <= 120, `${ctx}: Retry-After ${ra} s for a limit per minute`);
}

describe('password guessing is limited', () => {
    it('per account: after the limit of failures, 429 with Retry-After from any address, also for the right password', T, withLogs(async () => {
        const PW = 'the real password';
        const victim = await signup(srv.url, uname('victim'), PW);
        const bystander = await signup(srv.url, uname('bystand'), PW);
        for (let i = 0; i < LIMIT; i++) {
            const r = await signinRaw(srv.url, victim.name, `guess number ${i}`, { localAddress: nextAddr() });
            expectStatus(r, 401, 'unauthorized', `failure ${i + 1} of ${LIMIT} (each from a fresh address)`);
        }
        expectLimited(await signinRaw(srv.url, victim.name, 'guess number x', { localAddress: nextAddr() }), 'one more guess from a fresh address');
        expectLimited(await signinRaw(srv.url, victim.name, PW, { localAddress: nextAddr() }), 'the right password while the account is limited');
        // the name in another case: limited too, or not the account at all (401), never signed in
        const rc = await signinRaw(srv.url, victim.name.toUpperCase(), PW, { localAddress: nextAddr() });
        if (rc.status === 429) expectLimited(rc, 'the account spelled in another case');
        else expectStatus(rc, 401, 'unauthorized', 'the limited account spelled in another case must not sign in');
        // other accounts are not affected, from any address
        await signin(srv.url, bystander.name, PW, { localAddress: nextAddr() });
        // sessions the account already has keep working
        expectStatus(await http(srv.url, '/api/me', { headers: victim.bearer() }), 200, undefined, 'an existing session of the limited account');
    }));

    it('per address: failures on many accounts from one address limit that address, X-Forwarded-For or not', T, withLogs(async () => {
        const PW = 'address limit password';
        const accounts = [];
        for (let i = 0; i < LIMIT; i++) accounts.push(await signup(srv.url, uname('spread'), PW));
        const clean = await signup(srv.url, uname('clean'), PW);
        const attacker = nextAddr();
        for (const [i, a] of accounts.entries()) {
            const r = await signinRaw(srv.url, a.name, `wrong ${i}`, { localAddress: attacker, headers: { 'X-Forwarded-For': `203.0.113.${i + 1}`, 'X-Real-IP': `203.0.113.${i + 1}` } });
            expectStatus(r, 401, 'unauthorized', `failure ${i + 1} from ${attacker} (one per account)`);
        }
        expectLimited(
            await signinRaw(srv.url, clean.name, PW, { localAddress: attacker, headers: { 'X-Forwarded-For': '198.51.100.7' } }),
            'the right password of another account from the limited address',
        );
        expectLimited(await signinRaw(srv.url, uname('unknown'), 'whatever1', { localAddress: attacker }), 'an unknown name from the limited address');
        // the same account from another address is fine: it was not the account that was limited
        await signin(srv.url, clean.name, PW, { localAddress: nextAddr() });
        for (const a of accounts) await signin(srv.url, a.name, PW, { localAddress: nextAddr() });
    }));
});

describe('no password or hash in logs, metrics or answers', () => {
    it('the log (debug level), /metrics and every answer hold no password and no $argon2', T, withLogs(async () => {
        const pw = (tag) => `Pw-${tag}-${uniq('s')}`;
        const P = { admin: pw('admin'), user: pw('user'), wrong: pw('wrong'), newer: pw('newer'), reset: pw('reset'), short: 'Shrt-7c', long: `L${'o'.repeat(260)}ng` };
        const secrets = Object.values(P);
        const answers = [];
        const keep = (r) => {
            answers.push(r);
            return r;
        };
        const s = await startServer({ env: accountsEnv() }); // a server of its own, so its admin is ours
        const admin = await signup(s.url, uname('adm'), P.admin);
        const name = uname('logged');
        keep(await signupRaw(s.url, name, P.user));
        keep(await signupRaw(s.url, name, P.user)); // 409
        keep(await signupRaw(s.url, name.toUpperCase(), P.wrong)); // 409
        keep(await signupRaw(s.url, uname('p'), P.short)); // 400 password
        keep(await signupRaw(s.url, uname('p'), P.long)); // 400 password
        keep(await signupRaw(s.url, 'bad\u0002name', P.user)); // 400 name
        keep(await http(s.url, '/api/auth/signup', { method: 'POST', body: `{"name":"x","password":"${P.user}"`, headers: { 'Content-Type': 'application/json' } })); // bad JSON
        keep(await signinRaw(s.url, name, P.wrong));
        keep(await signinRaw(s.url, uname('ghost'), P.wrong));
        const sess = await signin(s.url, name, P.user);
        keep(await http(s.url, '/api/me', { method: 'PATCH', body: { password: P.newer, old_password: P.wrong }, headers: sess.bearer() })); // 403
        keep(await http(s.url, '/api/me', { method: 'PATCH', body: { password: P.short, old_password: P.user }, headers: sess.bearer() })); // 400
        keep(await http(s.url, '/api/me', { method: 'PATCH', body: { password: P.newer, old_password: P.user }, headers: sess.bearer() }));
        keep(await http(s.url, '/api/me', { headers: sess.bearer() }));
        keep(await adminCall(s.url, admin, 'POST', `/users/${encodeURIComponent(name)}/password`, { password: P.short })); // 400
        keep(await adminCall(s.url, admin, 'POST', `/users/${encodeURIComponent(name)}/password`, { password: P.reset }));
        keep(await adminCall(s.url, admin, 'GET', '/users'));
        keep(await adminCall(s.url, sess, 'POST', `/users/${encodeURIComponent(admin.name)}/password`, { password: P.wrong })); // 403 (sess ended anyway)
        const s2 = await signin(s.url, name, P.reset);
        const c = await wsSession(s.url, s2, { rooms: ['general'] });
        c.send({ type: 'send', room: 'general', text: 'hello', ref: 'r1' });
        await c.next((x) => x.ref === 'r1');
        c.send({ type: 'hello', token: s2.token, password: P.user });
        await c.ping();
        await c.close();
        keep(await http(s.url, '/metrics'));
        for (const r of answers) assertNoSecret(r.text, secrets, `answer to ${r.req} (${r.status})`);
        for (const r of answers) assertNoSecret(JSON.stringify(r.headers), secrets, `headers of ${r.req}`);
        assertNoSecret(JSON.stringify(c.frames), secrets, 'WebSocket frames');
        const metrics = answers[answers.length - 1];
        assert.equal(metrics.status, 200, show(metrics));
        assertNoSecret(metrics.text, secrets, '/metrics');
        await s.stop();
        const log = s.logs();
        assert.ok(log.length > 0, 'the server wrote a log');
        assertNoSecret(log, secrets, `server log ${s.logFile}`);
        assert.ok(!log.includes(ARGON_MARK), 'no hash in the log');
    }));
});
