/* app.js — wires the page together: store, connection, REST and view. It
 * turns server frames into store changes and the person's actions into
 * frames, and owns the rules that span them: which rooms to (re-)join and
 * with which `since`, when to fetch history over REST, how sends and changes
 * (edit, delete, react) are queued, retried with the same ref and
 * acknowledged, how a reply's original or a search result is found (loading
 * older history when it is not on screen), mentions (badge, notification), the #room URL, and
 * who the person is: a display name, or a sign-in token on a server with
 * auth on, or an account (auth = accounts, docs/PROTOCOL.md, "Accounts"). With
 * accounts it also owns the session (sign-in and sign-up, its end on
 * another device or by an admin), private rooms and their members, direct
 * messages, the read state it reports (`read` frames, at most one a second
 * per room and only forward) and the admin page's calls. */

import * as api from './api.js';
import { Connection, socketUrl } from './connection.js';
import * as moderation from './moderation.js';
import { quoteOf } from './render.js';
import { initSearch } from './search.js';
import { saved } from './storage.js';
import { Store } from './store.js';
import { COLOR_SHAPE, DEFAULT_ROOM, displayNameProblem, messageTextProblem, passwordProblem, roomNameProblem,
  tokenProblem, userNameProblem } from './validate.js';
import * as view from './view.js';

const ROOMS_POLL_MS = 10000;
const TYPING_EVERY_MS = 2500;
const TYPING_CHECK_MS = 1000;
const JUMP_PAGE = 200;      /* messages per page while loading back to a reply's original */
const JUMP_MAX_PAGES = 20;  /* further back than this, the person scrolls */
const SEARCH_JUMP_MAX_PAGES = 50; /* a search result may be older than a reply's original */
const MENTION_CHOICES = 8;
const ACCOUNTS_POLL_MS = 5000; /* accounts: new private rooms and DMs show up this fast */
const READ_EVERY_MS = 1000;    /* at most one read frame a second per room */
const DM_MAX_OTHERS = 7;
const READ_REF = 'read'; /* marks our read frames: a refusal of one is not the person's business */
const AUTO_ROOMS_MAX = 45;     /* private rooms and DMs joined by themselves (the server allows 50) */

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
let accounts = false;    /* the server runs auth = accounts */
let authMode = '';       /* what GET /api/auth/mode said: 'off'|'token'|'accounts'|'legacy' */
let signupMode = 'open'; /* accounts: 'open'|'invite'|'closed' */
let signedOut = false;   /* accounts: the sign-in page is up */
let sessionToken = '';   /* accounts: this page's session token, in memory only (the cookie outlives it) */
const reads = new Map(); /* accounts: room -> {sent, want, at, timer} of read frames */

/* Whether this person can be a moderator at all: nobody is under auth =
 * off; with a token, only one with a role claim (mod or admin). The server
 * decides per room. */
