// Helpers for the tests of accounts, sessions, private rooms, DMs, read state
// and admin (issue 9, docs/PROTOCOL.md, "Accounts"). Written from the contract only:
// - http(): one REST request, like client.mjs api() but also with a source
//   address (localAddress: the per-address sign-in limit sees 127.0.0.x);
// - signup/signin/signout and a Session: its user, its token (tcs_...) and
//   its tc_session cookie, with headers for Bearer or cookie (+ Origin) use;
// - wsSession(): a WebSocket said hello with the session's token or cookie;
// - rooms, members, DMs, admin calls; the `turbochat user` CLI;
// - the build of an older release (for the migration tests).
import assert from 'node:assert/strict';
import { execSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { api, connect, WAIT_MS, withTimeout } from './client.mjs';
import { binaryPath, RELAXED_RATE_ENV } from './server.mjs';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const enc = encodeURIComponent;

// tcs_: a session of the accounts log; tco_: one a node sealed while Valkey
// was away (PROTOCOL.md, Accounts).
export const TOKEN_RE = /^(tcs_[A-Za-z0-9_-]{43}|tco_[0-9a-f]+\.[0-9]+\.[0-9a-f]{32}\.[0-9a-f]{64})$/;
export const ARGON_MARK = '$argon2';

// Environment of a node in accounts mode; the sign-in limit is lifted (tests
// that are not about it sign in many times from 127.0.0.1).
export function accountsEnv(extra = {}) {
    return {
        ...RELAXED_RATE_ENV,
        TURBOCHAT_AUTH: 'accounts',
        TURBOCHAT_SIGNUP: 'open',
        TURBOCHAT_SIGNIN_RATE_LIMIT: '100000',
        ...extra,
    };
}

// ------------------------------------------------------------------ HTTP

// One REST request on a fresh connection (client.mjs api()), a write without
// a body sent with Content-Length: 0: { status, headers, json, text, req }.
// opts: method, body (object: JSON), headers, localAddress, timeoutMs.
export async function http_(url, p, opts = {}) {
    const { method = 'GET', body, headers = {} } = opts;
    const hdrs = { ...headers };
    if (body === undefined && ['POST', 'PUT', 'PATCH', 'DELETE'].includes(method)) hdrs['Content-Length'] = 0;
    try {
        const r = await api(url, p, { ...opts, headers: hdrs });
        return { ...r, req: `${method} ${p}` };
    } catch (err) {
        err.message = `${err.message} (on ${url})`;
        throw err;
    }
}
export { http_ as http };

// A response described for assertion messages: the exact request and answer.
export function show(r) {
    return `${r.req || ''} -> ${r.status} ${r.text.slice(0, 400)}`;
}

// Assert status (and error code when given) of a response.
export function expectStatus(r, status, code, ctx = '') {
    assert.equal(r.status, status, `${ctx}: expected ${status}${code ? ` ${code}` : ''}: ${show(r)}`);
    if (code) {
        assert.ok(r.json && r.json.error, `${ctx}: error body {"error":{...}} expected: ${show(r)}`);
        assert.equal(r.json.error.code, code, `${ctx}: error code: ${show(r)}`);
        assert.equal(typeof r.json.error.message, 'string', `${ctx}: error.message: ${show(r)}`);
    }
    return r;
}

// ------------------------------------------------------------------ cookies

// The Set-Cookie headers of a response, as an array.
export function setCookies(r) {
    const h = r.headers['set-cookie'];
    if (!h) return [];
    return Array.isArray(h) ? h : [h];
}

// Parse the tc_session Set-Cookie of a response: { value, attrs (lower-cased
// names -> value or true), raw } or null.
export function sessionCookie(r) {
    for (const raw of setCookies(r)) {
        const parts = raw.split(';').map((s) => s.trim());
        const [nv, ...rest] = parts;
        const eq = nv.indexOf('=');
        if (eq < 0 || nv.slice(0, eq) !== 'tc_session') continue;
        const attrs = {};
        for (const a of rest) {
            const i = a.indexOf('=');
            if (i < 0) attrs[a.toLowerCase()] = true;
            else attrs[a.slice(0, i).toLowerCase()] = a.slice(i + 1);
        }
        return { value: nv.slice(eq + 1), attrs, raw };
    }
    return null;
}

// True when a Set-Cookie clears tc_session (empty value, Max-Age<=0 or an
// Expires in the past).
export function clearsSession(r) {
    const c = sessionCookie(r);
    if (!c) return false;
    if (c.value === '' || c.value === '""') return true;
    if (c.attrs['max-age'] !== undefined && Number(c.attrs['max-age']) <= 0) return true;
    if (c.attrs.expires && Date.parse(c.attrs.expires) < Date.now()) return true;
    return false;
}

// ------------------------------------------------------------------ sessions

// A signed-in session: user, token, cookie ("tc_session=..."), the node url it
// was made on, the password. bearer()/cookieH(origin) give request headers.
export class Session {
    constructor({ url, user, token, cookie, password }) {
        this.url = url;
        this.user = user;
        this.name = user && user.name;
        this.token = token;
        this.cookie = cookie;
        this.password = password;
    }

    bearer() {
        return { Authorization: `Bearer ${this.token}` };
    }

    // Cookie headers; origin: true for the node's own origin, a string, or
    // false for none.
    cookieH(origin = true, url = this.url) {
        const h = { Cookie: this.cookie };
        if (origin === true) h.Origin = new URL(url).origin;
        else if (origin) h.Origin = origin;
        return h;
    }
}

// POST /api/auth/signup; resolves the raw response.
export function signupRaw(url, name, password, { invite, headers, localAddress } = {}) {
    const body = { name, password };
    if (invite !== undefined) body.invite = invite;
    return http_(url, '/api/auth/signup', { method: 'POST', body, headers, localAddress });
}

// POST /api/auth/signin; resolves the raw response.
export function signinRaw(url, name, password, { headers, localAddress } = {}) {
    return http_(url, '/api/auth/signin', { method: 'POST', body: { name, password }, headers, localAddress });
}

// A response of signup/signin as a Session, after checking its shape: user,
// a tcs_ token and the tc_session cookie.
export function sessionOf(url, r, password, ctx = '') {
    assert.ok(r.json && r.json.user && typeof r.json.user === 'object', `${ctx}: {user, token} expected: ${show(r)}`);
    assert.match(String(r.json.token), TOKEN_RE, `${ctx}: token tcs_ + 43 base64url, or a sealed tco_ one: ${show(r)}`);
    const c = sessionCookie(r);
    assert.ok(c && c.value, `${ctx}: tc_session cookie expected; Set-Cookie: ${JSON.stringify(setCookies(r))}`);
    return new Session({ url, user: r.json.user, token: r.json.token, cookie: `tc_session=${c.value}`, password });
}

export async function signup(url, name, password, opts = {}) {
    const r = await signupRaw(url, name, password, opts);
    expectStatus(r, 201, undefined, `signup ${name}`);
    return sessionOf(url, r, password, `signup ${name}`);
}

export async function signin(url, name, password, opts = {}) {
    const r = await signinRaw(url, name, password, opts);
    expectStatus(r, 200, undefined, `signin ${name}`);
    return sessionOf(url, r, password, `signin ${name}`);
}

// POST /api/auth/signout with the session's Bearer token (default) or cookie.
export function signout(url, s, { everywhere, via = 'bearer' } = {}) {
    const body = everywhere === undefined ? {} : { everywhere };
    const headers = via === 'cookie' ? s.cookieH(true, url) : s.bearer();
    return http_(url, '/api/auth/signout', { method: 'POST', body, headers });
}

// GET /api/me with the token (via 'bearer') or the cookie.
export function me(url, s, via = 'bearer') {
    return http_(url, '/api/me', { headers: via === 'cookie' ? s.cookieH(false, url) : s.bearer() });
}

// ------------------------------------------------------------------ WebSocket

// Open a WebSocket to url (http base) and say hello with the session's token
// (via 'token') or with no token and its cookie on the upgrade (via
// 'cookie'). Resolves the client with .welcome set; throws on an error.
export async function wsSession(url, s, { via = 'token', rooms = [] } = {}) {
    const wsUrl = `${url.replace(/^http/, 'ws')}/ws`;
    const c = await connect(wsUrl, via === 'cookie' ? { headers: { Cookie: s.cookie } } : {});
    c.send(via === 'cookie' ? { type: 'hello' } : { type: 'hello', token: s.token });
    const w = await c.next((x) => x.type === 'welcome' || x.type === 'error');
    if (w.type !== 'welcome') {
        c.terminate();
        const err = new Error(`hello of ${s.name} (${via}) on ${url} refused: ${JSON.stringify(w)}`);
        err.frame = w;
        throw err;
    }
    c.welcome = w;
    c.user = w.user;
    for (const r of rooms) await c.join(r);
    return c;
}

// hello with the given fields on a new WebSocket; resolves { frame, client }:
// the first welcome or error.
export async function wsHelloRaw(url, hello, connectOpts = {}) {
    const wsUrl = `${url.replace(/^http/, 'ws')}/ws`;
    const c = await connect(wsUrl, connectOpts);
    c.send({ type: 'hello', ...hello });
    const frame = await c.nextOrClosed((x) => x.type === 'welcome' || x.type === 'error');
    return { frame, client: c };
}

// Assert that a hello is refused: error unauthorized, then close 1008.
export async function expectHelloRefused(url, hello, connectOpts = {}, ctx = '') {
    const { frame, client } = await wsHelloRaw(url, hello, connectOpts);
    assert.equal(frame.type, 'error', `${ctx}: hello ${JSON.stringify(hello)} on ${url} must be refused, got ${JSON.stringify(frame)}`);
    assert.equal(frame.code, 'unauthorized', `${ctx}: ${JSON.stringify(frame)}`);
    const ci = await withTimeout(client.closed, WAIT_MS, `${ctx}: close after a refused hello`);
    assert.equal(ci.code, 1008, `${ctx}: close code after a refused hello`);
}

// Wait until c is closed; resolves the close info and asserts its code.
export async function expectClosed(c, code = 1008, ctx = '', timeoutMs = WAIT_MS) {
    const ci = await withTimeout(c.closed, timeoutMs, `${ctx}: WebSocket of ${c.user} to be closed with ${code}`).catch((err) => {
        const seen = c.frames.slice(-10).map((f) => JSON.stringify(f)).join('\n  ');
        err.message += `; last frames:\n  ${seen}`;
        throw err;
    });
    assert.equal(ci.code, code, `${ctx}: close code of ${c.user}'s WebSocket (${JSON.stringify(ci)})`);
    return ci;
}

// Still open and answering: a ping round trip.
export async function expectAlive(c, ctx = '') {
    assert.ok(c.isOpen, `${ctx}: ${c.user}'s WebSocket must still be open (${JSON.stringify(c.closeInfo)})`);
    await c.ping();
}

// An answer (ack or error) to a frame with ref, or an error of the room.
export function answerOf(c, room, ref, timeoutMs = WAIT_MS) {
    return c.next(
        (x) =>
            (x.type === 'ack' && x.ref === ref) ||
            (x.type === 'error' && (x.ref === ref || ((x.ref ?? null) === null && (x.room ?? room) === room))),
        timeoutMs,
    );
}

// join; resolves the joined frame or the error for the room (not thrown).
export function tryJoin(c, room, since, timeoutMs = WAIT_MS) {
    const f = { type: 'join', room };
    if (since !== undefined) f.since = since;
    c.send(f);
    return c.next((x) => (x.type === 'joined' || x.type === 'error') && x.room === room, timeoutMs);
}

// ------------------------------------------------------------------ rooms

export function roomsPath(room, rest = '') {
    return `/api/rooms/${enc(room)}${rest}`;
}

// POST /api/rooms {name, private} with the Bearer token.
export function createRoomRaw(url, s, name, priv) {
    return http_(url, '/api/rooms', { method: 'POST', body: { name, private: priv }, headers: s.bearer() });
}

export async function createRoom(url, s, name, priv) {
    const r = await createRoomRaw(url, s, name, priv);
    expectStatus(r, 201, undefined, `create room ${name}`);
    return r.json.room;
}

export function addMemberRaw(url, s, room, user, role) {
    const body = { user };
    if (role !== undefined) body.role = role;
    return http_(url, roomsPath(room, '/members'), { method: 'POST', body, headers: s.bearer() });
}

export async function addMember(url, s, room, user, role) {
    const r = await addMemberRaw(url, s, room, user, role);
    expectStatus(r, 200, undefined, `add ${user} to ${room}`);
    return r.json;
}

export function removeMember(url, s, room, user) {
    return http_(url, roomsPath(room, `/members/${enc(user)}`), { method: 'DELETE', headers: s.bearer() });
}

// GET /api/rooms with the session: the rooms array (asserted 200).
export async function listRooms(url, s) {
    const r = await http_(url, '/api/rooms', { headers: s.bearer() });
    expectStatus(r, 200, undefined, `GET /api/rooms as ${s.name}`);
    assert.ok(Array.isArray(r.json.rooms), show(r));
    return r.json.rooms;
}

// The name in a {room} answer: a room object or (for POST /api/dms, which
// the issue calls "the DM's room name") a string.
export function roomNameOf(room) {
    return typeof room === 'string' ? room : room && room.name;
}

export function dmRaw(url, s, users) {
    return http_(url, '/api/dms', { method: 'POST', body: { users }, headers: s.bearer() });
}

export async function dm(url, s, users) {
    const r = await dmRaw(url, s, users);
    expectStatus(r, 200, undefined, `POST /api/dms ${JSON.stringify(users)} by ${s.name}`);
    const name = roomNameOf(r.json.room);
    assert.match(String(name), /^dm-[0-9a-f]{24}$/, `DM room name: ${show(r)}`);
    return name;
}

// GET one REST path of a room as s (Bearer).
export function roomGet(url, s, room, rest) {
    return http_(url, roomsPath(room, rest), { headers: s.bearer() });
}

// ------------------------------------------------------------------ admin

export function adminCall(url, s, method, p, body) {
    return http_(url, `/api/admin${p}`, { method, body, headers: s.bearer() });
}

// ------------------------------------------------------------------ checks

// User object shape of the contract.
export function assertUserShape(u, ctx = '') {
    const s = JSON.stringify(u);
    assert.equal(typeof u.name, 'string', `${ctx}: user.name ${s}`);
    assert.equal(typeof u.display, 'string', `${ctx}: user.display ${s}`);
    assert.match(String(u.color), /^#[0-9a-fA-F]{6}$/, `${ctx}: user.color ${s}`);
    assert.ok(u.role === 'user' || u.role === 'admin', `${ctx}: user.role ${s}`);
    assert.equal(typeof u.disabled, 'boolean', `${ctx}: user.disabled ${s}`);
    assert.ok(Number.isInteger(u.created) && u.created > 1.5e12, `${ctx}: user.created in ms ${s}`);
    assertNoSecret(s, [], `${ctx}: user object`);
}

// Assert that text holds none of the passwords and no Argon2 hash.
export function assertNoSecret(text, passwords = [], ctx = '') {
    assert.ok(!text.includes(ARGON_MARK), `${ctx}: an Argon2 hash appears in:\n${excerpt(text, ARGON_MARK)}`);
    for (const p of passwords) {
        assert.ok(!text.includes(p), `${ctx}: the password ${JSON.stringify(p)} appears in:\n${excerpt(text, p)}`);
    }
}

function excerpt(text, needle) {
    const i = text.indexOf(needle);
    return text.slice(Math.max(0, i - 300), i + 300);
}

// A unique account name (user-name rules: at most 32 characters).
let nameSeq = 0;
export function uname(prefix = 'u') {
    nameSeq += 1;
    return `${prefix}${process.pid.toString(36)}${nameSeq.toString(36)}`.slice(0, 32);
}

// ------------------------------------------------------------------ CLI

// Run `turbochat ARGS` to completion in cwd with a clean environment plus env;
// input goes to stdin. Resolves { status, stdout, stderr }.
export function runCli(args, { env = {}, cwd, input = '', timeoutMs = 30000 } = {}) {
    const base = { PATH: process.env.PATH, HOME: process.env.HOME };
    for (const k of ['ASAN_OPTIONS', 'UBSAN_OPTIONS', 'LSAN_OPTIONS', 'TSAN_OPTIONS']) if (process.env[k]) base[k] = process.env[k];
    const dir = cwd || fs.mkdtempSync(path.join(os.tmpdir(), 'turbochat-cli-'));
    try {
        const r = spawnSync(binaryPath(), args, { cwd: dir, env: { ...base, ...env }, input, encoding: 'utf8', timeout: timeoutMs });
        assert.doesNotMatch(r.stderr || '', /ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer/, `sanitizer report:\n${r.stderr}`);
        return { status: r.status, signal: r.signal, stdout: r.stdout || '', stderr: r.stderr || '', error: r.error };
    } finally {
        if (!cwd) fs.rmSync(dir, { recursive: true, force: true });
    }
}

export function describeCli(args, r) {
    return `turbochat ${args.join(' ')} -> exit ${r.status}${r.signal ? ` (${r.signal})` : ''}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;
}

// ------------------------------------------------------------------ older release

// The binary of an older release, built from `git archive REV` with CMake
// (as bench/run.mjs does) into /tmp/turbochat-baseline-SHA and kept there.
// $TURBOCHAT_BASELINE_BIN overrides. Returns { bin, sha }.
export function baselineBinary(rev = process.env.TURBOCHAT_BASELINE_REV || 'd5dfba9') {
    if (process.env.TURBOCHAT_BASELINE_BIN) return { bin: path.resolve(process.env.TURBOCHAT_BASELINE_BIN), sha: 'given' };
    const sha = execSync(`git -C '${REPO}' rev-parse --verify '${rev}^{commit}'`, { encoding: 'utf8' }).trim();
    for (const cand of [
        path.join(os.tmpdir(), `turbochat-baseline-${sha.slice(0, 7)}`, 'build', 'turbochat'),
        path.join(REPO, 'bench', '.cache', `baseline-${sha.slice(0, 7)}`, 'build', 'turbochat'),
    ]) {
        if (fs.existsSync(cand)) return { bin: cand, sha };
    }
    const civet = path.join(REPO, '.deps', 'civetweb');
    if (!fs.existsSync(path.join(civet, 'src', 'civetweb.c'))) throw new Error(`CivetWeb source missing in ${civet} (make deps)`);
    const dir = path.join(os.tmpdir(), `turbochat-baseline-${sha.slice(0, 7)}`);
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(path.join(dir, 'src'), { recursive: true });
    const q = (s) => `'${s.replace(/'/g, "'\\''")}'`;
    execSync(`git -C ${q(REPO)} archive ${sha} | tar -x -C ${q(path.join(dir, 'src'))}`);
    const logFile = path.join(dir, 'build.log');
    execSync(
        `cmake -S ${q(path.join(dir, 'src'))} -B ${q(path.join(dir, 'build'))} -DCMAKE_BUILD_TYPE=Release ` +
            `-DCIVETWEB_SOURCE_DIR=${q(civet)} > ${q(logFile)} 2>&1 && ` +
            `cmake --build ${q(path.join(dir, 'build'))} -j2 --target turbochat >> ${q(logFile)} 2>&1`,
    );
    const bin = path.join(dir, 'build', 'turbochat');
    if (!fs.existsSync(bin)) throw new Error(`baseline build of ${sha} produced no binary; see ${logFile}`);
    return { bin, sha };
}
