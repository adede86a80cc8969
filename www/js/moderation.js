/* moderation.js — mute and ban (docs/PROTOCOL.md, "Moderation: mute and
 * ban"): whether this person moderates the room on screen (the server
 * answers GET .../moderation to moderators only), the Moderation dialog
 * (mute or ban someone online or by name, after a confirmation; lift what
 * is in place), the notice that replaces the composer while this person is
 * muted, and the last moderation event of the room ("bob was muted by
 * alice"). Every name is shown with textContent, never as HTML. */
import * as api from './api.js';

const $ = (id) => document.getElementById(id);

const KIND_TEXT = {
  mute: 'was muted by',
  unmute: 'was unmuted by',
  ban: 'was banned by',
  unban: 'was unbanned by',
};

let ctx = null;            /* {current(), me(), label(name), online(name): names, mayModerate(), signInAgainOn(error)} */
const moderated = new Map(); /* room -> {muted, banned} lists while we moderate it */
const mutedIn = new Set();   /* rooms where this person is muted */
const notes = new Map();     /* room -> the text of its last moderation event */
let pending = null;          /* {act, user, on} waiting for the confirmation */
let els = null;

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function sameName(a, b) {
  return String(a).toLowerCase() === String(b).toLowerCase();
}

function button(text, testid, data, label, danger = false) {
  const b = el('button', danger ? 'button small danger' : 'button small subtle', text);
  b.type = 'button';
  b.dataset.testid = testid;
  Object.assign(b.dataset, data);
  b.setAttribute('aria-label', label);
  return b;
}

function status(text, error = false) {
  els.status.textContent = text;
  els.status.classList.toggle('error', error);
}

/* --- what the page shows for the room on screen --- */

function paintRoom() {
  const name = ctx.current();
  els.open.hidden = !name || !moderated.has(name);
  const muted = Boolean(name) && mutedIn.has(name);
  if (muted) {
    els.notice.textContent = `You are muted in ${ctx.label(name)}. You can read along; a moderator can lift it.`;
    els.composer.dataset.muted = 'true';
  } else {
    delete els.composer.dataset.muted;
  }
  els.notice.hidden = !muted;
  const note = name ? notes.get(name) : '';
  els.note.textContent = note || '';
  els.note.hidden = !note;
}

function entry(item, what) {
  const li = el('li', 'member roster-entry');
  li.dataset.user = item.user;
  li.dataset.testid = what === 'mutes' ? 'muted-user' : 'banned-user';
  li.append(el('span', 'member-name', item.user));
  if (item.by) li.append(el('span', 'role-tag', `by ${item.by}`));
  const actions = el('span', 'row-actions');
  const lift = what === 'mutes' ? 'Unmute' : 'Unban';
  actions.append(button(lift, what === 'mutes' ? 'unmute' : 'unban', { modAct: what === 'mutes' ? 'unmute' : 'unban', user: item.user },
    `${lift} ${item.user}`));
  li.append(actions);
  return li;
}

function paintDialog() {
  const name = ctx.current();
  const lists = moderated.get(name) || { muted: [], banned: [] };
  els.title.textContent = `Moderation of ${name ? ctx.label(name) : ''}`;
  els.muted.replaceChildren(...lists.muted.map((m) => entry(m, 'mutes')));
  els.banned.replaceChildren(...lists.banned.map((m) => entry(m, 'bans')));
  if (!lists.muted.length) els.muted.append(el('li', 'hint', 'Nobody is muted.'));
  if (!lists.banned.length) els.banned.append(el('li', 'hint', 'Nobody is banned.'));
  const people = (name ? ctx.online(name) : []).filter((user) => !sameName(user, ctx.me())).sort((a, b) => a.localeCompare(b));
  els.online.replaceChildren(...people.map((user) => {
    const li = el('li', 'member roster-entry');
    li.dataset.user = user;
    li.dataset.testid = 'moderation-person';
    li.append(el('span', 'member-name', user));
    const actions = el('span', 'row-actions');
    actions.append(button('Mute', 'person-mute', { modAct: 'mute', user }, `Mute ${user}`),
      button('Ban', 'person-ban', { modAct: 'ban', user }, `Ban ${user}`, true));
    li.append(actions);
    return li;
  }));
  if (!people.length) els.online.append(el('li', 'hint', 'Nobody else is online here.'));
}

/* Asks the server whether we moderate room (and what is in place there). */
async function refresh(room) {
  if (!room || !ctx.mayModerate()) return;
  try {
    moderated.set(room, await api.moderation(room));
  } catch (error) {
    if (error.status === 403 || error.status === 404) moderated.delete(room);
    else if (ctx.signInAgainOn(error)) return;
  }
  if (room !== ctx.current()) return;
  paintRoom();
  if (els.dialog.open) paintDialog();
}

