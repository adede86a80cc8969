/* view.js — the page itself: finds its elements once and paints the store
 * into them (room lists, message list, members, typing line, connection
 * state, banner, name dialog, reply bar). It owns the message list's
 * scrolling: it sticks to the bottom while the reader is there, keeps the
 * reader's place when older messages are prepended or new ones arrive, and
 * shows a "new messages" marker instead of moving the view. It announces new
 * messages to screen readers. It owns what only lives on screen: the editor
 * of a message edited in place, the hover actions (long-press on a touch
 * screen), the reaction picker and delete confirmation popover, and the @
 * autocomplete of the composer. With auth = accounts it also paints the
 * sign-in and sign-up page, the direct-message list, a private room's
 * roster, the "new since you left" divider, and the dialogs: profile, new
 * room, members (invite), new direct message and the admin page; every
 * dialog is modal, keeps the focus inside, closes with Escape and gives the
 * focus back to what opened it. It never changes chat state; user actions go
 * back to app.js through the handlers given to bindActions(). */

import { adminRoomElement, adminUserElement, colorAvatar, dayDivider, dayKey, el, emojiPicker, hueClass, initials,
  inviteElement, memberElement, mentionOption, messageElement, messageSignature, newDivider, pendingElement,
  resetForm, roomElement, rosterElement } from './render.js';

const NEAR_BOTTOM_PX = 48;
const NEAR_TOP_PX = 160;
const GROUP_GAP_MS = 5 * 60 * 1000;
const ANNOUNCED_KEPT = 5;
const COMPOSER_MAX_ROWS = 8;
const LONG_PRESS_MS = 500;
const LONG_PRESS_SLOP_PX = 10;
const MENTION_QUERY = /(?:^|[^\p{L}\p{N}])@([^\s@]{0,32})$/u;

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
  replyBar: $('reply-bar'),
  replyUser: $('reply-user'),
  replyText: $('reply-text'),
  replyCancel: $('reply-cancel'),
  mentionList: $('mention-list'),
  popover: $('popover'),
  messagesWrap: document.querySelector('.messages-wrap'),
  notify: $('notify-toggle'),
  notifyLabel: $('notify-label'),
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
  layout: document.querySelector('.layout'),
  joinLabel: $('join-label'),
  newRoom: $('new-room'),
  dmSection: $('dm-section'),
  dmList: $('dm-list'),
  newDm: $('new-dm'),
  manageMembers: $('manage-members'),
  membersTitle: $('members-title'),
  rosterTitle: $('roster-title'),
  rosterList: $('roster-list'),
  authPage: $('auth-page'),
  authForm: $('auth-form'),
  authTitle: $('auth-title'),
  authHint: $('auth-hint'),
  authName: $('auth-name'),
  authPassword: $('auth-password'),
  authPasswordHint: $('auth-password-hint'),
  authInviteField: $('auth-invite-field'),
  authInvite: $('auth-invite'),
  authError: $('auth-error'),
  authSubmit: $('auth-submit'),
  authSwitch: $('auth-switch'),
  authSwitchText: $('auth-switch-text'),
  profileDialog: $('profile-dialog'),
  profileName: $('profile-name'),
  profileRole: $('profile-role'),
  profileForm: $('profile-form'),
  profileDisplay: $('profile-display'),
  profileColor: $('profile-color'),
  profilePreview: $('profile-preview'),
  profileStatus: $('profile-status'),
  passwordForm: $('password-form'),
  passwordOld: $('password-old'),
  passwordNew: $('password-new'),
  passwordStatus: $('password-status'),
  openAdmin: $('open-admin'),
  signOutAccount: $('sign-out-account'),
  signOutEverywhere: $('sign-out-everywhere'),
  roomDialog: $('room-dialog'),
  roomForm: $('room-form'),
  roomName: $('room-name'),
  roomError: $('room-error'),
  membersDialog: $('members-dialog'),
  membersDialogTitle: $('members-dialog-title'),
  membersRoster: $('members-roster'),
  inviteForm: $('invite-form'),
  inviteName: $('invite-name'),
  inviteOwner: $('invite-owner'),
  inviteStatus: $('invite-status'),
  leavePrivate: $('leave-private'),
  dmDialog: $('dm-dialog'),
  dmForm: $('dm-form'),
  dmNames: $('dm-names'),
  dmError: $('dm-error'),
  adminDialog: $('admin-dialog'),
  adminStatus: $('admin-status'),
  adminUsers: $('admin-users'),
  adminRooms: $('admin-rooms'),
  adminInvite: $('admin-invite'),
  adminInvites: $('admin-invites'),
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

/* anonymous: what the identity button says before the person has a name;
 * color: the profile's colour (accounts). */
export function renderMe(name, anonymous = 'Choose a name', color = '') {
  els.meName.textContent = name || anonymous;
  colorAvatar(els.meAvatar, name, color);
}

export function showBanner(text) {
  els.bannerText.textContent = text;
  els.banner.hidden = false;
}

export function hideBanner() {
  els.banner.hidden = true;
}

