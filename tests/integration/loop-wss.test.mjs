// WSS on the event loops: the TLS session moves from CivetWeb to a loop with
// the socket, and non-blocking TLS writes resume where they stopped when a
// reader is slow. Also over TLS: the first frame in the same write as the
// handshake, a trickled frame, and a protocol error's close frame.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import WebSocket from 'ws';
import { connectUser, sendMany, TestClient, uniq, WAIT_MS } from '../lib/client.mjs';
import { connect as rawConnect, connectHello as rawHello, encodeFrame, OP } from '../lib/rawws.mjs';
import { RELAXED_RATE_ENV, withLogs } from '../lib/server.mjs';
import { startTlsServer, stopTlsServers } from '../lib/tls.mjs';

const T = { timeout: 90000 };
let srv;
let tlsPort;
let ca;

before(async () => {
    ({ srv, tlsPort, ca } = await startTlsServer({ tmpPrefix: 'turbochat-wss-', env: RELAXED_RATE_ENV }));
});

after(stopTlsServers);

const wssUrl = () => `wss://127.0.0.1:${tlsPort}/ws`;

// A TestClient over wss:// that verifies the server against the test CA.
function openWss() {
    return new Promise((resolve, reject) => {
        const ws = new WebSocket(wssUrl(), { ca, perMessageDeflate: false, handshakeTimeout: WAIT_MS });
        const client = new TestClient(ws, wssUrl());
        ws.once('error', reject);
        ws.once('open', () => {
            ws.off('error', reject);
            resolve(client);
        });
    });
}

async function wssUser(name, rooms = []) {
    const c = await openWss();
    c.welcome = await c.hello(name);
    for (const r of rooms) await c.join(r);
    return c;
}

describe('WSS on the event loops', () => {
    it('hello, join and send round trip over wss, seen by a plain ws member too', T, withLogs(async () => {
        const room = uniq('wss');
        const secure = await wssUser('secure', [room]);
        assert.equal(secure.welcome.user, 'secure');
        const plain = await connectUser(srv.wsUrl, 'plain', [room]);
        const ack = await secure.sendMessage(room, 'over tls', 't1');
        assert.equal(ack.type, 'ack', JSON.stringify(ack));
        assert.equal((await secure.message(room, ack.id)).text, 'over tls');
        assert.equal((await plain.message(room, ack.id)).text, 'over tls');
        const back = await plain.sendMessage(room, 'back over tls');
        assert.equal((await secure.message(room, back.id)).text, 'back over tls');
        await secure.ping();
        await Promise.all([secure.close(), plain.close()]);
    }));

    it('a wss reader that pauses while 200 messages arrive gets every one, in order, without a close', T, withLogs(async () => {
        const room = uniq('wss-slow');
        const reader = await wssUser('slow-reader', [room]);
        const sender = await wssUser('sender', [room]);
        reader.ws._socket.pause();

        const N = 200;
        const filler = 's'.repeat(3900); // ~800 KB in all: more than the socket buffers hold
        const ids = await sendMany(sender, room, N, (i) => `${i} ${filler}`, { ref: (i) => `ws-${i}` });
        ids.sort((a, b) => a - b);
        await sender.seenOrNext((f) => f.type === 'message' && f.id === ids[N - 1]);

        reader.ws._socket.resume();
        await reader.seenOrNext((f) => f.type === 'message' && f.room === room && f.id === ids[N - 1], 3 * WAIT_MS);
        const got = reader.seen((f) => f.type === 'message' && f.room === room);
        assert.deepEqual(got.map((f) => f.id), ids, 'every message once, in order');
        const numbers = got.map((f) => (f.text === `${parseInt(f.text, 10)} ${filler}` ? parseInt(f.text, 10) : -f.id));
        assert.deepEqual([...numbers].sort((a, b) => a - b), Array.from({ length: N }, (_, i) => i + 1), 'texts intact');
        assert.equal(reader.closeInfo, null, 'the slow reader is not closed');
        await reader.ping();
        await Promise.all([reader.close(), sender.close()]);
    }));

    it('raw wss: a hello in the same write as the upgrade, and a trickled frame', T, withLogs(async () => {
        const c = await rawConnect({
            port: tlsPort,
            tls: true,
            ca,
            extraBytesWithUpgrade: encodeFrame({ payload: JSON.stringify({ type: 'hello', name: 'tls-eager' }) }),
        });
        assert.equal((await c.nextJson('welcome')).user, 'tls-eager');
        const frame = encodeFrame({ payload: JSON.stringify({ type: 'ping', ref: 'tls-trickle', pad: 'q'.repeat(200) }) });
        await c.trickle(frame.subarray(0, 8));
        await c.sendRaw(frame.subarray(8));
        assert.equal((await c.nextJson('pong')).ref, 'tls-trickle');
        await c.sendFrame({ opcode: OP.PING, payload: 'tls' });
        assert.equal((await c.next((f) => f.opcode === OP.PONG)).payload.toString(), 'tls');
        c.destroy();
    }));

    it('raw wss: an unmasked frame is closed with 1002 over TLS too', T, withLogs(async () => {
        const c = await rawHello({ port: tlsPort, tls: true, ca }, 'tls-bad');
        await c.sendFrame({ masked: false, payload: '{"type":"ping"}' });
        const f = await c.closeFrameWithin();
        assert.equal(f.code, 1002);
        await c.endedWithin();
    }));
});
