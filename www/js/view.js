/* view.js — the page itself: finds its elements once and paints the store
 * into them (room lists, message list, members, typing line, connection
 * state, banner, name dialog). It owns the message list's scrolling: it sticks
 * to the bottom while the reader is there, keeps the reader's place when
 * older messages are prepended or new ones arrive, and shows a "new messages"
 * marker instead of moving the view. It announces new messages to screen
 * readers. It never changes chat state; user actions go back to app.js
 * through the handlers given to bindActions(). */

import { dayDivider, dayKey, el, hueClass, initials, memberElement, messageElement,
  pendingElement, roomElement } from './render.js';

const NEAR_BOTTOM_PX = 48;
const NEAR_TOP_PX = 160;
const GROUP_GAP_MS = 5 * 60 * 1000;
const ANNOUNCED_KEPT = 5;
const COMPOSER_MAX_ROWS = 8;

const $ = (id) => document.getElementById(id);

const els = {
  body: document.body,
  skipLink: $('skip-link'),
  connState: $('conn-state'),
  connText: $('conn-text'),
  meName: $('me-name'),
  meAvatar: $('me-avatar'),
  changeName: $('change-name'),
  banner: $('banner'),
  bannerText: $('banner-text'),
  bannerClose: $('banner-close'),
  toggleRooms: $('toggle-rooms'),
  sidebar: $('sidebar'),
  joinForm: $('join-form'),
  joinInput: $('join-input'),
  joinError: $('join-error'),
  myRooms: $('my-rooms'),
  otherRooms: $('other-rooms'),
  roomTitle: $('room-title'),
  roomMeta: $('room-meta'),
  toggleMembers: $('toggle-members'),
  leave: $('leave-room'),
  scroller: $('messages'),
  loadOlder: $('load-older'),
  historyNote: $('history-note'),
  messageList: $('message-list'),
  marker: $('new-marker'),
  typing: $('typing'),
  composer: $('composer'),
  composerInput: $('composer-input'),
  composerError: $('composer-error'),
  members: $('members'),
  memberList: $('member-list'),
  announcer: $('announcer'),
  nameDialog: $('name-dialog'),
  nameTitle: $('name-dialog-title'),
  nameForm: $('name-form'),
  nameFields: $('name-fields'),
  nameInput: $('name-input'),
  tokenFields: $('token-fields'),
  tokenInput: $('token-input'),
  nameError: $('name-error'),
  signOut: $('sign-out'),
  nameCancel: $('name-cancel'),
  nameSave: $('name-save'),
};

/* --- connection state, identity, banner --- */

const CONNECTION_LABELS = {
  connecting: 'Connecting…',
  online: 'Online',
  offline: 'Offline',
  refused: 'Refused: see the dialog',
  idle: 'Not connected',
};

export function renderConnection({ state, retryInMs }) {
  els.connState.dataset.state = state;
  let label = CONNECTION_LABELS[state] || state;
  if (state === 'offline' && retryInMs) label = `Offline — retrying in ${Math.ceil(retryInMs / 1000)} s`;
  els.connText.textContent = label;
}

/* anonymous: what the identity button says before the person has a name */
export function renderMe(name, anonymous = 'Choose a name') {
  els.meName.textContent = name || anonymous;
  els.meAvatar.className = `avatar ${hueClass(name || '?')}`;
  els.meAvatar.textContent = initials(name || '?');
}

export function showBanner(text) {
  els.bannerText.textContent = text;
  els.banner.hidden = false;
}

export function hideBanner() {
  els.banner.hidden = true;
}

export function announce(text) {
  els.announcer.append(el('p', '', text));
  while (els.announcer.childElementCount > ANNOUNCED_KEPT) els.announcer.firstElementChild.remove();
}

/* --- name dialog: a display name, or a sign-in token on a server with auth --- */

/* mode 'name': value is the name; mode 'token': the token field starts empty
 * and signedIn offers to forget the saved token. Asked again while open in
 * the same mode, it keeps what the person has typed. */
