// WebSocket and REST test clients for the turbochat integration and browser
// tests. Every received frame is buffered (never dropped); tests wait on
// frames with next(predicate, timeout) instead of sleeping.
import assert from 'node:assert/strict';
import http from 'node:http';
import WebSocket from 'ws';

// Default wait for one event. Generous so that the suite also passes against
// a server built with ASan on a busy 2-core machine.
export const WAIT_MS = Number(process.env.TURBOCHAT_WAIT_MS) || 10000;

let uniqCounter = 0;

// A short unique string (for refs, user and room names): prefix plus a counter.
export function uniq(prefix = 'u') {
    uniqCounter += 1;
    return `${prefix}-${process.pid.toString(36)}-${uniqCounter.toString(36)}`;
}

// Turn a predicate into a function: a function is used as is, a string
// matches frame.type, an object matches when every listed field is equal.
function toMatcher(pred) {
    if (typeof pred === 'function') return pred;
    if (pred === undefined || pred === null) return () => true;
    if (typeof pred === 'string') return (f) => f !== null && f.type === pred;
    if (typeof pred === 'object') {
        return (f) =>
            f !== null && typeof f === 'object' && Object.entries(pred).every(([k, v]) => f[k] === v);
    }
    throw new TypeError(`bad predicate: ${pred}`);
}

function describePred(pred) {
    if (typeof pred === 'function') return pred.description || pred.toString().slice(0, 160);
    return JSON.stringify(pred);
}

function short(frame, max = 240) {
    let s;
    try {
        s = JSON.stringify(frame);
    } catch {
        s = String(frame);
    }
    return s.length > max ? `${s.slice(0, max)}...(${s.length} chars)` : s;
}

// Hand frame to the first waiter of a pending next() whose match accepts it:
// take it out of waiters, clear its timer and resolve it with frame. False
// when no waiter wants the frame (the caller then keeps it as pending).
export function resolveWaiter(waiters, frame) {
    for (let i = 0; i < waiters.length; i++) {
        const w = waiters[i];
        if (w.match(frame)) {
            waiters.splice(i, 1);
            clearTimeout(w.timer);
            w.resolve(frame);
            return true;
        }
    }
    return false;
}

export class TestClient {
    constructor(ws, url) {
        this.ws = ws;
        this.url = url;
        this.frames = []; // every frame received, in order (parsed JSON)
        this.pending = []; // frames not yet consumed by next()
        this.waiters = []; // pending next() calls
        this.errors = []; // socket errors seen
        this.closeInfo = null;
        this.closed = new Promise((resolve) => {
            this._resolveClosed = resolve;
        });
        ws.on('message', (data, isBinary) => this._onFrame(data, isBinary));
        ws.on('error', (err) => this.errors.push(err));
        ws.on('close', (code, reason) => {
            this.closeInfo = { code, reason: reason.toString() };
            this._resolveClosed(this.closeInfo);
            const waiters = this.waiters;
            this.waiters = [];
            for (const w of waiters) {
                clearTimeout(w.timer);
                w.reject(this._error(`connection closed (code ${code}) while waiting for`, w));
            }
        });
    }

    _onFrame(data, isBinary) {
        let frame;
        if (isBinary) {
            frame = { type: '__binary', length: data.length };
        } else {
            const text = data.toString('utf8');
            try {
                frame = JSON.parse(text);
            } catch {
                frame = { type: '__unparseable', raw: text.slice(0, 500) };
            }
        }
        this.frames.push(frame);
        if (!resolveWaiter(this.waiters, frame)) this.pending.push(frame);
    }

    _error(what, w) {
        const seen = this.frames.slice(-40).map((f) => `  ${short(f)}`);
        const more = this.frames.length > 40 ? `  (${this.frames.length - 40} earlier frames not shown)\n` : '';
        return new Error(
            `${what} ${describePred(w.pred)} (${this.url}); ` +
                `frames seen (${this.frames.length}):\n${more}${seen.join('\n')}` +
                (this.closeInfo ? `\nclosed: ${JSON.stringify(this.closeInfo)}` : ''),
        );
    }

    // Resolve with the next frame, received or still to come, that matches
    // pred and was not yet returned by next(). Rejects after timeoutMs, or
    // when the connection closes first, listing the frames seen.
    next(pred, timeoutMs = WAIT_MS) {
        const match = toMatcher(pred);
        const idx = this.pending.findIndex((f) => match(f));
        if (idx >= 0) return Promise.resolve(this.pending.splice(idx, 1)[0]);
        const w = { pred, match };
        if (this.closeInfo) return Promise.reject(this._error('connection already closed, no frame', w));
        return new Promise((resolve, reject) => {
            w.resolve = resolve;
            w.reject = reject;
            w.timer = setTimeout(() => {
                const i = this.waiters.indexOf(w);
                if (i >= 0) this.waiters.splice(i, 1);
                reject(this._error(`timed out after ${timeoutMs} ms waiting for`, w));
            }, timeoutMs);
            this.waiters.push(w);
        });
    }

