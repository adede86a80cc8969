// WebSockets on the event loops: admission (TURBOCHAT_MAX_CONNECTIONS and
// TURBOCHAT_MAX_CONNECTIONS_PER_IP answer the upgrade with 503 and
// Retry-After while HTTP keeps working), many idle WebSockets that no longer
// hold HTTP worker threads, and clients that stop reading, which must not
// delay the ones that read.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import WebSocket from 'ws';
import { api, connectUser, sendMany, TestClient, uniq, WAIT_MS, withTimeout } from '../lib/client.mjs';
import { connectHello as rawHello, tryConnect } from '../lib/rawws.mjs';
import { RELAXED_RATE_ENV, startServer, stopAll, withLogs } from '../lib/server.mjs';

const T = { timeout: 90000 };
const MAX_CONNECTIONS = 20;
const MAX_PER_IP = 5;
const OTHER_IP = '127.0.0.2'; // Linux routes all of 127/8 to lo

let nodeCap; // max_connections
let ipCap; // max_connections_per_ip
let fewThreads; // 8 HTTP workers

before(async () => {
    [nodeCap, ipCap, fewThreads] = await Promise.all([
        startServer({ env: { TURBOCHAT_MAX_CONNECTIONS: String(MAX_CONNECTIONS) } }),
        startServer({ env: { TURBOCHAT_MAX_CONNECTIONS_PER_IP: String(MAX_PER_IP) } }),
        startServer({ env: { ...RELAXED_RATE_ENV, TURBOCHAT_THREADS: '8', TURBOCHAT_OUTBOUND_MAX_KIB: '256' } }),
    ]);
});

after(stopAll);

// A ws-library TestClient with extra ws options (localAddress...); rejects
// with err.statusCode when the upgrade is refused.
function openWs(url, wsOpts = {}) {
    return new Promise((resolve, reject) => {
        const ws = new WebSocket(url, { perMessageDeflate: false, handshakeTimeout: WAIT_MS, ...wsOpts });
        const client = new TestClient(ws, url);
        ws.once('unexpected-response', (req, res) => {
            const err = new Error(`upgrade refused: HTTP ${res.statusCode}`);
            err.statusCode = res.statusCode;
            req.destroy();
            reject(err);
        });
        ws.once('error', reject);
        ws.once('open', () => {
            ws.off('error', reject);
            resolve(client);
        });
    });
}

async function userFrom(url, name, localAddress) {
    const c = await openWs(url, localAddress ? { localAddress } : {});
    c.welcome = await c.hello(name);
    return c;
}

// The upgrade is refused with 503, Retry-After and a JSON `unavailable` error.
async function expectRefused(srv, what, opts = {}) {
    const r = await tryConnect({ port: srv.port, ...opts });
    assert.equal(r.ok, false, `${what}: the upgrade must be refused`);
    assert.equal(r.status, 503, `${what}: ${r.statusLine} ${r.body.slice(0, 200)}`);
    assert.match(r.headers['retry-after'] ?? '', /^\d+$/, `${what}: Retry-After header (${JSON.stringify(r.headers)})`);
    assert.match(r.headers['content-type'] ?? '', /^application\/json/, `${what}: JSON body`);
    let body;
    try {
        body = JSON.parse(r.body);
    } catch {
        assert.fail(`${what}: the body is not JSON: ${r.body.slice(0, 200)}`);
    }
    assert.equal(body.error?.code, 'unavailable', `${what}: ${r.body}`);
    assert.equal(typeof body.error.message, 'string');
    return r;
}

// HTTP is not subject to the WebSocket limits.
async function expectHttpWorks(srv, what) {
    for (const path of ['/healthz', '/', '/api/rooms']) {
        const r = await api(srv.url, path);
        assert.equal(r.status, 200, `${what}: GET ${path} -> ${r.status}`);
    }
}

// Retry the upgrade until it is admitted (a slot is given back when the
// server has seen the close, which may take a moment); bounded.
async function admittedEventually(srv, what, opts = {}) {
    const deadline = Date.now() + WAIT_MS;
    let last;
    for (;;) {
        last = await tryConnect({ port: srv.port, ...opts });
        if (last.ok) return last.ws;
        assert.equal(last.status, 503, `${what}: refused with ${last.statusLine}`);
        if (Date.now() > deadline) assert.fail(`${what}: still refused after ${WAIT_MS} ms: ${last.body}`);
        await new Promise((r) => setTimeout(r, 50));
    }
}

describe('admission: max_connections', () => {
    it('over the node limit the upgrade gets 503 + Retry-After; HTTP still works; a freed slot admits again', T, withLogs(async () => {
        const clients = await Promise.all(
            Array.from({ length: MAX_CONNECTIONS }, (_, i) => connectUser(nodeCap.wsUrl, `held${i}`)),
        );
        await expectRefused(nodeCap, 'one over the limit');
        // refusals hold no slot: more of them change nothing
        await Promise.all(Array.from({ length: 10 }, (_, i) => expectRefused(nodeCap, `refusal ${i}`)));
        await expectRefused(nodeCap, `from ${OTHER_IP} too (the node limit is for every address)`, { localAddress: OTHER_IP });
        await expectHttpWorks(nodeCap, 'at the node limit');

        // a normal close frees a slot
        await clients[0].close();
        const again = await admittedEventually(nodeCap, 'after a close');
        await again.sendJson({ type: 'hello', name: 'again' });
        assert.equal((await again.nextJson('welcome')).user, 'again');
        await expectRefused(nodeCap, 'full again');

        // an abrupt disconnect frees one too
        clients[1].terminate();
        const again2 = await admittedEventually(nodeCap, 'after an abrupt disconnect');
        await expectRefused(nodeCap, 'full again after the abrupt one');

        // the others were not disturbed
        for (const c of clients.slice(2)) assert.equal(c.closeInfo, null);
        await clients[2].ping();
        again.destroy();
        again2.destroy();
        await Promise.all(clients.slice(2).map((c) => c.close()));
    }));
});