export function openNameDialog({ mode = 'name', value = '', error = '', required = false, signedIn = false } = {}) {
  const token = mode === 'token';
  const typing = els.nameDialog.open && els.nameDialog.dataset.mode === mode;
  els.nameDialog.dataset.mode = mode;
  els.nameTitle.textContent = token ? 'Sign in' : 'Choose a display name';
  els.nameSave.textContent = token ? 'Sign in' : 'Save';
  els.nameFields.hidden = token;
  els.tokenFields.hidden = !token;
  els.signOut.hidden = !(token && signedIn);
  els.nameError.textContent = error;
  els.nameCancel.hidden = required;
  els.nameDialog.dataset.required = String(required);
  if (typing) return;
  els.nameInput.value = value;
  els.tokenInput.value = '';
  if (!els.nameDialog.open) els.nameDialog.showModal();
  dialogInput().focus();
  dialogInput().select();
}

function dialogInput() {
  return els.nameDialog.dataset.mode === 'token' ? els.tokenInput : els.nameInput;
}

export function nameDialogError(text) {
  els.nameError.textContent = text;
  dialogInput().focus();
}

let dialogClosedByPage = false;

export function closeNameDialog() {
  if (!els.nameDialog.open) return;
  dialogClosedByPage = true;
  els.nameDialog.close();
}

/* Chromium lets a second Escape close a modal dialog whatever its cancel
 * handler says: a dialog that must be answered opens again. */
function onDialogClosed() {
  const byPage = dialogClosedByPage;
  dialogClosedByPage = false;
  if (!byPage && els.nameDialog.dataset.required === 'true') {
    els.nameDialog.showModal();
    dialogInput().focus();
  }
}

/* --- rooms --- */

/* The lists are rebuilt on every change; a keyboard user's focus on a room
 * link moves to the new link of the same room. */
export function renderRooms(store) {
  const focused = els.sidebar.contains(document.activeElement) ? document.activeElement.dataset.room : undefined;
  paintRoomLists(store);
  if (focused !== undefined) {
    els.sidebar.querySelector(`a.room-link[data-room="${CSS.escape(focused)}"]`)?.focus();
  }
  renderRoomHeader(store);
}

function paintRoomLists(store) {
  const mine = [...store.rooms.keys()].sort();
  const others = [...store.directory.keys()].filter((name) => !store.rooms.has(name)).sort();
  els.myRooms.replaceChildren(...mine.map((name) => roomElement({
    name,
    online: store.onlineCount(name),
    unread: name === store.current ? 0 : store.unread(name),
    current: name === store.current,
    offline: !store.room(name).joined,
  })));
  els.otherRooms.replaceChildren(...others.map((name) => roomElement({
    name,
    online: store.onlineCount(name),
    unread: store.unread(name),
    current: false,
    offline: true,
  })));
}

function renderRoomHeader(store) {
  const name = store.current;
  els.roomTitle.textContent = name ? `#${name}` : 'No room';
  const online = name ? store.onlineCount(name) : null;
  els.roomMeta.textContent = online === null ? '' : `${online} online`;
  els.leave.disabled = !name;
  els.toggleMembers.disabled = !name;
  els.composerInput.disabled = !name;
  els.composerInput.placeholder = name ? `Message #${name}` : 'Join a room to write';
  els.composer.querySelector('button').disabled = !name;
  document.title = name ? `#${name} · TurboChat` : 'TurboChat';
}

export function joinError(text) {
  els.joinError.textContent = text;
}

/* --- members and typing --- */

export function renderMembers(store) {
  const room = store.room(store.current);
  const names = room ? [...room.members].sort((a, b) => a.localeCompare(b)) : [];
  els.memberList.replaceChildren(...names.map((name) => memberElement(name, store.me)));
  renderRoomHeader(store);
}

export function renderTyping(store) {
  const names = store.typers(store.current);
  let text = '';
  if (names.length === 1) text = `${names[0]} is typing…`;
  else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
  else if (names.length > 2) text = `${names.length} people are typing…`;
  els.typing.textContent = text;
}

/* --- messages --- */

let renderedRoom = null;
let renderedSeenId = 0;
const nodeCache = new Map(); /* key -> {signature, node} */

