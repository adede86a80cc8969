/* store.js — the chat state in memory, with no DOM and no network: the room
 * directory (from GET /api/rooms), the rooms this person is in, each room's
 * messages keyed by id (so a message seen twice is kept once), its pending
 * sends keyed by ref, its members and who is typing. Changes are announced
 * with a 'change' event whose detail is {room, what}. */

import { saved } from './storage.js';

const TYPING_SHOWN_MS = 4000;

function newRoom(name) {
  return {
    name,
    joined: false,        /* the server confirmed our join on this connection */
    loaded: false,        /* the newest history page has been merged */
    messages: new Map(),  /* id -> message */
    hasOlder: false,
    loadingOlder: false,
    lastId: 0,            /* highest id known to exist (seen or announced) */
    seenId: 0,            /* highest id we hold: the `since` of a re-join */
    members: new Set(),
    typing: new Map(),    /* user -> time the indicator expires */
    pending: new Map(),   /* ref -> {ref, text, state, problem, createdAt} */
  };
}

export class Store extends EventTarget {
  me = '';
  current = null;
  visible = true;        /* the page is on screen: the current room is being read */
  directory = new Map(); /* name -> {last_id, online} */
  rooms = new Map();     /* the rooms this person is in, by name */
  #lastRead = saved.lastRead();

  constructor() {
    super();
    for (const name of saved.rooms()) this.rooms.set(name, newRoom(name));
    for (const item of saved.outbox()) this.#restorePending(item);
  }