function mayModerate() {
  if (authMode === 'off' || authMode === '') return false;
  if (accounts || !token) return accounts;
  try {
    const payload = JSON.parse(atob(token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')));
    return payload.role === 'mod' || payload.role === 'admin';
  } catch {
    return false;
  }
}

function helloFrame() {
  const frame = { type: 'hello' };
  if (accounts) {
    if (sessionToken) frame.token = sessionToken; /* else the upgrade's cookie says who */
    return frame;
  }
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
  if (searchJump) jumpToSearchResult();
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
  const painted = dirty.has('messages');
  dirty.clear();
  if (painted) readNow();
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
    moderation.roomShown(null);
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
  moderation.roomShown(name);
  view.setComposerText(drafts[name] || '');
  view.composerError('');
  const room = store.room(name);
  if (!room.joined && !joinSince.has(name)) join(room);
  if (accounts) loadRoster(name);
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
  moderation.setMuted(room.name, frame.muted === true);
  if (room.historyError) store.setHistoryState(room.name, { historyError: '' }); /* e.g. a refused join */
  if (since === null || frame.recovered === false) {
    store.resetMessages(room.name);
    loadNewest(room.name, frame.last_id);
  }
  flushOutbox(room.name);
  if (accounts) sendRead(room.name); /* one read while offline goes out now */
}

/* lastId: the join's last_id, which the page read after it covers. */
async function loadNewest(name, lastId = 0) {
  store.setHistoryState(name, { historyError: '' });
  try {
    const page = await api.fetchMessages(name);
    store.addMessages(name, page.messages);
    store.coveredUpTo(name, lastId);
    store.setHistoryState(name, { loaded: true, hasOlder: page.hasMore, begins: page.begins, retentionDays: page.retentionDays });
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
    store.setHistoryState(room.name, { loadingOlder: false, hasOlder: page.hasMore, begins: page.begins, retentionDays: page.retentionDays });
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
  if (accounts && store.isPrivate(name)) {
    leavePrivate(); /* a private room is left by leaving its members */
    return;
  }
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
  if (signedOut) return;
  try {
    store.setDirectory(await api.listRooms());
    if (accounts) enterPrivateRooms();
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

/* The search result to show once its room's history is loaded. */
let searchJump = null;

function openSearchResult(room, id) {
  searchJump = { room, id };
  if (store.current !== room) {
    location.hash = room;
    openRoomFromHash(); /* now, not at the hashchange: the jump waits for this room */
  }
  jumpToSearchResult();
}

async function jumpToSearchResult() {
  const target = searchJump;
  if (!target || store.current !== target.room || !store.room(target.room)?.loaded) return;
  searchJump = null;
  const problem = store.message(target.room, target.id) ? '' : await loadBackTo(target.room, target.id, SEARCH_JUMP_MAX_PAGES);
  if (store.current !== target.room) return;
  if (problem) {
    view.showBanner(problem);
    return;
  }
  paint();
  view.revealMessage(target.id);
}

/* Loads history back to message id, page by page, so the list stays
 * unbroken; '' when it is held, else why not. */
async function loadBackTo(name, id, maxPages = JUMP_MAX_PAGES) {
  const room = store.room(name);
  if (!room || room.loadingOlder) return 'The history is still loading; try again in a moment.';
  store.setHistoryState(name, { loadingOlder: true, historyError: '' });
  try {
    await api.fetchMessage(name, id); /* it exists (a 404 otherwise) */
    for (let pages = 0; !store.message(name, id); pages++) {
      const oldest = store.oldestId(name);
      if (pages === maxPages || (oldest && oldest < id)) return 'That message is too far back; scroll up to find it.';
      const page = await api.fetchMessages(name, { before: oldest, limit: JUMP_PAGE });
      store.addMessages(name, page.messages);
      store.setHistoryState(name, { hasOlder: page.hasMore });
      if (!page.hasMore && !store.message(name, id)) return 'That message could not be found.';
    }
    return '';
  } catch (error) {
    if (signInAgainOn(error)) return '';
    return error.status === 404 ? 'That message no longer exists.' : `Could not load that message: ${error.message}`;
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
  if (accounts) {
    if (store.profile) openProfile();
    return;
  }
  if (tokenNeeded) {
    askToken(error);
    return;
  }
  view.openNameDialog({ value: store.me, error, required: !store.me || Boolean(error) });
}

function showIdentity() {
  if (accounts) {
    view.renderMe(store.profile?.display || store.me, 'Sign in', store.profile?.color || '');
    return;
  }
  view.renderMe(store.me, tokenNeeded ? 'Sign in' : 'Choose a name');
}

function askToken(error = '') {
  showIdentity();
  view.openNameDialog({ mode: 'token', error, required: !connection.ready, signedIn: Boolean(token) });
}

/* A REST answer 401 means this page needs a (new) token; true if it was one. */
function signInAgainOn(error) {
  if (error?.status !== 401) return false;
  if (accounts) {
    sessionEnded();
    return true;
  }
  tokenNeeded = true;
  askToken(token ? `This token was refused: ${error.message}` : '');
  return true;
}

function onRefused({ detail }) {
  if (accounts) {
    sessionEnded();
    return;
  }
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
  moderation.roomShown(store.current); /* who we are is known now */
  /* the room on screen first: with more rooms than the server allows, the
   * ones refused are the others */
  const rooms = [...store.rooms.values()].sort((a, b) => (b.name === store.current) - (a.name === store.current));
  for (const room of rooms) join(room);
  pollRooms();
}

function onMessage(frame) {
  if (frame.kind && frame.kind !== 'message') {
    roomEvent(frame); /* e.g. a membership change, should the server send it as a message */
    return;
  }
  const added = store.addMessages(frame.room, [frame]);
  if (added.length && frame.room === store.current && frame.user !== store.me) {
    view.announce(`${frame.user}: ${frame.text}`);
  }
}

function onError(frame) {
  if (!connection.ready && ['bad_request', 'unauthorized'].includes(frame.code)) return; /* hello refused: see 'refused' */
  if (frame.ref === READ_REF) return; /* the badge is corrected by the next GET /api/rooms */
  /* a mute or ban: the server's words name it and the room */
  const sanctioned = frame.code === 'forbidden' && /^you are (muted|banned)/i.test(frame.message || '');
  const text = sanctioned ? frame.message : humanError(frame);
  if (sanctioned && frame.room && /^you are muted/i.test(frame.message)) moderation.setMuted(frame.room, true);
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
      sanctioned ? text : CHANGE_ERROR_TEXT[`${kind}:${frame.code}`] || CHANGE_ERROR_TEXT[frame.code] || text);
  } else if (frame.code === 'not_joined' && store.room(frame.room)) {
    joinSince.delete(frame.room);
    join(store.room(frame.room));
  } else if (frame.room && ['room_invalid', 'forbidden', 'too_many_rooms'].includes(frame.code)) {
    joinRefused(frame.room, text);
  } else if (accounts && frame.room && frame.code === 'not_found') {
    joinRefused(frame.room, text, frame.code);
  } else if (frame.code === 'hello_required') {
    view.showBanner(text);
    connection.restart();
  } else {
    view.showBanner(text);
  }
}

/* The server would not let us into name: say so where the person looks, and
 * fail what waits to be sent there (opening the room again retries). With
 * accounts a room that does not exist for us (not_found) is not kept. */
function joinRefused(name, text, code = '') {
  if (accounts && code === 'not_found') {
    joinSince.delete(name);
    view.showBanner(`There is no room #${name} you can join: it does not exist, or it is private.`);
    dropRoom(name);
    return;
  }
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
  update: (frame) => {
    if (['edit', 'delete', 'react', 'unreact'].includes(frame.kind)) return store.update(frame);
    if (moderation.isModerationKind(frame.kind)) moderation.onEvent(frame);
    return roomEvent(frame);
  },
  left: onLeft,
  read: (frame) => {
    if (frame.room && frame.id > 0) store.readTo(frame.room, frame.id); /* another device of the account read */
  },
  member: roomEvent,
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

/* --- accounts: the session --- */

/* Which sign-in the server wants: GET /api/auth/mode; from a server without
 * it, a 401 of /api/me that asks to sign in means accounts; unreachable: the
 * mode it had last time. */
async function detectMode() {
  try {
    const mode = await api.authMode();
    if (mode?.auth) {
      saved.setMode(mode.auth === 'accounts' ? 'accounts' : '');
      return mode;
    }
  } catch (error) {
    if (error.code === 'offline') return { auth: saved.mode() || 'legacy' };
  }
  if (!token) {
    try {
      await api.me();
      return { auth: 'accounts', signup: 'open' };
    } catch (error) {
      if (error.status === 401 && /sign(ed)?[ -]?in/i.test(error.message)) return { auth: 'accounts', signup: 'open' };
    }
  }
  return { auth: 'legacy' };
}

const AUTH_ERROR_TEXT = {
  unauthorized: 'Wrong name or password.',
  signup_closed: 'Sign-up is closed on this server: ask an admin for an account.',
  invite_invalid: 'That invite code is not valid: it is unknown, already used or expired.',
  offline: 'The server cannot be reached; try again in a moment.',
};

/* What went wrong with a sign-in or sign-up, and the field it is about. */
function authProblem(error, name) {
  if (error.code === 'rate_limited') {
    const wait = error.retryAfter ? `${error.retryAfter} second${error.retryAfter === 1 ? '' : 's'}` : 'a minute';
    return { text: `Too many attempts. Try again in ${wait}.`, field: '' };
  }
  if (error.code === 'name_taken') return { text: `The name "${name}" is taken; pick another.`, field: 'name' };
  if (error.code === 'invite_invalid') return { text: AUTH_ERROR_TEXT.invite_invalid, field: 'invite' };
  if (error.code === 'bad_request') {
    const field = ['password', 'invite', 'name'].find((f) => error.message.toLowerCase().includes(f)) || '';
    return { text: error.message, field };
  }
  return { text: AUTH_ERROR_TEXT[error.code] || error.message, field: error.code === 'unauthorized' ? 'password' : '' };
}

async function signIn(name, password) {
  if (!name) return view.authError('Type your name.', 'name');
  if (!password) return view.authError('Type your password.', 'password');
  await authenticate(() => api.signIn(name, password), name);
}

async function signUp(name, password, invite) {
  const nameProblem = userNameProblem(name);
  if (nameProblem) return view.authError(nameProblem, 'name');
  const problem = passwordProblem(password);
  if (problem) return view.authError(problem, 'password');
  if (signupMode === 'invite' && !invite) return view.authError('Type the invite code you were given.', 'invite');
  await authenticate(() => api.signUp(name, password, invite), name);
}

async function authenticate(call, name) {
  view.authBusy(true);
  view.authError('');
  try {
    const { user, token: issued } = await call();
    await signedIn(user, issued);
  } catch (error) {
    const { text, field } = authProblem(error, name);
    view.authError(text, field);
  } finally {
    view.authBusy(false);
  }
}

/* The page now acts as user. Another account than the one this device
 * remembers: nothing of the other stays (the page starts again). */
async function signedIn(user, issued = '') {
  if (!user?.name) return;
  const before = saved.name();
  if (before && before !== user.name) {
    saved.forgetEverything();
    saved.setMode('accounts');
    location.reload();
    return;
  }
  signedOut = false;
  store.profile = user;
  store.me = user.name;
  if (issued) sessionToken = issued;
  saved.setName(user.name);
  if (new URLSearchParams(location.search).has('invite')) history.replaceState(null, '', location.pathname + location.hash);
  showIdentity();
  view.showChat(true);
  view.hideBanner();
  dirty.add('messages');
  dirty.add('members');
  openRoomFromHash();
  connection.start();
  pollRooms();
}

/* The session is gone (signed out elsewhere, password changed, disabled by
 * an admin): the page asks to sign in again and keeps nothing open. */
function sessionEnded(text = 'Your session has ended. Sign in again.') {
  if (signedOut) return;
  signedOut = true;
  store.profile = null;
  sessionToken = '';
  connection.stop();
  for (const dialog of document.querySelectorAll('dialog[open]')) dialog.close();
  view.showAuthPage({ mode: 'signin', signup: signupMode, error: text });
}

async function startAccounts(mode) {
  accounts = true;
  store.accounts = true;
  signupMode = mode.signup || 'open';
  view.useAccounts(true);
  showIdentity();
  setInterval(pollRooms, ACCOUNTS_POLL_MS);
  setInterval(() => store.expireTyping(), TYPING_CHECK_MS);
  if (!location.hash) history.replaceState(null, '', location.search + '#' + ([...store.rooms.keys()].sort()[0] || DEFAULT_ROOM));
  const invite = new URLSearchParams(location.search).get('invite') || '';
  try {
    await signedIn(await api.me());
  } catch (error) {
    if (error.status === 401 || !saved.name()) {
      signedOut = true;
      view.showAuthPage({ mode: invite ? 'signup' : 'signin', signup: signupMode, invite,
        error: error.status === 401 ? '' : error.message });
    } else {
      /* unreachable now: the cookie may still be good; the socket finds out */
      view.showChat(true);
      store.me = saved.name();
      showIdentity();
      openRoomFromHash();
      connection.start();
    }
  }
}

/* --- accounts: profile --- */

function openProfile() {
  if (store.profile) view.openProfile(store.profile, { admin: store.profile.role === 'admin' });
}

async function saveProfile({ display, color }) {
  const problem = displayNameProblem(display);
  if (problem) return view.profileStatus(problem, true);
  if (!COLOR_SHAPE.test(color)) return view.profileStatus('Pick a colour.', true);
  try {
    store.profile = await api.updateMe({ display, color });
    showIdentity();
    view.profileStatus('Saved.');
  } catch (error) {
    if (!signInAgainOn(error)) view.profileStatus(`Not saved: ${error.message}`, true);
  }
}

async function changePassword(old, password) {
  if (!old) return view.passwordStatus('Type your current password.', true);
  const problem = passwordProblem(password);
  if (problem) return view.passwordStatus(problem, true);
  try {
    store.profile = await api.updateMe({ password, old_password: old });
    view.passwordStatus('Password changed. Your other devices were signed out.');
  } catch (error) {
    if (error.code === 'forbidden') view.passwordStatus('The current password is wrong.', true);
    else if (!signInAgainOn(error)) view.passwordStatus(`Not changed: ${error.message}`, true);
  }
}

/* Sign out (everywhere: every session of the account); nothing of the
 * person stays on this device. */
async function signOutAccount(everywhere) {
  try {
    await api.signOut(everywhere);
  } catch {
    /* already signed out, or offline: the device forgets either way */
  }
  connection.stop();
  saved.forgetEverything();
  saved.setMode('accounts');
  location.replace(location.pathname);
}

/* --- accounts: rooms, members, direct messages --- */

async function createRoom(name, isPrivate) {
  const problem = roomNameProblem(name);
  if (problem) return view.roomDialogError(problem);
  try {
    const room = await api.createRoom(name, isPrivate);
    store.addToDirectory(room || { name, private: isPrivate });
    view.closeRoomDialog();
    location.hash = name;
  } catch (error) {
    if (error.code === 'exists') view.roomDialogError(`A room named "${name}" already exists (it may be private).`);
    else if (!signInAgainOn(error)) view.roomDialogError(error.message);
  }
}

/* Reads the members of a private room (its roster) or a DM's people. */
async function loadRoster(name) {
  if (!accounts || !store.isPrivate(name)) {
    if (store.rosters.has(name)) store.setRoster(name, null);
    return;
  }
  try {
    const body = await api.roomMembers(name);
    store.setRoster(name, Array.isArray(body?.roster) ? body.roster : null);
  } catch (error) {
    signInAgainOn(error);
  }
}

const rosterTimers = new Map();

/* Something happened to a room that is not a message (a membership
 * change): read its roster again, once for a burst of them. */
function roomEvent(frame) {
  const name = frame.room;
  if (!name || !store.room(name)) return;
  if (frame.id > 0) store.coveredUpTo(name, frame.id); /* a re-join need not replay it */
  if (rosterTimers.has(name)) return;
  rosterTimers.set(name, setTimeout(() => {
    rosterTimers.delete(name);
    loadRoster(name);
  }, 200));
}

async function openMembers() {
  view.openMembersDialog(store);
  await loadRoster(store.current);
}

async function addMember(user, owner) {
  const name = store.current;
  const problem = userNameProblem(user);
  if (problem) return view.inviteStatus(problem, true);
  try {
    await api.addMember(name, user, owner ? 'owner' : 'member');
    view.inviteStatus(owner ? `${user} is now an owner.` : `${user} was added.`);
    await loadRoster(name);
  } catch (error) {
    if (error.status === 404) view.inviteStatus(`There is no account named "${user}".`, true);
    else if (error.code === 'forbidden') view.inviteStatus('Only an owner of this room can add people.', true);
    else if (!signInAgainOn(error)) view.inviteStatus(error.message, true);
  }
}

/* act: 'owner' (make user an owner) or 'remove' (take user out). */
async function memberAction(act, user) {
  const name = store.current;
  try {
    if (act === 'owner') await api.addMember(name, user, 'owner');
    else await api.removeMember(name, user);
    view.inviteStatus(act === 'owner' ? `${user} is now an owner.` : `${user} was removed.`);
    await loadRoster(name);
  } catch (error) {
    if (!signInAgainOn(error)) view.inviteStatus(error.message, true);
  }
}

/* This person leaves the private room on screen (its members). */
async function leavePrivate() {
  const name = store.current;
  if (!name) return;
  try {
    await api.removeMember(name, store.me);
  } catch (error) {
    if (signInAgainOn(error)) return;
    if (error.status !== 404) {
      view.showBanner(`Could not leave ${store.label(name)}: ${error.message}`);
      return;
    }
  }
  view.closeMembersDialog();
  connection.send({ type: 'leave', room: name });
  dropRoom(name);
}

/* Forgets room name here and shows another. */
function dropRoom(name) {
  joinSince.delete(name);
  saveDraft(name, '');
  store.forget(name);
  store.directory.delete(name);
  if (store.current !== name) return;
  const next = [...store.rooms.keys()].sort()[0];
  history.replaceState(null, '', next ? '#' + next : location.pathname);
  openRoomFromHash();
}

/* The server took us out of a room: removed by an owner, banned by a
 * moderator, or closed. */
function onLeft(frame) {
  if (!frame.reason || !store.room(frame.room)) return; /* the answer to our own leave */
  const label = store.label(frame.room);
  const why = { closed: `${label} was closed by an admin.`, banned: `You were banned from ${label}.` };
  view.showBanner(why[frame.reason] || `You were removed from ${label}.`);
  dropRoom(frame.room);
}

/* Opens the direct messages of this person and names (created on first use). */
async function startDm(names) {
  const people = [...new Set(names)].filter((name) => name !== store.me);
  const inDialog = document.getElementById('dm-dialog').open;
  const fail = (text) => (inDialog ? view.dmDialogError(text) : view.showBanner(text));
  if (!people.length) return fail('Type the name of someone to write to.');
  if (people.length > DM_MAX_OTHERS) return fail(`A direct message has at most ${DM_MAX_OTHERS} other people.`);
  for (const name of people) {
    const problem = userNameProblem(name);
    if (problem) return fail(`${name}: ${problem}`);
  }
  try {
    const room = await api.openDm(people);
    const name = typeof room === 'string' ? room : room?.name;
    if (!name) throw new Error('The server did not name the conversation.');
    store.addToDirectory(typeof room === 'string' ? { name, dm: true, private: true, members: [store.me, ...people] }
      : { members: [store.me, ...people], ...room, dm: true, private: true });
    view.closeDmDialog();
    view.closeDrawers();
    location.hash = name;
  } catch (error) {
    if (signInAgainOn(error)) return;
    fail(error.status === 404 ? `No account named ${people.join(', ')} exists: ${error.message}` : error.message);
  }
}

/* With accounts the private rooms and DMs of the person are theirs on every
 * device: they are joined as the directory lists them. */
function enterPrivateRooms() {
  for (const [name, entry] of store.directory) {
    if (!(entry.private || entry.dm) || store.room(name)) continue;
    if (store.rooms.size >= AUTO_ROOMS_MAX) return;
    const room = store.enter(name);
    if (connection.ready) join(room);
  }
}

/* --- accounts: read state --- */

/* What is on screen of the room on screen is read: up to the newest message
 * visible, and every event once the view is at the bottom. */
function readNow() {
  if (!accounts || !store.visible || document.hidden || !store.profile) return;
  const room = store.room(store.current);
  if (!room?.loaded) return;
  const visible = view.readableId();
  const id = view.atBottom() ? Math.max(room.seenId, visible) : visible;
  if (id > 0 && store.readTo(room.name, id)) queueRead(room.name, id);
}

function queueRead(name, id) {
  let entry = reads.get(name);
  if (!entry) reads.set(name, entry = { sent: 0, want: 0, at: 0, timer: 0 });
  if (id <= entry.want) return;
  entry.want = id;
  if (entry.timer) return;
  const wait = entry.at + READ_EVERY_MS - Date.now();
  if (wait <= 0) sendRead(name);
  else entry.timer = setTimeout(() => {
    entry.timer = 0;
    sendRead(name);
  }, wait);
}

/* Sends the newest read of name not yet sent (after the throttle). */
function sendRead(name) {
  const entry = reads.get(name);
  if (!entry || entry.timer || entry.want <= entry.sent || !store.room(name)?.joined) return;
  if (connection.send({ type: 'read', room: name, id: entry.want, ref: READ_REF })) {
    entry.sent = entry.want;
    entry.at = Date.now();
  }
}

/* --- accounts: admin --- */

async function openAdmin() {
  if (store.profile?.role !== 'admin') return;
  view.openAdmin();
  await loadAdmin();
}

/* Reads accounts and rooms (each shown as soon as it comes; one failing
 * does not hide the other). */
async function loadAdmin(status = '') {
  const [users, rooms] = await Promise.allSettled([api.adminUsers(), api.adminRooms()]);
  view.renderAdmin({ users: users.value || null, rooms: rooms.value || null }, store.me);
  const failed = [users, rooms].find((result) => result.status === 'rejected');
  if (failed && signInAgainOn(failed.reason)) return;
  if (failed) view.adminStatus(`Could not load ${failed === users ? 'the accounts' : 'the rooms'}: ${failed.reason.message}`, true);
  else view.adminStatus(status);
}

/* act: 'disable'|'enable'|'password' (of the account target, with extra the
 * new password) or 'close' (the room target). */
async function adminAction(act, target, extra = '') {
  try {
    let status = '';
    if (act === 'disable' || act === 'enable') {
      await api.setUserEnabled(target, act === 'enable');
      status = act === 'enable' ? `${target} can sign in again.` : `${target} is disabled; their sessions have ended.`;
    } else if (act === 'password') {
      const problem = passwordProblem(extra);
      if (problem) return view.adminStatus(problem, true);
      await api.resetPassword(target, extra);
      status = `The password of ${target} was reset; their sessions have ended.`;
    } else if (act === 'close') {
      await api.closeRoom(target);
      status = `#${target} is closed.`;
    } else {
      return;
    }
    await loadAdmin(status);
  } catch (error) {
    if (!signInAgainOn(error)) view.adminStatus(error.message, true);
  }
}

async function createInvite() {
  try {
    const invite = await api.createInvite();
    const link = `${location.origin}/?invite=${encodeURIComponent(invite.code)}`;
    view.addInvite(invite, link);
    view.adminStatus('Invite code created: send the link to the person.');
  } catch (error) {
    if (!signInAgainOn(error)) view.adminStatus(error.message, true);
  }
}

async function copyText(text, button) {
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = 'Copied';
  } catch {
    button.textContent = 'Press Ctrl+C'; /* the link is selected */
    button.parentElement.querySelector('input')?.select();
  }
}

/* --- start --- */

async function start() {
  store.addEventListener('change', onStoreChange);
  connection.addEventListener('state', onConnectionState);
  connection.addEventListener('welcome', onWelcome);
  connection.addEventListener('frame', onFrame);
  connection.addEventListener('refused', onRefused);
  initSearch(openSearchResult);
  moderation.init({
    current: () => store.current,
    me: () => store.me,
    label: (name) => store.label(name),
    online: (name) => [...(store.room(name)?.members || [])],
    mayModerate,
    signInAgainOn,
  });
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
    signIn,
    signUp,
    saveProfile,
    changePassword,
    signOutAccount,
    openAdmin,
    createRoom,
    openMembers,
    addMember,
    memberAction,
    leavePrivate,
    startDm,
    adminAction,
    createInvite,
    copyText,
    read: readNow,
  }, store);
  window.addEventListener('hashchange', openRoomFromHash);
  document.addEventListener('visibilitychange', () => {
    store.visible = !document.hidden;
    if (store.visible && store.current) store.markRead(store.current);
    readNow();
  });
  store.visible = !document.hidden;
  view.renderNotify(notifyState());

  const mode = await detectMode();
  authMode = mode.auth;
  if (mode.auth === 'accounts') {
    await startAccounts(mode);
    return;
  }
  setInterval(pollRooms, ROOMS_POLL_MS);
  setInterval(() => store.expireTyping(), TYPING_CHECK_MS);
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
