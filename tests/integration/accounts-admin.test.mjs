// Admin of accounts on one node (issue 9, docs/PROTOCOL.md, "Accounts"): the admin
// REST calls (users listed, disabled and enabled, passwords reset, rooms
// listed and closed) and their 403 to everyone else; invite codes with
// signup = invite; the `turbochat user add/passwd/disable/enable/list`
// command line in single-node mode with the server stopped (password on
// stdin), its accounts then used by the server.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { api, uniq } from '../lib/client.mjs';
import {
    accountsEnv,
    adminCall,
    assertNoSecret,
    assertUserShape,
    createRoom,
    describeCli,
    dm,
    expectAlive,
    expectClosed,
    expectHelloRefused,
    expectStatus,
    http,
    me,
    runCli,
    show,
    signin,
    signinRaw,
    signup,
    signupRaw,
    tryJoin,
    uname,
    wsSession,
} from '../lib/accounts.mjs';
import { startServer, stopAll, withLogs } from '../lib/server.mjs';

const T = { timeout: 60000 };
const PW = 'admin tests password';
const enc = encodeURIComponent;

let srv;
let root;
let alice;
let bob;

before(async () => {
    srv = await startServer({ env: accountsEnv() });
    root = await signup(srv.url, uname('root'), PW);
    alice = await signup(srv.url, uname('alice'), PW);
    bob = await signup(srv.url, uname('bob'), PW);
});

after(stopAll);

const rname = (p) => uniq(p).replace(/[^A-Za-z0-9_.-]/g, '');