    // Like next(), but a close resolves too, with { type: '__closed', code, reason }.
    nextOrClosed(pred, timeoutMs = WAIT_MS) {
        const match = toMatcher(pred);
        return this.next((f) => match(f), timeoutMs).catch((err) => {
            if (this.closeInfo) return { type: '__closed', ...this.closeInfo };
            throw err;
        });
    }

    // Resolve with the first frame received so far that matches pred, whether
    // or not next() already returned it; otherwise wait for one like next().
    seenOrNext(pred, timeoutMs = WAIT_MS) {
        const match = toMatcher(pred);
        const f = this.frames.find((x) => match(x));
        if (f !== undefined) {
            const i = this.pending.indexOf(f);
            if (i >= 0) this.pending.splice(i, 1);
            return Promise.resolve(f);
        }
        return this.next(pred, timeoutMs);
    }

    // All frames received so far that match pred (consumed or not).
    seen(pred) {
        const match = toMatcher(pred);
        return this.frames.filter((f) => match(f));
    }

    // Send one JSON frame.
    send(obj) {
        this.sendRaw(JSON.stringify(obj));
    }

    // Send raw data; opts go to ws.send ({binary, fin, compress}).
    sendRaw(data, opts = {}) {
        this.ws.send(data, opts, (err) => {
            if (err) this.errors.push(err);
        });
    }

    // Send hello and wait for welcome; throws when the server answers an error.
    async hello(name, timeoutMs = WAIT_MS) {
        this.send({ type: 'hello', name });
        const f = await this.next((x) => x.type === 'welcome' || x.type === 'error', timeoutMs);
        if (f.type !== 'welcome') {
            const err = new Error(`hello ${JSON.stringify(name)} refused: ${short(f)}`);
            err.frame = f;
            throw err;
        }
        this.user = f.user;
        return f;
    }

    // Join a room (with since when given) and wait for its joined frame;
    // throws when the server answers an error for that room.
    async join(room, since, timeoutMs = WAIT_MS) {
        const msg = { type: 'join', room };
        if (since !== undefined) msg.since = since;
        this.send(msg);
        const f = await this.next(
            (x) => (x.type === 'joined' || x.type === 'error') && x.room === room,
            timeoutMs,
        );
        if (f.type !== 'joined') {
            const err = new Error(`join ${room} refused: ${short(f)}`);
            err.frame = f;
            throw err;
        }
        return f;
    }

    async leave(room, timeoutMs = WAIT_MS) {
        this.send({ type: 'leave', room });
        return this.next((x) => (x.type === 'left' || x.type === 'error') && x.room === room, timeoutMs);
    }

    // Send a chat message and resolve with the ack or error carrying ref.
    // ref undefined: a unique ref is generated; ref null: the field is left out
    // (then the first ack/error for the room is awaited).
    sendMessage(room, text, ref, timeoutMs = WAIT_MS) {
        if (ref === undefined) ref = uniq('ref');
        const msg = { type: 'send', room, text };
        if (ref !== null) msg.ref = ref;
        this.send(msg);
        if (ref === null) {
            return this.next(
                (x) => (x.type === 'ack' || x.type === 'error') && x.room === room && (x.ref ?? null) === null,
                timeoutMs,
            );
        }
        return this.next((x) => (x.type === 'ack' || x.type === 'error') && x.ref === ref, timeoutMs);
    }

    // ping with ref; resolves with the pong.
    ping(ref = uniq('ping'), timeoutMs = WAIT_MS) {
        this.send({ type: 'ping', ref });
        return this.next((x) => x.type === 'pong' && x.ref === ref, timeoutMs);
    }

    // Wait for the next message frame of room with the given id.
    message(room, id, timeoutMs = WAIT_MS) {
        return this.next((x) => x.type === 'message' && x.room === room && x.id === id, timeoutMs);
    }

    // Close normally and wait for the close to finish.
    async close(code = 1000, timeoutMs = WAIT_MS) {
        if (!this.closeInfo) this.ws.close(code);
        return withTimeout(this.closed, timeoutMs, `close of ${this.url}`);
    }

    // Drop the TCP connection without a close handshake.
    terminate() {
        this.ws.terminate();
    }

    get isOpen() {
        return this.ws.readyState === WebSocket.OPEN;
    }
}

// Reject when p does not settle within ms.
export function withTimeout(p, ms, what = 'operation') {
    let timer;
    return Promise.race([
        p,
        new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
        }),
    ]).finally(() => clearTimeout(timer));
}

