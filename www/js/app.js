/* app.js — wires the page together: store, connection, REST and view. It
 * turns server frames into store changes and the person's actions into
 * frames, and owns the rules that span them: which rooms to (re-)join and
 * with which `since`, when to fetch history over REST, how sends and changes
 * (edit, delete, react) are queued, retried with the same ref and
 * acknowledged, how a reply's original is found (loading older history when
 * it is not on screen), mentions (badge, notification), the #room URL, and
 * who the person is: a display name, or a sign-in token on a server with
 * auth on. */

import * as api from './api.js';
import { Connection, socketUrl } from './connection.js';
import { quoteOf } from './render.js';
import { saved } from './storage.js';
import { Store } from './store.js';
import { DEFAULT_ROOM, messageTextProblem, roomNameProblem, tokenProblem, userNameProblem } from './validate.js';
import * as view from './view.js';

const ROOMS_POLL_MS = 10000;
const TYPING_EVERY_MS = 2500;
const TYPING_CHECK_MS = 1000;
const JUMP_PAGE = 200;      /* messages per page while loading back to a reply's original */
const JUMP_MAX_PAGES = 20;  /* further back than this, the person scrolls */
const MENTION_CHOICES = 8;

const ERROR_TEXT = {
  bad_json: 'The server could not read a message from this page.',
  bad_request: 'The server refused a malformed request.',
  hello_required: 'The connection was not introduced properly; reconnecting.',
  unauthorized: 'You are not signed in.',
  forbidden: 'You are not allowed in this room.',
  not_joined: 'You are not in this room any more; rejoining.',
  room_invalid: 'That room name is not valid.',
  text_invalid: 'The message cannot be sent as written.',
  too_large: 'The message is too long.',
  too_many_rooms: 'You are in too many rooms; leave one first.',
  rate_limited: 'You are sending too fast; wait a moment, then retry.',
  unavailable: 'The server cannot accept messages right now; retry later.',
  internal: 'The server had an internal problem.',
  not_found: 'That message no longer exists.',
  edit_window: 'It is too late to edit this message.',
  too_many_reactions: 'This message has all the different reactions it can take; add to one of those.',
};

/* Codes whose meaning differs for a change of a message (`${kind}:${code}`, then `${code}`). */
const CHANGE_ERROR_TEXT = {
  forbidden: 'Only its author can change this message.',
  'delete:forbidden': 'Only its author or a moderator can delete this message.',
  'react:not_found': 'That reaction is already gone, or the message was deleted.',
  not_joined: 'You are not in this room any more; try again once it is rejoined.',
};

const store = new Store();
store.me = saved.name();
let token = saved.token();
let tokenNeeded = Boolean(token); /* sign in with a token: one was saved, or the server asked */
api.useToken(token);
const connection = new Connection(socketUrl(location), helloFrame);
const joinSince = new Map(); /* room -> the since of the join in flight (null: none) */
const refusedRooms = new Map(); /* room -> why the server refused our join, until it accepts one */
const drafts = saved.drafts();
let lastTypingSent = 0;

function helloFrame() {
  const frame = { type: 'hello' };
  if (store.me) frame.name = store.me;
  if (token) frame.token = token;
  return frame;
}

function humanError(frame) {
  return ERROR_TEXT[frame.code] || frame.message || 'Something went wrong.';
}

