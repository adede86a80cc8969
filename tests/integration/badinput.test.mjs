// Hostile and broken input: malformed and deeply nested JSON, frame size
// limits, binary and fragmented frames, invalid UTF-8, abrupt disconnects,
// garbage HTTP, and a slow consumer that must not hold back anyone else.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { api, connect, connectUser, fetchAllMessages, uniq, withTimeout } from '../lib/client.mjs';
import { RELAXED_RATE_ENV, startServer, stopAll, withLogs } from '../lib/server.mjs';

const T = { timeout: 180000 };

let srv;

before(async () => {
    srv = await startServer({ env: RELAXED_RATE_ENV });
});

after(stopAll);

async function assertHealthy() {
    const r = await api(srv.url, '/healthz');
    assert.equal(r.status, 200, 'server must stay healthy');
    const c = await connectUser(srv.wsUrl, 'probe');
    await c.ping();
    await c.close();
}

async function expectOpen(c) {
    await c.ping();
    assert.equal(c.closeInfo, null);
}

// A JSON text of about `bytes` bytes nested as [[[...]]] or {"a":{"a":...}}.
function nested(kind, bytes) {
    if (kind === 'array') {
        const n = Math.floor(bytes / 2);
        return '['.repeat(n) + ']'.repeat(n);
    }
    const n = Math.floor(bytes / 6);
    return '{"a":'.repeat(n) + '1' + '}'.repeat(n);
}

describe('malformed JSON', () => {
    it('assorted garbage gets bad_json and the connection stays open', T, withLogs(async () => {
        const c = await connectUser(srv.wsUrl, 'garbage');
        const junk = ['{"type":"send"', '}{', '{"type":"ping"}}', "{'type':'ping'}", '{"type":"ping","ref":"\\x"}', 'NaN', '\ufeff{'];
        const wrong = [];
        for (const raw of junk) {
            c.sendRaw(raw);
            const e = await c.next((f) => f.type === 'error' || f.type === 'pong');
            if (e.type !== 'error' || e.code !== 'bad_json') wrong.push(`${JSON.stringify(raw)} -> ${JSON.stringify(e)}`);
        }
        assert.deepEqual(wrong, [], 'frames that are not valid JSON must get bad_json');
        await expectOpen(c);
        await c.close();
        await assertHealthy();
    }));

    for (const kind of ['array', 'object']) {
        it(`deeply nested ${kind} (1.8 KB and ~16 KB) gets an error; 100 KB closes 1009`, T, withLogs(async () => {
            const c = await connectUser(srv.wsUrl, `deep-${kind}`);
            for (const size of [1800, 16000]) {
                c.sendRaw(nested(kind, size));
                const e = await c.next('error');
                assert.ok(['bad_json', 'bad_request'].includes(e.code), `${size} B nested ${kind}: ${JSON.stringify(e)}`);
                await expectOpen(c);
            }
            // also nested inside an otherwise valid frame
            c.sendRaw(`{"type":"ping","ref":"deep","x":${nested(kind, 1800)}}`);
            const e = await c.next((f) => f.type === 'error' || f.type === 'pong');
            assert.equal(e.type, 'error', `nested payload inside ping: ${JSON.stringify(e)}`);
            await expectOpen(c);
            // before hello
            const d = await connect(srv.wsUrl);
            d.sendRaw(nested(kind, 1800));
            const e2 = await d.next('error');
            assert.ok(['bad_json', 'bad_request', 'hello_required'].includes(e2.code), JSON.stringify(e2));
            await d.close();

            const big = await connectUser(srv.wsUrl, `deep100-${kind}`);
            big.sendRaw(nested(kind, 100 * 1024));
            const closed = await big.closed;
            assert.equal(closed.code, 1009);
            await c.close();
            await assertHealthy();
        }));
    }

    it('deeply nested REST bodies get 400 (or 413 when too big)', T, withLogs(async () => {
        const room = uniq('deeprest');
        for (const kind of ['array', 'object']) {
            const r = await api(srv.url, `/api/rooms/${room}/messages`, { method: 'POST', body: nested(kind, 1800) });
            assert.equal(r.status, 400, `1.8 KB nested ${kind}: ${r.status} ${r.text.slice(0, 200)}`);
            const r2 = await api(srv.url, `/api/rooms/${room}/messages`, { method: 'POST', body: nested(kind, 100 * 1024) });
            assert.ok([400, 413].includes(r2.status), `100 KB nested ${kind}: ${r2.status}`);
        }
        await assertHealthy();
    }));
});

