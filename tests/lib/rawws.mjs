// A raw WebSocket client over net/tls sockets, for tests of the framing layer:
// it sends whatever frame it is told to (unmasked, RSV bits set, reserved
// opcodes, fragmented control frames, a header without its payload, bytes
// trickled one write at a time, bytes in the same write as the handshake),
// never answers pings on its own, and parses every frame the server sends,
// close frames included. Received frames are buffered (never dropped); tests
// wait on them with nextFrame()/next() instead of sleeping.
//
//   const c = await connect({ port });              // 101 done
//   await c.sendJson({ type: 'hello', name: 'x' });
//   const w = await c.nextJson('welcome');
//   await c.sendFrame({ opcode: 0x9, masked: false, payload: 'p' });
//   const { code } = await c.closeFrame;           // the server's close frame
//   await c.closed;                                // the TCP connection ended
import crypto from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { resolveWaiter, WAIT_MS } from './client.mjs';

export const OP = Object.freeze({ CONT: 0x0, TEXT: 0x1, BINARY: 0x2, CLOSE: 0x8, PING: 0x9, PONG: 0xa });

const toBuf = (p) => (p === undefined || p === null ? Buffer.alloc(0) : Buffer.isBuffer(p) ? p : Buffer.from(p));

// One client frame as bytes. fin (default true); rsv: the three RSV bits as a
// number 0..7 (4 = RSV1, 2 = RSV2, 1 = RSV3); opcode (default text); masked
// (default true); payload: string or Buffer; length: the length written in the
// header when it should differ from the payload's (a header that announces
// more than is sent); mask: 4 bytes (default random).
export function encodeFrame({ fin = true, rsv = 0, opcode = OP.TEXT, masked = true, payload, length, mask } = {}) {
    const body = toBuf(payload);
    const len = length ?? body.length;
    let head;
    if (len < 126) {
        head = Buffer.alloc(2);
        head[1] = len;
    } else if (len < 65536) {
        head = Buffer.alloc(4);
        head[1] = 126;
        head.writeUInt16BE(len, 2);
    } else {
        head = Buffer.alloc(10);
        head[1] = 127;
        head.writeBigUInt64BE(BigInt(len), 2);
    }
    head[0] = (fin ? 0x80 : 0) | ((rsv & 7) << 4) | (opcode & 0x0f);
    if (!masked) return Buffer.concat([head, body]);
    head[1] |= 0x80;
    const key = mask ? toBuf(mask) : crypto.randomBytes(4);
    const out = Buffer.alloc(body.length);
    for (let i = 0; i < body.length; i++) out[i] = body[i] ^ key[i & 3];
    return Buffer.concat([head, key, out]);
}

// The payload of a close frame: a 2-byte code and an optional reason.
export function closePayload(code, reason = '') {
    const b = Buffer.alloc(2);
    b.writeUInt16BE(code, 0);
    return Buffer.concat([b, Buffer.from(reason)]);
}

