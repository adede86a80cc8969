// Deadlines the event loops enforce on WebSockets, and the whole-body
// deadline of an HTTP request: hello (TURBOCHAT_HELLO_TIMEOUT_MS), keepalive
// pings (TURBOCHAT_WS_PING_MS), a frame stalled midway and a trickled request
// body (TURBOCHAT_REQUEST_TIMEOUT_MS). Every wait is bounded and waits on an
// event; nothing asserts how long something took.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { api, connect, connectUser, uniq, WAIT_MS, withTimeout } from '../lib/client.mjs';
import { connect as rawConnect, connectHello, encodeFrame, OP } from '../lib/rawws.mjs';
import { startServer, stopAll, withLogs } from '../lib/server.mjs';

const T = { timeout: 60000 };
const HELLO_TIMEOUT_MS = 1000;
const PING_MS = 1000; // the minimum
const REQUEST_TIMEOUT_MS = 2000;

let timers; // hello and ping deadlines
let requests; // request timeout (pings and hello at their defaults, far away)

before(async () => {
    [timers, requests] = await Promise.all([
        startServer({
            env: { TURBOCHAT_HELLO_TIMEOUT_MS: String(HELLO_TIMEOUT_MS), TURBOCHAT_WS_PING_MS: String(PING_MS) },
        }),
        startServer({ env: { TURBOCHAT_REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS) } }),
    ]);
});

after(stopAll);

// Resolves after n WebSocket pings reached the ws-library client c (which
// answers each with a pong on its own); rejects if c closes first.
function pingsReceived(c, n, timeoutMs) {
    let count = 0;
    const p = new Promise((resolve, reject) => {
        c.ws.on('ping', () => {
            count += 1;
            if (count >= n) resolve(count);
        });
        c.closed.then((info) => reject(new Error(`closed (${JSON.stringify(info)}) after ${count} pings`)));
    });
    return withTimeout(p, timeoutMs, `${n} pings`);
}

describe('hello deadline', () => {
    it('a WebSocket without hello is closed 1008; one that said hello stays open past it', T, withLogs(async () => {
        // opened first, so its own deadline has passed when the others are closed
        const greeted = await connectUser(timers.wsUrl, 'greeted');
        const silent = await connect(timers.wsUrl);
        // a frame other than hello does not count as hello
        const chatty = await connect(timers.wsUrl);
        chatty.send({ type: 'ping', ref: 'early' });
        const e = await chatty.next('error');
        assert.equal(e.code, 'hello_required');
        // a raw client, to read the close frame itself
        const raw = await rawConnect({ port: timers.port });

        const bound = HELLO_TIMEOUT_MS + WAIT_MS;
        const [s, ch, r] = await Promise.all([
            withTimeout(silent.closed, bound, 'close of the client that never said hello'),
            withTimeout(chatty.closed, bound, 'close of the client that sent only a ping'),
            raw.closeFrameWithin(bound, 'the close frame to the raw client that never said hello'),
        ]);
        assert.equal(s.code, 1008, 'no hello: close 1008');
        assert.equal(ch.code, 1008, 'no hello (a ping only): close 1008');
        assert.equal(r.code, 1008, 'raw client: close 1008');
        await raw.endedWithin();

        assert.equal(greeted.closeInfo, null, 'the client that said hello is still open');
        await greeted.ping();
        const room = uniq('hello-ok');
        await greeted.join(room);
        assert.equal((await greeted.sendMessage(room, 'still here')).type, 'ack');
        await greeted.close();
    }));
});

describe('keepalive pings', () => {
    it('a client that never answers pings is dropped; clients that answer stay open', T, withLogs(async () => {
        // answers with ws's automatic pongs
        const answering = await connectUser(timers.wsUrl, 'answering');
        const answeringPings = pingsReceived(answering, 3, 3 * PING_MS + 2 * WAIT_MS);
        // a raw client answering each ping by hand with the same payload
        const polite = await connectHello({ port: timers.port }, 'polite');
        let politePongs = 0;
        const politeLoop = (async () => {
            for (;;) {
                const ping = await polite.next((f) => f.opcode === OP.PING, 2 * PING_MS + WAIT_MS, 'a server ping');
                await polite.sendFrame({ opcode: OP.PONG, payload: ping.payload });
                politePongs += 1;
                if (politePongs >= 3) return;
            }
        })();
        // a raw client that never answers: ping, then the connection ends
        const deaf = await connectHello({ port: timers.port }, 'deaf');
        const ping = await deaf.next((f) => f.opcode === OP.PING, PING_MS + WAIT_MS, 'the first server ping');
        assert.equal(ping.fin, true);
        assert.ok(ping.payload.length <= 125);
        const end = await deaf.endedWithin(2 * PING_MS + WAIT_MS, 'the end of the client that does not answer pings');
        process.stderr.write(`# ping timeout ended the connection with ${JSON.stringify(end)}\n`);

        await withTimeout(politeLoop, 3 * PING_MS + 2 * WAIT_MS, 'three pings answered by hand');
        await answeringPings;
        // both have now lived through several ping deadlines
        assert.equal(polite.ended, false, 'the raw client that answers pings is still connected');
        assert.equal(polite.closeInfo, null, 'and got no close frame');
        await polite.sendJson({ type: 'ping', ref: 'alive' });
        assert.equal((await polite.nextJson('pong')).ref, 'alive');
        assert.equal(answering.closeInfo, null, 'the ws client that answers pings is still open');
        await answering.ping();
        polite.destroy();
        await answering.close();
    }));
});