/* Mention notifications: {supported, permission ('default'|'granted'|'denied'), on}. */
export function renderNotify({ supported, permission, on }) {
  els.notify.hidden = !supported;
  if (!supported) return;
  let label = 'Notify me of mentions';
  if (permission === 'granted') label = on ? 'Mention notifications on (click to turn off)' : 'Mention notifications off (click to turn on)';
  if (permission === 'denied') label = 'Notifications are blocked in this browser\'s settings';
  els.notify.setAttribute('aria-pressed', String(permission === 'granted' && on));
  els.notify.dataset.permission = permission;
  els.notify.disabled = permission === 'denied';
  els.notify.title = label;
  els.notifyLabel.textContent = label;
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

function roomKind(store, name) {
  if (!store.accounts) return 'public';
  if (store.isDm(name)) return 'dm';
  return store.isPrivate(name) ? 'private' : 'public';
}

function paintRoomLists(store) {
  const isDm = (name) => store.accounts && store.isDm(name);
  const mine = [...store.rooms.keys()].filter((name) => !isDm(name)).sort();
  const others = [...store.directory.keys()].filter((name) => !store.rooms.has(name) && !isDm(name)).sort();
  const entry = (name) => {
    const held = store.room(name);
    const current = name === store.current;
    return roomElement({
      name,
      label: store.accounts ? store.label(name).replace(/^#/, '') : '',
      kind: roomKind(store, name),
      online: store.onlineCount(name),
      /* accounts: the server's count, 0 once read; else this device's */
      unread: current && !store.accounts ? 0 : store.unread(name),
      mentions: store.mentionCount(name),
      current,
      offline: !held?.joined,
    });
  };
  els.myRooms.replaceChildren(...mine.map(entry));
  els.otherRooms.replaceChildren(...others.map(entry));
  els.dmSection.hidden = !store.accounts;
  els.dmList.hidden = !store.accounts;
  if (store.accounts) {
    const dms = new Set([...store.rooms.keys(), ...store.directory.keys()].filter(isDm));
    els.dmList.replaceChildren(...[...dms]
      .sort((a, b) => store.label(a).localeCompare(store.label(b)))
      .map(entry));
  }
}

function renderRoomHeader(store) {
  const name = store.current;
  els.roomTitle.textContent = name ? store.label(name) : 'No room';
  const privateRoom = Boolean(name) && store.accounts && store.isPrivate(name) && !store.isDm(name);
  els.manageMembers.hidden = !privateRoom;
  els.manageMembers.textContent = privateRoom && store.isOwner(name) ? 'Invite' : 'Members';
  els.leave.hidden = Boolean(name) && store.accounts && store.isDm(name);
  const online = name ? store.onlineCount(name) : null;
  els.roomMeta.textContent = online === null ? '' : `${online} online`;
  els.leave.disabled = !name;
  els.toggleMembers.disabled = !name;
  els.composerInput.disabled = !name;
  els.composerInput.placeholder = name ? `Message ${store.label(name)}` : 'Join a room to write';
  els.composer.querySelector('button').disabled = !name;
  document.title = name ? `${store.label(name)} · TurboChat` : 'TurboChat';
}

export function joinError(text) {
  els.joinError.textContent = text;
}

/* --- members and typing --- */

export function renderMembers(store) {
  const room = store.room(store.current);
  const names = room ? [...room.members].sort((a, b) => a.localeCompare(b)) : [];
  const canMessage = store.accounts;
  els.memberList.replaceChildren(...names.map((name) => memberElement(name, store.me, { canMessage })));
  /* a private room's members see who belongs to it, online or not */
  const roster = store.accounts && room ? store.rosters.get(room.name) : null;
  els.rosterTitle.hidden = !roster;
  els.rosterList.hidden = !roster;
  if (roster) {
    const sorted = [...roster].sort((a, b) => a.user.localeCompare(b.user));
    els.rosterList.replaceChildren(...sorted.map((m) => memberElement(m.user, store.me,
      { role: m.role || 'member', canMessage, online: room.members.has(m.user) })));
  }
  renderRoomHeader(store);
  if (els.membersDialog.open) renderMembersDialog(store);
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
let dividerShownFor = null; /* the room whose divider was scrolled to */
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
  let ungroup = false; /* the next message starts a group (after the "new" divider) */
  let divide = false;  /* the next message is the first unread: "new since you left" goes before it */
  const add = (key, signature, ts, user, build) => {
    if (ts && (!previous?.ts || dayKey(previous.ts) !== dayKey(ts))) {
      nodes.push(cached('d' + dayKey(ts), '', () => dayDivider(ts)));
      previous = null;
    }
    if (divide) {
      nodes.push(cached('new', String(room.dividerAfter), newDivider));
      ungroup = true;
      divide = false;
    }
    const node = cached(key, signature, build);
    const grouped = !ungroup && previous && previous.user === user && (!ts || !previous.ts || ts - previous.ts < GROUP_GAP_MS);
    node.classList.toggle('grouped', Boolean(grouped));
    nodes.push(node);
    previous = { user, ts: ts || previous?.ts };
    ungroup = false;
  };
  let divided = !store.accounts || !(room.dividerAfter > 0);
  for (const m of store.sortedMessages(room.name)) {
    if (!divided && m.id > room.dividerAfter && m.user !== store.me && !m.deleted) {
      divide = true; /* placed by add(), after a day divider */
      divided = true;
    }
    const saving = store.pendingEdit(room.name, m.id);
    const look = {
      own: m.user === store.me,
      me: store.me,
      editing: store.isEditing(room.name, m.id),
      savingText: saving ? saving.text : null,
      savingQueued: saving?.state === 'queued',
      notice: store.notice(room.name, m.id),
    };
    add('m' + m.id, messageSignature(m, look), m.ts, m.user, () => messageElement(m, look));
  }
  for (const p of store.pendingList(room.name)) {
    add('p' + p.ref, `${store.me}|${p.state}|${p.problem}|${p.replyTo?.id}`, 0, store.me, () => pendingElement(p, store.me));
  }
  return nodes;
}

/* --- edit in place: one editor, moved into the row of the message edited --- */

let editor = null; /* {room, id, node, input, error} while a message is edited */

function buildEditor(room, id, text) {
  const node = el('form', 'editor');
  node.noValidate = true;
  node.dataset.testid = 'editor';
  const input = el('textarea', 'editor-input');
  input.dataset.testid = 'edit-input';
  input.setAttribute('aria-label', 'Edit the message');
  input.value = text;
  input.rows = Math.min(COMPOSER_MAX_ROWS, text.split('\n').length);
  const error = el('p', 'field-error');
  error.dataset.testid = 'edit-error';
  error.setAttribute('aria-live', 'polite');
  const row = el('div', 'editor-actions');
  const hint = el('span', 'editor-hint', 'Enter saves · Escape cancels');
  const cancel = el('button', 'button subtle', 'Cancel');
  cancel.type = 'button';
  cancel.dataset.testid = 'edit-cancel';
  const save = el('button', 'button primary', 'Save');
  save.type = 'submit';
  save.dataset.testid = 'edit-save';
  row.append(hint, cancel, save);
  node.append(input, error, row);
  const done = () => handlers.saveEdit(id, input.value);
  node.addEventListener('submit', (event) => {
    event.preventDefault();
    done();
  });
  cancel.addEventListener('click', () => handlers.cancelEdit());
  input.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      done();
    } else if (event.key === 'Escape') {
      event.preventDefault();
      event.stopPropagation();
      handlers.cancelEdit();
    }
  });
  input.addEventListener('input', () => {
    error.textContent = '';
    input.rows = Math.min(COMPOSER_MAX_ROWS, Math.max(1, input.value.split('\n').length));
  });
  return { room, id, node, input, error };
}