describe('admin REST', () => {
    it('every admin call answers 403 forbidden to a non-admin and 401 without a session', T, withLogs(async () => {
        const target = enc(bob.name);
        const room = 'general';
        const calls = [
            ['GET', '/api/admin/users'],
            ['POST', `/api/admin/users/${target}/disable`],
            ['POST', `/api/admin/users/${target}/enable`],
            ['POST', `/api/admin/users/${target}/password`, { password: 'taken over 123' }],
            ['GET', '/api/admin/rooms'],
            ['DELETE', `/api/admin/rooms/${room}`],
            ['POST', '/api/auth/invites', {}],
        ];
        for (const [method, p, body] of calls) {
            expectStatus(await http(srv.url, p, { method, body, headers: alice.bearer() }), 403, 'forbidden', `${method} ${p} by a user`);
            expectStatus(await http(srv.url, p, { method, body }), 401, undefined, `${method} ${p} without a session`);
        }
        // none of them did anything
        await signin(srv.url, bob.name, PW);
        const c = await wsSession(srv.url, bob);
        assert.equal((await tryJoin(c, room)).type, 'joined', 'the room is still open');
        await c.close();
    }));

    it('GET /api/admin/users lists every account by name, with roles and no secrets', T, withLogs(async () => {
        const r = await adminCall(srv.url, root, 'GET', '/users');
        expectStatus(r, 200, undefined, 'list users');
        const users = r.json.users;
        const names = users.map((u) => u.name);
        assert.deepEqual(names, [...names].sort(), `users by name: ${names.join(', ')}`);
        for (const n of [root.name, alice.name, bob.name]) assert.ok(names.includes(n), `${n} listed`);
        for (const u of users) assertUserShape(u, `admin list: ${u.name}`);
        assert.equal(users.find((u) => u.name === root.name).role, 'admin');
        assert.equal(users.find((u) => u.name === alice.name).role, 'user');
        assertNoSecret(r.text, [PW], 'admin user list');
    }));

    it('disable cuts the account off at once (WebSocket 1008, token refused, sign-in 401); enable lets it back', T, withLogs(async () => {
        const name = uname('dis');
        const s = await signup(srv.url, name, PW);
        const s2 = await signin(srv.url, name, PW);
        const w1 = await wsSession(srv.url, s, { rooms: ['general'] });
        const w2 = await wsSession(srv.url, s2, { via: 'cookie', rooms: ['general'] });
        const other = await wsSession(srv.url, alice, { rooms: ['general'] });
        const r = await adminCall(srv.url, root, 'POST', `/users/${enc(name)}/disable`);
        expectStatus(r, 200, undefined, 'disable');
        assert.equal(r.json.user.name, name, show(r));
        assert.equal(r.json.user.disabled, true, show(r));
        await expectClosed(w1, 1008, 'token WebSocket of a disabled account');
        await expectClosed(w2, 1008, 'cookie WebSocket of a disabled account');
        expectStatus(await me(srv.url, s), 401, undefined, 'token of a disabled account');
        expectStatus(await me(srv.url, s2, 'cookie'), 401, undefined, 'cookie of a disabled account');
        await expectHelloRefused(srv.url, { token: s.token }, {}, 'hello of a disabled account');
        const si = await signinRaw(srv.url, name, PW);
        expectStatus(si, 401, 'unauthorized', 'sign-in of a disabled account');
        const wrong = await signinRaw(srv.url, name, 'not the password');
        assert.equal(si.text, wrong.text, 'a disabled account is answered as a wrong password');
        await expectAlive(other, 'another account');
        const listed = (await adminCall(srv.url, root, 'GET', '/users')).json.users.find((u) => u.name === name);
        assert.equal(listed.disabled, true, JSON.stringify(listed));
        const e = await adminCall(srv.url, root, 'POST', `/users/${enc(name)}/enable`);
        expectStatus(e, 200, undefined, 'enable');
        assert.equal(e.json.user.disabled, false, show(e));
        expectStatus(await me(srv.url, s), 401, undefined, 'an ended session stays ended after enable');
        const back = await signin(srv.url, name, PW);
        expectStatus(await me(srv.url, back), 200, undefined, 'a new session after enable');
        await other.close();
    }));

    it('an admin password reset ends the account\'s sessions; the new password signs in, the old not', T, withLogs(async () => {
        const name = uname('reset');
        const s = await signup(srv.url, name, PW);
        const w = await wsSession(srv.url, s, { rooms: ['general'] });
        const NEW = 'reset by the admin';
        const short = await adminCall(srv.url, root, 'POST', `/users/${enc(name)}/password`, { password: 'short' });
        expectStatus(short, 400, 'bad_request', 'a reset to a 5-character password');
        const r = await adminCall(srv.url, root, 'POST', `/users/${enc(name)}/password`, { password: NEW });
        expectStatus(r, 200, undefined, 'reset');
        assert.equal(r.json.user.name, name);
        assertNoSecret(r.text, [NEW], 'reset answer');
        await expectClosed(w, 1008, 'WebSocket after a reset');
        expectStatus(await me(srv.url, s), 401, undefined, 'session after a reset');
        expectStatus(await signinRaw(srv.url, name, PW), 401, 'unauthorized', 'old password after a reset');
        await signin(srv.url, name, NEW);
    }));

    it('GET /api/admin/rooms lists every room, private and DMs too; DELETE closes one: left {reason: closed}, then not_found', T, withLogs(async () => {
        const priv = rname('hidden');
        const pub = rname('open');
        await createRoom(srv.url, alice, priv, true);
        await createRoom(srv.url, alice, pub, false);
        const d = await dm(srv.url, alice, [bob.name]);
        const r = await adminCall(srv.url, root, 'GET', '/rooms');
        expectStatus(r, 200, undefined, 'admin rooms');
        const by = Object.fromEntries(r.json.rooms.map((x) => [x.name, x]));
        for (const [n, p, isDm] of [[priv, true, false], [pub, false, false], [d, true, true]]) {
            const x = by[n];
            assert.ok(x, `${n} in GET /api/admin/rooms: ${show(r)}`);
            assert.equal(x.private, p, JSON.stringify(x));
            assert.equal(x.dm, isDm, JSON.stringify(x));
            assert.equal(x.closed, false, JSON.stringify(x));
            assert.equal(typeof x.last_id, 'number', JSON.stringify(x));
        }
        const a = await wsSession(srv.url, alice, { rooms: [pub] });
        const b = await wsSession(srv.url, bob, { rooms: [pub] });
        const del = await adminCall(srv.url, root, 'DELETE', `/rooms/${pub}`);
        expectStatus(del, 200, undefined, 'close a room');
        for (const c of [a, b]) {
            const left = await c.next((x) => x.type === 'left' && x.room === pub);
            assert.equal(left.reason, 'closed', JSON.stringify(left));
        }
        assert.equal((await tryJoin(a, pub)).code, 'not_found', 'join of a closed room');
        a.send({ type: 'send', room: pub, text: 'anyone?', ref: 'closed-1' });
        const s = await a.next((x) => x.type === 'error' || x.type === 'ack');
        assert.equal(s.code, 'not_found', `send to a closed room: ${JSON.stringify(s)}`);
        const after = (await adminCall(srv.url, root, 'GET', '/rooms')).json.rooms.find((x) => x.name === pub);
        assert.equal(after && after.closed, true, `closed in the admin list: ${JSON.stringify(after)}`);
        // a private room the admin is not a member of can be closed too
        const m = await wsSession(srv.url, alice, { rooms: [priv] });
        expectStatus(await adminCall(srv.url, root, 'DELETE', `/rooms/${priv}`), 200, undefined, 'close a private room');
        assert.equal((await m.next((x) => x.type === 'left' && x.room === priv)).reason, 'closed');
        for (const c of [a, b, m]) await c.close();
        // every room object of the admin list has its members (checked last, so a missing field does not hide the rest)
        // and general, which exists from the start, is listed too
        assert.ok(by.general && by.general.private === false && by.general.closed === false, `general in GET /api/admin/rooms: ${show(r)}`);
        // members of a private room (PROTOCOL: "members of a private room")
        assert.deepEqual([...by[priv].members].map((x) => (typeof x === 'string' ? x : x.user)).sort(), [alice.name], `members of ${priv}: ${JSON.stringify(by[priv])}`);
        assert.deepEqual([...by[d].members].map((x) => (typeof x === 'string' ? x : x.user)).sort(), [alice.name, bob.name].sort(), `members of the DM: ${JSON.stringify(by[d])}`);
    }));
});

