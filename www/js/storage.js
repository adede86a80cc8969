/* storage.js — what this device remembers between visits, in localStorage:
 * the display name, the sign-in token, the server's auth mode (for a visit
 * while it cannot be reached), the rooms the person is in, the last id read per room,
 * drafts, the outbox of messages not yet acknowledged, and whether to notify
 * of mentions. Every read
 * tolerates a missing or corrupt value; every write tolerates a full or
 * disabled storage. Writes change the stored value in place, so tabs of one
 * browser do not undo each other. */

const PREFIX = 'turbochat.';

/* The stored value, or fallback when there is none or it is not of
 * fallback's kind (string, array or plain object). */
function read(key, fallback) {
  try {
    const raw = localStorage.getItem(PREFIX + key);
    const value = raw === null ? fallback : JSON.parse(raw);
    return sameKind(value, fallback) ? value : fallback;
  } catch {
    return fallback;
  }
}

function sameKind(value, fallback) {
  if (Array.isArray(fallback)) return Array.isArray(value);
  if (typeof fallback === 'object') return value !== null && typeof value === 'object' && !Array.isArray(value);
  return typeof value === typeof fallback;
}

function write(key, value) {
  try {
    localStorage.setItem(PREFIX + key, JSON.stringify(value));
  } catch {
    /* storage full or disabled: the page still works for this visit */
  }
}

/* Several tabs share localStorage: change what is stored now, not a copy. */
function update(key, fallback, change) {
  write(key, change(read(key, fallback)));
}

export const saved = {
  name: () => read('name', ''),
  setName: (name) => write('name', name),

  /* the sign-in token, on a server with auth on ('' when none) */
  token: () => read('token', ''),
  setToken: (token) => write('token', token),

  /* 'accounts' when the server last said auth = accounts, else '' */
  mode: () => read('mode', ''),
  setMode: (mode) => write('mode', mode),

  rooms: () => read('rooms', []),
  updateRooms: (change) => update('rooms', [], change),

  lastRead: () => read('lastRead', {}),
  /* raises the stored mark of room to id (never lowers it) */
  setLastRead: (room, id) => update('lastRead', {}, (map) => ({ ...map, [room]: Math.max(map[room] ?? 0, id) })),

  drafts: () => read('drafts', {}),
  setDraft: (room, text) => update('drafts', {}, (map) => {
    const next = { ...map };
    if (text) next[room] = text;
    else delete next[room];
    return next;
  }),

  /* [{room, ref, text, createdAt, replyTo?: {id, user, text}}] */
  outbox: () => read('outbox', []),
  updateOutbox: (change) => update('outbox', [], change),

  /* mention notifications, once the browser allows them (on unless turned off) */
  notify: () => read('notify', true),
  setNotify: (on) => write('notify', on),

  forgetEverything: () => {
    try {
      for (const key of Object.keys(localStorage)) if (key.startsWith(PREFIX)) localStorage.removeItem(key);
    } catch {
      /* storage disabled: nothing was kept */
    }
  },
};