/* Puts the editor into the row of the message being edited (a new one when
 * another message is edited); focused: the editor had the focus before the
 * repaint. */
function placeEditor(store, focused) {
  const editing = store.editing;
  if (!editing || editing.room !== store.current) {
    editor = null;
    return;
  }
  const slot = els.messageList.querySelector(`.msg[data-id="${editing.id}"] .editor-slot`);
  if (!slot) return;
  const fresh = !editor || editor.room !== editing.room || editor.id !== editing.id;
  if (fresh) editor = buildEditor(editing.room, editing.id, store.message(editing.room, editing.id)?.text ?? '');
  if (editor.node.parentNode !== slot) slot.append(editor.node);
  if (fresh || focused) {
    editor.input.focus({ preventScroll: !fresh });
    if (fresh) {
      editor.input.setSelectionRange(editor.input.value.length, editor.input.value.length);
      editor.node.scrollIntoView({ block: 'nearest' });
    }
  }
}

export function editorError(text) {
  if (!editor) return;
  editor.error.textContent = text;
  editor.input.focus();
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

/* The top of a room whose oldest messages expired (retention). */
function expiredNote(days) {
  if (!days) return 'History before this was removed.';
  const n = Number(days.toPrecision(3));
  return `History before this was removed after ${n} ${n === 1 ? 'day' : 'days'}.`;
}

function renderHistoryTop(room) {
  els.loadOlder.hidden = !room?.loaded || !room.hasOlder;
  els.loadOlder.disabled = Boolean(room?.loadingOlder);
  let note = '';
  if (!room) note = 'Join a room to start chatting.';
  else if (room.historyError) note = room.historyError;
  else if (!room.loaded) note = room.joined ? 'Loading messages…' : 'Waiting for the connection…';
  else if (room.loadingOlder) note = 'Loading older messages…';
  else if (!room.hasOlder && room.begins > 1) note = expiredNote(room.retentionDays);
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
    closePopover();
  }
  const editorFocused = Boolean(editor?.node.contains(document.activeElement));
  const focusedRow = els.messageList.contains(document.activeElement)
    ? document.activeElement.closest('.msg')?.dataset.key : undefined;
  const stick = switched || forceBottom || isNearBottom();
  const anchor = stick ? null : captureAnchor();
  reconcile(els.messageList, room ? messageNodes(store, room) : []);
  placeEditor(store, editorFocused);
  if (focusedRow && !els.messageList.contains(document.activeElement)) {
    els.messageList.querySelector(`[data-key="${CSS.escape(focusedRow)}"]`)?.focus({ preventScroll: true });
  }
  if (popover && !popover.row.isConnected) closePopover();
  renderHistoryTop(room);
  if (stick) scrollToBottom();
  else restoreAnchor(anchor);
  /* a room opened with unread messages starts at "new since you left" */
  const divider = els.messageList.querySelector('.new-divider');
  if (divider && dividerShownFor !== renderedRoom) {
    dividerShownFor = renderedRoom;
    els.scroller.scrollTop = Math.min(els.scroller.scrollTop, divider.offsetTop - 8);
  }
  if (switched && !divider) dividerShownFor = null;
  /* the newest message, not the newest event: a reaction is not news */
  const seenId = room && room.messages.size ? Math.max(...room.messages.keys()) : 0;
  if (!stick && renderedSeenId && seenId > renderedSeenId) els.marker.hidden = false;
  renderedSeenId = seenId;
}