describe('admission: max_connections_per_ip', () => {
    it('over the per-IP limit the upgrade gets 503 + Retry-After; another IP is admitted; a freed slot admits again', T, withLogs(async () => {
        const mine = [];
        for (let i = 0; i < MAX_PER_IP; i++) mine.push(await userFrom(ipCap.wsUrl, `local${i}`));
        await expectRefused(ipCap, '127.0.0.1 over its limit');
        await assert.rejects(() => openWs(ipCap.wsUrl), (err) => err.statusCode === 503, 'the ws library sees 503 too');
        await expectHttpWorks(ipCap, '127.0.0.1 at its WebSocket limit');

        // another address is still welcome, up to its own limit
        const others = [];
        for (let i = 0; i < MAX_PER_IP; i++) others.push(await userFrom(ipCap.wsUrl, `other${i}`, OTHER_IP));
        await expectRefused(ipCap, `${OTHER_IP} over its limit`, { localAddress: OTHER_IP });
        const room = uniq('perip');
        await others[0].join(room);
        await mine[0].join(room);
        const ack = await others[0].sendMessage(room, 'from the other address');
        await mine[0].message(room, ack.id);

        // one of 127.0.0.1's connections closes: 127.0.0.1 is admitted again, once
        await mine[1].close();
        const again = await admittedEventually(ipCap, '127.0.0.1 after a close');
        await again.sendJson({ type: 'hello', name: 'again' });
        assert.equal((await again.nextJson('welcome')).user, 'again');
        await expectRefused(ipCap, '127.0.0.1 full again');
        again.destroy();
        await Promise.all([...mine.filter((c) => !c.closeInfo), ...others].map((c) => c.close()));
    }));
});

// Open n raw WebSockets that said hello (and joined room, when given), at most
// `batch` handshakes at a time.
async function openRawMany(srv, n, prefix, room, batch = 50) {
    const out = [];
    for (let i = 0; i < n; i += batch) {
        const part = await Promise.all(
            Array.from({ length: Math.min(batch, n - i) }, async (_, k) => {
                const c = await rawHello({ port: srv.port, timeoutMs: 30000 }, `${prefix}${i + k}`);
                if (room) {
                    await c.sendJson({ type: 'join', room });
                    const j = await c.nextJson((f) => f.room === room && (f.type === 'joined' || f.type === 'error'), 30000);
                    assert.equal(j.type, 'joined', JSON.stringify(j));
                }
                return c;
            }),
        );
        out.push(...part);
    }
    return out;
}

describe('capacity', () => {
    it('300 idle WebSockets with 8 HTTP worker threads: /healthz, the site, the API and new WebSockets still answer', T, withLogs(async () => {
        const idle = await openRawMany(fewThreads, 300, 'idle');
        try {
            await expectHttpWorks(fewThreads, 'with 300 WebSockets open on 8 workers');
            const fresh = await connectUser(fewThreads.wsUrl, 'fresh');
            await fresh.ping();
            // the idle ones are alive too
            for (const c of [idle[0], idle[150], idle[299]]) {
                await c.sendJson({ type: 'ping', ref: 'alive' });
                assert.equal((await c.nextJson('pong')).ref, 'alive');
            }
            await fresh.close();
        } finally {
            for (const c of idle) c.destroy();
        }
    }));

    it('150 clients that never read do not delay two that read: every message reaches both', T, withLogs(async () => {
        const room = uniq('stalled');
        const stalled = await openRawMany(fewThreads, 150, 'stalled', room);
        for (const c of stalled) c.pause();
        try {
            const a = await connectUser(fewThreads.wsUrl, 'reader-a', [room]);
            const b = await connectUser(fewThreads.wsUrl, 'reader-b', [room]);
            const N = 200;
            const filler = 'n'.repeat(3000); // enough to fill the stalled clients' socket buffers
            const from = (i) => (i % 2 ? a : b);
            const ids = await sendMany(from, room, N, (i) => `${i} ${filler}`, { ref: (i) => `st-${i}` });
            ids.sort((x, y) => x - y);
            for (const c of [a, b]) {
                for (const id of ids) await c.seenOrNext((f) => f.type === 'message' && f.room === room && f.id === id);
                const got = c.seen((f) => f.type === 'message' && f.room === room).map((f) => f.id);
                assert.deepEqual(got, ids, `${c.user}: every message once, in order`);
                assert.equal(c.closeInfo, null);
            }
            const r = await api(fewThreads.url, '/healthz');
            assert.equal(r.status, 200);
            await Promise.all([a.close(), b.close()]);
        } finally {
            for (const c of stalled) c.destroy();
        }
        // the server got over it
        const probe = await connectUser(fewThreads.wsUrl, 'probe');
        await withTimeout(probe.ping(), WAIT_MS, 'ping after the stalled clients left');
        await probe.close();
    }));
});