// Open a WebSocket; resolves with a TestClient once open. opts: origin,
// headers, timeoutMs. Rejects with err.statusCode set when the server refuses
// the upgrade.
export function connect(wsUrl, opts = {}) {
    const { origin, headers, timeoutMs = WAIT_MS } = opts;
    return new Promise((resolve, reject) => {
        const ws = new WebSocket(wsUrl, {
            origin,
            headers,
            handshakeTimeout: timeoutMs,
            perMessageDeflate: false,
        });
        const client = new TestClient(ws, wsUrl);
        const onError = (err) => {
            const m = /Unexpected server response: (\d+)/.exec(err.message);
            if (m) err.statusCode = Number(m[1]);
            reject(err);
        };
        ws.once('error', onError);
        ws.once('open', () => {
            ws.off('error', onError);
            resolve(client);
        });
    });
}

// Connect and say hello; resolves with the client (client.welcome is set).
export async function connectUser(wsUrl, name, rooms = [], opts = {}) {
    const c = await connect(wsUrl, opts);
    c.welcome = await c.hello(name);
    for (const r of rooms) await c.join(r);
    return c;
}

// Send n messages into room with at most `window` of them unacknowledged,
// and assert that none was refused. The i-th (1-based) goes from `from` (a
// client, or a function of i giving one) with text(i) and ref ref(i) (default
// `${room}-${i}`). Resolves with the acked ids in the order they were sent.
export async function sendMany(from, room, n, text, { ref = (i) => `${room}-${i}`, window = 8 } = {}) {
    const ids = new Array(n);
    const errors = [];
    const inflight = new Set();
    for (let i = 1; i <= n; i++) {
        while (inflight.size >= window) await Promise.race(inflight);
        const sender = typeof from === 'function' ? from(i) : from;
        const p = sender
            .sendMessage(room, text(i), ref(i))
            .then((f) => {
                if (f.type === 'ack') ids[i - 1] = f.id;
                else errors.push(f);
            })
            .catch((e) => errors.push(e.message.slice(0, 300)))
            .finally(() => inflight.delete(p));
        inflight.add(p);
    }
    await Promise.all([...inflight]);
    assert.deepEqual(errors.slice(0, 5), [], 'sends refused');
    return ids;
}

// One REST request on a fresh connection. body: an object (sent as JSON), a
// string or a Buffer (sent as is). Resolves { status, headers, json, text }.
// json is null when the body is not JSON. localAddress: the source address.
export function api(url, path, { method = 'GET', body, headers = {}, localAddress, timeoutMs = WAIT_MS } = {}) {
    return new Promise((resolve, reject) => {
        const u = new URL(path, url);
        let payload;
        const hdrs = { ...headers };
        if (body !== undefined) {
            payload = Buffer.isBuffer(body) || typeof body === 'string' ? body : JSON.stringify(body);
            if (!Object.keys(hdrs).some((k) => k.toLowerCase() === 'content-type')) {
                hdrs['Content-Type'] = 'application/json';
            }
            hdrs['Content-Length'] = Buffer.byteLength(payload);
        }
        let responded = false;
        const req = http.request(
            { hostname: u.hostname, port: u.port, path: u.pathname + u.search, method, headers: hdrs, agent: false, localAddress },
            (res) => {
                responded = true;
                const chunks = [];
                res.on('data', (c) => chunks.push(c));
                res.on('error', reject);
                res.on('end', () => {
                    clearTimeout(timer);
                    const text = Buffer.concat(chunks).toString('utf8');
                    let json = null;
                    try {
                        json = JSON.parse(text);
                    } catch {
                        json = null;
                    }
                    resolve({ status: res.statusCode, headers: res.headers, json, text });
                });
            },
        );
        const timer = setTimeout(() => {
            req.destroy(new Error(`timed out after ${timeoutMs} ms: ${method} ${path}`));
        }, timeoutMs);
        req.on('error', (err) => {
            // The server may answer (e.g. 413) and close before reading the
            // whole body; the response then wins over the write error.
            if (responded) return;
            clearTimeout(timer);
            err.message = `${method} ${path}: ${err.message}`;
            reject(err);
        });
        if (payload !== undefined) req.write(payload);
        req.end();
    });
}

// Every message of a room, ascending, by paging with after=.
export async function fetchAllMessages(url, room) {
    const out = [];
    let after = 0;
    for (;;) {
        const r = await api(url, `/api/rooms/${encodeURIComponent(room)}/messages?after=${after}&limit=200`);
        if (r.status !== 200) throw new Error(`history of ${room}: HTTP ${r.status} ${r.text}`);
        out.push(...r.json.messages);
        if (!r.json.has_more || r.json.messages.length === 0) break;
        after = r.json.messages[r.json.messages.length - 1].id;
    }
    return out;
}
