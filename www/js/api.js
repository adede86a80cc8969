/* api.js — the REST side of PROTOCOL.md: the room directory, message
 * history and single messages (a reply's original). Every function resolves with the parsed JSON body or throws an
 * ApiError carrying the server's error code and human message. */

const PAGE_SIZE = 50;

let bearer = '';

/* Sends Authorization: Bearer token with every request from now on ('' stops). */
export function useToken(token) {
  bearer = token;
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
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
    throw new ApiError(response.status, error.code || 'http_' + response.status,
      error.message || `The server answered ${response.status}.`);
  }
  return body;
}

function roomPath(room) {
  return `/api/rooms/${encodeURIComponent(room)}`;
}

export async function listRooms() {
  const body = await request('/api/rooms');
  return Array.isArray(body?.rooms) ? body.rooms : [];
}

/* {messages (ascending ids), has_more}; with before: the page older than it;
 * with after: the page newer than it. */
export async function fetchMessages(room, { before = 0, after = 0, limit = PAGE_SIZE } = {}) {
  const query = new URLSearchParams({ limit: String(limit) });
  if (before) query.set('before', String(before));
  if (after) query.set('after', String(after));
  const body = await request(`${roomPath(room)}/messages?${query}`);
  return { messages: Array.isArray(body?.messages) ? body.messages : [], hasMore: Boolean(body?.has_more) };
}

/* One message in its current state (an ApiError with status 404 when the
 * room has no such message). */
export function fetchMessage(room, id) {
  return request(`${roomPath(room)}/messages/${encodeURIComponent(String(id))}`);
}
