// RFC 6455 framing on the event loops, with a raw client that sends
// hand-built frames (tests/lib/rawws.mjs): every protocol violation closes the
// connection with the right close code (read from the server's close frame),
// and the legal but unusual cases work: control frames between fragments,
// UTF-8 split across fragments, a header trickled byte by byte, the first
// frame in the same TCP write as the handshake.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { api, WAIT_MS } from '../lib/client.mjs';
import { closePayload, connect, connectHello, describeFrame, encodeFrame, OP } from '../lib/rawws.mjs';
import { startServer, stopAll, withLogs } from '../lib/server.mjs';

const T = { timeout: 60000 };
const MAX_MESSAGE = 16384; // PROTOCOL.md: payload limit of a client message

let srv;

before(async () => {
    srv = await startServer();
});

after(stopAll);

const hello = (name, extra = {}) => JSON.stringify({ type: 'hello', name, ...extra });

// The server's close frame carries code, then the TCP connection ends.
async function expectClose(c, code, what) {
    const f = await c.closeFrameWithin(WAIT_MS, `${what}: the server's close frame`);
    assert.equal(f.code, code, `${what}: close code ${f.code} (${JSON.stringify(f.reason)}), expected ${code}`);
    await c.endedWithin(WAIT_MS, `${what}: the end of the TCP connection after the close frame`);
}

// Server frames are never masked and carry no RSV bits.
function assertServerFramesClean(c) {
    for (const f of c.frames) {
        assert.equal(f.masked, false, `server frame masked: ${describeFrame(f)}`);
        assert.equal(f.rsv, 0, `server frame with RSV bits: ${describeFrame(f)}`);
    }
}

const PING_JSON = '{"type":"ping","ref":"x"}';

// [name, frames to send after hello, expected close code]
const violations = [
    ['an unmasked client frame', [{ masked: false, payload: PING_JSON }], 1002],
    ['an unmasked client ping', [{ masked: false, opcode: OP.PING, payload: 'p' }], 1002],
    ['RSV1 set', [{ rsv: 4, payload: PING_JSON }], 1002],
    ['RSV2 set', [{ rsv: 2, payload: PING_JSON }], 1002],
    ['RSV3 set', [{ rsv: 1, payload: PING_JSON }], 1002],
    ['RSV1 on a ping', [{ rsv: 4, opcode: OP.PING, payload: 'p' }], 1002],
    ['a ping with a 126-byte payload', [{ opcode: OP.PING, payload: 'x'.repeat(126) }], 1002],
    ['a fragmented ping (FIN=0)', [{ opcode: OP.PING, fin: false, payload: 'a' }], 1002],
    ['a close frame with a 1-byte payload', [{ opcode: OP.CLOSE, payload: Buffer.from([0x03]) }], 1002],
    ['unknown data opcode 3', [{ opcode: 0x3, payload: 'x' }], 1002],
    ['unknown control opcode 0xB', [{ opcode: 0xb, payload: '' }], 1002],
    ['a continuation frame without a start', [{ opcode: OP.CONT, payload: PING_JSON }], 1002],
    [
        'a new text frame while a fragmented message is open',
        [
            { fin: false, payload: '{"type":"pi' },
            { payload: PING_JSON },
        ],
        1002,
    ],
    // From the header alone: the payload is never sent.
    ['the header of a 100000-byte text frame', [{ length: 100000, payload: '' }], 1009],
    [
        'fragments adding up to more than 16384 bytes (header of the second one only)',
        [
            { fin: false, payload: `{"type":"ping","ref":"${'a'.repeat(9000)}` },
            { opcode: OP.CONT, length: 9000, payload: '' },
        ],
        1009,
    ],
    [
        'invalid UTF-8 split across two fragments (E2 82 | 28)',
        [
            { fin: false, payload: Buffer.concat([Buffer.from('{"type":"ping","ref":"'), Buffer.from([0xe2, 0x82])]) },
            { opcode: OP.CONT, payload: Buffer.concat([Buffer.from([0x28]), Buffer.from('"}')]) },
        ],
        1007,
    ],
    ['a binary frame', [{ opcode: OP.BINARY, payload: Buffer.from([1, 2, 3]) }], 1003],
];

// Close codes a peer must not send (RFC 6455 7.4): the server fails the connection.
for (const code of [0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999, 5000, 65535]) {
    violations.push([`a close frame with the invalid code ${code}`, [{ opcode: OP.CLOSE, payload: closePayload(code) }], 1002]);
}

