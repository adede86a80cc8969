// Helpers for the tests of a message's life (docs/PROTOCOL.md version 2:
// edit, delete, react, reply_to, mentions, update and mention frames, the
// REST change calls and GET /events). Written from the contract only.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { api, uniq, WAIT_MS } from './client.mjs';
import { binaryPath } from './server.mjs';

const enc = encodeURIComponent;

// ------------------------------------------------------------------ WebSocket

// Wait for the ack or error answering a frame sent with ref. An error without
// a ref (the contract makes it optional) for the same room is taken too.
function answer(c, room, ref, timeoutMs) {
    return c.next(
        (x) =>
            (x.type === 'ack' && x.ref === ref) ||
            (x.type === 'error' && (x.ref === ref || ((x.ref ?? null) === null && (x.room ?? room) === room))),
        timeoutMs,
    );
}

// send with optional reply_to (and any extra fields); resolves the ack or error.
export function wsSend(c, room, text, { ref = uniq('s'), reply_to, extra = {}, timeoutMs = WAIT_MS } = {}) {
    const f = { type: 'send', room, text, ref, ...extra };
    if (reply_to !== undefined) f.reply_to = reply_to;
    c.send(f);
    return answer(c, room, ref, timeoutMs);
}

export function wsEdit(c, room, id, text, { ref = uniq('e'), extra = {}, timeoutMs = WAIT_MS } = {}) {
    c.send({ type: 'edit', room, id, text, ref, ...extra });
    return answer(c, room, ref, timeoutMs);
}

export function wsDelete(c, room, id, { ref = uniq('d'), extra = {}, timeoutMs = WAIT_MS } = {}) {
    c.send({ type: 'delete', room, id, ref, ...extra });
    return answer(c, room, ref, timeoutMs);
}

export function wsReact(c, room, id, emoji, add = true, { ref = uniq('r'), extra = {}, timeoutMs = WAIT_MS } = {}) {
    c.send({ type: 'react', room, id, emoji, add, ref, ...extra });
    return answer(c, room, ref, timeoutMs);
}

// A raw frame (possibly malformed) with a ref; resolves the ack or error.
export function wsRaw(c, frame, { timeoutMs = WAIT_MS } = {}) {
    const ref = frame.ref ?? uniq('x');
    c.send({ ...frame, ref });
    return answer(c, frame.room, ref, timeoutMs);
}

// Wait for the update frame of room with the given id.
export function nextUpdate(c, room, id, timeoutMs = WAIT_MS) {
    return c.next((x) => x.type === 'update' && x.room === room && x.id === id, timeoutMs);
}

export function nextMention(c, room, id, timeoutMs = WAIT_MS) {
    return c.next((x) => x.type === 'mention' && x.room === room && x.id === id, timeoutMs);
}

// ------------------------------------------------------------------ REST

export function restPost(url, room, body, headers) {
    return api(url, `/api/rooms/${enc(room)}/messages`, { method: 'POST', body, headers });
}

export function restGet(url, room, id, headers) {
    return api(url, `/api/rooms/${enc(room)}/messages/${id}`, { headers });
}

export function restEdit(url, room, id, body, headers) {
    return api(url, `/api/rooms/${enc(room)}/messages/${id}`, { method: 'PATCH', body, headers });
}

function qs(q) {
    const parts = Object.entries(q)
        .filter(([, v]) => v !== undefined && v !== null)
        .map(([k, v]) => `${enc(k)}=${enc(v)}`);
    return parts.length ? `?${parts.join('&')}` : '';
}

// DELETE a message; q: { user, ref } for the query string.
export function restDelete(url, room, id, q = {}, headers) {
    return api(url, `/api/rooms/${enc(room)}/messages/${id}${qs(q)}`, { method: 'DELETE', headers });
}

// PUT (add) or DELETE (remove) a reaction; q: { user, ref }.
export function restReact(url, room, id, emoji, add, q = {}, headers) {
    return api(url, `/api/rooms/${enc(room)}/messages/${id}/reactions/${enc(emoji)}${qs(q)}`, {
        method: add ? 'PUT' : 'DELETE',
        headers,
    });
}

export function restEvents(url, room, { after, limit } = {}, headers) {
    return api(url, `/api/rooms/${enc(room)}/events${qs({ after, limit })}`, { headers });
}

