/* api.js — the REST side of PROTOCOL.md: the room directory, message
 * history and single messages (a reply's original), search, and with auth =
 * accounts (docs/PROTOCOL.md, "Accounts") the account, its session (a cookie the
 * browser keeps), rooms and their members, direct messages and the admin
 * calls. Every function resolves with the parsed JSON body or throws an
 * ApiError carrying the server's error code, human message and, for 429,
 * the seconds of Retry-After. */

const PAGE_SIZE = 50;

let bearer = '';

/* Sends Authorization: Bearer token with every request from now on ('' stops). */
export function useToken(token) {
  bearer = token;
}

export class ApiError extends Error {
  constructor(status, code, message, retryAfter = 0) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter; /* seconds, from Retry-After; 0 when none */
  }
}

async function request(path, options = {}) {
  let response;
  try {
    const headers = { Accept: 'application/json' };
    if (bearer) headers.Authorization = `Bearer ${bearer}`;
    response = await fetch(path, { headers, cache: 'no-store', ...options });
  } catch {
    throw new ApiError(0, 'offline', 'The server cannot be reached.');
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    /* a body that is not JSON is reported below by status */
  }
  if (!response.ok) {
    const error = body?.error || {};
    const retryAfter = Number.parseInt(response.headers.get('Retry-After') || '', 10);
    throw new ApiError(response.status, error.code || 'http_' + response.status,
      error.message || `The server answered ${response.status}.`, Number.isFinite(retryAfter) ? retryAfter : 0);
  }
  return body;
}

/* A request with a JSON body (the session cookie goes along: same origin). */
function send(method, path, body) {
  const options = { method };
  if (body !== undefined) {
    options.headers = { Accept: 'application/json', 'Content-Type': 'application/json' };
    if (bearer) options.headers.Authorization = `Bearer ${bearer}`;
    options.body = JSON.stringify(body);
  }
  return request(path, options);
}

function roomPath(room) {
  return `/api/rooms/${encodeURIComponent(room)}`;
}

const part = (value) => encodeURIComponent(value);

const ROOM_PAGES_MAX = 10; /* of 500 rooms: the sidebar lists at most 5,000 */

/* The room directory, page after page (GET /api/rooms gives `next`). */
export async function listRooms() {
  const rooms = [];
  let after = '';
  for (let page = 0; page < ROOM_PAGES_MAX; page++) {
    const query = new URLSearchParams({ limit: '500' });
    if (after) query.set('after', after);
    const body = await request(`/api/rooms?${query}`);
    if (Array.isArray(body?.rooms)) rooms.push(...body.rooms);
    after = typeof body?.next === 'string' ? body.next : '';
    if (!after) break;
  }
  return rooms;
}

/* GET /api/search: {results (newest first, each with its snippet), next ('' when
 * there is nothing further)}. */
export async function search(q, { before = '', limit = 20 } = {}) {
  const query = new URLSearchParams({ q, limit: String(limit) });
  if (before) query.set('before', before);
  const body = await request(`/api/search?${query}`);
  return { results: Array.isArray(body?.results) ? body.results : [], next: typeof body?.next === 'string' ? body.next : '' };
}

/* {messages (ascending ids), has_more, begins (the lowest id history can
 * serve: above 1 once messages expired), retentionDays (0: kept forever)};
 * with before: the page older than it; with after: the page newer than it. */
export async function fetchMessages(room, { before = 0, after = 0, limit = PAGE_SIZE } = {}) {
  const query = new URLSearchParams({ limit: String(limit) });
  if (before) query.set('before', String(before));
  if (after) query.set('after', String(after));
  const body = await request(`${roomPath(room)}/messages?${query}`);
  return {
    messages: Array.isArray(body?.messages) ? body.messages : [],
    hasMore: Boolean(body?.has_more),
    begins: Number.isSafeInteger(body?.begins) && body.begins > 0 ? body.begins : 1,
    retentionDays: typeof body?.retention_days === 'number' && body.retention_days > 0 ? body.retention_days : 0,
  };
}

/* One message in its current state (an ApiError with status 404 when the
 * room has no such message). */
export function fetchMessage(room, id) {
  return request(`${roomPath(room)}/messages/${encodeURIComponent(String(id))}`);
}

/* --- accounts (auth = accounts) --- */

/* {auth: 'off'|'token'|'accounts', signup: 'open'|'invite'|'closed'}. */
export function authMode() {
  return request('/api/auth/mode');
}

/* Each resolves with {user, token}; the server also sets the session cookie. */
export function signUp(name, password, invite = '') {
  return send('POST', '/api/auth/signup', invite ? { name, password, invite } : { name, password });
}

export function signIn(name, password) {
  return send('POST', '/api/auth/signin', { name, password });
}

/* everywhere: end every session of the account, not just this one. */
export function signOut(everywhere = false) {
  return send('POST', '/api/auth/signout', everywhere ? { everywhere: true } : {});
}

/* The session's user object (an ApiError with status 401 without a session). */
export async function me() {
  return (await request('/api/me')).user;
}

/* change: {display?, color?, password?, old_password?}; resolves with the user. */
export async function updateMe(change) {
  return (await send('PATCH', '/api/me', change)).user;
}

/* --- rooms, members, direct messages --- */

/* Resolves with the new room object. */
export async function createRoom(name, isPrivate) {
  return (await send('POST', '/api/rooms', { name, private: Boolean(isPrivate) })).room;
}

/* {room, members: [online names], roster?: [{user, role}]} */
export function roomMembers(room) {
  return request(`${roomPath(room)}/members`);
}

export function addMember(room, user, role = 'member') {
  return send('POST', `${roomPath(room)}/members`, { user, role });
}

export function removeMember(room, user) {
  return send('DELETE', `${roomPath(room)}/members/${part(user)}`);
}

/* --- moderation (docs/PROTOCOL.md, "Moderation: mute and ban") --- */

/* {room, muted: [{user, by, ts}], banned: [...]}; an ApiError 403 for
 * anyone but a moderator of the room. */
export function moderation(room) {
  return request(`${roomPath(room)}/moderation`);
}

/* what: 'mutes' | 'bans'; on: true to put it in place, false to lift it.
 * Resolves with the event. */
export function setSanction(room, what, user, on) {
  return request(`${roomPath(room)}/${what}/${part(user)}`, { method: on ? 'PUT' : 'DELETE' });
}

/* The direct-message room of this person and users (created on first use). */
export async function openDm(users) {
  return (await send('POST', '/api/dms', { users })).room;
}

/* --- admin --- */

export async function adminUsers() {
  const body = await request('/api/admin/users');
  return Array.isArray(body?.users) ? body.users : [];
}

/* enable: true to enable, false to disable; resolves with the user. */
export async function setUserEnabled(name, enable) {
  return (await send('POST', `/api/admin/users/${part(name)}/${enable ? 'enable' : 'disable'}`, {})).user;
}

export async function resetPassword(name, password) {
  return (await send('POST', `/api/admin/users/${part(name)}/password`, { password })).user;
}

export async function adminRooms() {
  const body = await request('/api/admin/rooms');
  return Array.isArray(body?.rooms) ? body.rooms : [];
}

export function closeRoom(room) {
  return send('DELETE', `/api/admin/rooms/${part(room)}`);
}

/* {code, expires} of a new single-use invite code. */
export function createInvite() {
  return send('POST', '/api/auth/invites', {});
}