describe('admin as moderator', () => {
    it('an admin is a moderator of every room: deletes anyone\'s message; a user may not', T, withLogs(async () => {
        const room = rname('modroom');
        await createRoom(srv.url, alice, room, false);
        const m = await http(srv.url, `/api/rooms/${room}/messages`, { method: 'POST', body: { text: 'by alice' }, headers: alice.bearer() });
        expectStatus(m, 201, undefined, 'a message by alice');
        expectStatus(await http(srv.url, `/api/rooms/${room}/messages/${m.json.id}`, { method: 'DELETE', headers: bob.bearer() }), 403, 'forbidden', 'a user deletes another\'s message');
        const del = await http(srv.url, `/api/rooms/${room}/messages/${m.json.id}`, { method: 'DELETE', headers: root.bearer() });
        expectStatus(del, 200, undefined, 'the admin deletes alice\'s message');
        assert.equal(del.json.user, root.name, show(del));
        const after = await http(srv.url, `/api/rooms/${room}/messages/${m.json.id}`, { headers: alice.bearer() });
        assert.equal(after.json.deleted, true, show(after));
        assert.equal(after.json.deleted_by, root.name, show(after));
    }));
});

describe('invites', () => {
    it('signup = invite: no or a bad code is invite_invalid; an admin\'s code works once', T, withLogs(async () => {
        const s0 = await startServer({ env: accountsEnv() });
        const boss = await signup(s0.url, uname('boss'), PW);
        const dir = s0.dir;
        await s0.stop();
        const s = await startServer({ dir, env: accountsEnv({ TURBOCHAT_SIGNUP: 'invite' }) });
        const mode = await api(s.url, '/api/auth/mode');
        assert.deepEqual({ auth: mode.json.auth, signup: mode.json.signup }, { auth: 'accounts', signup: 'invite' }, show(mode));
        expectStatus(await signupRaw(s.url, uname('noinv'), PW), 403, 'invite_invalid', 'without a code');
        expectStatus(await signupRaw(s.url, uname('badinv'), PW, { invite: 'XXXX-not-a-code' }), 403, 'invite_invalid', 'with a bad code');
        const b = await signin(s.url, boss.name, PW);
        const inv = await http(s.url, '/api/auth/invites', { method: 'POST', body: {}, headers: b.bearer() });
        expectStatus(inv, 201, undefined, 'an admin makes an invite');
        assert.equal(typeof inv.json.code, 'string', show(inv));
        assert.ok(inv.json.code.length >= 8, `a code hard to guess: ${show(inv)}`);
        const week = 7 * 24 * 3600 * 1000;
        assert.ok(Math.abs(inv.json.expires - (Date.now() + week)) < 120000, `expires in 7 days (ms): ${show(inv)}`);
        const guest = await signup(s.url, uname('guest'), PW, { invite: inv.json.code });
        assert.equal(guest.user.role, 'user');
        expectStatus(await signupRaw(s.url, uname('again'), PW, { invite: inv.json.code }), 403, 'invite_invalid', 'the code used a second time');
        // a user may not make invites
        expectStatus(await http(s.url, '/api/auth/invites', { method: 'POST', body: {}, headers: guest.bearer() }), 403, 'forbidden', 'a user makes an invite');
        await s.stop();
    }));
});