describe('frame limits and kinds', () => {
    it('a 16384-byte frame is accepted; 16385 bytes closes 1009', T, withLogs(async () => {
        const c = await connectUser(srv.wsUrl, 'exact');
        const head = '{"type":"ping","ref":"exact","pad":"';
        const tail = '"}';
        const exact = head + 'p'.repeat(16384 - head.length - tail.length) + tail;
        assert.equal(Buffer.byteLength(exact), 16384);
        c.sendRaw(exact);
        const p = await c.next((f) => f.type === 'pong' || f.type === 'error');
        assert.equal(p.type, 'pong', `a 16384-byte frame must be accepted: ${JSON.stringify(p)}`);
        assert.equal(p.ref, 'exact');

        const over = head + 'p'.repeat(16385 - head.length - tail.length) + tail;
        assert.equal(Buffer.byteLength(over), 16385);
        c.sendRaw(over);
        const closed = await c.closed;
        assert.equal(closed.code, 1009);
        await assertHealthy();
    }));

    it('an oversize frame before hello also closes 1009', T, withLogs(async () => {
        const c = await connect(srv.wsUrl);
        c.sendRaw('x'.repeat(64 * 1024));
        assert.equal((await c.closed).code, 1009);
        await assertHealthy();
    }));

    it('a binary frame closes 1003', T, withLogs(async () => {
        const c = await connectUser(srv.wsUrl, 'binary');
        c.sendRaw(Buffer.from(JSON.stringify({ type: 'ping', ref: 'b' })), { binary: true });
        assert.equal((await c.closed).code, 1003);
        const d = await connect(srv.wsUrl);
        d.sendRaw(Buffer.from([0, 1, 2, 3]), { binary: true });
        assert.equal((await d.closed).code, 1003);
        await assertHealthy();
    }));

    it('a fragmented text frame is reassembled and accepted', T, withLogs(async () => {
        const room = uniq('frag');
        const c = await connectUser(srv.wsUrl, 'frag', [room]);
        const text = 'fragmented \u00e9\u{1F600} message';
        const json = JSON.stringify({ type: 'send', room, text, ref: 'frag-1' });
        const buf = Buffer.from(json);
        // split inside the multi-byte characters too
        const cut1 = buf.indexOf(Buffer.from('\u00e9')) + 1;
        const cut2 = buf.indexOf(Buffer.from('\u{1F600}')) + 2;
        c.sendRaw(buf.subarray(0, cut1), { fin: false, binary: false });
        c.sendRaw(buf.subarray(cut1, cut2), { fin: false, binary: false });
        c.sendRaw(buf.subarray(cut2), { fin: true, binary: false });
        const ack = await c.next((f) => f.ref === 'frag-1');
        assert.equal(ack.type, 'ack', JSON.stringify(ack));
        const m = await c.message(room, ack.id);
        assert.equal(m.text, text);
        // a ping interleaved between two fragments of one message is legal for
        // control frames only; ws sends ours as separate data frames, so not tested.
        await expectOpen(c);
        await c.close();
    }));

    it('fragments whose total exceeds 16384 bytes close 1009', T, withLogs(async () => {
        const c = await connectUser(srv.wsUrl, 'fragbig');
        const part = 'x'.repeat(6000);
        c.sendRaw(`{"type":"ping","ref":"${part}`, { fin: false, binary: false });
        c.sendRaw(part, { fin: false, binary: false });
        c.sendRaw(`${part}"}`, { fin: true, binary: false });
        assert.equal((await c.closed).code, 1009);
        await assertHealthy();
    }));

    it('invalid UTF-8 in a text frame: an error frame or close 1007, never accepted', T, withLogs(async () => {
        const room = uniq('utf8');
        const c = await connectUser(srv.wsUrl, 'utf8', [room]);
        const bad = [
            Buffer.concat([Buffer.from(`{"type":"send","room":"${room}","ref":"u1","text":"a`), Buffer.from([0xff, 0xfe]), Buffer.from('b"}')]),
            Buffer.concat([Buffer.from(`{"type":"send","room":"${room}","ref":"u2","text":"`), Buffer.from([0xc3]), Buffer.from('"}')]),
            Buffer.concat([Buffer.from(`{"type":"send","room":"${room}","ref":"u3","text":"`), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('"}')]), // surrogate
            Buffer.concat([Buffer.from(`{"type":"send","room":"${room}","ref":"u4","text":"`), Buffer.from([0xc0, 0xaf]), Buffer.from('"}')]), // overlong
        ];
        let conn = c;
        for (const frame of bad) {
            conn.sendRaw(frame, { binary: false });
            const f = await conn.nextOrClosed((x) => x.type === 'error' || x.type === 'ack');
            if (f.type === '__closed') {
                assert.equal(f.code, 1007, `invalid UTF-8 closed with ${f.code}`);
                conn = await connectUser(srv.wsUrl, 'utf8', [room]);
            } else {
                assert.equal(f.type, 'error', `invalid UTF-8 must not be accepted: ${JSON.stringify(f)}`);
                assert.ok(['bad_json', 'bad_request', 'text_invalid'].includes(f.code), JSON.stringify(f));
                await expectOpen(conn);
            }
        }
        const hist = await fetchAllMessages(srv.url, room);
        assert.deepEqual(hist, [], 'nothing with invalid UTF-8 is stored');
        await conn.close();
        await assertHealthy();
    }));

    it('a text frame that is valid JSON with a JSON-escaped lone surrogate is refused', T, withLogs(async () => {
        const room = uniq('surr');
        const c = await connectUser(srv.wsUrl, 'surr', [room]);
        c.sendRaw(`{"type":"send","room":"${room}","ref":"s1","text":"a\\ud800b"}`);
        const e = await c.next((x) => x.ref === 's1' || x.type === 'error');
        assert.equal(e.type, 'error', JSON.stringify(e));
        assert.ok(['bad_json', 'text_invalid'].includes(e.code), JSON.stringify(e));
        await expectOpen(c);
        await c.close();
    }));
});

