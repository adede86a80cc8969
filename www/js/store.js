/* store.js — the chat state in memory, with no DOM and no network: the room
 * directory (from GET /api/rooms), the rooms this person is in, each room's
 * messages keyed by id (so a message seen twice is kept once) in their
 * current state, the change events (edit, delete, react, unreact) seen since
 * the room was joined, its pending sends and changes keyed by ref, its
 * members and who is typing, the reply being written, the message being
 * edited, and mentions of this person per room. Changes are announced with a
 * 'change' event whose detail is {room, what}.
 *
 * Ids number a room's events, messages and changes alike, so message ids
 * skip. A change is applied to the message it targets in id order; the
 * changes of a message are kept and applied again whenever a copy of it
 * arrives (a REST page read before the change, a replay after a re-join), so
 * every copy ends in the same state however the copies and the changes
 * interleave: the last edit gives the text, a delete is final, and for each
 * (user, emoji) the last react or unreact decides.
 *
 * With auth = accounts the server keeps what the account has read: each
 * room's read state is the server's last snapshot (GET /api/rooms, joined)
 * plus what this page saw since (messages held, mentions, read frames of the
 * account's other devices, and its own reads), and the page names direct
 * messages after the other people in them. */

import { saved } from './storage.js';

const TYPING_SHOWN_MS = 4000;
const UNREAD_MAX = 999; /* the server counts no further */
const DM_NAME = /^dm-[0-9a-f]{24}$/;
const CHANGES_KEPT = 5000; /* change events kept per room, for copies of messages still to come */

/* A message as the store keeps it: every field of PROTOCOL.md present (an
 * older server or a pending send's stand-in may lack some), reactions copied
 * so changes can edit them in place. changeId: the highest change applied. */
function normalize(message) {
  const reactions = {};
  for (const [emoji, users] of Object.entries(message.reactions || {})) {
    if (Array.isArray(users) && users.length) reactions[emoji] = [...users];
  }
  return {
    ...message,
    text: message.text ?? '',
    edited_ts: message.edited_ts ?? null,
    deleted: Boolean(message.deleted),
    deleted_by: message.deleted_by ?? null,
    reactions,
    reply_to: message.reply_to ? { ...message.reply_to } : null,
    mentions: Array.isArray(message.mentions) ? message.mentions : [],
    changeId: 0,
  };
}

/* Applies one change event to a message. Applying the same events again, in
 * id order, leaves the same state. */
function applyChange(message, change) {
  message.changeId = Math.max(message.changeId, change.id);
  if (message.deleted) return; /* a delete is final */
  if (change.kind === 'edit') {
    message.text = change.text ?? message.text;
    message.edited_ts = change.ts ?? message.edited_ts;
  } else if (change.kind === 'delete') {
    message.deleted = true;
    message.deleted_by = change.user ?? null;
    message.text = '';
    message.reactions = {};
    message.mentions = [];
  } else if (change.kind === 'react') {
    const users = message.reactions[change.emoji] || (message.reactions[change.emoji] = []);
    if (!users.includes(change.user)) users.push(change.user);
  } else if (change.kind === 'unreact') {
    const users = (message.reactions[change.emoji] || []).filter((user) => user !== change.user);
    if (users.length) message.reactions[change.emoji] = users;
    else delete message.reactions[change.emoji];
  }
}

/* The kind of update event a pending change becomes. */
function changeKind(change) {
  if (change.kind === 'react') return change.add ? 'react' : 'unreact';
  return change.kind;
}

function newRoom(name) {
  return {
    name,
    joined: false,        /* the server confirmed our join on this connection */
    loaded: false,        /* the newest history page has been merged */
    messages: new Map(),  /* id -> message */
    hasOlder: false,
    loadingOlder: false,
    begins: 1,            /* the lowest id history can serve: above 1 once messages expired */
    retentionDays: 0,     /* how long the room keeps messages; 0: forever */
    lastId: 0,            /* highest id known to exist (seen or announced) */
    seenId: 0,            /* highest event id we hold, message or change: the `since` of a re-join */
    members: new Set(),
    typing: new Map(),    /* user -> time the indicator expires */
    pending: new Map(),   /* ref -> {ref, text, state, problem, createdAt, replyTo} */
    changes: new Map(),   /* target id -> [update frames, ascending ids] seen since the join */
    changeCount: 0,       /* update frames held in changes */
    ourChanges: new Map(),/* ref -> {ref, kind, target, text?, emoji?, add?, state} not yet acknowledged */
    notices: new Map(),   /* message id -> why our change of it failed */
    replyTo: null,        /* {id, user, text}: the message the composer answers */
    dividerAfter: null,   /* accounts: "new since you left" goes after this id (null: not known yet) */
  };
}