// Every event of a room, oldest first (paging with after=).
export async function allEvents(url, room, headers) {
    const out = [];
    let after = 0;
    for (;;) {
        const r = await restEvents(url, room, { after, limit: 200 }, headers);
        if (r.status !== 200) throw new Error(`events of ${room} on ${url}: HTTP ${r.status} ${r.text.slice(0, 300)}`);
        assert.ok(Array.isArray(r.json.events), `events must be an array: ${r.text.slice(0, 300)}`);
        out.push(...r.json.events);
        if (!r.json.has_more || r.json.events.length === 0) break;
        after = r.json.events[r.json.events.length - 1].id;
    }
    return out;
}

// Assert a REST error response: status and error code.
export function assertRestError(r, status, code, ctx = '') {
    assert.equal(r.status, status, `${ctx}: expected HTTP ${status} ${code || ''}, got ${r.status} ${r.text.slice(0, 300)}`);
    assert.ok(r.json && r.json.error, `${ctx}: error body must be {"error":{...}}: ${r.text.slice(0, 300)}`);
    assert.equal(typeof r.json.error.message, 'string', `${ctx}: error.message`);
    if (code) assert.equal(r.json.error.code, code, `${ctx}: error code in ${r.text.slice(0, 300)}`);
}

// Assert a WebSocket error frame with the given code.
export function assertWsError(f, code, ctx = '') {
    assert.equal(f.type, 'error', `${ctx}: expected error ${code}, got ${JSON.stringify(f)}`);
    assert.equal(f.code, code, `${ctx}: expected error ${code}, got ${JSON.stringify(f)}`);
    assert.equal(typeof f.message, 'string', `${ctx}: error.message must be a string: ${JSON.stringify(f)}`);
}

// ------------------------------------------------------------------ shapes

const MESSAGE_FIELDS = ['room', 'id', 'user', 'text', 'ts', 'edited_ts', 'deleted', 'deleted_by', 'reactions', 'reply_to', 'mentions'];

// A message object (frame or REST) has every field of version 2 with its type.
export function assertMessageShape(m, ctx = '') {
    const s = JSON.stringify(m);
    for (const k of MESSAGE_FIELDS) assert.ok(k in m, `${ctx}: message lacks ${k}: ${s}`);
    assert.ok(Number.isInteger(m.id) && m.id > 0, `${ctx}: id ${s}`);
    assert.equal(typeof m.user, 'string', `${ctx}: user ${s}`);
    assert.equal(typeof m.text, 'string', `${ctx}: text ${s}`);
    assert.ok(Number.isInteger(m.ts), `${ctx}: ts ${s}`);
    assert.ok(m.edited_ts === null || Number.isInteger(m.edited_ts), `${ctx}: edited_ts ${s}`);
    assert.equal(typeof m.deleted, 'boolean', `${ctx}: deleted ${s}`);
    assert.ok(m.deleted_by === null || typeof m.deleted_by === 'string', `${ctx}: deleted_by ${s}`);
    assert.ok(m.reactions && typeof m.reactions === 'object' && !Array.isArray(m.reactions), `${ctx}: reactions ${s}`);
    for (const [e, users] of Object.entries(m.reactions)) {
        assert.ok(Array.isArray(users) && users.length > 0, `${ctx}: reactions[${e}] must be a non-empty array ${s}`);
    }
    assert.ok(m.reply_to === null || (typeof m.reply_to === 'object' && Number.isInteger(m.reply_to.id)), `${ctx}: reply_to ${s}`);
    if (m.reply_to) {
        assert.equal(typeof m.reply_to.user, 'string', `${ctx}: reply_to.user ${s}`);
        assert.equal(typeof m.reply_to.text, 'string', `${ctx}: reply_to.text ${s}`);
    }
    assert.ok(Array.isArray(m.mentions), `${ctx}: mentions ${s}`);
    if (m.deleted) {
        assert.equal(m.text, '', `${ctx}: a deleted message has text "" ${s}`);
        assert.deepEqual(m.reactions, {}, `${ctx}: a deleted message has reactions {} ${s}`);
        assert.deepEqual(m.mentions, [], `${ctx}: a deleted message has mentions [] ${s}`);
        assert.equal(typeof m.deleted_by, 'string', `${ctx}: a deleted message names deleted_by ${s}`);
        assert.equal(m.edited_ts, null, `${ctx}: a deleted message has edited_ts null ${s}`);
        assert.equal(m.reply_to, null, `${ctx}: a deleted message has reply_to null ${s}`);
    } else {
        assert.equal(m.deleted_by, null, `${ctx}: deleted_by of a live message is null ${s}`);
    }
}

// A fresh message: never edited, not deleted, no reactions.
export function assertFresh(m, ctx = '') {
    assertMessageShape(m, ctx);
    assert.equal(m.edited_ts, null, `${ctx}: edited_ts ${JSON.stringify(m)}`);
    assert.equal(m.deleted, false, `${ctx}: deleted ${JSON.stringify(m)}`);
    assert.deepEqual(m.reactions, {}, `${ctx}: reactions ${JSON.stringify(m)}`);
}