describe('abrupt disconnects', () => {
    it('200 parallel abrupt disconnects (mid-handshake, after hello, after join) leave the server healthy and clean', T, withLogs(async () => {
        const room = uniq('abrupt');
        const observer = await connectUser(srv.wsUrl, 'observer', [room]);
        const { port } = srv;

        const midHandshake = () =>
            new Promise((resolve) => {
                const s = net.connect(port, '127.0.0.1', () => {
                    s.write(`GET /ws HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Up`);
                    setImmediate(() => {
                        s.destroy();
                        resolve();
                    });
                });
                s.on('error', () => resolve());
            });
        const afterHello = async (i) => {
            const c = await connect(srv.wsUrl, { timeoutMs: 30000 });
            await c.hello(`ah${i}`, 30000);
            c.terminate();
        };
        const joinedUsers = [];
        const afterJoin = async (i) => {
            const name = `aj${i}`;
            joinedUsers.push(name);
            const c = await connect(srv.wsUrl, { timeoutMs: 30000 });
            await c.hello(name, 30000);
            await c.join(room, undefined, 30000);
            c.sendMessage(room, `bye from ${name}`).catch(() => {});
            c.terminate();
        };
        const jobs = [];
        for (let i = 0; i < 200; i++) {
            if (i % 3 === 0) jobs.push(midHandshake());
            else if (i % 3 === 1) jobs.push(afterHello(i));
            else jobs.push(afterJoin(i));
        }
        const results = await Promise.allSettled(jobs);
        const failed = results.filter((r) => r.status === 'rejected');
        assert.deepEqual(failed.map((f) => f.reason.message.slice(0, 300)), [], 'connections that could not even be opened');

        // every user that joined is announced gone
        for (const name of joinedUsers) {
            await observer.next((f) => f.type === 'presence' && f.user === name && f.event === 'leave', 30000);
        }
        const m = await api(srv.url, `/api/rooms/${room}/members`);
        assert.deepEqual(m.json.members, ['observer']);
        await assertHealthy();
        await observer.close();
    }));

    it('garbage and oversized HTTP requests do not hurt the server', T, withLogs(async () => {
        const { port } = srv;
        const rawRequest = (data) =>
            new Promise((resolve) => {
                const s = net.connect(port, '127.0.0.1', () => s.end(data));
                const chunks = [];
                s.on('data', (d) => chunks.push(d));
                s.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
                s.on('error', () => {});
                s.setTimeout(15000, () => s.destroy());
            });
        const answers = await Promise.all([
            rawRequest(Buffer.from([0, 1, 2, 3, 255, 254, 13, 10, 13, 10])),
            rawRequest('GET / HTTP/1.1\r\nHost: x\r\nX-Big: ' + 'a'.repeat(200 * 1024) + '\r\n\r\n'),
            rawRequest('GET /ws HTTP/1.1\r\nHost: x\r\n\r\n'),
            rawRequest('GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n'),
            rawRequest('POST /api/rooms/x/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"user"'),
            rawRequest('GET /api/rooms/' + 'r'.repeat(100000) + '/messages HTTP/1.1\r\nHost: x\r\n\r\n'),
        ]);
        // a plain GET /ws without an upgrade must not be a 101 or a 2xx
        assert.doesNotMatch(answers[2], /^HTTP\/1\.[01] (101|2\d\d)/);
        assert.doesNotMatch(answers[3], /^HTTP\/1\.[01] 101/, 'upgrade without Sec-WebSocket-Key must be refused');
        await assertHealthy();
    }));
});

