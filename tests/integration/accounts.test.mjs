// Accounts and sessions on one node (issue 9, docs/PROTOCOL.md, "Accounts"):
// GET /api/auth/mode, sign-up (first account admin, names unique without
// regard to ASCII case, name and password rules), sign-in, the tc_session
// cookie and the tcs_ token over REST and WebSocket, sign-out (one session or
// everywhere), profile and password change, signup closed, and the CSRF rule
// of cookie-authenticated writes. Written from the contract only.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { api, connect, uniq } from '../lib/client.mjs';
import {
    accountsEnv,
    assertNoSecret,
    assertUserShape,
    clearsSession,
    expectAlive,
    expectClosed,
    expectHelloRefused,
    expectStatus,
    http,
    listRooms,
    me,
    sessionCookie,
    show,
    signin,
    signinRaw,
    signout,
    signup,
    signupRaw,
    TOKEN_RE,
    uname,
    wsSession,
} from '../lib/accounts.mjs';
import { mintToken } from '../lib/lifecycle.mjs';
import { startServer, stopAll, withLogs } from '../lib/server.mjs';

const T = { timeout: 60000 };
const PW = 'correct horse battery';

let srv;
let admin; // the first account of srv

before(async () => {
    srv = await startServer({ env: accountsEnv() });
    admin = await signup(srv.url, uname('first'), PW);
});

after(stopAll);

