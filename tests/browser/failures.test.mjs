// When things go wrong: sends over the rate limit are marked failed with a
// Retry that reuses the ref (so nothing is stored twice), and a display name
// the server refuses (close 1008) brings back the name dialog.
// Selectors: see helpers.mjs; also [data-testid=retry] (on a failed message),
// [data-testid=message-status], [data-testid=name-dialog], [data-testid=name-error].
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startServer, stopAll } from '../lib/server.mjs';
import { SERVER_ARGS, TIMEOUT, assertClean, count, history, launchBrowser, openPage, recordFrames,
    screenshot, send, storedTexts, waitForTexts, waitJoined, waitOnline } from './helpers.mjs';

let server;
let browser;

before(async () => {
    // a refill of one send per 2 s: five sends typed in a row overflow the burst
    // of 2 even on a slow machine, and the retries get through within seconds
    server = await startServer({ env: { TURBOCHAT_RATE_LIMIT: '0.5', TURBOCHAT_RATE_BURST: '2' }, args: SERVER_ARGS });
    browser = await launchBrowser();
});

after(async () => {
    await browser?.close();
    await stopAll();
});

test('rate-limited sends fail visibly and retry without duplicates', { timeout: 120000 }, async () => {
    const room = 'limits';
    const { page, problems } = await openPage(browser, server, { room });
    const frames = recordFrames(page);
    await page.locator('[data-testid=name-input]').fill('olga');
    await page.locator('[data-testid=name-input]').press('Enter');
    await waitJoined(page, room);
    const texts = ['burst 1', 'burst 2', 'burst 3', 'burst 4', 'burst 5'];
    for (const text of texts) await send(page, text);
    await page.locator('[data-testid=message][data-state=failed]').first().waitFor();
    await page.locator('[data-testid=message][data-state=failed] [data-testid=message-status]', { hasText: 'too fast' })
        .first().waitFor();
    await screenshot(page, 'failed-rate-limited');

    // retry each failed one until the token bucket lets it through; after
    // each click wait for the server's answer and for the page to show it
    await page.waitForFunction(() => !document.querySelector('[data-testid=message][data-state=sending]'));
    const deadline = Date.now() + TIMEOUT;
    while (await page.locator('[data-testid=message][data-ref]').count() > 0) {
        assert.ok(Date.now() < deadline, 'every failed message was eventually accepted');
        const retry = page.locator('[data-testid=message][data-state=failed] [data-testid=retry]').first();
        const ref = await retry.getAttribute('data-ref');
        const answer = frames.next((f) => f.ref === ref && (f.type === 'ack' || f.type === 'error'));
        await retry.click();
        const shown = page.locator(`[data-testid=message][data-ref="${ref}"]`);
        if ((await answer).type === 'ack') await shown.waitFor({ state: 'detached' });
        else await page.locator(`[data-testid=message][data-ref="${ref}"][data-state=failed]`).waitFor();
    }
    await waitForTexts(page, texts);
    const shown = await storedTexts(page);
    for (const text of texts) assert.equal(count(shown, text), 1, `"${text}" shown once`);
    const stored = (await history(server, room)).map((m) => m.text);
    for (const text of texts) assert.equal(count(stored, text), 1, `"${text}" stored once`);
    assertClean(assert, problems, 'olga');
});

test('a name the server refuses asks for another one', { timeout: 120000 }, async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    context.setDefaultTimeout(TIMEOUT);
    // a name that passed this device's checks once but is too long for the server
    await context.addInitScript(() => localStorage.setItem('turbochat.name', JSON.stringify('x'.repeat(40))));
    const page = await context.newPage();
    await page.goto(`${server.url}/#general`);
    await page.locator('[data-testid=conn-state][data-state=refused]').waitFor();
    await page.locator('[data-testid=name-dialog]').waitFor();
    assert.match(await page.locator('[data-testid=name-error]').textContent(), /refused/);
    await screenshot(page, 'name-refused');
    await page.locator('[data-testid=name-input]').fill('petra');
    await page.locator('[data-testid=name-input]').press('Enter');
    await waitOnline(page);
    await send(page, 'accepted now');
    await waitForTexts(page, ['accepted now']);
    await context.close();
});