// Sends 1500 messages of ~12 KB (18 MB in all) to room through sender, 16 in
// flight, and checks every 250 that healthy keeps pace (each wait bounded);
// at the end healthy has every acked message.
async function floodBigFrames(sender, healthy, room) {
    const N = 1500;
    const filler = '\u20ac'.repeat(3990); // 3 bytes each
    const acks = [];
    const errors = [];
    const inflight = new Set();
    for (let i = 1; i <= N; i++) {
        while (inflight.size >= 16) await Promise.race(inflight);
        const p = sender
            .sendMessage(room, `${i} ${filler}`, `${room}-${i}`, 20000)
            .then((f) => (f.type === 'ack' ? acks.push(f.id) : errors.push(f)))
            .catch((e) => errors.push(e.message.slice(0, 300)))
            .finally(() => inflight.delete(p));
        inflight.add(p);
        if (i % 250 === 0) await healthy.seenOrNext((f) => f.type === 'message' && f.id === Math.max(...acks), 20000);
    }
    await Promise.all([...inflight]);
    assert.deepEqual(errors.slice(0, 5), [], 'sends refused during the flood');
    const maxId = Math.max(...acks);
    await healthy.seenOrNext((f) => f.type === 'message' && f.room === room && f.id === maxId, 20000);
    const got = new Set(healthy.seen((f) => f.type === 'message' && f.room === room).map((f) => f.id));
    assert.deepEqual(acks.filter((id) => !got.has(id)).slice(0, 20), [], 'healthy client missed messages');
    return { acks, maxId };
}