/* The newest stored message the reader can see now (0: none). */
export function readableId() {
  const bottom = els.scroller.scrollTop + els.scroller.clientHeight;
  const rows = els.messageList.querySelectorAll('.msg[data-id]');
  for (let i = rows.length - 1; i >= 0; i--) {
    if (rows[i].offsetTop + Math.min(rows[i].offsetHeight, 24) <= bottom + 1) return Number(rows[i].dataset.id);
  }
  return 0;
}

/* The reader is at the newest message (so every event of the room is read). */
export function atBottom() {
  return isNearBottom();
}

/* Scrolls message id into the middle of the view and highlights it. */
export function revealMessage(id) {
  const row = els.messageList.querySelector(`.msg[data-id="${id}"]`);
  if (!row) return false;
  for (const other of els.messageList.querySelectorAll('.msg.jumped')) other.classList.remove('jumped');
  row.scrollIntoView({ block: 'center' });
  void row.offsetWidth; /* restart the highlight's animation */
  row.classList.add('jumped');
  row.focus({ preventScroll: true });
  return true;
}

/* --- reply bar --- */

export function renderReply(store) {
  const quote = store.room(store.current)?.replyTo;
  els.replyBar.hidden = !quote;
  if (!quote) return;
  els.replyUser.textContent = quote.user;
  els.replyUser.className = `quote-author ${hueClass(quote.user)}`;
  els.replyText.textContent = quote.text || 'message deleted';
}

/* --- actions of a message: hover bar, long-press, popover --- */

let handlers = {};
let popover = null; /* {row, id, kind: 'react'|'delete'} while the popover is open */

function closePopover() {
  if (!popover) return;
  const { row } = popover;
  popover = null;
  els.popover.hidden = true;
  els.popover.replaceChildren();
  row.classList.remove('popover-open');
}

/* Opens the popover next to anchor (a button of row): the reaction picker
 * or the delete confirmation of message id. */
function openPopover(row, anchor, kind, mine = []) {
  closePopover();
  const id = Number(row.dataset.id);
  popover = { row, id, kind };
  row.classList.add('popover-open');
  if (kind === 'react') {
    els.popover.setAttribute('aria-label', 'Pick a reaction');
    els.popover.replaceChildren(emojiPicker(mine));
  } else {
    els.popover.setAttribute('aria-label', 'Delete the message');
    const yes = el('button', 'button danger', 'Delete');
    yes.type = 'button';
    yes.dataset.testid = 'confirm-delete';
    const no = el('button', 'button subtle', 'Cancel');
    no.type = 'button';
    no.dataset.testid = 'cancel-delete';
    const actions = el('div', 'popover-actions');
    actions.append(no, yes);
    els.popover.replaceChildren(el('p', 'popover-title', 'Delete this message for everyone?'), actions);
  }
  els.popover.setAttribute('role', 'dialog');
  els.popover.hidden = false;
  /* above the button, kept inside the pane; below it near the top */
  const wrap = els.messagesWrap.getBoundingClientRect();
  const at = anchor.getBoundingClientRect();
  const box = els.popover.getBoundingClientRect();
  let top = at.top - wrap.top - box.height - 6;
  if (top < 4) top = at.bottom - wrap.top + 6;
  const left = Math.min(Math.max(4, at.right - wrap.left - box.width), wrap.width - box.width - 4);
  els.popover.style.setProperty('top', `${Math.max(4, top)}px`);
  els.popover.style.setProperty('left', `${Math.max(4, left)}px`);
  els.popover.querySelector('button')?.focus();
}

function onPopoverClick(event) {
  if (!popover) return;
  const { id, kind, row } = popover;
  const emoji = event.target.closest('.emoji-option')?.dataset.emoji;
  if (kind === 'react' && emoji) {
    closePopover();
    row.classList.remove('actions-open');
    handlers.toggleReaction(id, emoji);
  } else if (event.target.closest('[data-testid=confirm-delete]')) {
    closePopover();
    handlers.remove(id);
    focusComposer();
  } else if (event.target.closest('[data-testid=cancel-delete]')) {
    closePopover();
    row.focus({ preventScroll: true });
  }
}

function mineOn(row, store) {
  const message = store.message(store.current, Number(row.dataset.id));
  return message ? Object.keys(message.reactions).filter((e) => message.reactions[e].includes(store.me)) : [];
}

function closeActions(except = null) {
  for (const row of els.messageList.querySelectorAll('.msg.actions-open')) {
    if (row !== except) row.classList.remove('actions-open');
  }
}

function onMessageClick(event, store) {
  const target = event.target;
  const retry = target.closest('button.retry');
  if (retry) {
    handlers.retry(retry.dataset.ref);
    return;
  }
  const row = target.closest('.msg[data-id]');
  if (!row) return;
  const id = Number(row.dataset.id);
  const quote = target.closest('.reply-quote');
  if (quote) {
    handlers.jump(Number(quote.dataset.target), id);
    return;
  }
  if (target.closest('.notice-dismiss')) {
    handlers.dismissNotice(id);
    return;
  }
  const chip = target.closest('.reaction[data-emoji]');
  if (chip) {
    handlers.toggleReaction(id, chip.dataset.emoji);
    return;
  }
  const action = target.closest('[data-action]');
  if (!action) return;
  const kind = action.dataset.action;
  if (kind === 'react') {
    openPopover(row, action, 'react', mineOn(row, store));
    return;
  }
  closePopover();
  row.classList.remove('actions-open');
  if (kind === 'reply') handlers.reply(id);
  else if (kind === 'edit') handlers.edit(id);
  else if (kind === 'delete') openPopover(row, action, 'delete');
}