describe('RFC 6455 violations close the connection with the right code', () => {
    for (const [name, frames, code] of violations) {
        it(`${name} -> ${code}`, T, withLogs(async () => {
            const c = await connectHello({ port: srv.port }, 'violator');
            for (const f of frames) await c.sendFrame(f);
            await expectClose(c, code, name);
            assertServerFramesClean(c);
        }));
    }

    it('a violation before hello closes too (unmasked hello -> 1002)', T, withLogs(async () => {
        const c = await connect({ port: srv.port });
        await c.sendFrame({ masked: false, payload: hello('early') });
        await expectClose(c, 1002, 'unmasked hello');
        assert.deepEqual(c.seenJson((j) => j.type === 'welcome'), [], 'an unmasked hello must not be answered');
    }));

    it('the server is still healthy after all of the above', T, withLogs(async () => {
        const r = await api(srv.url, '/healthz');
        assert.equal(r.status, 200);
        const c = await connectHello({ port: srv.port }, 'after');
        await c.sendJson({ type: 'ping', ref: 'ok' });
        assert.equal((await c.nextJson('pong')).ref, 'ok');
        c.destroy();
    }));
});

describe('close handshake', () => {
    it('a close 1000 is answered with close 1000 and the connection ends', T, withLogs(async () => {
        const c = await connectHello({ port: srv.port }, 'closer');
        await c.sendFrame({ opcode: OP.CLOSE, payload: closePayload(1000, 'bye') });
        await expectClose(c, 1000, 'close 1000');
    }));

    it('a close without a payload is answered with a close and the connection ends', T, withLogs(async () => {
        const c = await connectHello({ port: srv.port }, 'closer0');
        await c.sendFrame({ opcode: OP.CLOSE, payload: '' });
        const f = await c.closeFrameWithin();
        assert.notEqual(f.code, 1002, 'an empty close payload is legal');
        await c.endedWithin();
    }));

    for (const code of [1001, 3000, 4999]) {
        it(`a close with the valid code ${code} is answered with a close (not 1002)`, T, withLogs(async () => {
            const c = await connectHello({ port: srv.port }, 'closer');
            await c.sendFrame({ opcode: OP.CLOSE, payload: closePayload(code) });
            const f = await c.closeFrameWithin();
            assert.notEqual(f.code, 1002, `close ${code} is a legal code`);
            await c.endedWithin();
        }));
    }
});

