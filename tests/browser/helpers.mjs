// Shared helpers for the browser tests: launch Debian's Chromium through
// playwright-core, open a chat page as a named person, watch each page for
// CSP violations, script errors and dialogs, read the rendered messages, and
// post messages over REST. Selectors used (all in www/index.html or
// www/js/render.js):
//   [data-testid=name-input]        display name field of the name dialog
//   [data-testid=conn-state]        connection indicator, data-state=online|offline|connecting|refused
//   [data-testid=composer-input]    message box (Enter sends, Shift+Enter newline)
//   [data-testid=message]           one message row; data-id when stored,
//                                   data-ref + data-state=queued|sending|failed while pending
//   [data-testid=message-text]      the text of a message row
//   [data-testid=messages]          the scrolling message pane
//   [data-testid=member]            one entry of the members panel (data-user)
//   [data-testid=typing]            "alice is typing…" line
//   [data-testid=room-link]         a room in the room list (data-room)
// and, for the life of a message (lifecycle*.test.mjs):
//   [data-testid=message-actions]   a message's hover/long-press actions:
//                                   [data-testid=action-react|action-reply|action-edit|action-delete]
//   [data-testid=edit-input]        the editor of a message edited in place
//   [data-testid=message-edited]    "(edited)", its title the edit time
//   [data-testid=reaction]          a reaction chip (data-emoji, aria-pressed, title = who),
//                                   [data-testid=reaction-count] inside
//   [data-testid=emoji-option]      an emoji of the reaction picker (data-emoji)
//   [data-testid=confirm-delete]    the delete confirmation's button
//   [data-testid=reply-quote]       a reply's quote of its original (data-target)
//   [data-testid=reply-bar]         the quote above the composer, [data-testid=reply-cancel]
//   [data-testid=mention-list]      the @ autocomplete, [data-testid=mention-option] (data-user)
//   [data-testid=mention]           an @name in a message text (.mention-me when it names me)
//   [data-testid=room-mentions]     the mention badge of a room link
//   [data-testid=message-notice]    why a change of the message was refused
//   [data-testid=notify-toggle]     the mention notifications button
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { api } from '../lib/client.mjs';

export const ARTIFACTS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'artifacts');

// Generous: the server may be an ASan build.
export const TIMEOUT = Number(process.env.TURBOCHAT_BROWSER_TIMEOUT_MS) || 20000;

const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'];