describe('accounts: mode and sign-up', () => {
    it('GET /api/auth/mode answers without a session in every mode', T, withLogs(async () => {
        const r = await api(srv.url, '/api/auth/mode');
        expectStatus(r, 200, undefined, 'accounts mode');
        assert.equal(r.json.auth, 'accounts', show(r));
        assert.equal(r.json.signup, 'open', show(r));
        const off = await startServer();
        const ro = await api(off.url, '/api/auth/mode');
        expectStatus(ro, 200, undefined, 'auth off');
        assert.equal(ro.json.auth, 'off', show(ro));
        assert.ok(['open', 'invite', 'closed'].includes(ro.json.signup), show(ro));
        await off.stop();
        const tok = await startServer({ env: { TURBOCHAT_AUTH_SECRET: 'mode-secret-0123456789abcdef0123' } });
        const rt = await api(tok.url, '/api/auth/mode');
        expectStatus(rt, 200, undefined, 'auth token');
        assert.equal(rt.json.auth, 'token', show(rt));
        await tok.stop();
    }));

    it('the first account is admin, later ones user; 201 {user, token} and the cookie', T, withLogs(async () => {
        assert.equal(admin.user.role, 'admin', `first account: ${JSON.stringify(admin.user)}`);
        assertUserShape(admin.user, 'first account');
        assert.equal(admin.user.disabled, false);
        assert.equal(admin.user.display, admin.name, 'display defaults to the name');
        const name = uname('second');
        const r = await signupRaw(srv.url, name, PW);
        expectStatus(r, 201, undefined, 'second signup');
        assert.equal(r.json.user.name, name);
        assert.equal(r.json.user.role, 'user', show(r));
        assertUserShape(r.json.user, 'second account');
        assert.match(r.json.token, /^tcs_[A-Za-z0-9_-]{43}$/, `a single node never needs a sealed session: ${show(r)}`);
        assert.match(r.json.token, TOKEN_RE, show(r));
        const c = sessionCookie(r);
        assert.ok(c, `tc_session cookie: ${JSON.stringify(r.headers['set-cookie'])}`);
        assert.ok(c.attrs.httponly, `HttpOnly: ${c.raw}`);
        assert.equal(String(c.attrs.samesite).toLowerCase(), 'strict', `SameSite=Strict: ${c.raw}`);
        assert.equal(c.attrs.path, '/', `Path=/: ${c.raw}`);
        assert.equal(Number(c.attrs['max-age']), 30 * 24 * 3600, `Max-Age = session_ttl_s (30 d): ${c.raw}`);
        assert.ok(!c.attrs.secure, `no Secure over plain HTTP: ${c.raw}`);
        // the new account is signed in: token and cookie both work
        const viaToken = await api(srv.url, '/api/me', { headers: { Authorization: `Bearer ${r.json.token}` } });
        expectStatus(viaToken, 200, undefined, 'GET /api/me with the token');
        assert.equal(viaToken.json.user.name, name);
        const viaCookie = await api(srv.url, '/api/me', { headers: { Cookie: `tc_session=${c.value}` } });
        expectStatus(viaCookie, 200, undefined, 'GET /api/me with the cookie');
        assert.equal(viaCookie.json.user.name, name);
        assertUserShape(viaCookie.json.user, '/api/me');
    }));

    it('names are unique without regard to ASCII case: 409 name_taken', T, withLogs(async () => {
        const base = uname('Case');
        await signup(srv.url, base, PW);
        for (const variant of [base, base.toLowerCase(), base.toUpperCase()]) {
            const r = await signupRaw(srv.url, variant, 'another password 1');
            expectStatus(r, 409, 'name_taken', `signup ${variant} after ${base}`);
        }
        // the original account is untouched: its password still signs in
        await signin(srv.url, base, PW);
    }));

    it('ten sign-ups for one name at once (several spellings): exactly one account', T, withLogs(async () => {
        const base = uname('Burst');
        const spellings = [base, base.toLowerCase(), base.toUpperCase()];
        const rs = await Promise.all(Array.from({ length: 10 }, (_, i) => signupRaw(srv.url, spellings[i % 3], `burst password ${i}`)));
        const wins = rs.filter((r) => r.status === 201);
        assert.equal(wins.length, 1, `exactly one of ten wins: ${rs.map(show).join(' | ')}`);
        for (const r of rs) if (r.status !== 201) expectStatus(r, 409, 'name_taken', 'a losing sign-up');
        const i = rs.indexOf(wins[0]);
        await signin(srv.url, spellings[i % 3], `burst password ${i}`);
    }));

    it('name and password rules: 400 bad_request naming the field', T, withLogs(async () => {
        const cases = [
            [{ name: uname('short'), password: '1234567' }, 'password', '7-character password'],
            [{ name: uname('long'), password: 'x'.repeat(257) }, 'password', '257-character password'],
            [{ name: uname('nopw') }, 'password', 'missing password'],
            [{ name: '', password: PW }, 'name', 'empty name'],
            [{ name: '   ', password: PW }, 'name', 'blank name'],
            [{ name: 'n'.repeat(33), password: PW }, 'name', '33-character name'],
            [{ name: 'bad\u0001name', password: PW }, 'name', 'control character in name'],
            [{ password: PW }, 'name', 'missing name'],
        ];
        for (const [body, field, what] of cases) {
            const r = await http(srv.url, '/api/auth/signup', { method: 'POST', body });
            expectStatus(r, 400, 'bad_request', what);
            assert.match(r.json.error.message, new RegExp(field, 'i'), `${what}: the error names ${field}: ${show(r)}`);
        }
        // the bounds themselves are accepted
        await signup(srv.url, uname('pw8'), '12345678');
        await signup(srv.url, uname('pw256'), 'y'.repeat(256));
        await signup(srv.url, uname('n32').padEnd(32, 'n'), PW);
        // a name is trimmed
        const core = uname('trim');
        const s = await signup(srv.url, `  ${core}  `, PW);
        assert.equal(s.user.name, core, 'the name is stored trimmed');
    }));

    it('sign-in: 200 {user, token} and a new session; one 401 for unknown name and wrong password', T, withLogs(async () => {
        const name = uname('signin');
        const up = await signup(srv.url, name, PW);
        const s = await signin(srv.url, name, PW);
        assert.equal(s.user.name, name);
        assert.notEqual(s.token, up.token, 'a sign-in is a new session');
        expectStatus(await me(srv.url, s), 200, undefined, 'me after sign-in');
        const wrong = await signinRaw(srv.url, name, 'not the password');
        expectStatus(wrong, 401, 'unauthorized', 'wrong password');
        assert.ok(!sessionCookie(wrong) || clearsSession(wrong), `no session cookie on a failed sign-in: ${JSON.stringify(wrong.headers['set-cookie'])}`);
        const unknown = await signinRaw(srv.url, uname('nobody'), 'not the password');
        expectStatus(unknown, 401, 'unauthorized', 'unknown name');
        assert.equal(unknown.text, wrong.text, 'the same answer for an unknown name and a wrong password');
    }));
});