describe('slow consumer', () => {
    it('a client that stops reading does not hold back the others; nothing acked is lost', T, withLogs(async () => {
        const room = uniq('flood');
        const healthy = await connectUser(srv.wsUrl, 'healthy', [room]);
        const stalled = await connectUser(srv.wsUrl, 'stalled', [room]);
        const sender = await connectUser(srv.wsUrl, 'flooder', [room]);
        stalled.ws._socket.pause();

        const N = 3000;
        const filler = 'f'.repeat(2000);
        const acks = [];
        const errors = [];
        const inflight = new Set();
        let maxLagMs = 0;
        for (let i = 1; i <= N; i++) {
            while (inflight.size >= 32) await Promise.race(inflight);
            const p = sender
                .sendMessage(room, `${i} ${filler}`, `fl-${i}`, 20000)
                .then((f) => {
                    if (f.type === 'ack') acks.push(f.id);
                    else errors.push(f);
                })
                .catch((e) => errors.push(e.message.slice(0, 300)))
                .finally(() => inflight.delete(p));
            inflight.add(p);
            // the healthy reader keeps pace: check it every 250 messages
            if (i % 250 === 0 && acks.length > 0) {
                const id = Math.max(...acks);
                const t0 = Date.now();
                await healthy.message(room, id, 20000);
                maxLagMs = Math.max(maxLagMs, Date.now() - t0);
            }
        }
        await Promise.all([...inflight]);
        assert.deepEqual(errors.slice(0, 5), [], 'sends refused during the flood');
        assert.equal(acks.length, N);
        const maxId = Math.max(...acks);
        await healthy.seenOrNext((f) => f.type === 'message' && f.room === room && f.id === maxId, 20000);
        const got = new Set(healthy.seen((f) => f.type === 'message' && f.room === room).map((f) => f.id));
        const missing = acks.filter((id) => !got.has(id));
        assert.deepEqual(missing.slice(0, 20), [], `healthy client missed ${missing.length} acked messages`);
        assert.ok(maxLagMs < 10000, `healthy client lagged ${maxLagMs} ms behind`);

        // the stalled client: closed 1013 (slow consumer), or it gets everything
        stalled.ws._socket.resume();
        const outcome = await withTimeout(
            stalled
                .nextOrClosed((f) => f.type === 'message' && f.room === room && f.id === maxId, 30000)
                .then((f) => (f.type === '__closed' ? { closed: { code: f.code, reason: f.reason } } : { complete: true })),
            35000,
            'stalled client: closed or caught up',
        );
        if (outcome.closed && outcome.closed.code !== 1006) {
            assert.equal(outcome.closed.code, 1013, `slow consumer closed with ${outcome.closed.code}`);
        }
        if (outcome.complete) {
            const ids = stalled.seen((f) => f.type === 'message' && f.room === room).map((f) => f.id);
            assert.deepEqual(ids, [...ids].sort((a, b) => a - b), 'in order');
        }
        process.stderr.write(`# slow consumer outcome: ${JSON.stringify(outcome)}, max lag ${maxLagMs} ms\n`);

        await assertHealthy();
        const hist = await fetchAllMessages(srv.url, room);
        const stored = new Set(hist.map((m) => m.id));
        const lost = acks.filter((id) => !stored.has(id));
        assert.deepEqual(lost.slice(0, 20), [], `${lost.length} acked messages missing from history`);
        await Promise.all([healthy.close(), sender.close()]);
        if (!stalled.closeInfo) await stalled.close();
    }));

    it('with a small outbound queue the stalled client is closed (1013) and the others get everything', T, withLogs(async () => {
        // TURBOCHAT_OUTBOUND_MAX_* are this server's knobs for the queue bound
        // of PROTOCOL.md's slow-consumer rule (not part of the contract).
        const small = await startServer({
            env: { ...RELAXED_RATE_ENV, TURBOCHAT_OUTBOUND_MAX_FRAMES: '256', TURBOCHAT_OUTBOUND_MAX_KIB: '1024' },
        });
        try {
            const room = uniq('flood2');
            const healthy = await connectUser(small.wsUrl, 'healthy', [room]);
            const stalled = await connectUser(small.wsUrl, 'stalled', [room]);
            const sender = await connectUser(small.wsUrl, 'flooder', [room]);
            stalled.ws._socket.pause();
            const { acks, maxId } = await floodBigFrames(sender, healthy, room);
            assert.equal(healthy.closeInfo, null, 'the healthy client stays connected');
            assert.equal(sender.closeInfo, null, 'the sender stays connected');

            stalled.ws._socket.resume();
            const f = await stalled.nextOrClosed((x) => x.type === 'message' && x.id === maxId, 30000);
            assert.equal(f.type, '__closed', `18 MB to a client that does not read must overflow a 1 MiB queue`);
            process.stderr.write(`# small-queue slow consumer closed with ${f.code}\n`);
            if (f.code !== 1006) assert.equal(f.code, 1013, 'slow consumer close code');
            const r = await api(small.url, '/healthz');
            assert.equal(r.status, 200);
            const hist = await fetchAllMessages(small.url, room);
            assert.equal(hist.length, acks.length);
            await Promise.all([healthy.close(), sender.close()]);
        } finally {
            await small.stop();
        }
    }));

    it('several stalled clients at once: the others still get every message', T, withLogs(async () => {
        // Writes that would block for a minute: a healthy client must never
        // wait behind a write to a client that stopped reading.
        const small = await startServer({
            env: {
                ...RELAXED_RATE_ENV,
                TURBOCHAT_REQUEST_TIMEOUT_MS: '60000',
                TURBOCHAT_OUTBOUND_MAX_FRAMES: '256',
                TURBOCHAT_OUTBOUND_MAX_KIB: '1024',
            },
        });
        try {
            const room = uniq('flood3');
            const healthy = await connectUser(small.wsUrl, 'healthy', [room]);
            const stalled = [];
            for (let i = 0; i < 3; i++) stalled.push(await connectUser(small.wsUrl, `stalled${i}`, [room]));
            const sender = await connectUser(small.wsUrl, 'flooder', [room]);
            for (const s of stalled) s.ws._socket.pause();
            await floodBigFrames(sender, healthy, room);
            assert.equal(healthy.closeInfo, null, 'the healthy client stays connected');
            for (const s of stalled) s.ws._socket.resume();
            // 18 MB each overflowed their 1 MiB queues: each is closed
            for (const s of stalled) {
                const { code } = await withTimeout(s.closed, 30000, "a stalled client's close");
                if (code !== 1006) assert.equal(code, 1013, 'slow consumer close code');
            }
            await Promise.all([healthy.close(), sender.close()]);
        } finally {
            await small.stop();
        }
    }));
});