export function launchBrowser() {
    return chromium.launch({ executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium', args: CHROMIUM_ARGS });
}

// Collects what must never happen on a page: CSP violations, uncaught
// errors, and dialogs (alert() from injected script would open one).
export function watchProblems(page) {
    const problems = { csp: [], errors: [], dialogs: [] };
    page.on('console', (msg) => {
        if (msg.type() !== 'error') return;
        const text = msg.text();
        if (/content security policy/i.test(text)) problems.csp.push(text);
    });
    page.on('pageerror', (err) => problems.errors.push(String(err)));
    page.on('dialog', async (dialog) => {
        problems.dialogs.push(`${dialog.type()}: ${dialog.message()}`);
        await dialog.dismiss().catch(() => {});
    });
    return problems;
}

// Opens the page at #room in a fresh browser context (nothing remembered),
// watching it for problems.
// contextOptions: more options of the browser context (hasTouch, isMobile...).
export async function openPage(browser, server,
    { room = 'general', viewport = { width: 1280, height: 800 }, colorScheme = 'light', contextOptions = {} } = {}) {
    const context = await browser.newContext({ viewport, colorScheme, ...contextOptions });
    context.setDefaultTimeout(TIMEOUT);
    const page = await context.newPage();
    const problems = watchProblems(page);
    const response = await page.goto(`${server.url}/#${room}`);
    return { page, context, problems, response };
}

// Opens the chat at #room in a fresh browser context, picks the display
// name in the first-visit dialog and waits until the room is joined.
// record: also return the page's frames (recordFrames) from its first socket.
export async function openChat(browser, server, { name, room = 'general', record = false, ...look }) {
    const { page, context, problems, response } = await openPage(browser, server, { room, ...look });
    const frames = record ? recordFrames(page) : null;
    await page.locator('[data-testid=name-input]').fill(name);
    await page.locator('[data-testid=name-input]').press('Enter');
    await waitOnline(page);
    await waitJoined(page, room);
    return { page, context, problems, frames, csp: response.headers()['content-security-policy'] || '' };
}

// After a drop the page may wait up to its longest backoff (15 s,
// www/js/connection.js) before it tries again.
const LONGEST_RECONNECT_DELAY_MS = 15000;

export function waitOnline(page) {
    return page.locator('[data-testid=conn-state][data-state=online]')
        .waitFor({ timeout: TIMEOUT + LONGEST_RECONNECT_DELAY_MS });
}

export function waitOffline(page) {
    return page.locator('[data-testid=conn-state]:not([data-state=online])').waitFor();
}

// The room's link in the list stops being dimmed once the server confirmed the join.
export function waitJoined(page, room) {
    return page.locator(`[data-testid=my-rooms] [data-testid=room-link][data-room="${room}"]:not(.not-joined)`).waitFor({ state: 'attached' });
}

// Texts of the stored (acknowledged) messages, in page order.
export function storedTexts(page) {
    return page.$$eval('[data-testid=message][data-id] [data-testid=message-text]', (nodes) => nodes.map((n) => n.textContent));
}

// Waits until every text is shown as a stored message.
export function waitForTexts(page, texts, timeout = TIMEOUT) {
    return page.waitForFunction((wanted) => {
        const shown = new Set([...document.querySelectorAll('[data-testid=message][data-id] [data-testid=message-text]')]
            .map((n) => n.textContent));
        return wanted.every((t) => shown.has(t));
    }, texts, { timeout });
}

export async function send(page, text) {
    const box = page.locator('[data-testid=composer-input]');
    await box.fill(text);
    await box.press('Enter');
}

export async function postMessage(server, room, user, text, ref) {
    const res = await rest(server, 'POST', `/api/rooms/${encodeURIComponent(room)}/messages`, ref ? { user, text, ref } : { user, text });
    if (res.status !== 201 && res.status !== 200) throw new Error(`POST ${room}: ${res.status} ${res.text}`);
    return res.body;
}

export async function history(server, room) {
    const all = [];
    let after = 0;
    for (;;) {
        const { body } = await rest(server, 'GET', `/api/rooms/${encodeURIComponent(room)}/messages?after=${after}&limit=200`);
        all.push(...body.messages);
        if (!body.has_more || body.messages.length === 0) return all;
        after = body.messages.at(-1).id;
    }
}

export function count(list, item) {
    return list.filter((x) => x === item).length;
}

export async function screenshot(page, name) {
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`) });
}

// Nothing a page must never do happened.
export function assertClean(assert, problems, label) {
    assert.deepEqual(problems.csp, [], `${label}: CSP violations`);
    assert.deepEqual(problems.errors, [], `${label}: uncaught page errors`);
    assert.deepEqual(problems.dialogs, [], `${label}: dialogs opened`);
}

// Extra server flags for every browser test: TURBOCHAT_TEST_WWW=DIR serves
// the UI from DIR on disk instead of the copy compiled into the binary.
export const SERVER_ARGS = process.env.TURBOCHAT_TEST_WWW ? ['--www', process.env.TURBOCHAT_TEST_WWW] : [];

// Records the join frames a page sends and every frame it receives, from
// the sockets it opens from now on (so: those of its reconnects).
// next(predicate) resolves with the first frame received from now on that
// matches, or rejects after timeout ms.
export function recordFrames(page) {
    const waiters = new Set();
    const seen = {
        joins: [],
        sent: [],
        received: [],
        next(predicate, timeout = TIMEOUT) {
            return new Promise((resolve, reject) => {
                const waiter = { predicate, resolve };
                waiter.timer = setTimeout(() => {
                    waiters.delete(waiter);
                    reject(new Error(`no matching frame within ${timeout} ms`));
                }, timeout);
                waiters.add(waiter);
            });
        },
    };
    page.on('websocket', (ws) => {
        ws.on('framesent', ({ payload }) => {
            const frame = JSON.parse(payload);
            seen.sent.push(frame);
            if (frame.type === 'join') seen.joins.push(frame);
        });
        ws.on('framereceived', ({ payload }) => {
            let frame;
            try {
                frame = JSON.parse(payload);
            } catch {
                return; /* not JSON */
            }
            seen.received.push(frame);
            for (const waiter of waiters) {
                if (!waiter.predicate(frame)) continue;
                waiters.delete(waiter);
                clearTimeout(waiter.timer);
                waiter.resolve(frame);
            }
        });
    });
    return seen;
}

// One REST call with a JSON body (or none); resolves with {status, body,
// text}. A fresh connection each time (api): a kept-alive one may be closed
// by the server (idle 500 ms) just as a request is written on it.
export async function rest(server, method, urlPath, body, headers = {}) {
    const empty = body === undefined && method !== 'GET' && method !== 'HEAD' ? { 'Content-Length': 0 } : {};
    const res = await api(server.url, urlPath, { method, body, headers: { ...empty, ...headers } });
    return { status: res.status, body: res.json, text: res.text };
}

function messagePath(room, id) {
    return `/api/rooms/${encodeURIComponent(room)}/messages/${id}`;
}

// The changes of PROTOCOL.md over REST, as user; each fails on a non-200.
async function expect200(what, promise) {
    const res = await promise;
    if (res.status !== 200) throw new Error(`${what}: ${res.status} ${res.text}`);
    return res.body;
}

export function editOverRest(server, room, id, user, text) {
    return expect200(`PATCH ${id}`, rest(server, 'PATCH', messagePath(room, id), { text, user }));
}

export function deleteOverRest(server, room, id, user) {
    return expect200(`DELETE ${id}`, rest(server, 'DELETE', `${messagePath(room, id)}?user=${encodeURIComponent(user)}`));
}

export function reactOverRest(server, room, id, user, emoji, add = true) {
    const url = `${messagePath(room, id)}/reactions/${encodeURIComponent(emoji)}?user=${encodeURIComponent(user)}`;
    return expect200(`${add ? 'PUT' : 'DELETE'} ${emoji} on ${id}`, rest(server, add ? 'PUT' : 'DELETE', url));
}

// The row of stored message id.
export function messageRow(page, id) {
    return page.locator(`[data-testid=message][data-id="${id}"]`);
}

// The id of the stored message whose text is exactly text (waits for it).
export async function messageId(page, text) {
    await waitForTexts(page, [text]);
    return page.$$eval('[data-testid=message][data-id]', (rows, t) => {
        const row = rows.find((r) => r.querySelector('[data-testid=message-text]')?.textContent === t);
        return Number(row.dataset.id);
    }, text);
}

// Waits until stored message id shows exactly text.
export function waitForRowText(page, id, text, timeout = TIMEOUT) {
    return page.waitForFunction(([i, t]) => document.querySelector(
        `[data-testid=message][data-id="${i}"] [data-testid=message-text]`)?.textContent === t, [id, text], { timeout });
}

// The reactions of stored message id as shown: {emoji: {count, title, mine}}.
export function shownReactions(page, id) {
    return page.$$eval(`[data-testid=message][data-id="${id}"] [data-testid=reaction]`, (chips) =>
        Object.fromEntries(chips.map((c) => [c.dataset.emoji, {
            count: Number(c.querySelector('[data-testid=reaction-count]').textContent),
            title: c.title,
            mine: c.getAttribute('aria-pressed') === 'true',
        }])));
}

// Waits until stored message id shows exactly these reactions ({emoji: count}).
export function waitForReactions(page, id, counts, timeout = TIMEOUT) {
    return page.waitForFunction(([i, want]) => {
        const chips = [...document.querySelectorAll(`[data-testid=message][data-id="${i}"] [data-testid=reaction]`)];
        const shown = Object.fromEntries(chips.map((c) => [c.dataset.emoji,
            Number(c.querySelector('[data-testid=reaction-count]').textContent)]));
        return JSON.stringify(shown) === JSON.stringify(want);
    }, [id, counts], { timeout });
}

// ---------------------------------------------------------------- accounts
// The website with auth = accounts (issue 9, docs/PROTOCOL.md, "Accounts").
// Selectors (www/index.html, www/js/render.js):
//   [data-testid=auth-page]          the sign-in / sign-up page; [data-testid=auth-form][data-mode=signin|signup]
//   [data-testid=auth-name|auth-password|auth-invite|auth-submit|auth-switch|auth-error]
//   [data-testid=new-room]           opens [data-testid=room-dialog]: room-name, room-public, room-private, room-create, room-error
//   [data-testid=manage-members]     opens [data-testid=members-dialog]: invite-name, invite-owner, invite-add,
//                                    invite-status, [data-testid=roster-entry][data-user] (roster-make-owner, roster-remove)
//   [data-testid=roster-member]      a private room's member in the members panel (data-user)
//   [data-testid=member-dm]          a name in the members panel: opens a direct message with them
//   [data-testid=dm-list]            direct messages; [data-testid=new-dm] opens [data-testid=dm-dialog]: dm-names, dm-start
//   [data-testid=room-unread]        unread badge of a room link; [data-testid=new-divider] "new since you left"
//   [data-testid=change-name]        opens [data-testid=profile-dialog]: profile-display, profile-color, profile-save,
//                                    password-old, password-new, password-save, password-status, sign-out-account,
//                                    sign-out-everywhere, open-admin
//   [data-testid=admin-dialog]       the admin page: admin-user[data-user] (admin-disable, admin-enable, admin-reset),
//                                    admin-room[data-room] (admin-close), admin-invite, admin-invite-link

// Environment of a browser-test server in accounts mode (sign-ins not limited
// unless a test says so).
export function accountsServerEnv(extra = {}) {
    return {
        TURBOCHAT_RATE_LIMIT: '10000',
        TURBOCHAT_RATE_BURST: '10000',
        TURBOCHAT_ADDRESS_RATE_LIMIT: '0',
        TURBOCHAT_AUTH: 'accounts',
        TURBOCHAT_SIGNUP: 'open',
        TURBOCHAT_SIGNIN_RATE_LIMIT: '100000',
        ...extra,
    };
}

// Opens the site in a fresh browser context and waits for the sign-in page.
// path: what follows the origin (e.g. '/?invite=CODE#general').
export async function openSignedOut(browser, server,
    { path: where = '/#general', viewport = { width: 1280, height: 800 }, colorScheme = 'light', contextOptions = {} } = {}) {
    const context = await browser.newContext({ viewport, colorScheme, ...contextOptions });
    context.setDefaultTimeout(TIMEOUT);
    const page = await context.newPage();
    const problems = watchProblems(page);
    const response = await page.goto(`${server.url}${where}`);
    await page.locator('[data-testid=auth-page]').waitFor();
    return { page, context, problems, response };
}

// Fills and submits the sign-in page in mode 'signin' or 'signup'.
export async function submitAuth(page, mode, name, password, { invite } = {}) {
    const form = page.locator('[data-testid=auth-form]');
    if (await form.getAttribute('data-mode') !== mode) await page.locator('[data-testid=auth-switch]').click();
    await page.locator(`[data-testid=auth-form][data-mode=${mode}]`).waitFor();
    await page.locator('[data-testid=auth-name]').fill(name);
    await page.locator('[data-testid=auth-password]').fill(password);
    if (invite !== undefined) await page.locator('[data-testid=auth-invite]').fill(invite);
    await page.locator('[data-testid=auth-submit]').click();
}

// Signs up (or in) on the page and waits until the chat is online with room joined.
export async function enterAs(page, mode, name, password, { room = 'general', invite } = {}) {
    await submitAuth(page, mode, name, password, { invite });
    await page.locator('[data-testid=auth-page]').waitFor({ state: 'hidden' });
    await waitOnline(page);
    if (room) await waitJoined(page, room);
}

// A new person: a fresh context that signs up as name and joins room.
export async function openAccount(browser, server, name, password, { mode = 'signup', room = 'general', ...look } = {}) {
    const opened = await openSignedOut(browser, server, { path: `/#${room}`, ...look });
    await enterAs(opened.page, mode, name, password, { room });
    return opened;
}

// On a narrow screen the room list is a drawer: open it when it is closed.
export async function showSidebar(page) {
    if (await page.locator('[data-testid=sidebar]').isVisible()) return;
    await page.locator('[data-testid=toggle-rooms]').click();
    await page.locator('[data-testid=sidebar]').waitFor({ state: 'visible' });
}

// Opens room (its link in the room list or the DM list) and waits until it is joined.
export async function openRoomLink(page, room) {
    await showSidebar(page);
    await page.locator(`[data-testid=room-link][data-room="${room}"]`).first().click();
    await page.locator(`[data-testid=room-link][data-room="${room}"][aria-current=page]:not(.not-joined)`).first()
        .waitFor({ state: 'attached' });
}

// The unread badge of room's link as shown ('' when none).
export function unreadBadge(page, room) {
    return page.$eval(`[data-testid=room-link][data-room="${room}"]`,
        (a) => a.querySelector('[data-testid=room-unread]')?.textContent || '').catch(() => '');
}

// Waits until room's link shows the unread badge text ('' : no badge).
export function waitUnread(page, room, text, timeout = TIMEOUT) {
    return page.waitForFunction(([r, t]) => {
        const a = document.querySelector(`[data-testid=room-link][data-room="${r}"]`);
        if (!a) return false;
        return (a.querySelector('[data-testid=room-unread]')?.textContent || '') === t;
    }, [room, text], { timeout });
}