// An update object (frame or REST) of the given kind.
export function assertUpdateShape(u, kind, ctx = '') {
    const s = JSON.stringify(u);
    for (const k of ['room', 'id', 'target', 'kind', 'user', 'ts']) assert.ok(k in u, `${ctx}: update lacks ${k}: ${s}`);
    assert.ok(Number.isInteger(u.id) && u.id > 0, `${ctx}: id ${s}`);
    assert.ok(Number.isInteger(u.target) && u.target > 0 && u.target < u.id, `${ctx}: target < id ${s}`);
    assert.ok(Number.isInteger(u.ts), `${ctx}: ts ${s}`);
    assert.equal(typeof u.user, 'string', `${ctx}: user ${s}`);
    if (kind) assert.equal(u.kind, kind, `${ctx}: kind ${s}`);
    if (u.kind === 'edit') assert.equal(typeof u.text, 'string', `${ctx}: an edit update carries text ${s}`);
    if (u.kind === 'react' || u.kind === 'unreact') assert.equal(typeof u.emoji, 'string', `${ctx}: emoji ${s}`);
}

// An ack of a change: { ref, room, id, ts, target, kind }.
export function assertChangeAck(a, { room, ref, target, kind }, ctx = '') {
    const s = JSON.stringify(a);
    assert.equal(a.type, 'ack', `${ctx}: expected ack, got ${s}`);
    assert.equal(a.room, room, `${ctx}: ack.room ${s}`);
    if (ref !== undefined) assert.equal(a.ref, ref, `${ctx}: ack.ref ${s}`);
    assert.ok(Number.isInteger(a.id) && a.id > 0, `${ctx}: ack.id ${s}`);
    assert.ok(Number.isInteger(a.ts), `${ctx}: ack.ts ${s}`);
    assert.equal(a.target, target, `${ctx}: ack.target ${s}`);
    assert.equal(a.kind, kind, `${ctx}: ack.kind ${s}`);
}

// Strip transport-only fields (type) so a frame compares with a REST object.
export function bare(o) {
    const { type, ...rest } = o;
    return rest;
}

// ------------------------------------------------------------------ tokens

// Mint a token with `turbochat token` (the secret in its environment).
export function mintToken(secret, { user, rooms, role, ttl = '1h' }) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'turbochat-token-'));
    try {
        const env = { PATH: process.env.PATH, HOME: process.env.HOME, TURBOCHAT_AUTH_SECRET: secret };
        for (const k of ['ASAN_OPTIONS', 'UBSAN_OPTIONS', 'LSAN_OPTIONS', 'TSAN_OPTIONS']) if (process.env[k]) env[k] = process.env[k];
        const argv = ['token', '--user', user, '--ttl', ttl];
        if (rooms) argv.push('--rooms', rooms);
        if (role) argv.push('--role', role);
        const r = spawnSync(binaryPath(), argv, { cwd: dir, env, encoding: 'utf8', timeout: 20000 });
        assert.equal(r.status, 0, `turbochat ${argv.join(' ')} failed: ${r.stdout}\n${r.stderr}`);
        const token = r.stdout.trim().split('\n').pop().trim();
        assert.match(token, /^[\w-]+\.[\w-]+\.[\w-]+$/, `not a JWT: ${r.stdout}`);
        return token;
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
}

// ------------------------------------------------------------------ misc

// Resolve once Date.now() passes t (polling the clock, not a blind sleep).
export async function untilTime(t, stepMs = 20) {
    while (Date.now() <= t) await new Promise((r) => setTimeout(r, Math.min(stepMs, Math.max(1, t - Date.now() + 1))));
}

// Number of Unicode code points.
export const cpLen = (s) => [...s].length;

const MSG_KEYS = ['type', 'room', 'id', 'user', 'text', 'ts', 'edited_ts', 'deleted', 'deleted_by', 'reactions', 'reply_to', 'mentions'];
const UPD_KEYS = ['type', 'room', 'id', 'target', 'kind', 'user', 'ts', 'text', 'emoji'];

// The contract's fields of a message or update object (frames and REST
// objects may carry extra fields, which receivers ignore). `type` is kept
// when present; an update without `type` is recognised by its `kind`.
export function proj(o) {
    const isUpdate = o.type === 'update' || (o.type === undefined && 'kind' in o);
    const out = {};
    for (const k of isUpdate ? UPD_KEYS : MSG_KEYS) if (k in o) out[k] = o[k];
    return out;
}