describe('accounts: sessions', () => {
    it('every /api/ path but signup, signin and mode needs a session; a bad token or cookie is 401', T, withLogs(async () => {
        for (const p of ['/api/rooms', '/api/me', '/api/rooms/general/messages', '/api/rooms/general/members']) {
            expectStatus(await api(srv.url, p), 401, undefined, `GET ${p} without a session`);
            expectStatus(await api(srv.url, p, { headers: { Authorization: 'Bearer tcs_' + 'A'.repeat(43) } }), 401, undefined, `GET ${p} with an unknown token`);
            expectStatus(await api(srv.url, p, { headers: { Cookie: 'tc_session=tcs_' + 'B'.repeat(43) } }), 401, undefined, `GET ${p} with an unknown cookie`);
        }
        const post = await http(srv.url, '/api/rooms/general/messages', { method: 'POST', body: { user: 'mallory', text: 'hi' } });
        expectStatus(post, 401, undefined, 'POST a message without a session');
    }));

    it('WebSocket: hello with the token, or with only the cookie on the upgrade; without either refused', T, withLogs(async () => {
        const s = await signup(srv.url, uname('ws'), PW);
        const a = await wsSession(srv.url, s, { via: 'token' });
        assert.equal(a.welcome.user, s.name);
        const b = await wsSession(srv.url, s, { via: 'cookie' });
        assert.equal(b.welcome.user, s.name);
        await a.join('general');
        await b.join('general');
        // a page of another site cannot open a WebSocket with the visitor's cookie
        const hijack = await connect(srv.wsUrl, { origin: 'http://evil.example', headers: { Cookie: s.cookie } }).then(
            (c) => c,
            (err) => err,
        );
        if (!(hijack instanceof Error)) {
            hijack.send({ type: 'hello' });
            const f = await hijack.nextOrClosed((x) => x.type === 'welcome' || x.type === 'error');
            hijack.terminate();
            assert.fail(`a cookie WebSocket upgrade from Origin http://evil.example was accepted; hello answered ${JSON.stringify(f)}`);
        }
        assert.ok((hijack.statusCode >= 400 && hijack.statusCode < 500) || /socket hang up|ECONNRESET/.test(hijack.message), `refused upgrade: ${hijack.message}`);
        await expectHelloRefused(srv.url, {}, {}, 'hello without token or cookie');
        await expectHelloRefused(srv.url, { name: 'mallory' }, {}, 'hello with only a name');
        await expectHelloRefused(srv.url, { token: 'tcs_' + 'C'.repeat(43) }, {}, 'hello with an unknown token');
        await expectHelloRefused(srv.url, {}, { headers: { Cookie: 'tc_session=nonsense' } }, 'hello with a bad cookie');
        await a.close();
        await b.close();
    }));

    it('sign-out ends the session: cookie and token refused, its WebSockets closed 1008; other sessions live on', T, withLogs(async () => {
        const name = uname('out');
        const s1 = await signup(srv.url, name, PW);
        const s2 = await signin(srv.url, name, PW);
        const w1t = await wsSession(srv.url, s1, { via: 'token', rooms: ['general'] });
        const w1c = await wsSession(srv.url, s1, { via: 'cookie', rooms: ['general'] });
        const w2 = await wsSession(srv.url, s2, { rooms: ['general'] });
        const r = await signout(srv.url, s1, { via: 'cookie' });
        expectStatus(r, 200, undefined, 'sign-out with the cookie');
        assert.deepEqual(r.json, {}, show(r));
        assert.ok(clearsSession(r), `sign-out clears the cookie: ${JSON.stringify(r.headers['set-cookie'])}`);
        await expectClosed(w1t, 1008, 'token WebSocket of the ended session');
        await expectClosed(w1c, 1008, 'cookie WebSocket of the ended session');
        expectStatus(await me(srv.url, s1, 'cookie'), 401, undefined, 'cookie after sign-out');
        expectStatus(await me(srv.url, s1, 'bearer'), 401, undefined, 'token after sign-out');
        const post = await http(srv.url, '/api/rooms/general/messages', { method: 'POST', body: { text: 'after sign-out' }, headers: s1.cookieH() });
        expectStatus(post, 401, undefined, 'a write with the cookie after sign-out');
        await expectHelloRefused(srv.url, { token: s1.token }, {}, 'hello with the ended token');
        await expectHelloRefused(srv.url, {}, { headers: { Cookie: s1.cookie } }, 'hello with the ended cookie');
        // the other session of the account is untouched
        expectStatus(await me(srv.url, s2), 200, undefined, 'the other session after sign-out');
        await expectAlive(w2, 'the other session');
        // signing out with the token works as well
        expectStatus(await signout(srv.url, s2), 200, undefined, 'sign-out with the token');
        await expectClosed(w2, 1008, 'after sign-out with the token');
        expectStatus(await me(srv.url, s2), 401, undefined, 'token after its sign-out');
    }));

    it('sign out everywhere ends every session of the account, and no other account\'s', T, withLogs(async () => {
        const name = uname('every');
        const ss = [await signup(srv.url, name, PW), await signin(srv.url, name, PW), await signin(srv.url, name, PW)];
        const other = await signup(srv.url, uname('bystander'), PW);
        const ws = await Promise.all(ss.map((s) => wsSession(srv.url, s, { rooms: ['general'] })));
        const wo = await wsSession(srv.url, other, { rooms: ['general'] });
        const r = await signout(srv.url, ss[1], { everywhere: true });
        expectStatus(r, 200, undefined, 'sign out everywhere');
        for (const [i, w] of ws.entries()) await expectClosed(w, 1008, `session ${i}`);
        for (const [i, s] of ss.entries()) {
            expectStatus(await me(srv.url, s), 401, undefined, `token of session ${i} after sign out everywhere`);
            expectStatus(await me(srv.url, s, 'cookie'), 401, undefined, `cookie of session ${i} after sign out everywhere`);
        }
        expectStatus(await me(srv.url, other), 200, undefined, 'another account');
        await expectAlive(wo, 'another account');
        // the account itself is fine: it signs in again
        await signin(srv.url, name, PW);
        await wo.close();
    }));

    it('PATCH /api/me: profile; a new password needs old_password and ends every other session', T, withLogs(async () => {
        const name = uname('prof');
        const s = await signup(srv.url, name, PW);
        const other = await signin(srv.url, name, PW);
        const wOther = await wsSession(srv.url, other, { rooms: ['general'] });
        const wSelf = await wsSession(srv.url, s, { rooms: ['general'] });
        const p = await http(srv.url, '/api/me', { method: 'PATCH', body: { display: 'Zoë Profile', color: '#12ab9F' }, headers: s.bearer() });
        expectStatus(p, 200, undefined, 'PATCH display and color');
        assert.equal(p.json.user.display, 'Zoë Profile', show(p));
        assert.equal(p.json.user.color.toLowerCase(), '#12ab9f', show(p));
        assert.equal((await me(srv.url, s)).json.user.display, 'Zoë Profile');
        for (const [body, what] of [
            [{ color: 'red' }, 'a colour that is not #rrggbb'],
            [{ color: '#12345' }, 'a 5-digit colour'],
            [{ display: 'd'.repeat(33) }, 'a 33-character display'],
            [{ display: '' }, 'an empty display'],
        ]) {
            const r = await http(srv.url, '/api/me', { method: 'PATCH', body, headers: s.bearer() });
            expectStatus(r, 400, 'bad_request', what);
        }
        const NEW = 'a brand new passphrase';
        const wrongOld = await http(srv.url, '/api/me', { method: 'PATCH', body: { password: NEW, old_password: 'not it at all' }, headers: s.bearer() });
        expectStatus(wrongOld, 403, 'forbidden', 'password change with a wrong old_password');
        const noOld = await http(srv.url, '/api/me', { method: 'PATCH', body: { password: NEW }, headers: s.bearer() });
        assert.ok(noOld.status === 400 || noOld.status === 403, `a new password without old_password must be refused: ${show(noOld)}`);
        await signin(srv.url, name, PW); // nothing changed yet
        const ok = await http(srv.url, '/api/me', { method: 'PATCH', body: { password: NEW, old_password: PW }, headers: s.bearer() });
        expectStatus(ok, 200, undefined, 'password change');
        await expectClosed(wOther, 1008, 'another session after a password change');
        expectStatus(await me(srv.url, other), 401, undefined, 'another session after a password change');
        expectStatus(await signinRaw(srv.url, name, PW), 401, 'unauthorized', 'the old password');
        await signin(srv.url, name, NEW);
        // "ends every other session": the one that made the change goes on (token and WebSocket)
        const self = await me(srv.url, s);
        expectStatus(self, 200, undefined, `the session that changed the password (the change answered ${show(ok)}; Set-Cookie ${JSON.stringify(ok.headers['set-cookie'])})`);
        await expectAlive(wSelf, 'the session that changed the password');
        await wSelf.close();
    }));
});

