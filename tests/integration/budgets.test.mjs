// Write budgets (issue 11): the send rate is per user and per client address,
// shared by every WebSocket and by REST, so more connections do not multiply
// it (50 connections of one client used to get 1,000 messages acked in 0.1 s).
// Each bound allows for the tokens that refill while the test runs.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { connectUser } from '../lib/client.mjs';
import { restPost, wsSend } from '../lib/lifecycle.mjs';
import { startServer, stopAll, withLogs } from '../lib/server.mjs';

const T = { timeout: 60000 };
const RATE = 2; // writes a second
const BURST = 10;

after(stopAll);

// Every answer (ack or error) to one send from each of clients, times perClient.
async function burst(clients, room, perClient) {
    const started = process.hrtime.bigint();
    const answers = await Promise.all(clients.flatMap((c, i) =>
        Array.from({ length: perClient }, (_, k) => wsSend(c, room, `m ${i}.${k}`))));
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const count = (type) => answers.filter((a) => a.type === type).length;
    for (const a of answers) if (a.type === 'error') assert.equal(a.code, 'rate_limited', JSON.stringify(a));
    return { acked: count('ack'), limited: count('error'), seconds };
}

// The most a bucket of BURST refilled at rate can give in seconds (plus one
// for a token that refills at the very end).
const allowance = (burstSize, rate, seconds) => burstSize + Math.ceil(rate * seconds) + 1;

describe('per user', () => {
    let srv;
    before(async () => {
        srv = await startServer({ env: {
            TURBOCHAT_RATE_LIMIT: String(RATE),
            TURBOCHAT_RATE_BURST: String(BURST),
            TURBOCHAT_ADDRESS_RATE_LIMIT: '0',
        } });
    });

    it('twenty connections of one user share one budget', T, withLogs(async () => {
        const clients = await Promise.all(Array.from({ length: 20 }, () => connectUser(srv.wsUrl, 'mallory', ['flood'])));
        const { acked, limited, seconds } = await burst(clients, 'flood', 5);
        assert.ok(acked <= allowance(BURST, RATE, seconds),
            `100 sends on 20 connections in ${seconds.toFixed(2)} s: ${acked} acked, at most ${allowance(BURST, RATE, seconds)}`);
        assert.ok(acked >= BURST, `the burst itself is acked: ${acked}`);
        assert.equal(acked + limited, 100);
        for (const c of clients) c.close();
    }));

    it('REST and WebSocket writes of a user take from the same budget', T, withLogs(async () => {
        const started = process.hrtime.bigint();
        let created = 0;
        for (let i = 0; i < BURST; i++) created += (await restPost(srv.url, 'shared', { user: 'trudy', text: `rest ${i}` })).status === 201;
        const ws = await connectUser(srv.wsUrl, 'trudy', ['shared']);
        const answers = await Promise.all(Array.from({ length: 8 }, (_, k) => wsSend(ws, 'shared', `ws ${k}`)));
        const seconds = Number(process.hrtime.bigint() - started) / 1e9;
        const acked = answers.filter((a) => a.type === 'ack').length;
        assert.equal(created, BURST, 'the REST burst is accepted');
        assert.ok(created + acked <= allowance(BURST, RATE, seconds),
            `${created} REST + ${acked} WebSocket writes in ${seconds.toFixed(2)} s`);
        const refused = await restPost(srv.url, 'shared', { user: 'trudy', text: 'one more' });
        if (refused.status !== 201) assert.equal(refused.json.error.code, 'rate_limited');
        ws.close();
    }));

    it('another user is not held back by the first', T, withLogs(async () => {
        const c = await connectUser(srv.wsUrl, 'innocent', ['flood']);
        const a = await wsSend(c, 'flood', 'hello');
        assert.equal(a.type, 'ack', JSON.stringify(a));
        c.close();
    }));
});

describe('per address', () => {
    let srv;
    before(async () => {
        srv = await startServer({ env: {
            TURBOCHAT_RATE_LIMIT: '1000',
            TURBOCHAT_RATE_BURST: '1000',
            TURBOCHAT_ADDRESS_RATE_LIMIT: String(RATE),
            TURBOCHAT_ADDRESS_RATE_BURST: String(BURST),
        } });
    });

    it('many user names from one address share its budget', T, withLogs(async () => {
        const clients = await Promise.all(Array.from({ length: 20 }, (_, i) => connectUser(srv.wsUrl, `sock${i}`, ['names'])));
        const { acked, seconds } = await burst(clients, 'names', 3);
        assert.ok(acked <= allowance(BURST, RATE, seconds),
            `60 sends of 20 names from one address in ${seconds.toFixed(2)} s: ${acked} acked`);
        assert.ok(acked >= BURST);
        for (const c of clients) c.close();
    }));
});