function upgradeRequest({ host, port, path, headers }) {
    const key = crypto.randomBytes(16).toString('base64');
    const lines = [
        `GET ${path} HTTP/1.1`,
        `Host: ${host}:${port}`,
        'Upgrade: websocket',
        'Connection: Upgrade',
        `Sec-WebSocket-Key: ${key}`,
        'Sec-WebSocket-Version: 13',
    ];
    for (const [k, v] of Object.entries(headers || {})) lines.push(`${k}: ${v}`);
    const expectAccept = crypto
        .createHash('sha1')
        .update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`)
        .digest('base64');
    return { text: `${lines.join('\r\n')}\r\n\r\n`, expectAccept };
}

function parseHead(text) {
    const lines = text.split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]);
    const headers = {};
    for (const line of lines.slice(1)) {
        const i = line.indexOf(':');
        if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
    }
    return { status: m ? Number(m[1]) : 0, statusLine: lines[0], headers };
}

export class RawWs {
    constructor(socket, label) {
        this.socket = socket;
        this.label = label;
        this.frames = []; // every frame received, in order
        this.pending = []; // frames not yet returned by nextFrame()/next()
        this.waiters = [];
        this.errors = [];
        this.echoClose = true; // answer the server's close frame with one (after it arrived)
        this.closeInfo = null; // { code, reason } of the server's close frame
        this.sentClose = false;
        this.ended = false;
        this._rx = Buffer.alloc(0);
        this.closeFrame = new Promise((r) => {
            this._resolveCloseFrame = r;
        });
        // Resolves when the TCP connection has ended, with the server's close
        // frame ({ code, reason }) or { code: 1006 } when none came.
        this.closed = new Promise((r) => {
            this._resolveClosed = r;
        });
        this.closeFrame.catch(() => {});
    }

    _attach(initial) {
        this.socket.on('data', (d) => this._onData(d));
        this.socket.on('error', (e) => this.errors.push(e));
        this.socket.on('close', () => {
            this.ended = true;
            const info = this.closeInfo ?? { code: 1006, reason: '' };
            this._resolveClosed(info);
            if (!this.closeInfo) this._resolveCloseFrame({ code: 1006, reason: '', noFrame: true });
            const ws = this.waiters;
            this.waiters = [];
            for (const w of ws) {
                clearTimeout(w.timer);
                w.reject(this._error(`connection ended (close ${info.code}) while waiting for`, w.what));
            }
        });
        if (initial && initial.length) this._onData(initial);
    }

    _onData(chunk) {
        this._rx = this._rx.length ? Buffer.concat([this._rx, chunk]) : chunk;
        for (;;) {
            const f = this._parseOne();
            if (!f) break;
            this._deliver(f);
        }
    }

    _parseOne() {
        const b = this._rx;
        if (b.length < 2) return null;
        const fin = (b[0] & 0x80) !== 0;
        const rsv = (b[0] >> 4) & 7;
        const opcode = b[0] & 0x0f;
        const masked = (b[1] & 0x80) !== 0;
        let len = b[1] & 0x7f;
        let off = 2;
        if (len === 126) {
            if (b.length < 4) return null;
            len = b.readUInt16BE(2);
            off = 4;
        } else if (len === 127) {
            if (b.length < 10) return null;
            len = Number(b.readBigUInt64BE(2));
            off = 10;
        }
        let key = null;
        if (masked) {
            if (b.length < off + 4) return null;
            key = b.subarray(off, off + 4);
            off += 4;
        }
        if (b.length < off + len) return null;
        let payload = Buffer.from(b.subarray(off, off + len));
        if (key) for (let i = 0; i < payload.length; i++) payload[i] ^= key[i & 3];
        this._rx = b.subarray(off + len);
        const f = { fin, rsv, opcode, masked, payload };
        if (opcode === OP.TEXT || opcode === OP.CONT) f.text = payload.toString('utf8');
        if (opcode === OP.TEXT && fin) {
            try {
                f.json = JSON.parse(f.text);
            } catch {
                f.json = null;
            }
        }
        if (opcode === OP.CLOSE) {
            f.code = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
            f.reason = payload.subarray(2).toString('utf8');
        }
        return f;
    }

    _deliver(f) {
        this.frames.push(f);
        if (f.opcode === OP.CLOSE && !this.closeInfo) {
            this.closeInfo = { code: f.code, reason: f.reason };
            this._resolveCloseFrame(this.closeInfo);
            if (this.echoClose && !this.sentClose && !this.ended) {
                this.sentClose = true;
                const echo = f.payload.length >= 2 ? closePayload(f.code) : Buffer.alloc(0);
                this.socket.write(encodeFrame({ opcode: OP.CLOSE, payload: echo }), () => {});
            }
        }
        if (!resolveWaiter(this.waiters, f)) this.pending.push(f);
    }

    _error(what, desc) {
        const seen = this.frames.slice(-30).map((f) => `  ${describeFrame(f)}`);
        return new Error(
            `${what} ${desc} (${this.label}); frames seen (${this.frames.length}):\n${seen.join('\n')}` +
                (this.closeInfo ? `\nclose frame: ${JSON.stringify(this.closeInfo)}` : '') +
                (this.ended ? '\nconnection ended' : ''),
        );
    }

    // The next frame (of any kind, control frames included) matching pred,
    // received or still to come and not yet returned. pred: a function of the
    // frame, or undefined for any frame. Rejects after timeoutMs or when the
    // connection ends first.
    next(pred, timeoutMs = WAIT_MS, what = pred ? String(pred).slice(0, 160) : 'any frame') {
        const match = pred || (() => true);
        const i = this.pending.findIndex((f) => match(f));
        if (i >= 0) return Promise.resolve(this.pending.splice(i, 1)[0]);
        if (this.ended) return Promise.reject(this._error('connection already ended, no frame', what));
        return new Promise((resolve, reject) => {
            const w = { match, resolve, reject, what };
            w.timer = setTimeout(() => {
                const k = this.waiters.indexOf(w);
                if (k >= 0) this.waiters.splice(k, 1);
                reject(this._error(`timed out after ${timeoutMs} ms waiting for`, what));
            }, timeoutMs);
            this.waiters.push(w);
        });
    }

    // The server's close frame ({ code, reason }); rejects after timeoutMs,
    // or when the connection ended without one, listing the frames seen.
    closeFrameWithin(timeoutMs = WAIT_MS, what = "the server's close frame") {
        let timer;
        return Promise.race([
            this.closeFrame.then((f) => {
                if (f.noFrame) throw this._error('the connection ended without a close frame, waiting for', what);
                return f;
            }),
            new Promise((_, reject) => {
                timer = setTimeout(() => reject(this._error(`timed out after ${timeoutMs} ms waiting for`, what)), timeoutMs);
            }),
        ]).finally(() => clearTimeout(timer));
    }

    // Resolves when the TCP connection has ended; rejects after timeoutMs.
    endedWithin(timeoutMs = WAIT_MS, what = 'the end of the connection') {
        let timer;
        return Promise.race([
            this.closed,
            new Promise((_, reject) => {
                timer = setTimeout(() => reject(this._error(`timed out after ${timeoutMs} ms waiting for`, what)), timeoutMs);
            }),
        ]).finally(() => clearTimeout(timer));
    }

    // The next frame of any kind, in arrival order.
    nextFrame(timeoutMs = WAIT_MS) {
        return this.next(undefined, timeoutMs, 'any frame');
    }

    // The next JSON text message matching pred: a type name, an object of
    // fields that must be equal, or a function of the parsed JSON.
    async nextJson(pred, timeoutMs = WAIT_MS) {
        let m;
        if (typeof pred === 'string') m = (j) => j.type === pred;
        else if (typeof pred === 'function') m = pred;
        else if (pred) m = (j) => Object.entries(pred).every(([k, v]) => j[k] === v);
        else m = () => true;
        const f = await this.next((x) => x.opcode === OP.TEXT && x.json && m(x.json), timeoutMs, JSON.stringify(pred) ?? String(pred));
        return f.json;
    }

    // JSON text messages received so far (consumed or not) matching fn.
    seenJson(fn = () => true) {
        return this.frames.filter((f) => f.opcode === OP.TEXT && f.json && fn(f.json)).map((f) => f.json);
    }

    // Write bytes; resolves once they were handed to the kernel.
    sendRaw(buf) {
        return new Promise((resolve) => {
            if (this.ended || this.socket.destroyed) return resolve(false);
            this.socket.write(toBuf(buf), (err) => {
                if (err) this.errors.push(err);
                resolve(!err);
            });
        });
    }

    // Write bytes one write per byte (chunk bytes per write), awaiting each
    // write's callback and gapMs between writes, so that the server sees them
    // in separate reads.
    async trickle(buf, { chunk = 1, gapMs = 5 } = {}) {
        const b = toBuf(buf);
        for (let i = 0; i < b.length; i += chunk) {
            if (!(await this.sendRaw(b.subarray(i, i + chunk)))) return false;
            if (gapMs > 0) await new Promise((r) => setTimeout(r, gapMs));
        }
        return true;
    }

    // Build a frame (see encodeFrame) and write it.
    sendFrame(opts) {
        if (opts && opts.opcode === OP.CLOSE) this.sentClose = true;
        return this.sendRaw(encodeFrame(opts));
    }

    sendText(text, opts = {}) {
        return this.sendFrame({ ...opts, opcode: OP.TEXT, payload: text });
    }

    sendJson(obj, opts = {}) {
        return this.sendText(JSON.stringify(obj), opts);
    }

    // Pause and resume reading from the socket (to play a client that stops reading).
    pause() {
        this.socket.pause();
    }

    resume() {
        this.socket.resume();
    }

    // Drop the TCP connection.
    destroy() {
        this.socket.destroy();
    }
}

export function describeFrame(f) {
    const name = { 0: 'cont', 1: 'text', 2: 'binary', 8: 'close', 9: 'ping', 10: 'pong' }[f.opcode] ?? `op${f.opcode}`;
    let body;
    if (f.opcode === OP.CLOSE) body = `${f.code} ${JSON.stringify(f.reason)}`;
    else if (f.text !== undefined) body = f.text.length > 200 ? `${f.text.slice(0, 200)}...(${f.text.length})` : f.text;
    else body = `${f.payload.length} bytes`;
    return `${name}${f.fin ? '' : ' (fin=0)'}${f.rsv ? ` rsv=${f.rsv}` : ''}${f.masked ? ' MASKED' : ''}: ${body}`;
}

// Open a TCP (or TLS) connection and send the upgrade request. Resolves
//   { ok: true, ws }                          on 101 (the Sec-WebSocket-Accept is checked)
//   { ok: false, status, headers, body, statusLine }  on any other answer
// Options: port, host (127.0.0.1), path (/ws), tls (false), ca (for tls;
// without it the certificate is not verified), localAddress (the client's
// source address, e.g. 127.0.0.2), headers (extra request headers),
// extraBytesWithUpgrade (a Buffer written in the same write as the request,
// e.g. encodeFrame() of the first frame), timeoutMs.
export function tryConnect({
    port,
    host = '127.0.0.1',
    path = '/ws',
    tls: useTls = false,
    ca,
    localAddress,
    headers,
    extraBytesWithUpgrade,
    timeoutMs = WAIT_MS,
} = {}) {
    return new Promise((resolve, reject) => {
        const req = upgradeRequest({ host, port, path, headers });
        const label = `${useTls ? 'wss' : 'ws'}://${host}:${port}${path}${localAddress ? ` from ${localAddress}` : ''}`;
        const opts = { host, port, localAddress };
        let sock;
        const onConnect = () => {
            sock.setNoDelay(true);
            const first = Buffer.from(req.text, 'latin1');
            sock.write(extraBytesWithUpgrade ? Buffer.concat([first, toBuf(extraBytesWithUpgrade)]) : first);
        };
        if (useTls) {
            sock = tls.connect({ ...opts, ca, rejectUnauthorized: Boolean(ca), servername: undefined }, onConnect);
        } else {
            sock = net.connect(opts, onConnect);
        }
        let buf = Buffer.alloc(0);
        let head = null;
        let done = false;
        const timer = setTimeout(() => finish(new Error(`no upgrade answer within ${timeoutMs} ms: ${label}`)), timeoutMs);
        const finish = (err, value) => {
            if (done) return;
            done = true;
            clearTimeout(timer);
            sock.off('data', onData);
            sock.off('close', onClose);
            if (err) {
                sock.destroy();
                reject(err);
            } else resolve(value);
        };
        // A refusal: collect its body (Content-Length, or until the close).
        const refusalDone = () => {
            const start = head.end;
            const len = Number(head.headers['content-length']);
            if (Number.isFinite(len) && buf.length - start < len) return false;
            const body = buf.subarray(start, Number.isFinite(len) ? start + len : buf.length).toString('utf8');
            sock.destroy();
            finish(null, { ok: false, status: head.status, statusLine: head.statusLine, headers: head.headers, body });
            return true;
        };
        const onData = (d) => {
            buf = Buffer.concat([buf, d]);
            if (!head) {
                const end = buf.indexOf('\r\n\r\n');
                if (end < 0) {
                    if (buf.length > 65536) finish(new Error(`upgrade answer headers too long: ${label}`));
                    return;
                }
                head = { ...parseHead(buf.subarray(0, end).toString('latin1')), end: end + 4 };
                if (head.status === 101) {
                    if (head.headers['sec-websocket-accept'] !== req.expectAccept) {
                        finish(new Error(`bad Sec-WebSocket-Accept ${head.headers['sec-websocket-accept']}: ${label}`));
                        return;
                    }
                    const rest = buf.subarray(head.end);
                    const ws = new RawWs(sock, label);
                    finish(null, { ok: true, ws, status: 101, headers: head.headers });
                    ws._attach(rest);
                    return;
                }
            }
            refusalDone();
        };
        const onClose = () => {
            if (head && head.status !== 101) {
                const body = buf.subarray(head.end).toString('utf8');
                finish(null, { ok: false, status: head.status, statusLine: head.statusLine, headers: head.headers, body });
            } else {
                finish(new Error(`connection closed before an upgrade answer: ${label}; got ${JSON.stringify(buf.toString('latin1').slice(0, 300))}`));
            }
        };
        sock.on('data', onData);
        sock.on('close', onClose);
        sock.on('error', (e) => {
            if (!done) finish(e);
        });
    });
}

// Like tryConnect, but resolves with the RawWs and rejects on a refusal
// (err.status, err.headers, err.body set).
export async function connect(opts) {
    const r = await tryConnect(opts);
    if (r.ok) return r.ws;
    const err = new Error(`upgrade refused: ${r.statusLine} ${r.body.slice(0, 300)}`);
    Object.assign(err, { status: r.status, headers: r.headers, body: r.body });
    throw err;
}

// Connect and complete hello (waits for welcome).
export async function connectHello(opts, name = 'raw') {
    const ws = await connect(opts);
    await ws.sendJson({ type: 'hello', name });
    ws.welcome = await ws.nextJson((j) => j.type === 'welcome' || j.type === 'error');
    if (ws.welcome.type !== 'welcome') throw new Error(`hello refused: ${JSON.stringify(ws.welcome)}`);
    return ws;
}