function newRef() {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/* --- rendering, batched: many frames in a row paint once --- */

const dirty = new Set();
let renderTimer = 0;
let stickToBottom = false;

function onStoreChange({ detail: { room, what } }) {
  dirty.add('rooms');
  if (what === 'current') ['messages', 'members', 'typing', 'reply'].forEach((part) => dirty.add(part));
  else if (room === store.current) dirty.add(what);
  if (!renderTimer) renderTimer = setTimeout(paint, 0);
}

function paint() {
  renderTimer = 0;
  if (dirty.has('rooms')) view.renderRooms(store);
  if (dirty.has('members')) view.renderMembers(store);
  if (dirty.has('typing')) view.renderTyping(store);
  if (dirty.has('reply')) view.renderReply(store);
  if (dirty.has('messages')) {
    view.renderMessages(store, { forceBottom: stickToBottom });
    stickToBottom = false;
    fillViewport();
  }
  dirty.clear();
}

/* --- rooms and history --- */

function roomFromHash() {
  try {
    return decodeURIComponent(location.hash.slice(1));
  } catch {
    return location.hash.slice(1);
  }
}

function openRoomFromHash() {
  const name = roomFromHash();
  if (!name) {
    store.setCurrent(null);
    view.setComposerText('');
    return;
  }
  const problem = roomNameProblem(name);
  if (problem) {
    view.showBanner(`Cannot open "${name}": ${problem}`);
    history.replaceState(null, '', store.current ? '#' + store.current : location.pathname);
    return;
  }
  view.closeDrawers();
  if (store.editing && store.editing.room !== name) store.stopEdit();
  store.enter(name);
  store.setCurrent(name);
  view.setComposerText(drafts[name] || '');
  view.composerError('');
  const room = store.room(name);
  if (!room.joined && !joinSince.has(name)) join(room);
}

function join(room) {
  const since = room.loaded && room.seenId > 0 ? room.seenId : null;
  const frame = { type: 'join', room: room.name };
  if (since !== null) frame.since = since;
  if (!connection.send(frame)) return;
  joinSince.set(room.name, since);
  refusedRooms.delete(room.name); /* asking again: sends wait for the answer */
}

function onJoined(frame) {
  const since = joinSince.get(frame.room) ?? null;
  joinSince.delete(frame.room);
  const room = store.joined(frame);
  if (!room) return;
  if (room.historyError) store.setHistoryState(room.name, { historyError: '' }); /* e.g. a refused join */
  if (since === null || frame.recovered === false) {
    store.resetMessages(room.name);
    loadNewest(room.name, frame.last_id);
  }
  flushOutbox(room.name);
}

/* lastId: the join's last_id, which the page read after it covers. */
async function loadNewest(name, lastId = 0) {
  store.setHistoryState(name, { historyError: '' });
  try {
    const page = await api.fetchMessages(name);
    store.addMessages(name, page.messages);
    store.coveredUpTo(name, lastId);
    store.setHistoryState(name, { loaded: true, hasOlder: page.hasMore });
  } catch (error) {
    if (!signInAgainOn(error)) store.setHistoryState(name, { historyError: `Could not load the history: ${error.message}` });
  }
}

async function loadOlder() {
  const room = store.room(store.current);
  if (!room || !room.loaded || !room.hasOlder || room.loadingOlder) return;
  store.setHistoryState(room.name, { loadingOlder: true, historyError: '' });
  try {
    const page = await api.fetchMessages(room.name, { before: store.oldestId(room.name) });
    store.addMessages(room.name, page.messages);
    store.setHistoryState(room.name, { loadingOlder: false, hasOlder: page.hasMore });
  } catch (error) {
    const historyError = signInAgainOn(error) ? '' : `Could not load older messages: ${error.message}`;
    store.setHistoryState(room.name, { loadingOlder: false, historyError });
  }
}

/* A short history does not fill the screen, so no scroll would ever ask for
 * more: ask now. */
function fillViewport() {
  const room = store.room(store.current);
  if (room?.loaded && room.hasOlder && !room.loadingOlder && !room.historyError && !view.canScroll()) loadOlder();
}

function leaveCurrent() {
  const name = store.current;
  if (!name) return;
  connection.send({ type: 'leave', room: name });
  joinSince.delete(name);
  saveDraft(name, '');
  store.forget(name);
  /* the left room's place in the history goes to the next room, so Back
   * does not open it again */
  const next = [...store.rooms.keys()].sort()[0];
  history.replaceState(null, '', next ? '#' + next : location.pathname);
  openRoomFromHash();
}

async function pollRooms() {
  try {
    store.setDirectory(await api.listRooms());
  } catch (error) {
    /* otherwise the connection indicator already tells the person the server is away */
    signInAgainOn(error);
  }
}

/* --- sending --- */

function send(raw) {
  const name = store.current;
  const text = raw.trim();
  if (!name || !text) return;
  const problem = messageTextProblem(text);
  if (problem) {
    view.composerError(problem);
    return;
  }
  const ref = newRef();
  store.addPending(name, ref, text, store.room(name).replyTo);
  store.setReply(name, null);
  view.setComposerText('');
  saveDraft(name, '');
  stickToBottom = true;
  lastTypingSent = 0; /* the message ends "is typing" for others; typing again says so at once */
  transmit(name, ref);
}

function transmit(name, ref) {
  const room = store.room(name);
  const item = room?.pending.get(ref);
  if (!item) return;
  if (refusedRooms.has(name)) {
    store.setPendingState(name, ref, 'failed', refusedRooms.get(name));
    return;
  }
  const frame = { type: 'send', room: name, text: item.text, ref };
  if (item.replyTo) frame.reply_to = item.replyTo.id;
  const sent = room.joined && connection.send(frame);
  store.setPendingState(name, ref, sent ? 'sending' : 'queued');
}

/* After a (re-)join: everything not yet acknowledged goes out again with its
 * original ref; the server drops the ones it already stored. */
function flushOutbox(name) {
  for (const item of store.pendingList(name)) {
    if (item.state !== 'failed') transmit(name, item.ref);
  }
  for (const change of store.changeList(name)) transmitChange(name, change.ref);
}

/* --- changes of a message: edit, delete, react --- */

/* change: {kind, target, text?, emoji?, add?}; sent now, or after the next
 * (re-)join, with one ref however often it goes out. */
function changeMessage(name, change) {
  const ref = newRef();
  store.addChange(name, { ...change, ref });
  transmitChange(name, ref);
}

function transmitChange(name, ref) {
  const room = store.room(name);
  const change = room?.ourChanges.get(ref);
  if (!change) return;
  const frame = { type: change.kind, room: name, id: change.target, ref };
  if (change.kind === 'edit') frame.text = change.text;
  if (change.kind === 'react') Object.assign(frame, { emoji: change.emoji, add: change.add });
  const sent = room.joined && connection.send(frame);
  store.setChangeState(name, ref, sent ? 'sending' : 'queued');
}

/* The message id of the room on screen, if it is one the person may edit. */
function editable(id) {
  const message = store.message(store.current, id);
  return message && message.user === store.me && !message.deleted ? message : null;
}

function startEdit(id) {
  if (!editable(id)) return false;
  store.startEdit(store.current, id);
  return true;
}

/* Up in an empty composer: edit one's last message; false when there is none. */
function editLast() {
  const message = store.lastOwnMessage(store.current);
  return message ? startEdit(message.id) : false;
}

function saveEdit(id, raw) {
  const name = store.current;
  const message = editable(id);
  if (!message) {
    store.stopEdit();
    return;
  }
  const text = raw.trim();
  const problem = text ? messageTextProblem(text) : 'A message cannot be empty; delete it instead.';
  if (problem) {
    view.editorError(problem);
    return;
  }
  store.stopEdit();
  view.focusComposer();
  if (text !== message.text) changeMessage(name, { kind: 'edit', target: id, text });
}

function cancelEdit() {
  store.stopEdit();
  view.focusComposer();
}

function removeMessage(id) {
  if (editable(id)) changeMessage(store.current, { kind: 'delete', target: id });
}

/* Adds my emoji to message id, or takes it back if I had reacted with it. */
function toggleReaction(id, emoji) {
  const message = store.message(store.current, id);
  if (!message || message.deleted) return;
  const mine = (message.reactions[emoji] || []).includes(store.me);
  changeMessage(store.current, { kind: 'react', target: id, emoji, add: !mine });
}

function startReply(id) {
  const message = store.message(store.current, id);
  if (!message || message.deleted) return;
  store.setReply(store.current, { id, user: message.user, text: quoteOf(message.text) });
  view.focusComposer();
}

/* Shows message id (a reply's original): loads older pages until it is
 * held, then scrolls to it. from: the reply, where a failure is told. */
async function jumpTo(id, from = 0) {
  const name = store.current;
  if (!name || !(id > 0)) return;
  if (!store.message(name, id)) {
    const problem = await loadBackTo(name, id);
    if (problem) {
      if (from) store.setNotice(name, from, problem);
      return;
    }
    if (store.current !== name) return;
  }
  paint();
  view.revealMessage(id);
}

/* Loads history back to message id, page by page, so the list stays
 * unbroken; '' when it is held, else why not. */
async function loadBackTo(name, id) {
  const room = store.room(name);
  if (!room || room.loadingOlder) return 'The history is still loading; try again in a moment.';
  store.setHistoryState(name, { loadingOlder: true, historyError: '' });
  try {
    await api.fetchMessage(name, id); /* it exists (a 404 otherwise) */
    for (let pages = 0; !store.message(name, id); pages++) {
      const oldest = store.oldestId(name);
      if (pages === JUMP_MAX_PAGES || (oldest && oldest < id)) return 'The original message is too far back; scroll up to find it.';
      const page = await api.fetchMessages(name, { before: oldest, limit: JUMP_PAGE });
      store.addMessages(name, page.messages);
      store.setHistoryState(name, { hasOlder: page.hasMore });
      if (!page.hasMore && !store.message(name, id)) return 'The original message could not be found.';
    }
    return '';
  } catch (error) {
    if (signInAgainOn(error)) return '';
    return error.status === 404 ? 'The original message no longer exists.' : `Could not load the original: ${error.message}`;
  } finally {
    store.setHistoryState(name, { loadingOlder: false });
  }
}

/* Names for the @ autocomplete: people online in the room and everyone seen
 * writing there, online first; names starting with query before names
 * containing it. */
function mentionCandidates(query) {
  const room = store.room(store.current);
  if (!room) return [];
  const names = new Set([...room.members, ...store.authors(room.name)]);
  names.delete(store.me);
  const q = query.toLowerCase();
  const rank = (name) => (name.toLowerCase().startsWith(q) ? 0 : 1);
  return [...names]
    .filter((name) => name.toLowerCase().includes(q))
    .sort((a, b) => rank(a) - rank(b) || room.members.has(b) - room.members.has(a) || a.localeCompare(b))
    .slice(0, MENTION_CHOICES)
    .map((name) => ({ name, online: room.members.has(name) }));
}

/* --- mentions: badge, notification --- */

function notifyState() {
  if (!('Notification' in window)) return { supported: false };
  return { supported: true, permission: Notification.permission, on: saved.notify() };
}

/* The notification button: asks the browser the first time (never on load),
 * then turns mention notifications on and off. */
async function toggleNotify() {
  if (!('Notification' in window)) return;
  if (Notification.permission === 'default') {
    const answer = await Notification.requestPermission();
    if (answer === 'granted') saved.setNotify(true);
  } else if (Notification.permission === 'granted') {
    saved.setNotify(!saved.notify());
  }
  view.renderNotify(notifyState());
}

function onMention(frame) {
  if (!frame.room || frame.user === store.me) return;
  if (store.mentioned(frame)) view.announce(`${frame.user} mentioned you in #${frame.room}`);
  const state = notifyState();
  if (!state.supported || state.permission !== 'granted' || !state.on || document.visibilityState !== 'hidden') return;
  try {
    const note = new Notification(`${frame.user} mentioned you in #${frame.room}`,
      { body: frame.text || '', tag: `turbochat-mention-${frame.room}-${frame.id}` });
    note.onclick = () => {
      window.focus();
      note.close();
      if (store.current !== frame.room) {
        location.hash = frame.room;
        openRoomFromHash(); /* now, not at the hashchange: the jump needs the room on screen */
      }
      if (store.room(frame.room)?.loaded) jumpTo(frame.id);
    };
  } catch {
    /* e.g. a browser that shows notifications only from a service worker */
  }
}

function retry(ref) {
  const name = store.findPendingRoom(ref);
  if (name) transmit(name, ref);
}

function onTyping(text) {
  saveDraft(store.current, text);
  const room = store.room(store.current);
  const now = Date.now();
  if (!text.trim() || !room?.joined || now - lastTypingSent < TYPING_EVERY_MS) return;
  if (connection.send({ type: 'typing', room: room.name })) lastTypingSent = now;
}

function saveDraft(name, text) {
  if (!name) return;
  if (text) drafts[name] = text;
  else delete drafts[name];
  saved.setDraft(name, text);
}

/* --- who the person is: a display name, or a sign-in token --- */

function askName(error = '') {
  if (tokenNeeded) {
    askToken(error);
    return;
  }
  view.openNameDialog({ value: store.me, error, required: !store.me || Boolean(error) });
}

function showIdentity() {
  view.renderMe(store.me, tokenNeeded ? 'Sign in' : 'Choose a name');
}

function askToken(error = '') {
  showIdentity();
  view.openNameDialog({ mode: 'token', error, required: !connection.ready, signedIn: Boolean(token) });
}

/* A REST answer 401 means this page needs a (new) token; true if it was one. */
function signInAgainOn(error) {
  if (error?.status !== 401) return false;
  tokenNeeded = true;
  askToken(token ? `This token was refused: ${error.message}` : '');
  return true;
}

function onRefused({ detail }) {
  if (detail.code === 'unauthorized') {
    tokenNeeded = true;
    askToken(token ? `This token was refused: ${detail.message}` : '');
  } else {
    askName(`The server refused this name: ${detail.message}`);
  }
}

function saveToken(value) {
  const problem = tokenProblem(value);
  if (problem) {
    view.nameDialogError(problem);
    return;
  }
  token = value;
  saved.setToken(value);
  api.useToken(value);
  view.closeNameDialog();
  view.hideBanner();
  connection.restart();
  pollRooms();
}

/* "Forget token": nothing of this person stays on the device (queued
 * messages, drafts, rooms, name); the page starts again and asks for a token. */
function signOut() {
  saved.forgetEverything();
  location.reload();
}

function saveName(name) {
  const problem = userNameProblem(name);
  if (problem) {
    view.nameDialogError(problem);
    return;
  }
  const changed = name !== store.me;
  store.me = name;
  saved.setName(name);
  showIdentity();
  view.closeNameDialog();
  view.hideBanner();
  if (changed || !connection.ready) connection.restart();
  dirty.add('messages');
  dirty.add('members');
  paint();
}

/* --- frames from the server --- */

function onWelcome({ detail }) {
  if (detail.user && detail.user !== store.me) {
    store.me = detail.user; /* with a token the server names the person */
    saved.setName(store.me);
    dirty.add('messages'); /* which messages are "own" changed */
    dirty.add('members');
    paint();
  }
  showIdentity();
  /* the room on screen first: with more rooms than the server allows, the
   * ones refused are the others */
  const rooms = [...store.rooms.values()].sort((a, b) => (b.name === store.current) - (a.name === store.current));
  for (const room of rooms) join(room);
  pollRooms();
}

function onMessage(frame) {
  const added = store.addMessages(frame.room, [frame]);
  if (added.length && frame.room === store.current && frame.user !== store.me) {
    view.announce(`${frame.user}: ${frame.text}`);
  }
}

function onError(frame) {
  if (!connection.ready && ['bad_request', 'unauthorized'].includes(frame.code)) return; /* hello refused: see 'refused' */
  const text = humanError(frame);
  const pendingRoom = frame.ref ? store.findPendingRoom(frame.ref) : null;
  const changeRoom = frame.ref ? store.findChangeRoom(frame.ref) : null;
  if (pendingRoom) {
    const replied = store.room(pendingRoom).pending.get(frame.ref).replyTo;
    if (frame.code === 'not_found' && replied) {
      store.dropPendingReply(pendingRoom, frame.ref);
      store.setPendingState(pendingRoom, frame.ref, 'failed', 'the message it answers was deleted; Retry sends it without the quote.');
    } else {
      store.setPendingState(pendingRoom, frame.ref, 'failed', text);
    }
  } else if (changeRoom) {
    const kind = store.room(changeRoom).ourChanges.get(frame.ref).kind;
    store.changeFailed(changeRoom, frame.ref,
      CHANGE_ERROR_TEXT[`${kind}:${frame.code}`] || CHANGE_ERROR_TEXT[frame.code] || text);
  } else if (frame.code === 'not_joined' && store.room(frame.room)) {
    joinSince.delete(frame.room);
    join(store.room(frame.room));
  } else if (frame.room && ['room_invalid', 'forbidden', 'too_many_rooms'].includes(frame.code)) {
    joinRefused(frame.room, text);
  } else if (frame.code === 'hello_required') {
    view.showBanner(text);
    connection.restart();
  } else {
    view.showBanner(text);
  }
}

/* The server would not let us into name: say so where the person looks, and
 * fail what waits to be sent there (opening the room again retries). */
function joinRefused(name, text) {
  joinSince.delete(name);
  refusedRooms.set(name, text);
  view.showBanner(`Cannot join #${name}: ${text}`);
  if (!store.room(name)) return;
  store.setHistoryState(name, { historyError: `You are not in #${name}: ${text}` });
  for (const item of store.pendingList(name)) store.setPendingState(name, item.ref, 'failed', text);
}

const FRAME_HANDLERS = {
  joined: onJoined,
  message: onMessage,
  update: (frame) => store.update(frame),
  mention: onMention,
  ack: (frame) => store.changeAcknowledged(frame) || store.acknowledged(frame),
  presence: (frame) => store.presence(frame),
  typing: (frame) => store.typing(frame),
  error: onError,
};

function onFrame({ detail: frame }) {
  FRAME_HANDLERS[frame.type]?.(frame);
}

function onConnectionState({ detail }) {
  view.renderConnection(detail);
  if (detail.state === 'online') return;
  joinSince.clear();
  refusedRooms.clear(); /* the next connection asks again */
  store.disconnected();
  for (const room of store.rooms.values()) {
    for (const item of room.pending.values()) {
      if (item.state === 'sending') store.setPendingState(room.name, item.ref, 'queued');
    }
    for (const change of room.ourChanges.values()) {
      if (change.state === 'sending') store.setChangeState(room.name, change.ref, 'queued');
    }
  }
}

/* --- start --- */

function start() {
  store.addEventListener('change', onStoreChange);
  connection.addEventListener('state', onConnectionState);
  connection.addEventListener('welcome', onWelcome);
  connection.addEventListener('frame', onFrame);
  connection.addEventListener('refused', onRefused);
  view.bindActions({
    join: (name) => {
      const problem = roomNameProblem(name);
      if (problem) view.joinError(problem);
      else location.hash = name;
    },
    send,
    retry,
    typing: onTyping,
    edit: startEdit,
    editLast,
    saveEdit,
    cancelEdit,
    remove: removeMessage,
    toggleReaction,
    reply: startReply,
    cancelReply: () => store.setReply(store.current, null),
    jump: jumpTo,
    dismissNotice: (id) => store.clearNotice(store.current, id),
    mentionCandidates,
    toggleNotify,
    needOlder: loadOlder,
    leave: leaveCurrent,
    changeName: () => askName(),
    saveName,
    saveToken,
    signOut,
  }, store);
  window.addEventListener('hashchange', openRoomFromHash);
  document.addEventListener('visibilitychange', () => {
    store.visible = !document.hidden;
    if (store.visible && store.current) store.markRead(store.current);
  });
  setInterval(pollRooms, ROOMS_POLL_MS);
  setInterval(() => store.expireTyping(), TYPING_CHECK_MS);

  store.visible = !document.hidden;
  view.renderNotify(notifyState());
  showIdentity();
  if (!location.hash) history.replaceState(null, '', '#' + ([...store.rooms.keys()].sort()[0] || DEFAULT_ROOM));
  openRoomFromHash();
  pollRooms();
  if (store.me || token) {
    connection.start();
  } else {
    view.renderConnection({ state: 'idle' }); /* nothing to connect as yet */
    askName();
  }
}

start();