  #changed(room, what) {
    this.dispatchEvent(new CustomEvent('change', { detail: { room, what } }));
  }

  room(name) {
    return this.rooms.get(name) || null;
  }

  /* Adds a room to this person's rooms (remembered); returns it. */
  enter(name) {
    let room = this.rooms.get(name);
    if (!room) {
      room = newRoom(name);
      this.rooms.set(name, room);
      saved.updateRooms((names) => (names.includes(name) ? names : [...names, name]));
      this.#changed(name, 'rooms');
    }
    return room;
  }

  /* Leaves name: forgotten here, with what waited to be sent there. */
  forget(name) {
    if (!this.rooms.delete(name)) return;
    saved.updateRooms((names) => names.filter((n) => n !== name));
    saved.updateOutbox((items) => items.filter((item) => item.room !== name));
    this.#changed(name, 'rooms');
  }

  setCurrent(name) {
    this.current = name;
    this.markRead(name);
    this.#changed(name, 'current');
  }

  setDirectory(list) {
    this.directory = new Map(list.map((r) => [r.name, { last_id: r.last_id, online: r.online }]));
    for (const [name, entry] of this.directory) {
      const room = this.rooms.get(name);
      if (room && entry.last_id > room.lastId) room.lastId = entry.last_id;
    }
    this.#changed(null, 'rooms');
  }

  /* Connection lost: no room is joined until the server says so again, and
   * nobody is known to be online until the directory is read again. */
  disconnected() {
    for (const entry of this.directory.values()) entry.online = null;
    for (const room of this.rooms.values()) {
      room.joined = false;
      room.typing.clear();
      room.members.clear();
      this.#changed(room.name, 'members');
    }
    this.#changed(null, 'rooms');
  }

  joined(frame) {
    const room = this.rooms.get(frame.room);
    if (!room) return null;
    room.joined = true;
    room.lastId = Math.max(room.lastId, frame.last_id || 0);
    room.members = new Set(frame.members || []);
    this.#changed(room.name, 'members');
    this.#changed(room.name, 'rooms');
    return room;
  }

  /* Merges messages (any order, duplicates allowed); returns the ones that
   * were new. */
  addMessages(name, messages) {
    const room = this.rooms.get(name);
    if (!room) return [];
    const added = [];
    for (const message of messages) {
      if (!room.messages.has(message.id)) added.push(message);
      room.messages.set(message.id, message);
      room.seenId = Math.max(room.seenId, message.id);
      room.lastId = Math.max(room.lastId, message.id);
      if (room.typing.delete(message.user)) this.#changed(name, 'typing');
      if (message.user === this.me) this.#readUpTo(name, message.id); /* one's own message is read */
    }
    if (name === this.current) this.markRead(name);
    this.#changed(name, 'messages');
    return added;
  }

  /* Replaces the whole history, e.g. after a re-join that could not replay. */
  resetMessages(name) {
    const room = this.rooms.get(name);
    if (!room) return;
    room.messages.clear();
    room.loaded = false;
    room.hasOlder = false;
    room.seenId = 0;
    this.#changed(name, 'messages');
  }

  setHistoryState(name, state) {
    const room = this.rooms.get(name);
    if (!room) return;
    Object.assign(room, state);
    this.#changed(name, 'messages');
  }

  sortedMessages(name) {
    const room = this.rooms.get(name);
    if (!room) return [];
    return [...room.messages.values()].sort((a, b) => a.id - b.id);
  }

  oldestId(name) {
    const room = this.rooms.get(name);
    if (!room || room.messages.size === 0) return 0;
    return Math.min(...room.messages.keys());
  }

  /* --- pending sends --- */

  addPending(name, ref, text) {
    const room = this.rooms.get(name);
    const createdAt = Date.now();
    room.pending.set(ref, { ref, text, state: 'queued', problem: '', createdAt });
    saved.updateOutbox((items) => [...items, { room: name, ref, text, createdAt }]);
    this.#changed(name, 'messages');
  }

  setPendingState(name, ref, state, problem = '') {
    const item = this.rooms.get(name)?.pending.get(ref);
    if (!item) return;
    item.state = state;
    item.problem = problem;
    this.#changed(name, 'messages');
  }

  /* The server stored it: the pending line becomes the stored message. */
  acknowledged(frame) {
    const room = this.rooms.get(frame.room);
    const item = room?.pending.get(frame.ref);
    if (!item) return;
    room.pending.delete(frame.ref);
    saved.updateOutbox((items) => items.filter((i) => i.ref !== frame.ref));
    if (!room.messages.has(frame.id)) {
      this.addMessages(room.name, [{ room: room.name, id: frame.id, user: this.me, text: item.text, ts: frame.ts }]);
    } else {
      this.#changed(room.name, 'messages');
    }
  }

  findPendingRoom(ref) {
    for (const room of this.rooms.values()) if (room.pending.has(ref)) return room.name;
    return null;
  }

  pendingList(name) {
    const room = this.rooms.get(name);
    return room ? [...room.pending.values()].sort((a, b) => a.createdAt - b.createdAt) : [];
  }

  #restorePending(item) {
    const room = this.rooms.get(item.room);
    if (!room || room.pending.has(item.ref)) return;
    room.pending.set(item.ref, { ref: item.ref, text: item.text, state: 'queued', problem: '', createdAt: item.createdAt });
  }

  /* --- members, typing, unread --- */

  presence(frame) {
    const room = this.rooms.get(frame.room);
    if (!room) return;
    if (frame.event === 'join') room.members.add(frame.user);
    if (frame.event === 'leave') {
      room.members.delete(frame.user);
      room.typing.delete(frame.user);
    }
    this.#changed(room.name, 'members');
    this.#changed(room.name, 'rooms');
  }

  typing(frame) {
    const room = this.rooms.get(frame.room);
    if (!room || frame.user === this.me) return;
    room.typing.set(frame.user, Date.now() + TYPING_SHOWN_MS);
    this.#changed(room.name, 'typing');
  }

  /* Drops expired typing indicators; true if any were dropped. */
  expireTyping(now = Date.now()) {
    let expired = false;
    for (const room of this.rooms.values()) {
      for (const [user, until] of room.typing) {
        if (until <= now) {
          room.typing.delete(user);
          expired = true;
          this.#changed(room.name, 'typing');
        }
      }
    }
    return expired;
  }

  typers(name) {
    const room = this.rooms.get(name);
    return room ? [...room.typing.keys()].sort() : [];
  }

  onlineCount(name) {
    const room = this.rooms.get(name);
    if (room?.joined) return room.members.size;
    return this.directory.get(name)?.online ?? null;
  }

  markRead(name) {
    const room = this.rooms.get(name);
    if (!room || !this.visible) return;
    this.#readUpTo(name, room.lastId);
  }

  #readUpTo(name, id) {
    if (name in this.#lastRead && this.#lastRead[name] >= id) return;
    this.#lastRead[name] = id;
    saved.setLastRead(name, id);
    this.#changed(name, 'rooms');
  }

  /* Messages after the last one read here; null when this device has never
   * read the room. Ids have no gaps, so the difference is the count. */
  unread(name) {
    if (!(name in this.#lastRead)) return null;
    const lastId = Math.max(this.rooms.get(name)?.lastId || 0, this.directory.get(name)?.last_id || 0);
    return Math.max(0, lastId - this.#lastRead[name]);
  }
}