/* --- the dialog's actions --- */

const CONFIRM_TEXT = {
  mute: (user, room) => `Mute ${user} in ${room}? They can read but not write here until unmuted.`,
  ban: (user, room) => `Ban ${user} from ${room}? They are taken out of the room and cannot come back until unbanned.`,
  unmute: (user, room) => `Unmute ${user} in ${room}?`,
  unban: (user, room) => `Unban ${user} from ${room}? They may join again.`,
};

function askConfirm(act, user) {
  const name = ctx.current();
  if (!user) {
    status('Type the name of the person first.', true);
    els.name.focus();
    return;
  }
  pending = { act, user, room: name };
  els.confirmText.textContent = CONFIRM_TEXT[act](user, ctx.label(name));
  els.yes.textContent = act[0].toUpperCase() + act.slice(1);
  els.yes.classList.toggle('danger', act === 'ban' || act === 'mute');
  els.confirm.hidden = false;
  status('');
  els.yes.focus();
}

function cancelConfirm() {
  pending = null;
  els.confirm.hidden = true;
  els.name.focus();
}

async function confirmed() {
  if (!pending) return;
  const { act, user, room } = pending;
  pending = null;
  els.confirm.hidden = true;
  const what = act.endsWith('mute') ? 'mutes' : 'bans';
  try {
    await api.setSanction(room, what, user, !act.startsWith('un'));
    status(`${user} ${KIND_TEXT[act].replace(' by', '')}.`);
    els.name.value = '';
  } catch (error) {
    if (!ctx.signInAgainOn(error)) status(error.message, true);
  }
  await refresh(room);
  els.name.focus();
}

function onDialogClick(event) {
  const target = event.target.closest('[data-mod-act]');
  if (target) {
    askConfirm(target.dataset.modAct, target.dataset.user || els.name.value.trim());
  } else if (event.target.closest('#moderation-yes')) {
    confirmed();
  } else if (event.target.closest('#moderation-cancel')) {
    cancelConfirm();
  } else if (event.target.closest('[data-close]')) {
    els.dialog.close();
  }
}

/* --- the module --- */

/* context: {current(), me(), label(name), online(name), mayModerate() (false:
 * never ask the server), signInAgainOn(error)}. */
export function init(context) {
  ctx = context;
  els = {
    open: $('moderation-open'),
    dialog: $('moderation-dialog'),
    title: $('moderation-title'),
    online: $('moderation-online'),
    name: $('moderation-name'),
    form: $('moderation-form'),
    confirm: $('moderation-confirm'),
    confirmText: $('moderation-confirm-text'),
    yes: $('moderation-yes'),
    status: $('moderation-status'),
    muted: $('moderation-muted'),
    banned: $('moderation-banned'),
    notice: $('muted-notice'),
    note: $('moderation-note'),
    composer: $('composer'),
  };
  els.open.addEventListener('click', () => {
    pending = null;
    els.confirm.hidden = true;
    status('');
    paintDialog();
    els.dialog.showModal();
    els.name.focus();
    refresh(ctx.current());
  });
  els.dialog.addEventListener('click', onDialogClick);
  els.dialog.addEventListener('close', () => {
    if (!els.open.hidden) els.open.focus();
  });
  els.form.addEventListener('submit', (event) => {
    event.preventDefault();
    askConfirm('mute', els.name.value.trim());
  });
}

/* The room on screen changed. */
export function roomShown(room) {
  if (!ctx) return;
  paintRoom();
  refresh(room);
}

/* Whether this person is muted in room (a joined frame, a refused send). */
export function setMuted(room, muted) {
  if (!ctx || mutedIn.has(room) === muted) return;
  if (muted) mutedIn.add(room);
  else mutedIn.delete(room);
  if (room === ctx.current()) paintRoom();
}

/* An update frame of kind mute, unmute, ban or unban. */
export function onEvent(frame) {
  if (!ctx || !KIND_TEXT[frame.kind] || typeof frame.member !== 'string') return;
  const text = `${frame.member} ${KIND_TEXT[frame.kind]} ${frame.user}.`;
  notes.set(frame.room, text);
  if (sameName(frame.member, ctx.me()) && (frame.kind === 'mute' || frame.kind === 'unmute')) {
    setMuted(frame.room, frame.kind === 'mute');
  }
  if (frame.room === ctx.current()) paintRoom();
  if (moderated.has(frame.room)) refresh(frame.room);
}

/* True for the update kinds this module shows. */
export function isModerationKind(kind) {
  return Boolean(KIND_TEXT[kind]);
}