function cached(key, signature, build) {
  const hit = nodeCache.get(key);
  if (hit && hit.signature === signature) return hit.node;
  const node = build();
  node.dataset.key = key;
  nodeCache.set(key, { signature, node });
  return node;
}

function messageNodes(store, room) {
  const nodes = [];
  let previous = null;
  const add = (key, signature, ts, user, build) => {
    if (ts && (!previous?.ts || dayKey(previous.ts) !== dayKey(ts))) {
      nodes.push(cached('d' + dayKey(ts), '', () => dayDivider(ts)));
      previous = null;
    }
    const node = cached(key, signature, build);
    const grouped = previous && previous.user === user && (!ts || !previous.ts || ts - previous.ts < GROUP_GAP_MS);
    node.classList.toggle('grouped', Boolean(grouped));
    nodes.push(node);
    previous = { user, ts: ts || previous?.ts };
  };
  for (const m of store.sortedMessages(room.name)) {
    const own = m.user === store.me;
    add('m' + m.id, `${own}|${m.user}|${m.ts}|${m.text}`, m.ts, m.user, () => messageElement(m, own));
  }
  for (const p of store.pendingList(room.name)) {
    add('p' + p.ref, `${store.me}|${p.state}|${p.problem}`, 0, store.me, () => pendingElement(p, store.me));
  }
  return nodes;
}

/* Puts nodes into the list in order, leaving nodes already in place alone
 * (so focus and selection inside them survive). */
function reconcile(list, nodes) {
  nodes.forEach((node, i) => {
    const at = list.children[i];
    if (at !== node) list.insertBefore(node, at || null);
  });
  while (list.children.length > nodes.length) list.lastElementChild.remove();
}

function isNearBottom() {
  const s = els.scroller;
  return s.scrollHeight - s.scrollTop - s.clientHeight < NEAR_BOTTOM_PX;
}

function isNearTop() {
  return els.scroller.scrollTop < NEAR_TOP_PX;
}

export function canScroll() {
  return els.scroller.scrollHeight > els.scroller.clientHeight + 1;
}

function scrollToBottom() {
  els.scroller.scrollTop = els.scroller.scrollHeight;
  els.marker.hidden = true;
}

/* The first message row visible at the top, and how far below the top it
 * is. Day dividers are not anchors: the one at the top stays first when
 * older messages of the same day are prepended. */
function captureAnchor() {
  const top = els.scroller.scrollTop;
  for (const node of els.messageList.querySelectorAll('.msg')) {
    if (node.offsetTop + node.offsetHeight > top) return { node, offset: node.offsetTop - top };
  }
  return null;
}

function restoreAnchor(anchor) {
  if (anchor && anchor.node.isConnected) els.scroller.scrollTop = anchor.node.offsetTop - anchor.offset;
}

function renderHistoryTop(room) {
  els.loadOlder.hidden = !room?.loaded || !room.hasOlder;
  els.loadOlder.disabled = Boolean(room?.loadingOlder);
  let note = '';
  if (!room) note = 'Join a room to start chatting.';
  else if (room.historyError) note = room.historyError;
  else if (!room.loaded) note = room.joined ? 'Loading messages…' : 'Waiting for the connection…';
  else if (room.loadingOlder) note = 'Loading older messages…';
  else if (!room.hasOlder) note = `This is the beginning of #${room.name}.`;
  els.historyNote.textContent = note;
}

/* Repaints the current room's messages. forceBottom: the reader just sent a
 * message, show it. */
export function renderMessages(store, { forceBottom = false } = {}) {
  const room = store.room(store.current);
  const switched = store.current !== renderedRoom;
  if (switched) {
    nodeCache.clear();
    renderedRoom = store.current;
    renderedSeenId = 0;
    els.marker.hidden = true;
  }
  const stick = switched || forceBottom || isNearBottom();
  const anchor = stick ? null : captureAnchor();
  reconcile(els.messageList, room ? messageNodes(store, room) : []);
  renderHistoryTop(room);
  if (stick) scrollToBottom();
  else restoreAnchor(anchor);
  const seenId = room?.seenId || 0;
  if (!stick && renderedSeenId && seenId > renderedSeenId) els.marker.hidden = false;
  renderedSeenId = seenId;
}