/* A long press on a message with a finger opens its actions, as hovering
 * does with a mouse. */
function bindLongPress() {
  let press = null; /* {row, x, y, timer} */
  const cancel = () => {
    if (press) clearTimeout(press.timer);
    press = null;
  };
  let opened = 0; /* time a long press opened actions: the click and menu it causes are swallowed */
  els.messageList.addEventListener('pointerdown', (event) => {
    if (event.pointerType !== 'touch') return;
    const row = event.target.closest('.msg[data-id]');
    if (!row?.querySelector('.msg-actions') || event.target.closest('button, a, textarea')) return;
    cancel();
    press = { row, x: event.clientX, y: event.clientY };
    press.timer = setTimeout(() => {
      closePopover();
      closeActions(row);
      row.classList.add('actions-open');
      opened = Date.now();
      press = null;
      navigator.vibrate?.(10);
    }, LONG_PRESS_MS);
  });
  els.messageList.addEventListener('pointermove', (event) => {
    if (press && Math.hypot(event.clientX - press.x, event.clientY - press.y) > LONG_PRESS_SLOP_PX) cancel();
  });
  for (const type of ['pointerup', 'pointercancel', 'pointerleave']) els.messageList.addEventListener(type, cancel);
  els.messageList.addEventListener('contextmenu', (event) => {
    if (press || Date.now() - opened < 1500) event.preventDefault();
  });
  els.messageList.addEventListener('click', (event) => {
    if (Date.now() - opened < 400 && !event.target.closest('button')) {
      event.stopImmediatePropagation();
      opened = 0;
    }
  }, true);
}

/* Arrow keys move between messages once one has the focus; the focused
 * message's actions join the Tab order. */
function bindMessageFocus() {
  els.scroller.addEventListener('keydown', (event) => {
    if (!['ArrowUp', 'ArrowDown'].includes(event.key) || event.target.closest('textarea, .popover')) return;
    const rows = [...els.messageList.querySelectorAll('.msg[data-id]')];
    if (!rows.length) return;
    const at = rows.indexOf(event.target.closest('.msg'));
    let next;
    if (at === -1) next = event.key === 'ArrowUp' ? rows.at(-1) : null;
    else next = rows[at + (event.key === 'ArrowUp' ? -1 : 1)];
    if (!next) return;
    event.preventDefault();
    next.focus();
    next.scrollIntoView({ block: 'nearest' });
  });
  els.messageList.addEventListener('focusin', (event) => {
    const row = event.target.closest('.msg');
    for (const button of row?.querySelectorAll('.msg-action') || []) button.tabIndex = 0;
  });
  els.messageList.addEventListener('focusout', (event) => {
    const row = event.target.closest('.msg');
    if (!row || row.contains(event.relatedTarget)) return;
    for (const button of row.querySelectorAll('.msg-action')) button.tabIndex = -1;
  });
}

/* --- @ autocomplete in the composer --- */

let complete = null; /* {items: [{name, online}], index, start, end} while the list is open */

function closeComplete() {
  complete = null;
  els.mentionList.hidden = true;
  els.mentionList.replaceChildren();
  els.composerInput.setAttribute('aria-expanded', 'false');
  els.composerInput.removeAttribute('aria-activedescendant');
}

function paintComplete() {
  els.mentionList.replaceChildren(...complete.items.map((item, i) => mentionOption(item, i, i === complete.index)));
  els.mentionList.hidden = false;
  els.composerInput.setAttribute('aria-expanded', 'true');
  els.composerInput.setAttribute('aria-activedescendant', `mention-option-${complete.index}`);
}

/* Opens, updates or closes the list for the @word before the caret. */
function updateComplete() {
  const input = els.composerInput;
  const caret = input.selectionStart;
  const match = caret === input.selectionEnd ? input.value.slice(0, caret).match(MENTION_QUERY) : null;
  const items = match ? handlers.mentionCandidates(match[1]) : [];
  /* a name typed out in full needs no list: Enter sends */
  const done = items.length === 1 && items[0].name.toLowerCase() === match[1].toLowerCase();
  if (!items.length || done) {
    closeComplete();
    return;
  }
  const previous = complete?.items[complete.index]?.name;
  const index = Math.max(0, items.findIndex((item) => item.name === previous));
  complete = { items, index, start: caret - match[1].length - 1, end: caret };
  paintComplete();
}