export class Store extends EventTarget {
  me = '';
  current = null;
  visible = true;        /* the page is on screen: the current room is being read */
  directory = new Map(); /* name -> {last_id, online} */
  rooms = new Map();     /* the rooms this person is in, by name */
  editing = null;        /* {room, id}: the message being edited in place */
  mentionCounts = new Map(); /* room -> mentions of this person not yet read there */
  accounts = false;      /* auth = accounts: read state, rooms and people come from the server */
  profile = null;        /* accounts: the signed-in user {name, display, color, role} */
  reads = new Map();     /* accounts: room -> {lastRead, known, base: {unread, mentions, lastId}, mentionIds} */
  rosters = new Map();   /* accounts: private room -> [{user, role}] as last read */
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
    const room = this.rooms.get(name);
    if (this.accounts && room) {
      const state = this.reads.get(name);
      room.dividerAfter = state?.known ? state.lastRead : null; /* else the join's last_read */
    }
    this.markRead(name);
    this.#changed(name, 'current');
  }

  setDirectory(list) {
    this.directory = new Map(list.map((r) => [r.name, {
      last_id: r.last_id,
      online: r.online,
      private: Boolean(r.private),
      dm: Boolean(r.dm),
      members: Array.isArray(r.members) ? r.members : null,
    }]));
    for (const r of list) {
      const room = this.rooms.get(r.name);
      if (room && r.last_id > room.lastId) room.lastId = r.last_id;
      if (this.accounts) this.#snapshot(r.name, { unread: r.unread, mentions: r.mentions, lastId: r.last_id });
    }
    this.#changed(null, 'rooms');
  }

  /* Adds or updates one room of the directory (one just created or opened). */
  addToDirectory(r) {
    const entry = this.directory.get(r.name) || { last_id: 0, online: null };
    Object.assign(entry, {
      last_id: Math.max(entry.last_id || 0, r.last_id || 0),
      private: Boolean(r.private),
      dm: Boolean(r.dm),
      members: Array.isArray(r.members) ? r.members : entry.members ?? null,
    });
    this.directory.set(r.name, entry);
    this.#changed(r.name, 'rooms');
  }

  /* --- accounts: private rooms, direct messages, rosters --- */

  isDm(name) {
    if (!this.accounts) return false;
    const entry = this.directory.get(name);
    return entry ? entry.dm : DM_NAME.test(name);
  }

  isPrivate(name) {
    return Boolean(this.directory.get(name)?.private) || this.isDm(name);
  }

  /* The other people of a direct-message room, as far as known. */
  dmPeople(name) {
    const members = this.directory.get(name)?.members || this.rosters.get(name)?.map((m) => m.user) || [];
    return members.filter((user) => user !== this.me).sort((a, b) => a.localeCompare(b));
  }

  /* What a room is called on screen: "#name", or a DM's people. */
  label(name) {
    if (!this.isDm(name)) return `#${name}`;
    const people = this.dmPeople(name);
    return people.length ? people.join(', ') : 'Direct message';
  }

  /* roster: [{user, role}] of a private room (null: not shown to us). */
  setRoster(name, roster) {
    if (roster) this.rosters.set(name, roster);
    else this.rosters.delete(name);
    this.#changed(name, 'members');
  }

  isOwner(name) {
    return Boolean(this.rosters.get(name)?.some((m) => m.user === this.me && m.role === 'owner'));
  }

  /* --- accounts: read state --- */

  #readState(name) {
    let state = this.reads.get(name);
    if (!state) {
      state = { lastRead: 0, known: false, base: { unread: 0, mentions: 0, lastId: 0 }, mentionIds: new Set() };
      this.reads.set(name, state);
    }
    return state;
  }

  /* The server's counts for a room at its last_id; lastRead when it said. */
  #snapshot(name, { unread = 0, mentions = 0, lastId = 0, lastRead = null }) {
    const state = this.#readState(name);
    if (lastRead !== null) {
      state.lastRead = Math.max(state.lastRead, lastRead);
      state.known = true;
    }
    /* a read this page sent may not have reached the server's counts yet */
    const ahead = state.lastRead >= lastId;
    state.base = { unread: ahead ? 0 : Number(unread) || 0, mentions: ahead ? 0 : Number(mentions) || 0, lastId };
    for (const id of state.mentionIds) if (id <= lastId) state.mentionIds.delete(id);
    this.#changed(name, 'rooms');
  }

  /* A joined frame: its counts, and where the person stopped reading. */
  joinedReadState(frame) {
    if (!this.accounts) return;
    const lastRead = Number(frame.last_read) || 0;
    this.#snapshot(frame.room, { unread: frame.unread, mentions: frame.mentions, lastId: frame.last_id || 0, lastRead });
    const room = this.rooms.get(frame.room);
    if (room && (room.dividerAfter === null || frame.room !== this.current)) room.dividerAfter = lastRead;
    this.#changed(frame.room, 'messages');
  }

  /* The account has read name up to id (here, or on another device). */
  readTo(name, id) {
    const state = this.#readState(name);
    state.known = true;
    if (id <= state.lastRead) return false;
    state.lastRead = id;
    if (id >= state.base.lastId) state.base = { unread: 0, mentions: 0, lastId: state.base.lastId };
    for (const mention of state.mentionIds) if (mention <= id) state.mentionIds.delete(mention);
    this.#changed(name, 'rooms');
    return true;
  }

  lastReadId(name) {
    return this.reads.get(name)?.lastRead || 0;
  }

  /* Held messages of name that are not ours, not deleted and after id. */
  #heldAfter(room, id, test = () => true) {
    let count = 0;
    for (const message of room.messages.values()) {
      if (message.id > id && message.user !== this.me && !message.deleted && test(message)) count++;
    }
    return count;
  }

  /* True when the held messages reach back to the last read id. */
  #holdsUnread(room, state) {
    if (!room?.loaded) return false;
    if (!room.hasOlder) return true;
    return room.messages.size > 0 && Math.min(...room.messages.keys()) <= state.lastRead + 1;
  }

  #serverUnread(name) {
    const state = this.reads.get(name);
    const room = this.rooms.get(name);
    if (!state) return 0;
    if (this.#holdsUnread(room, state)) return Math.min(UNREAD_MAX, this.#heldAfter(room, state.lastRead));
    const since = Math.max(state.base.lastId, state.lastRead);
    return Math.min(UNREAD_MAX, state.base.unread + (room ? this.#heldAfter(room, since) : 0));
  }

  #serverMentions(name) {
    const state = this.reads.get(name);
    if (!state) return 0;
    const since = Math.max(state.base.lastId, state.lastRead);
    let count = state.base.lastId > state.lastRead ? state.base.mentions : 0;
    for (const id of state.mentionIds) if (id > since) count++;
    return count;
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
    this.joinedReadState(frame);
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
    for (const incoming of messages) {
      const message = normalize(incoming);
      if (!room.messages.has(message.id)) added.push(message);
      for (const change of room.changes.get(message.id) || []) applyChange(message, change);
      const original = message.reply_to && room.messages.get(message.reply_to.id);
      if (original?.deleted) message.reply_to.text = '';
      room.messages.set(message.id, message);
      this.#sawEvent(room, message.id);
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
    room.changes.clear();
    room.changeCount = 0;
    room.loaded = false;
    room.hasOlder = false;
    room.seenId = 0;
    this.#changed(name, 'messages');
  }

  /* The history read over REST after a join covers every event up to the
   * join's last_id: a re-join need not ask for them again. */
  coveredUpTo(name, id) {
    const room = this.rooms.get(name);
    if (room) this.#sawEvent(room, id || 0);
  }

  #sawEvent(room, id) {
    room.seenId = Math.max(room.seenId, id);
    room.lastId = Math.max(room.lastId, id);
  }

  /* --- changes: edit, delete, react, unreact --- */

  /* An update frame (or its stand-in made from our own ack). Frames seen
   * twice, or out of order, end in the same state. */
  update(frame) {
    const room = this.rooms.get(frame.room);
    if (!room || !(frame.id > 0) || !(frame.target > 0)) return;
    this.#sawEvent(room, frame.id);
    this.#keepChange(room, frame);
    const message = room.messages.get(frame.target);
    if (message) {
      if (frame.id > message.changeId) applyChange(message, frame);
      else for (const change of room.changes.get(message.id) || []) applyChange(message, change);
      if (message.deleted) this.#eraseQuotesOf(room, message.id);
    }
    this.#changed(room.name, 'messages');
  }

  #keepChange(room, frame) {
    const list = room.changes.get(frame.target) || [];
    if (list.some((change) => change.id === frame.id || change.kind === 'delete')) return;
    /* after a delete nothing else matters: keep only the delete */
    const kept = frame.kind === 'delete' ? [frame] : [...list, frame].sort((a, b) => a.id - b.id);
    room.changeCount += kept.length - list.length;
    room.changes.set(frame.target, kept);
    while (room.changeCount > CHANGES_KEPT) {
      const oldest = Math.min(...room.changes.keys());
      room.changeCount -= room.changes.get(oldest).length;
      room.changes.delete(oldest);
    }
  }

  /* Replies keep pointing at a deleted message; its words leave their quotes. */
  #eraseQuotesOf(room, id) {
    for (const message of room.messages.values()) {
      if (message.reply_to?.id === id) message.reply_to.text = '';
    }
  }

  /* Our own change of a message, waiting for its ack. change: {ref, kind
   * ('edit'|'delete'|'react'), target, text?, emoji?, add?}. */
  addChange(name, change) {
    const room = this.rooms.get(name);
    if (!room) return;
    room.ourChanges.set(change.ref, { ...change, state: 'queued' });
    room.notices.delete(change.target);
    this.#changed(name, 'messages');
  }

  setChangeState(name, ref, state) {
    const change = this.rooms.get(name)?.ourChanges.get(ref);
    if (!change) return;
    change.state = state;
    this.#changed(name, 'messages');
  }

  findChangeRoom(ref) {
    for (const room of this.rooms.values()) if (room.ourChanges.has(ref)) return room.name;
    return null;
  }

  changeList(name) {
    const room = this.rooms.get(name);
    return room ? [...room.ourChanges.values()] : [];
  }

  /* The pending edit of message id, if any (its text is shown until the
   * server's update arrives). */
  pendingEdit(name, id) {
    const room = this.rooms.get(name);
    if (!room) return null;
    for (const change of room.ourChanges.values()) if (change.kind === 'edit' && change.target === id) return change;
    return null;
  }

  /* An ack of one of our changes: it is applied at once, as the update
   * frame that is on its way would (unless the message already moved past
   * it). False when the ack is not for a change of ours. */
  changeAcknowledged(frame) {
    const room = this.rooms.get(frame.room);
    const change = room?.ourChanges.get(frame.ref);
    if (!change) return false;
    room.ourChanges.delete(frame.ref);
    const message = room.messages.get(change.target);
    if (message && frame.id > message.changeId) {
      const update = { type: 'update', room: room.name, id: frame.id, target: change.target,
        kind: frame.kind || changeKind(change), user: this.me, ts: frame.ts ?? Date.now() };
      if (change.kind === 'edit') update.text = change.text;
      if (change.kind === 'react') update.emoji = change.emoji;
      this.update(update);
    } else {
      this.#sawEvent(room, frame.id || 0);
      this.#changed(room.name, 'messages');
    }
    return true;
  }

  /* The server refused our change: say why next to the message. */
  changeFailed(name, ref, problem) {
    const room = this.rooms.get(name);
    const change = room?.ourChanges.get(ref);
    if (!change) return;
    room.ourChanges.delete(ref);
    room.notices.set(change.target, problem);
    this.#changed(name, 'messages');
  }

  /* text: a problem to show next to message id */
  setNotice(name, id, text) {
    const room = this.rooms.get(name);
    if (!room) return;
    room.notices.set(id, text);
    this.#changed(name, 'messages');
  }

  notice(name, id) {
    return this.rooms.get(name)?.notices.get(id) || '';
  }

  clearNotice(name, id) {
    if (this.rooms.get(name)?.notices.delete(id)) this.#changed(name, 'messages');
  }

  /* --- edit in place, reply --- */

  startEdit(name, id) {
    this.editing = { room: name, id };
    this.rooms.get(name)?.notices.delete(id);
    this.#changed(name, 'messages');
  }

  stopEdit() {
    const was = this.editing;
    this.editing = null;
    if (was) this.#changed(was.room, 'messages');
  }

  isEditing(name, id) {
    return this.editing?.room === name && this.editing.id === id;
  }

  /* quote: {id, user, text} or null */
  setReply(name, quote) {
    const room = this.rooms.get(name);
    if (!room) return;
    room.replyTo = quote;
    this.#changed(name, 'reply');
  }

  message(name, id) {
    return this.rooms.get(name)?.messages.get(id) || null;
  }

  /* This person's newest message of the room that can still be edited. */
  lastOwnMessage(name) {
    let last = null;
    for (const message of this.rooms.get(name)?.messages.values() || []) {
      if (message.user === this.me && !message.deleted && (!last || message.id > last.id)) last = message;
    }
    return last;
  }

  /* Everyone who wrote in the room, as far as this page has seen. */
  authors(name) {
    const names = new Set();
    for (const message of this.rooms.get(name)?.messages.values() || []) names.add(message.user);
    return names;
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

  /* replyTo: {id, user, text} of the message answered, or null */
  addPending(name, ref, text, replyTo = null) {
    const room = this.rooms.get(name);
    const createdAt = Date.now();
    room.pending.set(ref, { ref, text, state: 'queued', problem: '', createdAt, replyTo });
    saved.updateOutbox((items) => [...items, { room: name, ref, text, createdAt, ...(replyTo ? { replyTo } : {}) }]);
    this.#changed(name, 'messages');
  }

  setPendingState(name, ref, state, problem = '') {
    const item = this.rooms.get(name)?.pending.get(ref);
    if (!item) return;
    item.state = state;
    item.problem = problem;
    this.#changed(name, 'messages');
  }

  /* The message a pending send answers is gone: it goes out without the quote. */
  dropPendingReply(name, ref) {
    const item = this.rooms.get(name)?.pending.get(ref);
    if (!item) return;
    item.replyTo = null;
    saved.updateOutbox((items) => items.map((i) => (i.ref === ref ? { ...i, replyTo: undefined } : i)));
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
      this.addMessages(room.name, [{ room: room.name, id: frame.id, user: this.me, text: item.text, ts: frame.ts,
        reply_to: item.replyTo }]);
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
    room.pending.set(item.ref, { ref: item.ref, text: item.text, state: 'queued', problem: '', createdAt: item.createdAt,
      replyTo: item.replyTo?.id > 0 ? item.replyTo : null });
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
    if (!this.visible || this.accounts) return; /* accounts: app.js reads what is on screen */
    if (this.mentionCounts.delete(name)) this.#changed(name, 'rooms');
    const room = this.rooms.get(name);
    if (!room) return;
    this.#readUpTo(name, room.lastId);
  }

  /* A mention frame: counted for the room unless the person is reading it
   * now; true if counted. */
  mentioned(frame) {
    if (frame.room === this.current && this.visible) return false;
    if (this.accounts) {
      const state = this.#readState(frame.room);
      if (frame.id <= state.lastRead) return false;
      state.mentionIds.add(frame.id);
    } else {
      this.mentionCounts.set(frame.room, (this.mentionCounts.get(frame.room) || 0) + 1);
    }
    if (!this.directory.has(frame.room) && !this.rooms.has(frame.room)) {
      this.directory.set(frame.room, { last_id: frame.id, online: null });
    }
    this.#changed(frame.room, 'rooms');
    return true;
  }

  mentionCount(name) {
    if (this.accounts) return this.#serverMentions(name);
    return this.mentionCounts.get(name) || 0;
  }

  #readUpTo(name, id) {
    if (name in this.#lastRead && this.#lastRead[name] >= id) return;
    this.#lastRead[name] = id;
    saved.setLastRead(name, id);
    this.#changed(name, 'rooms');
  }

  /* Messages of others after the last event read here; null when this
   * device has never read the room. Changes take ids too, so for a room
   * whose messages are held they are counted; for another room the
   * difference of ids is the best guess. */
  unread(name) {
    if (this.accounts) return this.#serverUnread(name);
    if (!(name in this.#lastRead)) return null;
    const read = this.#lastRead[name];
    const room = this.rooms.get(name);
    if (room?.loaded) {
      let count = 0;
      for (const message of room.messages.values()) {
        if (message.id > read && message.user !== this.me && !message.deleted) count++;
      }
      return count;
    }
    const lastId = Math.max(room?.lastId || 0, this.directory.get(name)?.last_id || 0);
    return Math.max(0, lastId - read);
  }
}