describe('legal framing the server must accept', () => {
    it('a ping gets a pong with the same payload (125 bytes, the maximum, too)', T, withLogs(async () => {
        const c = await connectHello({ port: srv.port }, 'pinger');
        for (const payload of ['', 'hello', 'p'.repeat(125)]) {
            await c.sendFrame({ opcode: OP.PING, payload });
            const pong = await c.next((f) => f.opcode === OP.PONG, WAIT_MS, `pong of ${payload.length} bytes`);
            assert.equal(pong.payload.toString(), payload);
        }
        assert.equal(c.closeInfo, null);
        assertServerFramesClean(c);
        c.destroy();
    }));

    it('a ping between two fragments is answered with a pong; the reassembled hello gets welcome', T, withLogs(async () => {
        const c = await connect({ port: srv.port });
        const msg = Buffer.from(hello('fragmented'));
        await c.sendFrame({ fin: false, payload: msg.subarray(0, 10) });
        await c.sendFrame({ opcode: OP.PING, payload: 'between' });
        const pong = await c.next((f) => f.opcode === OP.PONG, WAIT_MS, 'pong between fragments');
        assert.equal(pong.payload.toString(), 'between');
        await c.sendFrame({ fin: false, opcode: OP.CONT, payload: msg.subarray(10, 20) });
        await c.sendFrame({ opcode: OP.PONG, payload: 'unsolicited' }); // also legal, ignored
        await c.sendFrame({ opcode: OP.CONT, payload: msg.subarray(20) });
        const w = await c.nextJson('welcome');
        assert.equal(w.user, 'fragmented');
        assertServerFramesClean(c);
        c.destroy();
    }));

    it('a multi-byte character split across fragments is valid UTF-8', T, withLogs(async () => {
        const c = await connect({ port: srv.port });
        const msg = Buffer.from(hello('caf\u00e9\u20ac'));
        const euro = msg.indexOf(Buffer.from('\u20ac'));
        await c.sendFrame({ fin: false, payload: msg.subarray(0, euro + 1) });
        await c.sendFrame({ fin: false, opcode: OP.CONT, payload: msg.subarray(euro + 1, euro + 2) });
        await c.sendFrame({ opcode: OP.CONT, payload: msg.subarray(euro + 2) });
        assert.equal((await c.nextJson('welcome')).user, 'caf\u00e9\u20ac');
        c.destroy();
    }));

    it('a message of exactly 16384 bytes in fragments is accepted', T, withLogs(async () => {
        const c = await connectHello({ port: srv.port }, 'exact');
        const head = '{"type":"ping","ref":"exact","pad":"';
        const msg = Buffer.from(head + 'p'.repeat(MAX_MESSAGE - head.length - 2) + '"}');
        assert.equal(msg.length, MAX_MESSAGE);
        await c.sendFrame({ fin: false, payload: msg.subarray(0, 5000) });
        await c.sendFrame({ fin: false, opcode: OP.CONT, payload: msg.subarray(5000, 12000) });
        await c.sendFrame({ opcode: OP.CONT, payload: msg.subarray(12000) });
        assert.equal((await c.nextJson('pong')).ref, 'exact');
        c.destroy();
    }));

    it('a frame whose header arrives one byte per write, then its payload, works', T, withLogs(async () => {
        const c = await connect({ port: srv.port });
        // 7-bit length: 2 header bytes + 4 mask bytes
        const small = encodeFrame({ payload: hello('trickle') });
        await c.trickle(small.subarray(0, 6));
        await c.sendRaw(small.subarray(6));
        assert.equal((await c.nextJson('welcome')).user, 'trickle');
        // 16-bit extended length: 4 header bytes + 4 mask bytes
        const pad = 'z'.repeat(300);
        const mid = encodeFrame({ payload: JSON.stringify({ type: 'ping', ref: 'ext16', pad }) });
        await c.trickle(mid.subarray(0, 8));
        await c.sendRaw(mid.subarray(8));
        assert.equal((await c.nextJson('pong')).ref, 'ext16');
        // the whole of a frame byte by byte, payload included
        const whole = encodeFrame({ payload: JSON.stringify({ type: 'ping', ref: 'bytewise' }) });
        await c.trickle(whole, { gapMs: 1 });
        assert.equal((await c.nextJson('pong')).ref, 'bytewise');
        // a control frame trickled too
        await c.trickle(encodeFrame({ opcode: OP.PING, payload: 'tp' }));
        assert.equal((await c.next((f) => f.opcode === OP.PONG)).payload.toString(), 'tp');
        assert.equal(c.closeInfo, null);
        c.destroy();
    }));

    it('a hello in the same TCP write as the upgrade request is answered with welcome', T, withLogs(async () => {
        const c = await connect({ port: srv.port, extraBytesWithUpgrade: encodeFrame({ payload: hello('eager') }) });
        assert.equal((await c.nextJson('welcome')).user, 'eager');
        c.destroy();
    }));

    it('hello, ping and a partial frame in the upgrade write: all handled once the rest arrives', T, withLogs(async () => {
        const ping = encodeFrame({ payload: JSON.stringify({ type: 'ping', ref: 'split' }) });
        const first = Buffer.concat([
            encodeFrame({ payload: hello('eager2') }),
            encodeFrame({ opcode: OP.PING, payload: 'ctl' }),
            ping.subarray(0, 9),
        ]);
        const c = await connect({ port: srv.port, extraBytesWithUpgrade: first });
        assert.equal((await c.nextJson('welcome')).user, 'eager2');
        assert.equal((await c.next((f) => f.opcode === OP.PONG)).payload.toString(), 'ctl');
        await c.sendRaw(ping.subarray(9));
        assert.equal((await c.nextJson('pong')).ref, 'split');
        c.destroy();
    }));

    it('several frames in one write are all handled, in order', T, withLogs(async () => {
        const c = await connectHello({ port: srv.port }, 'batch');
        const frames = [];
        for (let i = 0; i < 20; i++) frames.push(encodeFrame({ payload: JSON.stringify({ type: 'ping', ref: `b${i}` }) }));
        await c.sendRaw(Buffer.concat(frames));
        for (let i = 0; i < 20; i++) assert.equal((await c.nextJson('pong')).ref, `b${i}`);
        c.destroy();
    }));
});