function pickComplete(index = complete.index) {
  const input = els.composerInput;
  const { start, end } = complete;
  const insert = `@${complete.items[index].name} `;
  input.value = input.value.slice(0, start) + insert + input.value.slice(end);
  input.setSelectionRange(start + insert.length, start + insert.length);
  closeComplete();
  fitComposer();
  handlers.typing(input.value);
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

export function focusComposer() {
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

/* --- accounts: the sign-in and sign-up page --- */

/* The page shows either the chat or, signed out, the sign-in page. */
export function showChat(on) {
  els.layout.hidden = !on;
  els.authPage.hidden = on;
  els.body.classList.toggle('signed-out', !on);
}

/* mode: 'signin'|'signup'; signup: the server's 'open'|'invite'|'closed';
 * invite: a code from the address; error: why the person is here again. */
export function showAuthPage({ mode = 'signin', signup = 'open', invite = '', error = '' } = {}) {
  showChat(false);
  els.authForm.dataset.signup = signup;
  setAuthMode(mode, signup);
  if (invite) els.authInvite.value = invite;
  authError(error);
  els.authName.focus();
}

function setAuthMode(mode, signup = els.authForm.dataset.signup) {
  const up = mode === 'signup';
  els.authForm.dataset.mode = mode;
  els.authTitle.textContent = up ? 'Create an account' : 'Sign in';
  els.authSubmit.textContent = up ? 'Create account' : 'Sign in';
  els.authPassword.autocomplete = up ? 'new-password' : 'current-password';
  els.authPasswordHint.hidden = !up;
  els.authInviteField.hidden = !(up && (signup === 'invite' || els.authInvite.value));
  let hint = '';
  if (up && signup === 'invite') hint = 'This server admits new people with an invite code from an admin.';
  else if (up && signup === 'closed') hint = 'Sign-up is closed on this server: an admin makes accounts.';
  else if (!up) hint = 'Sign in to chat. Your rooms, direct messages and what you have read follow you to every device.';
  els.authHint.textContent = hint;
  els.authSwitchText.textContent = up ? 'Have an account?' : 'No account yet?';
  els.authSwitch.textContent = up ? 'Sign in' : 'Create one';
  els.authSwitch.parentElement.hidden = !up && signup === 'closed';
  authError('');
}

/* field: 'name'|'password'|'invite' the problem is about (marked invalid
 * and focused), or '' for the form as a whole. */
export function authError(text, field = '') {
  els.authError.textContent = text;
  const inputs = { name: els.authName, password: els.authPassword, invite: els.authInvite };
  for (const [key, input] of Object.entries(inputs)) {
    if (key === field && text) input.setAttribute('aria-invalid', 'true');
    else input.removeAttribute('aria-invalid');
  }
  if (text && inputs[field]) inputs[field].focus();
}

export function authBusy(busy) {
  els.authSubmit.disabled = busy;
}

/* --- dialogs --- */

const FOCUSABLE = 'button, input, select, textarea, a[href], [tabindex]:not([tabindex="-1"])';
const openers = new Map(); /* dialog -> the element that had the focus when it opened */

/* Opens dialog modally with the focus on first (or its first field). */
function openDialog(dialog, first = null) {
  if (!dialog.open) {
    openers.set(dialog, document.activeElement);
    dialog.showModal();
  }
  (first || dialog.querySelector(FOCUSABLE))?.focus();
}

export function closeDialog(dialog) {
  if (dialog.open) dialog.close();
}

/* Tab and Shift+Tab go round inside the dialog; the focus goes back to the
 * opener when it closes (by Escape, a close button or the page). */
function bindDialog(dialog) {
  dialog.addEventListener('keydown', (event) => {
    if (event.key !== 'Tab') return;
    const items = [...dialog.querySelectorAll(FOCUSABLE)]
      .filter((node) => !node.disabled && node.getClientRects().length && !(node.type === 'radio' && !node.checked));
    if (!items.length) return;
    const first = items[0];
    const last = items.at(-1);
    if (event.shiftKey && (document.activeElement === first || !dialog.contains(document.activeElement))) {
      event.preventDefault();
      last.focus();
    } else if (!event.shiftKey && (document.activeElement === last || !dialog.contains(document.activeElement))) {
      event.preventDefault();
      first.focus();
    }
  });
  dialog.addEventListener('click', (event) => {
    if (event.target.closest('[data-close]')) closeDialog(dialog);
  });
  dialog.addEventListener('close', () => {
    const opener = openers.get(dialog);
    openers.delete(dialog);
    if (opener?.isConnected && !opener.closest('[hidden]')) opener.focus();
  });
}

/* --- accounts: profile --- */

export function openProfile(profile, { admin = false } = {}) {
  els.profileName.textContent = profile.name;
  els.profileRole.textContent = profile.role === 'admin' ? 'admin' : '';
  els.profileDisplay.value = profile.display || profile.name;
  els.profileColor.value = /^#[0-9a-fA-F]{6}$/.test(profile.color || '') ? profile.color : '#4f46e5';
  colorAvatar(els.profilePreview, els.profileDisplay.value, els.profileColor.value);
  els.profileStatus.textContent = '';
  els.passwordStatus.textContent = '';
  els.passwordOld.value = '';
  els.passwordNew.value = '';
  els.openAdmin.hidden = !admin;
  openDialog(els.profileDialog, els.profileDisplay);
}

export function closeProfile() {
  closeDialog(els.profileDialog);
}

/* error: the text is a problem (marked as one) */
export function profileStatus(text, error = false) {
  els.profileStatus.textContent = text;
  els.profileStatus.classList.toggle('error', error);
}

export function passwordStatus(text, error = false) {
  els.passwordStatus.textContent = text;
  els.passwordStatus.classList.toggle('error', error);
  if (!error) {
    els.passwordOld.value = '';
    els.passwordNew.value = '';
  }
}

/* --- accounts: new room, members, direct message --- */

export function openRoomDialog() {
  els.roomForm.reset();
  els.roomError.textContent = '';
  openDialog(els.roomDialog, els.roomName);
}

export function roomDialogError(text) {
  els.roomError.textContent = text;
  els.roomName.focus();
}

export function closeRoomDialog() {
  closeDialog(els.roomDialog);
}

export function openMembersDialog(store) {
  els.inviteName.value = '';
  els.inviteOwner.checked = false;
  els.inviteStatus.textContent = '';
  renderMembersDialog(store);
  openDialog(els.membersDialog, store.isOwner(store.current) ? els.inviteName : null);
}

/* The roster of the room on screen, with the owner's actions. */
export function renderMembersDialog(store) {
  const name = store.current;
  const owner = store.isOwner(name);
  els.membersDialogTitle.textContent = `Members of ${name ? store.label(name) : ''}`;
  const roster = [...(store.rosters.get(name) || [])].sort((a, b) => a.user.localeCompare(b.user));
  const focusedUser = els.membersRoster.contains(document.activeElement) ? document.activeElement.dataset.user : null;
  els.membersRoster.replaceChildren(...roster.map((m) => rosterElement(m, store.me, owner)));
  if (focusedUser) (els.membersRoster.querySelector(`[data-user="${CSS.escape(focusedUser)}"] button`) || els.inviteName).focus();
  els.inviteForm.hidden = !owner;
}

export function inviteStatus(text, error = false) {
  els.inviteStatus.textContent = text;
  els.inviteStatus.classList.toggle('error', error);
  if (!error) els.inviteName.value = '';
  if (els.membersDialog.open && !els.inviteForm.hidden) els.inviteName.focus();
}

export function closeMembersDialog() {
  closeDialog(els.membersDialog);
}

export function openDmDialog(names = '') {
  els.dmNames.value = names;
  els.dmError.textContent = '';
  openDialog(els.dmDialog, els.dmNames);
}

export function dmDialogError(text) {
  els.dmError.textContent = text;
  els.dmNames.focus();
}

export function closeDmDialog() {
  closeDialog(els.dmDialog);
}

/* --- accounts: the admin page --- */

export function openAdmin() {
  closeProfile();
  els.adminStatus.textContent = 'Loading…';
  openDialog(els.adminDialog, els.adminDialog.querySelector('.dialog-close'));
}

/* {users, rooms}: what the server listed; me: the admin's own name. */
export function renderAdmin({ users = null, rooms = null }, me) {
  const focused = els.adminDialog.contains(document.activeElement) ? document.activeElement : null;
  const key = focused?.dataset.act ? `[data-act="${focused.dataset.act}"][data-user="${CSS.escape(focused.dataset.user || '')}"]` : null;
  if (users) els.adminUsers.replaceChildren(...users.map((user) => adminUserElement(user, me)));
  if (rooms) els.adminRooms.replaceChildren(...rooms.map(adminRoomElement));
  if (focused && !focused.isConnected) {
    const row = focused.dataset.user ? els.adminUsers.querySelector(`[data-user="${CSS.escape(focused.dataset.user)}"]`) : null;
    ((key && els.adminDialog.querySelector(key)) || row?.querySelector('button') || els.adminDialog.querySelector('.dialog-close')).focus();
  }
}

export function adminStatus(text, error = false) {
  els.adminStatus.textContent = text;
  els.adminStatus.classList.toggle('error', error);
}

/* Opens the inline "new password" form of user's row. */
function openResetForm(user) {
  for (const form of els.adminUsers.querySelectorAll('.reset-form')) form.remove();
  const row = els.adminUsers.querySelector(`[data-testid=admin-user][data-user="${CSS.escape(user)}"]`);
  if (!row) return;
  const form = resetForm(user);
  row.append(form);
  form.querySelector('input').focus();
}

/* A new invite code: shown first, with its link selected for copying. */
export function addInvite(invite, link) {
  const item = inviteElement(invite, link);
  els.adminInvites.prepend(item);
  const input = item.querySelector('input');
  input.focus();
  input.select();
}

function bindAccountActions() {
  for (const dialog of [els.profileDialog, els.roomDialog, els.membersDialog, els.dmDialog, els.adminDialog]) bindDialog(dialog);
  els.authForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const name = els.authName.value.trim();
    const password = els.authPassword.value;
    if (els.authForm.dataset.mode === 'signup') handlers.signUp(name, password, els.authInvite.value.trim());
    else handlers.signIn(name, password);
  });
  els.authSwitch.addEventListener('click', () => {
    setAuthMode(els.authForm.dataset.mode === 'signup' ? 'signin' : 'signup');
    els.authName.focus();
  });
  els.profileForm.addEventListener('submit', (event) => {
    event.preventDefault();
    handlers.saveProfile({ display: els.profileDisplay.value.trim(), color: els.profileColor.value });
  });
  const preview = () => colorAvatar(els.profilePreview, els.profileDisplay.value, els.profileColor.value);
  els.profileDisplay.addEventListener('input', preview);
  els.profileColor.addEventListener('input', preview);
  els.passwordForm.addEventListener('submit', (event) => {
    event.preventDefault();
    handlers.changePassword(els.passwordOld.value, els.passwordNew.value);
  });
  els.signOutAccount.addEventListener('click', () => handlers.signOutAccount(false));
  els.signOutEverywhere.addEventListener('click', () => handlers.signOutAccount(true));
  els.openAdmin.addEventListener('click', () => handlers.openAdmin());
  els.newRoom.addEventListener('click', () => openRoomDialog());
  els.roomForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const visibility = els.roomForm.querySelector('input[name=visibility]:checked')?.value;
    handlers.createRoom(els.roomName.value.trim(), visibility === 'private');
  });
  els.roomName.addEventListener('input', () => {
    els.roomError.textContent = '';
  });
  els.manageMembers.addEventListener('click', () => handlers.openMembers());
  els.inviteForm.addEventListener('submit', (event) => {
    event.preventDefault();
    handlers.addMember(els.inviteName.value.trim(), els.inviteOwner.checked);
  });
  els.membersRoster.addEventListener('click', (event) => {
    const button = event.target.closest('button[data-act]');
    if (button) handlers.memberAction(button.dataset.act, button.dataset.user);
  });
  els.leavePrivate.addEventListener('click', () => handlers.leavePrivate());
  els.newDm.addEventListener('click', () => openDmDialog());
  els.dmForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const names = els.dmNames.value.split(/[,\n]/).map((name) => name.trim().replace(/^@/, '')).filter(Boolean);
    handlers.startDm(names);
  });
  els.dmNames.addEventListener('input', () => {
    els.dmError.textContent = '';
  });
  /* a name in the members panel opens a direct message with them */
  els.members.addEventListener('click', (event) => {
    const button = event.target.closest('button.member-dm');
    if (button) handlers.startDm([button.dataset.user]);
  });
  els.adminDialog.addEventListener('click', (event) => {
    const button = event.target.closest('button[data-act]');
    if (!button) return;
    const { act, user, room, link } = button.dataset;
    if (act === 'reset') openResetForm(user);
    else if (act === 'cancel-reset') {
      const form = button.closest('form');
      const row = form.closest('[data-testid=admin-user]');
      form.remove();
      row?.querySelector('[data-act=reset]')?.focus();
    } else if (act === 'copy') {
      handlers.copyText(link, button);
    } else if (act === 'close' && button.dataset.armed !== 'true') {
      /* closing a room cannot be undone: a second press confirms */
      button.dataset.armed = 'true';
      button.textContent = 'Confirm close';
      button.setAttribute('aria-label', `Confirm: close ${room} for everyone`);
    } else {
      handlers.adminAction(act, user || room);
    }
  });
  els.adminDialog.addEventListener('submit', (event) => {
    const form = event.target.closest('.reset-form');
    if (!form) return;
    event.preventDefault();
    handlers.adminAction('password', form.dataset.user, form.querySelector('input').value);
  });
  els.adminInvite.addEventListener('click', () => handlers.createInvite());
}