describe('request timeout', () => {
    it('a WebSocket frame stalled midway is closed 1008', T, withLogs(async () => {
        // an idle client between whole frames is not affected
        const idle = await connectUser(requests.wsUrl, 'idle');
        // a header and 10 of its 100 payload bytes, then nothing
        const partPayload = await connectHello({ port: requests.port }, 'stall-payload');
        const frame = encodeFrame({ payload: JSON.stringify({ type: 'ping', ref: 'p'.repeat(70) }) });
        await partPayload.sendRaw(frame.subarray(0, 6 + 10));
        // the first byte of a header, then nothing
        const partHeader = await connectHello({ port: requests.port }, 'stall-header');
        await partHeader.sendRaw(frame.subarray(0, 1));

        const bound = 3 * REQUEST_TIMEOUT_MS + WAIT_MS;
        for (const [c, what] of [[partPayload, 'stalled in a payload'], [partHeader, 'stalled in a header']]) {
            const f = await c.closeFrameWithin(bound, `the close frame to the client ${what}`);
            assert.equal(f.code, 1008, `${what}: close code`);
            await c.endedWithin(WAIT_MS, `${what}: the end of the connection`);
        }
        assert.equal(idle.closeInfo, null, 'an idle client with no partial frame stays open');
        await idle.ping();
        await idle.close();
    }));

    it('a fragmented message kept open with empty fragments is closed 1008', T, withLogs(async () => {
        const c = await connectHello({ port: requests.port }, 'trickle-fragments');
        await c.sendFrame({ fin: false, opcode: OP.TEXT, payload: '{"type":"ping",' });
        const bound = 3 * REQUEST_TIMEOUT_MS + WAIT_MS;
        let sent = 0;
        const ticker = setInterval(() => {
            // each piece is a whole frame: only the message stays unfinished
            if (!c.closeInfo) c.sendFrame({ fin: false, opcode: OP.CONT, payload: '' }).catch(() => {});
            sent++;
        }, REQUEST_TIMEOUT_MS / 4);
        try {
            const f = await c.closeFrameWithin(bound, 'the close frame to the fragment trickler');
            assert.equal(f.code, 1008, 'close code');
        } finally {
            clearInterval(ticker);
        }
        assert.ok(sent >= 3, `it kept sending fragments (${sent}) until the close`);
        c.destroy();
    }));

    it('a chunked POST body is refused with 411: only a Content-Length body has one deadline', T, withLogs(async () => {
        const answer = await new Promise((resolve, reject) => {
            const s = net.connect(requests.port, '127.0.0.1');
            let data = '';
            s.on('connect', () => s.write(
                `POST /api/rooms/${uniq('chunked')}/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
                'Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{\r\n'));
            s.on('data', (d) => {
                data += d.toString('latin1');
                if (data.includes('\r\n\r\n')) { s.destroy(); resolve(data); }
            });
            s.on('error', reject);
            setTimeout(() => { s.destroy(); resolve(data); }, WAIT_MS);
        });
        assert.match(answer, /^HTTP\/1\.1 411 /, `the answer: ${JSON.stringify(answer.split('\r\n')[0])}`);
    }));

    it('an HTTP body trickled one byte per second is cut off (408 or closed): one deadline for the whole body', T, withLogs(async () => {
        const room = uniq('slowbody');
        const body = JSON.stringify({ user: 'slow', text: 'one byte at a time, for a minute', ref: 'slow-1' });
        assert.ok(body.length > 30, 'the body takes far longer to send than the bound');
        const head =
            `POST /api/rooms/${room}/messages HTTP/1.1\r\nHost: 127.0.0.1:${requests.port}\r\n` +
            `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n`;
        const bound = 3 * REQUEST_TIMEOUT_MS + WAIT_MS;
        const outcome = await new Promise((resolve) => {
            const s = net.connect(requests.port, '127.0.0.1');
            s.setNoDelay(true);
            let answer = '';
            let sent = 0;
            let ticker = null;
            const finish = (what) => {
                clearInterval(ticker);
                clearTimeout(guard);
                s.destroy();
                resolve({ what, answer, sent });
            };
            const guard = setTimeout(() => finish('still open'), bound);
            s.on('connect', () => {
                s.write(head);
                ticker = setInterval(() => {
                    if (sent < body.length) s.write(body[sent++]);
                }, 1000);
            });
            s.on('data', (d) => {
                answer += d.toString('latin1');
                if (answer.includes('\r\n\r\n')) finish('answered');
            });
            s.on('error', () => {});
            s.on('close', () => finish('closed'));
        });
        process.stderr.write(`# trickled body: ${outcome.what} after ${outcome.sent} bytes: ${JSON.stringify(outcome.answer.split('\r\n')[0])}\n`);
        assert.notEqual(outcome.what, 'still open', `the request was still open after ${bound} ms (${outcome.sent} of ${body.length} bytes sent)`);
        assert.ok(outcome.sent < body.length, 'cut off before the body was complete');
        if (outcome.answer) assert.match(outcome.answer, /^HTTP\/1\.[01] 408 /, 'the answer, if any, is 408');
        const hist = await api(requests.url, `/api/rooms/${room}/messages`);
        if (hist.status === 200) assert.deepEqual(hist.json.messages, [], 'nothing was stored');
        const h = await api(requests.url, '/healthz');
        assert.equal(h.status, 200);
    }));
});