/* --- composer --- */

export function setComposerText(text) {
  els.composerInput.value = text;
  fitComposer();
}

export function composerError(text) {
  els.composerError.textContent = text;
}

function fitComposer() {
  const lines = els.composerInput.value.split('\n').length;
  els.composerInput.rows = Math.min(COMPOSER_MAX_ROWS, Math.max(1, lines));
}

function focusComposer() {
  els.composerInput.focus();
}

/* --- narrow screens: rooms and members open as drawers --- */

function setDrawer(name, open) {
  const button = name === 'rooms' ? els.toggleRooms : els.toggleMembers;
  els.body.classList.toggle(`${name}-open`, open);
  button.setAttribute('aria-expanded', String(open));
}

export function closeDrawers() {
  setDrawer('rooms', false);
  setDrawer('members', false);
}

/* Escape: close the open drawer and give the focus back to its button. */
function closeOpenDrawer() {
  const open = ['rooms', 'members'].find((name) => els.body.classList.contains(`${name}-open`));
  if (!open) return;
  closeDrawers();
  (open === 'rooms' ? els.toggleRooms : els.toggleMembers).focus();
}

function toggleDrawer(name) {
  const open = !els.body.classList.contains(`${name}-open`);
  closeDrawers();
  setDrawer(name, open);
  if (open) (name === 'rooms' ? els.sidebar.querySelector('a, input') : els.members)?.focus();
}

/* --- user actions --- */

function onComposerKey(event, handlers) {
  if (event.key !== 'Enter' || event.shiftKey || event.isComposing) return;
  event.preventDefault();
  handlers.send(els.composerInput.value);
}

export function bindActions(handlers) {
  /* the URL's #fragment names the room: the skip link moves focus only */
  els.skipLink.addEventListener('click', (event) => {
    event.preventDefault();
    focusComposer();
  });
  els.joinForm.addEventListener('submit', (event) => {
    event.preventDefault();
    handlers.join(els.joinInput.value.trim());
  });
  els.joinInput.addEventListener('input', () => joinError(''));
  els.composer.addEventListener('submit', (event) => {
    event.preventDefault();
    handlers.send(els.composerInput.value);
  });
  els.composerInput.addEventListener('keydown', (event) => onComposerKey(event, handlers));
  els.composerInput.addEventListener('input', () => {
    fitComposer();
    composerError('');
    handlers.typing(els.composerInput.value);
  });
  els.messageList.addEventListener('click', (event) => {
    const retry = event.target.closest('button.retry');
    if (retry) handlers.retry(retry.dataset.ref);
  });
  els.scroller.addEventListener('scroll', () => {
    if (isNearBottom()) els.marker.hidden = true;
    if (isNearTop()) handlers.needOlder();
  }, { passive: true });
  els.loadOlder.addEventListener('click', () => handlers.needOlder());
  els.marker.addEventListener('click', () => {
    scrollToBottom();
    focusComposer();
  });
  els.leave.addEventListener('click', () => handlers.leave());
  els.changeName.addEventListener('click', () => handlers.changeName());
  els.nameForm.addEventListener('submit', (event) => {
    event.preventDefault();
    if (els.nameDialog.dataset.mode === 'token') handlers.saveToken(els.tokenInput.value.trim());
    else handlers.saveName(els.nameInput.value.trim());
  });
  els.signOut.addEventListener('click', () => handlers.signOut());
  els.nameCancel.addEventListener('click', closeNameDialog);
  els.nameDialog.addEventListener('cancel', (event) => {
    if (els.nameDialog.dataset.required === 'true') event.preventDefault();
  });
  els.nameDialog.addEventListener('close', onDialogClosed);
  els.bannerClose.addEventListener('click', hideBanner);
  els.toggleRooms.addEventListener('click', () => toggleDrawer('rooms'));
  els.toggleMembers.addEventListener('click', () => toggleDrawer('members'));
  els.sidebar.addEventListener('click', (event) => {
    if (event.target.closest('a.room-link')) closeDrawers();
  });
  document.addEventListener('keydown', (event) => {
    if (event.key === 'Escape') closeOpenDrawer();
  });
}