/* Accounts mode: the sidebar offers "New room" and direct messages; rooms
 * are no longer made by joining. */
export function useAccounts(on) {
  els.newRoom.hidden = !on;
  els.joinLabel.textContent = on ? 'Open a room by name' : 'Join or create a room';
  els.changeName.title = on ? 'Your profile' : 'Change your display name';
}

/* --- user actions --- */

function onComposerKey(event) {
  if (event.isComposing) return;
  if (complete) {
    const step = { ArrowDown: 1, ArrowUp: -1 }[event.key];
    if (step) {
      complete.index = (complete.index + step + complete.items.length) % complete.items.length;
      paintComplete();
    } else if ((event.key === 'Enter' && !event.shiftKey) || event.key === 'Tab') {
      pickComplete();
    } else if (event.key === 'Escape') {
      closeComplete();
      event.stopPropagation();
    } else {
      return;
    }
    event.preventDefault();
    return;
  }
  if (event.key === 'Escape' && !els.replyBar.hidden) {
    event.preventDefault();
    event.stopPropagation();
    handlers.cancelReply();
  } else if (event.key === 'ArrowUp' && !els.composerInput.value && !event.shiftKey && !event.altKey) {
    if (handlers.editLast()) event.preventDefault();
  } else if (event.key === 'Enter' && !event.shiftKey) {
    event.preventDefault();
    handlers.send(els.composerInput.value);
  }
}