describe('turbochat user (single node, server stopped)', () => {
    it('add, list, passwd, disable, enable: the server then signs the accounts in accordingly', T, withLogs(async () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'turbochat-usercli-'));
        const env = { TURBOCHAT_AUTH: 'accounts', TURBOCHAT_DB: path.join(dir, 'turbochat.db') };
        const P1 = 'cli password one';
        const P2 = 'cli password two';
        const BOSS = 'cli boss password';
        const cli = (args, input = '') => {
            const r = runCli(args, { env, cwd: dir, input });
            assertNoSecret(r.stdout + r.stderr, [P1, P2, BOSS], describeCli(args, r));
            return r;
        };
        const okCli = (args, input) => {
            const r = cli(args, input);
            assert.equal(r.status, 0, describeCli(args, r));
            return r;
        };
        okCli(['user', 'add', 'boss', '--admin'], `${BOSS}\n`);
        okCli(['user', 'add', 'carol'], `${P1}\n`);
        const dup = cli(['user', 'add', 'CAROL'], `${P1}\n`);
        assert.equal(dup.status, 1, `a name taken in another case: ${describeCli(['user', 'add', 'CAROL'], dup)}`);
        const shortPw = cli(['user', 'add', 'shorty'], 'short\n');
        assert.equal(shortPw.status, 1, `a 5-character password: ${describeCli(['user', 'add', 'shorty'], shortPw)}`);
        let list = okCli(['user', 'list']);
        const lineOf = (out, n) => out.split('\n').find((l) => new RegExp(`(^|\\s)${n}(\\s|$)`).test(l)) || '';
        assert.match(lineOf(list.stdout, 'boss'), /admin/, `boss is an admin in the list:\n${list.stdout}`);
        assert.ok(lineOf(list.stdout, 'carol'), `carol listed:\n${list.stdout}`);
        assert.ok(!lineOf(list.stdout, 'shorty'), `no account for a refused add:\n${list.stdout}`);
        okCli(['user', 'passwd', 'carol'], `${P2}\n`);
        okCli(['user', 'disable', 'carol']);
        list = okCli(['user', 'list']);
        assert.match(lineOf(list.stdout, 'carol'), /disabled/i, `carol disabled in the list:\n${list.stdout}`);
        const unknown = cli(['user', 'disable', 'nobody-here']);
        assert.equal(unknown.status, 1, `disable of an unknown account: ${describeCli(['user', 'disable', 'nobody-here'], unknown)}`);
        assert.ok((unknown.stderr + unknown.stdout).trim().length > 0, 'the refusal says why');
        let s = await startServer({ dir, env: accountsEnv() });
        const boss = await signin(s.url, 'boss', BOSS);
        assert.equal(boss.user.role, 'admin', 'an account added with --admin is admin');
        expectStatus(await signinRaw(s.url, 'carol', P2), 401, 'unauthorized', 'a disabled account');
        const mode = await signupRaw(s.url, uname('later'), PW);
        expectStatus(mode, 201, undefined, 'sign-up after CLI accounts');
        assert.equal(mode.json.user.role, 'user', 'the CLI made the first account: later ones are users');
        await s.stop();
        okCli(['user', 'enable', 'carol']);
        s = await startServer({ dir, env: accountsEnv() });
        expectStatus(await signinRaw(s.url, 'carol', P1), 401, 'unauthorized', 'the password before passwd');
        const carol = await signin(s.url, 'carol', P2);
        assert.equal(carol.user.role, 'user');
        await s.stop();
        fs.rmSync(dir, { recursive: true, force: true });
    }));
});