describe('accounts: CSRF rule of cookie-authenticated writes', () => {
    it('a cookie write without Origin or with a foreign one is 403 and changes nothing; own Origin and Bearer work', T, withLogs(async () => {
        const s = await signup(srv.url, uname('csrf'), PW);
        const room = uniq('csrf').replace(/[^A-Za-z0-9_.-]/g, '');
        const own = new URL(srv.url).origin;
        const writes = [
            ['POST', '/api/rooms', { name: room, private: false }],
            ['POST', '/api/rooms/general/messages', { text: 'csrf message' }],
            ['PATCH', '/api/me', { display: 'Hacked' }],
            ['POST', '/api/auth/signout', {}],
            ['POST', '/api/auth/signout', { everywhere: true }],
        ];
        for (const [method, p, body] of writes) {
            for (const origin of [false, 'http://evil.example', 'null']) {
                const r = await http(srv.url, p, { method, body, headers: s.cookieH(origin) });
                expectStatus(r, 403, 'forbidden', `${method} ${p} with the cookie and ${origin ? `Origin ${origin}` : 'no Origin'}`);
            }
        }
        // nothing happened: the session lives, the profile is unchanged, no room, no message
        const m = await me(srv.url, s, 'cookie');
        expectStatus(m, 200, undefined, 'the session survives refused sign-outs');
        assert.notEqual(m.json.user.display, 'Hacked');
        assert.ok(!(await listRooms(srv.url, s)).some((x) => x.name === room), 'the refused room was not made');
        const hist = await http(srv.url, '/api/rooms/general/messages?limit=200', { headers: s.bearer() });
        expectStatus(hist, 200, undefined, 'history of general');
        assert.ok(!hist.json.messages.some((x) => x.text === 'csrf message'), 'the refused message was not stored');
        // a message to change: made with the Bearer token, which needs no Origin
        const made = await http(srv.url, '/api/rooms/general/messages', { method: 'POST', body: { text: 'to be changed' }, headers: s.bearer() });
        expectStatus(made, 201, undefined, 'Bearer POST without Origin');
        const id = made.json.id;
        for (const [method, p, body] of [
            ['PATCH', `/api/rooms/general/messages/${id}`, { text: 'csrf edit' }],
            ['DELETE', `/api/rooms/general/messages/${id}`, undefined],
            ['PUT', `/api/rooms/general/messages/${id}/reactions/${encodeURIComponent('👍')}`, undefined],
        ]) {
            for (const origin of [false, 'http://evil.example']) {
                const r = await http(srv.url, p, { method, body, headers: s.cookieH(origin) });
                expectStatus(r, 403, 'forbidden', `${method} ${p} with the cookie and ${origin ? `Origin ${origin}` : 'no Origin'}`);
            }
        }
        const still = await http(srv.url, `/api/rooms/general/messages/${id}`, { headers: s.bearer() });
        expectStatus(still, 200, undefined, 'the message after refused changes');
        assert.equal(still.json.text, 'to be changed');
        assert.equal(still.json.deleted, false);
        assert.deepEqual(still.json.reactions, {});
        // the same writes with the cookie and the own Origin are accepted
        expectStatus(await http(srv.url, '/api/rooms', { method: 'POST', body: { name: room, private: false }, headers: s.cookieH(own) }), 201, undefined, 'cookie + own Origin: create room');
        expectStatus(await http(srv.url, `/api/rooms/general/messages/${id}`, { method: 'PATCH', body: { text: 'edited' }, headers: s.cookieH(own) }), 200, undefined, 'cookie + own Origin: edit');
        expectStatus(await http(srv.url, '/api/me', { method: 'PATCH', body: { display: 'Fine' }, headers: s.cookieH(own) }), 200, undefined, 'cookie + own Origin: PATCH /api/me');
        // Bearer writes without Origin
        expectStatus(await http(srv.url, `/api/rooms/general/messages/${id}/reactions/${encodeURIComponent('👍')}`, { method: 'PUT', headers: s.bearer() }), 200, undefined, 'Bearer PUT reaction');
        expectStatus(await http(srv.url, `/api/rooms/general/messages/${id}`, { method: 'DELETE', headers: s.bearer() }), 200, undefined, 'Bearer DELETE');
        expectStatus(await http(srv.url, '/api/me', { method: 'PATCH', body: { display: 'ViaBearer' }, headers: s.bearer() }), 200, undefined, 'Bearer PATCH /api/me');
        // a cookie GET needs no Origin
        expectStatus(await me(srv.url, s, 'cookie'), 200, undefined, 'cookie GET without Origin');
        expectStatus(await signout(srv.url, s, { via: 'cookie' }), 200, undefined, 'cookie + own Origin: sign-out');
    }));
});