export function bindActions(actions, store) {
  handlers = actions;
  bindAccountActions();
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
  els.composerInput.addEventListener('keydown', onComposerKey);
  els.composerInput.addEventListener('input', () => {
    fitComposer();
    composerError('');
    updateComplete();
    handlers.typing(els.composerInput.value);
  });
  els.composerInput.addEventListener('click', updateComplete);
  els.composerInput.addEventListener('blur', closeComplete);
  els.mentionList.addEventListener('pointerdown', (event) => {
    const option = event.target.closest('.mention-option');
    if (!option || !complete) return;
    event.preventDefault(); /* the composer keeps the focus */
    pickComplete(Number(option.dataset.index));
  });
  els.replyCancel.addEventListener('click', () => {
    handlers.cancelReply();
    focusComposer();
  });
  els.messageList.addEventListener('click', (event) => onMessageClick(event, store));
  els.popover.addEventListener('click', onPopoverClick);
  els.popover.addEventListener('keydown', (event) => {
    if (event.key !== 'Escape' || !popover) return;
    event.stopPropagation();
    const { row } = popover;
    closePopover();
    row.focus({ preventScroll: true });
  });
  document.addEventListener('pointerdown', (event) => {
    if (popover && !els.popover.contains(event.target) && !event.target.closest('[data-action]')) closePopover();
    if (!event.target.closest('.msg.actions-open')) closeActions();
  });
  bindLongPress();
  bindMessageFocus();
  els.notify.addEventListener('click', () => handlers.toggleNotify());
  els.scroller.addEventListener('scroll', () => {
    if (isNearBottom()) els.marker.hidden = true;
    if (isNearTop()) handlers.needOlder();
    handlers.read?.();
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
