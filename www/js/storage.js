/* storage.js — what this device remembers between visits, in localStorage:
 * the display name, the sign-in token, the rooms the person is in, the last id read per room,
 * drafts, and the outbox of messages not yet acknowledged. Every read
 * tolerates a missing or corrupt value; every write tolerates a full or
 * disabled storage. */

const PREFIX = 'turbochat.';

function read(key, fallback) {
  try {
    const raw = localStorage.getItem(PREFIX + key);
    return raw === null ? fallback : JSON.parse(raw);
  } catch {
    return fallback;
  }
}

function write(key, value) {
  try {
    localStorage.setItem(PREFIX + key, JSON.stringify(value));
  } catch {
    /* storage full or disabled: the page still works for this visit */
  }
}

export const saved = {
  name: () => read('name', ''),
  setName: (name) => write('name', name),

  /* the sign-in token, on a server with auth on ('' when none) */
  token: () => read('token', ''),
  setToken: (token) => write('token', token),

  rooms: () => read('rooms', []),
  setRooms: (names) => write('rooms', names),

  lastRead: () => read('lastRead', {}),
  setLastRead: (map) => write('lastRead', map),

  drafts: () => read('drafts', {}),
  setDrafts: (map) => write('drafts', map),

  /* [{room, ref, text, createdAt}] */
  outbox: () => read('outbox', []),
  setOutbox: (items) => write('outbox', items),
};