describe('accounts: other modes', () => {
    it('signup = closed: 403 signup_closed, and /api/auth/mode says closed', T, withLogs(async () => {
        const s = await startServer({ env: accountsEnv({ TURBOCHAT_SIGNUP: 'closed' }) });
        const m = await api(s.url, '/api/auth/mode');
        assert.deepEqual({ auth: m.json.auth, signup: m.json.signup }, { auth: 'accounts', signup: 'closed' }, show(m));
        expectStatus(await signupRaw(s.url, uname('closed'), PW), 403, 'signup_closed', 'signup when closed');
        expectStatus(await signinRaw(s.url, uname('closed'), PW), 401, 'unauthorized', 'no account was made');
        await s.stop();
    }));

    it('the cookie lasts session_ttl_s: Max-Age follows TURBOCHAT_SESSION_TTL_S', T, withLogs(async () => {
        const s = await startServer({ env: accountsEnv({ TURBOCHAT_SESSION_TTL_S: '120' }) });
        const r = await signupRaw(s.url, uname('ttl'), PW);
        expectStatus(r, 201, undefined, 'signup');
        assert.equal(Number(sessionCookie(r).attrs['max-age']), 120, sessionCookie(r).raw);
        const si = await signinRaw(s.url, r.json.user.name, PW);
        assert.equal(Number(sessionCookie(si).attrs['max-age']), 120, sessionCookie(si).raw);
        await s.stop();
    }));

    it('accounts with auth_secret: JWTs minted by an app keep working next to sessions', T, withLogs(async () => {
        const SECRET = 'accounts-jwt-secret-0123456789abcdef';
        const s = await startServer({ env: accountsEnv({ TURBOCHAT_AUTH_SECRET: SECRET }) });
        const jwt = mintToken(SECRET, { user: 'appuser' });
        const c = await connect(s.wsUrl);
        c.send({ type: 'hello', token: jwt });
        const w = await c.next((x) => x.type === 'welcome' || x.type === 'error');
        assert.equal(w.type, 'welcome', `hello with a JWT in accounts mode: ${JSON.stringify(w)}`);
        assert.equal(w.user, 'appuser');
        await c.close();
        const r = await api(s.url, '/api/rooms', { headers: { Authorization: `Bearer ${jwt}` } });
        expectStatus(r, 200, undefined, 'REST with a JWT in accounts mode');
        const acc = await signup(s.url, uname('both'), PW);
        expectStatus(await me(s.url, acc), 200, undefined, 'a session next to JWTs');
        await s.stop();
    }));

    it('auth = token without auth_secret is a configuration error', T, withLogs(async () => {
        await assert.rejects(startServer({ env: { TURBOCHAT_AUTH: 'token' }, startTimeoutMs: 8000 }), /exited before it was healthy/);
    }));

    it('over TLS the session cookie is Secure', T, withLogs(async () => {
        const { startTlsServer } = await import('../lib/tls.mjs');
        const https = await import('node:https');
        const { tlsPort, ca } = await startTlsServer({ tmpPrefix: 'turbochat-acc-tls-', env: accountsEnv() });
        const body = JSON.stringify({ name: uname('tls'), password: PW });
        const res = await new Promise((resolve, reject) => {
            const req = https.request(
                { host: '127.0.0.1', port: tlsPort, path: '/api/auth/signup', method: 'POST', ca, headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } },
                (r) => {
                    let text = '';
                    r.on('data', (d) => (text += d));
                    r.on('end', () => resolve({ status: r.statusCode, headers: r.headers, text }));
                },
            );
            req.on('error', reject);
            req.end(body);
        });
        assert.equal(res.status, 201, `signup over TLS: ${res.status} ${res.text}`);
        const c = sessionCookie(res);
        assert.ok(c && c.attrs.secure, `Secure over TLS: ${JSON.stringify(res.headers['set-cookie'])}`);
        assert.ok(c.attrs.httponly, `HttpOnly over TLS: ${c.raw}`);
    }));
});

describe('accounts: nothing secret in answers', () => {
    it('user objects and error bodies hold no password or hash', T, withLogs(async () => {
        const pw = `Secret-${uniq('pw')}`;
        const name = uname('nosecret');
        const up = await signupRaw(srv.url, name, pw);
        assertNoSecret(up.text, [pw], 'signup answer');
        const bodies = [
            (await signupRaw(srv.url, name, pw)).text, // 409
            (await signinRaw(srv.url, name, `${pw}x`)).text, // 401
            (await signupRaw(srv.url, 'x'.repeat(40), pw)).text, // 400 name
            (await signupRaw(srv.url, uname('p'), 'short1')).text, // 400 password
            (await signinRaw(srv.url, name, pw)).text,
        ];
        for (const b of bodies) assertNoSecret(b, [pw, 'short1'], 'answer');
        assertNoSecret(JSON.stringify((await me(srv.url, { bearer: () => ({ Authorization: `Bearer ${up.json.token}` }) })).json), [pw], '/api/me');
    }));
});
