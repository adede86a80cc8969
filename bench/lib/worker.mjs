// One load-generator process of bench/run.mjs (started with child_process.fork,
// so every worker has its own event loop, its own open-file limit and its own
// core when one is free). It holds a share of the clients and does as little
// as it can per frame: a `message` frame is recognised by substring, its send
// time is read from the text (`P<phase>.<sender>.<µs>`, CLOCK_MONOTONIC via
// process.hrtime, the same clock in every process), and the latency goes into
// a fixed-width histogram. Only other frames (hello/join answers, acks,
// errors) go through JSON.parse.
//
// Protocols: 'tc' is turbochat's WebSocket contract (docs/PROTOCOL.md) over
// the `ws` package; 'sio' is the Socket.IO reference (bench/reference) over
// socket.io-client with the websocket transport only.
//
// Requests come from the parent as {id, cmd, ...}; each gets {id, ok, result}
// or {id, ok: false, error}. Commands: open, phase, opsPhase (the mixed
// workload of issue 8), stats, endPhase, closeAll, count.
import https from 'node:https';
import tls from 'node:tls';
import WebSocket from 'ws';
import { io as sioConnect } from 'socket.io-client';
import { nowUs } from './clock.mjs';

const HIST_US = 20; // histogram bucket width, µs
const HIST_N = 500000; // 20 µs x 500,000 = 10 s; slower goes in the last bucket

const clients = new Map(); // idx -> client
let phase = null; // the current send/receive phase (its counters)
const lateClosed = new Map(); // close code -> count, outside phases

function newPhaseState(id) {
    return {
        id,
        received: 0,
        strays: 0,
        lastRecvUs: 0,
        hist: new Uint32Array(HIST_N),
        closes: new Map(),
        errors: new Map(),
        sent: new Map(), // room -> messages sent
        sentTotal: 0,
        sending: false,
        senders: [],
        firstSendUs: 0,
        lastSendUs: 0,
    };
}

function bump(map, key, n = 1) {
    map.set(key, (map.get(key) || 0) + n);
}

// ------------------------------------------------------------------ receipt

// text is `P<phase>.<sender idx>.<send time µs>`
function onChatText(c, text) {
    const ph = phase;
    if (!ph || text.charCodeAt(0) !== 80 /* P */) return;
    const d1 = text.indexOf('.');
    const d2 = text.indexOf('.', d1 + 1);
    if (d1 < 0 || d2 < 0 || Number(text.slice(1, d1)) !== ph.id) {
        ph.strays++;
        return;
    }
    const now = nowUs();
    const lat = now - Number(text.slice(d2 + 1));
    let b = Math.floor(lat / HIST_US);
    if (b < 0) b = 0;
    else if (b >= HIST_N) b = HIST_N - 1;
    ph.hist[b]++;
    ph.received++;
    ph.lastRecvUs = now;
    const from = Number(text.slice(d1 + 1, d2));
    const s = c.sender;
    if (s && from === c.idx) {
        s.ownSeen++;
        if (s.flat) pump(s);
    }
    const w = c.witnessFor;
    if (w && from === w.c.idx) {
        w.witSeen++;
        if (w.flat) pump(w);
    }
}

function onTcFrame(c, data) {
    const s = typeof data === 'string' ? data : data.toString();
    if (c.state === 3 && phase && phase.ops) {
        onOpsFrame(c, s);
        return;
    }
    if (c.state === 3) {
        const at = s.indexOf('"text":"P');
        if (at >= 0) {
            const end = s.indexOf('"', at + 8);
            onChatText(c, s.slice(at + 8, end));
        } else if (phase) {
            // acks, errors, or a message laid out differently: parse it
            let f;
            try {
                f = JSON.parse(s);
            } catch {
                return;
            }
            if (f.type === 'message' && typeof f.text === 'string') onChatText(c, f.text);
            else if (f.type === 'error') bump(phase.errors, f.code);
        }
        return;
    }
    let f;
    try {
        f = JSON.parse(s);
    } catch {
        return;
    }
    if (c.state === 1 && f.type === 'welcome') {
        c.state = 2;
        c.ws.send(JSON.stringify({ type: 'join', room: c.room }));
    } else if (c.state === 2 && f.type === 'joined' && f.room === c.room) {
        c.state = 3;
        c.settle(null);
    } else if (f.type === 'error' && c.state < 3) {
        c.settle(new Error(`error frame ${f.code} during ${c.state === 1 ? 'hello' : 'join'}`));
    }
}

// ------------------------------------------------------------------ opening

// One TLS context for every connection: given only `ca`, Node builds a new
// context (and parses the PEM) per connection, which made the generator,
// not the server, the limit of TLS connects.
const tlsContexts = new Map();
function tlsFor(ca) {
    if (!ca) return {};
    if (!tlsContexts.has(ca)) {
        const secureContext = tls.createSecureContext({ ca });
        tlsContexts.set(ca, { secureContext, agent: new https.Agent({ secureContext, keepAlive: false }) });
    }
    return tlsContexts.get(ca);
}

function openTc(c, spec, o) {
    const ws = new WebSocket(spec.url, {
        perMessageDeflate: false,
        skipUTF8Validation: true,
        localAddress: spec.localAddress,
        secureContext: tlsFor(o.ca).secureContext,
        handshakeTimeout: o.timeoutMs,
        maxPayload: 16 << 20,
    });
    c.ws = ws;
    c.state = 0;
    ws.on('open', () => {
        c.state = 1;
        ws.send(JSON.stringify({ type: 'hello', name: spec.name }));
    });
    ws.on('message', (data) => onTcFrame(c, data));
    ws.on('error', (err) => c.settle(err));
    ws.on('close', (code) => {
        c.closed = true;
        if (c.state < 3) c.settle(new Error(`closed ${code} during setup`));
        if (!c.closing) bump(phase ? phase.closes : lateClosed, `ws ${code}`);
    });
}

function openSio(c, spec, o) {
    const sock = sioConnect(spec.url, {
        transports: ['websocket'],
        forceNew: true,
        reconnection: false,
        timeout: o.timeoutMs,
        localAddress: spec.localAddress,
        agent: tlsFor(o.ca).agent,
        perMessageDeflate: false,
    });
    c.sock = sock;
    c.state = 0;
    sock.on('connect', () => {
        c.state = 1;
        sock.emit('hello', { name: spec.name }, (w) => {
            if (!w || w.type !== 'welcome') return c.settle(new Error(`hello answered ${w && w.code}`));
            c.state = 2;
            sock.emit('join', { room: c.room }, (j) => {
                if (!j || j.type !== 'joined') return c.settle(new Error(`join answered ${j && j.code}`));
                c.state = 3;
                c.settle(null);
            });
        });
    });
    sock.on('message', (m) => {
        if (c.state === 3 && m && typeof m.text === 'string') onChatText(c, m.text);
    });
    sock.on('connect_error', (err) => c.settle(err));
    sock.on('disconnect', (reason) => {
        c.closed = true;
        if (c.state < 3) c.settle(new Error(`disconnected (${reason}) during setup`));
        if (!c.closing) bump(phase ? phase.closes : lateClosed, `sio ${reason}`);
    });
}

function closeClient(c) {
    c.closing = true;
    try {
        if (c.ws) c.ws.terminate();
        if (c.sock) {
            c.sock.disconnect();
            if (c.sock.io && c.sock.io.engine) c.sock.io.engine.close();
        }
    } catch {
        /* already closed */
    }
}

// Open spec.clients with at most o.concurrency in flight. Resolves with the
// counts, the error messages (grouped) and every success time (µs, the shared
// monotonic clock) so the parent can compute time-to-N.
function open(o) {
    return new Promise((resolve) => {
        const specs = o.clients;
        const doneAt = [];
        const errors = new Map();
        let next = 0;
        let inflight = 0;
        let finished = 0;
        let failed = 0;
        const startOne = () => {
            const spec = specs[next++];
            inflight++;
            const c = { idx: spec.idx, room: spec.room, state: 0, sender: null, witnessFor: null };
            let settled = false;
            const timer = setTimeout(() => c.settle(new Error('timed out')), o.timeoutMs);
            c.settle = (err) => {
                if (settled) return;
                settled = true;
                clearTimeout(timer);
                inflight--;
                finished++;
                if (err) {
                    failed++;
                    bump(errors, String(err.message || err).slice(0, 120));
                    closeClient(c);
                } else {
                    doneAt.push(nowUs());
                    clients.set(c.idx, c);
                }
                pumpOpen();
            };
            if (o.proto === 'sio') openSio(c, spec, o);
            else openTc(c, spec, o);
        };
        const pumpOpen = () => {
            if (finished === specs.length) {
                resolve({ ok: specs.length - failed, failed, errors: Object.fromEntries(errors), doneAt });
                return;
            }
            // Start in slices so that a storm of thousands does not block the
            // loop in one go; the slices still go out within a few ms.
            let n = 0;
            while (next < specs.length && inflight < (o.concurrency || 1e9) && n < 500) {
                startOne();
                n++;
            }
            if (next < specs.length && inflight < (o.concurrency || 1e9) && !pumpOpen.scheduled) {
                pumpOpen.scheduled = true;
                setImmediate(() => {
                    pumpOpen.scheduled = false;
                    pumpOpen();
                });
            }
        };
        if (specs.length === 0) resolve({ ok: 0, failed: 0, errors: {}, doneAt });
        else pumpOpen();
    });
}

// ------------------------------------------------------------------ sending

function sendOne(s) {
    const ph = phase;
    const t = nowUs();
    const text = `P${ph.id}.${s.c.idx}.${Math.round(t)}`;
    if (s.c.ws) {
        s.c.ws.send(`{"type":"send","room":"${s.c.room}","text":"${text}"}`);
    } else {
        s.c.sock.emit('send', { room: s.c.room, text }, s.onAck);
    }
    s.seq++;
    ph.sentTotal++;
    bump(ph.sent, s.c.room);
    if (!ph.firstSendUs) ph.firstSendUs = t;
    ph.lastSendUs = t;
}

// Flat out: keep `window` messages in flight, a message being in flight until
// both the sender and its witness (a member of the room on the other node)
// have received it.
function pump(s) {
    if (!phase || !phase.sending || s.c.closed) return;
    const seen = s.witness ? Math.min(s.ownSeen, s.witSeen) : s.ownSeen;
    while (s.seq - seen < s.window) sendOne(s);
}

function runPhase(o) {
    phase = newPhaseState(o.phase);
    const ph = phase;
    ph.sending = true;
    const errorsOf = (ack) => {
        if (ack && ack.type === 'error') bump(ph.errors, ack.code);
    };
    for (const spec of o.senders) {
        const c = clients.get(spec.idx);
        if (!c) continue;
        const s = {
            c,
            rate: spec.rate,
            offset: spec.offset || 0,
            window: spec.window,
            flat: o.mode === 'flat',
            witness: spec.witness !== undefined ? clients.get(spec.witness) : null,
            seq: 0,
            ownSeen: 0,
            witSeen: 0,
            onAck: errorsOf,
        };
        c.sender = s;
        if (s.witness) s.witness.witnessFor = s;
        ph.senders.push(s);
    }
    const startUs = o.startUs; // agreed with the other workers
    return new Promise((resolve) => {
        const finish = () => {
            ph.sending = false;
            clearInterval(tick);
            resolve({ sent: Object.fromEntries(ph.sent), sentTotal: ph.sentTotal });
        };
        let tick;
        const begin = () => {
            if (o.mode === 'flat') {
                for (const s of ph.senders) pump(s);
                // a sender whose window stalled (lost echo) must not block
                // the end of the phase; the timer below ends it.
                tick = setInterval(() => {
                    if (nowUs() - startUs >= o.durationMs * 1000) finish();
                }, 20);
            } else {
                tick = setInterval(() => {
                    const el = (nowUs() - startUs) / 1e6;
                    const end = el * 1000 >= o.durationMs;
                    const t = end ? o.durationMs / 1000 : el;
                    for (const s of ph.senders) {
                        if (s.c.closed) continue;
                        // senders are staggered (offset in [0,1) of a period)
                        // so that the total stream is smooth, not bursts
                        let due = Math.floor(t * s.rate + s.offset) - s.seq;
                        // after a stall, catch up at most a second's worth
                        if (due > s.rate) {
                            s.seq += due - Math.ceil(s.rate);
                            due = Math.ceil(s.rate);
                        }
                        for (let i = 0; i < due; i++) sendOne(s);
                    }
                    if (end) finish();
                }, 5);
            }
        };
        const wait = (startUs - nowUs()) / 1000;
        if (wait > 1) setTimeout(begin, wait);
        else begin();
    });
}

// ------------------------------------------------------------------ operations (mixed)
//
// The `ops` phase of the mixed workload (issue 8): every sender keeps
// `window` operations in flight, an operation being in flight until it was
// acked to the sender AND its frame (`message` or `update`) reached the
// sender's witness, a member of the room on the other node. Each operation is
// drawn from `mix` ({send, react, edit, delete}, fractions):
//   send    a message (text `P<phase>.<idx>.<µs>`, the size of the other
//           fan-outs' texts), with a ref;
//   react   a third of them (when there is one) remove a reaction this
//           sender added and saw acked; the others add an emoji from EMOJI
//           it does not have on one of its recent acked, not deleted
//           messages (never an add of one it has, never a remove of one it
//           lacks, so every react makes a new event);
//   edit    one of the sender's recent messages, with a new text;
//   delete  one of the sender's recent messages; it leaves the recent list
//           when the delete is sent, so nothing targets it again.
// An operation that has no possible target (the first ones) is a send.
// Every operation carries a ref `o<n>` so its ack (or error) finds it; the
// witness matches the frame to the ack by the event id. Latency: sent ->
// the witness received the frame, for every operation. Deliveries: every
// `message` and `update` frame any client received during the phase.

const EMOJI = ['👍', '❤️', '😂', '🎉', '😮', '🙏'];
const RECENT = 32; // message ids a sender may target

function newHist() {
    return new Uint32Array(HIST_N);
}

function histAdd(h, lat) {
    let b = Math.floor(lat / HIST_US);
    if (b < 0) b = 0;
    else if (b >= HIST_N) b = HIST_N - 1;
    h[b]++;
}

function sparse(h) {
    const out = [];
    for (let i = 0; i < HIST_N; i++) if (h[i]) out.push(i, h[i]);
    return out;
}

function onOpsFrame(c, s) {
    const ph = phase;
    if (s.startsWith('{"type":"message"') || s.startsWith('{"type":"update"')) {
        const now = nowUs();
        ph.received++;
        ph.lastRecvUs = now;
        const w = c.witnessFor;
        if (w) {
            const at = s.indexOf('"id":');
            if (at >= 0) witnessed(w, parseInt(s.slice(at + 5, at + 25), 10), now);
        }
        return;
    }
    const ack = s.startsWith('{"type":"ack"');
    if (!ack && !s.startsWith('{"type":"error"')) return; // presence, typing, ...
    let f;
    try {
        f = JSON.parse(s);
    } catch {
        return;
    }
    if (!ack) bump(ph.errors, f.code);
    const snd = c.sender;
    if (!snd || typeof f.ref !== 'string') return;
    const op = snd.pend.get(f.ref);
    if (!op) return;
    snd.pend.delete(f.ref);
    if (ack) acked(snd, op, f.id);
    else failed(snd, op);
}

function reactsOf(s, target) {
    let m = s.reacts.get(target);
    if (!m) {
        m = new Map();
        s.reacts.set(target, m);
    }
    return m;
}

function acked(s, op, id) {
    const ph = phase;
    const now = nowUs();
    ph.acked++;
    ph.lastAckUs = now;
    if (op.kind === 'send') {
        s.recent.push(id);
        if (s.recent.length > RECENT) forget(s, s.recent.shift());
    } else if (op.kind === 'react' || op.kind === 'unreact') {
        const m = s.reacts.get(op.target);
        if (m) {
            if (op.kind === 'react') {
                m.set(op.emoji, 'added');
                s.added.push([op.target, op.emoji]);
            } else m.delete(op.emoji);
        }
    }
    const seen = s.early.get(id);
    if (seen !== undefined) {
        s.early.delete(id);
        complete(s, op, seen);
    } else {
        s.byId.set(id, op);
    }
}

function witnessed(s, id, now) {
    const op = s.byId.get(id);
    if (op) {
        s.byId.delete(id);
        complete(s, op, now);
    } else {
        s.early.set(id, now);
    }
}

function complete(s, op, recvUs) {
    const ph = phase;
    const lat = recvUs - op.t;
    histAdd(ph.hist, lat);
    histAdd(op.kind === 'send' ? ph.histSend : ph.histChange, lat);
    s.inflight--;
    ph.done++;
    pumpOps(s);
}

function failed(s, op) {
    const ph = phase;
    bump(ph.failed, s.c.room);
    bump(ph.failedKinds, op.kind);
    if (op.kind === 'react' || op.kind === 'unreact') {
        const m = s.reacts.get(op.target);
        if (m) {
            if (op.kind === 'react') m.delete(op.emoji);
            else {
                m.set(op.emoji, 'added');
                s.added.push([op.target, op.emoji]);
            }
        }
    }
    s.inflight--;
    pumpOps(s);
}

const pick = (arr) => arr[Math.floor(Math.random() * arr.length)];

// a message the sender no longer targets (deleted, or no longer recent)
function forget(s, target) {
    if (!s.reacts.delete(target)) return;
    s.added = s.added.filter((a) => a[0] !== target);
}

// the next operation of sender s: {kind, target?, emoji?}
function chooseOp(s) {
    const r = Math.random();
    const mix = s.mix;
    if (s.recent.length) {
        if (r < mix.react) {
            // a third of the reactions remove one this sender added (when it has one)
            if (s.added.length && Math.random() < 1 / 3) {
                const k = Math.floor(Math.random() * s.added.length);
                const [target, emoji] = s.added[k];
                s.added[k] = s.added[s.added.length - 1];
                s.added.pop();
                s.reacts.get(target).set(emoji, 'removing');
                return { kind: 'unreact', target, emoji };
            }
            for (let tries = 0; tries < 4; tries++) {
                const target = pick(s.recent);
                const emoji = pick(EMOJI);
                const m = reactsOf(s, target);
                const st = m.get(emoji);
                if (st === undefined) {
                    m.set(emoji, 'adding');
                    return { kind: 'react', target, emoji };
                }
            }
        } else if (r < mix.react + mix.edit) {
            return { kind: 'edit', target: pick(s.recent) };
        } else if (r < mix.react + mix.edit + mix.delete) {
            const k = Math.floor(Math.random() * s.recent.length);
            const target = s.recent[k];
            s.recent.splice(k, 1);
            forget(s, target);
            return { kind: 'delete', target };
        }
    }
    return { kind: 'send' };
}

function sendOp(s) {
    const ph = phase;
    const c = s.c;
    const t = nowUs();
    const op = chooseOp(s);
    op.t = t;
    const ref = `o${ph.id}.${++s.refSeq}`; // unique per phase: refs dedup for 5 minutes
    const room = c.room;
    let frame;
    switch (op.kind) {
        case 'send':
            frame = `{"type":"send","room":"${room}","text":"P${ph.id}.${c.idx}.${Math.round(t)}","ref":"${ref}"}`;
            break;
        case 'react':
        case 'unreact':
            frame = `{"type":"react","room":"${room}","id":${op.target},"emoji":"${op.emoji}","add":${op.kind === 'react'},"ref":"${ref}"}`;
            break;
        case 'edit':
            frame = `{"type":"edit","room":"${room}","id":${op.target},"text":"E${ph.id}.${c.idx}.${Math.round(t)}","ref":"${ref}"}`;
            break;
        default:
            frame = `{"type":"delete","room":"${room}","id":${op.target},"ref":"${ref}"}`;
    }
    s.pend.set(ref, op);
    s.inflight++;
    c.ws.send(frame);
    ph.sentTotal++;
    bump(ph.sent, room);
    bump(ph.kinds, op.kind);
    if (!ph.firstSendUs) ph.firstSendUs = t;
    ph.lastSendUs = t;
}

function pumpOps(s) {
    if (!phase || !phase.sending || s.c.closed) return;
    while (s.inflight < s.window) sendOp(s);
}

function runOpsPhase(o) {
    phase = newPhaseState(o.phase);
    const ph = phase;
    Object.assign(ph, {
        ops: true,
        acked: 0,
        done: 0,
        lastAckUs: 0,
        failed: new Map(), // room -> operations refused
        failedKinds: new Map(),
        kinds: new Map(), // kind -> operations sent
        histSend: newHist(),
        histChange: newHist(),
    });
    ph.sending = true;
    const mix = { react: 0, edit: 0, delete: 0, ...o.mix };
    for (const spec of o.senders) {
        const c = clients.get(spec.idx);
        if (!c) continue;
        const s = {
            c,
            window: spec.window,
            witness: clients.get(spec.witness) || null,
            mix,
            pend: new Map(), // ref -> operation, until its ack
            byId: new Map(), // event id -> acked operation, until the witness has it
            early: new Map(), // event id -> when the witness got it, before the ack
            recent: [], // this sender's acked, not deleted message ids
            reacts: new Map(), // message id -> emoji -> 'adding' | 'added' | 'removing'
            added: [], // [message id, emoji] of this sender's acked reactions, for unreact
            inflight: 0,
            refSeq: 0,
        };
        c.sender = s;
        if (s.witness) s.witness.witnessFor = s;
        ph.senders.push(s);
    }
    const startUs = o.startUs;
    return new Promise((resolve) => {
        let tick;
        const begin = () => {
            for (const s of ph.senders) pumpOps(s);
            tick = setInterval(() => {
                if (nowUs() - startUs < o.durationMs * 1000) return;
                ph.sending = false;
                clearInterval(tick);
                resolve({ sent: Object.fromEntries(ph.sent), sentTotal: ph.sentTotal });
            }, 20);
        };
        const wait = (startUs - nowUs()) / 1000;
        if (wait > 1) setTimeout(begin, wait);
        else begin();
    });
}

function opsStats(withHist) {
    const ph = phase;
    let inflight = 0;
    for (const s of ph.senders) inflight += s.inflight;
    return {
        ops: true,
        sent: Object.fromEntries(ph.sent),
        failed: Object.fromEntries(ph.failed),
        failedKinds: Object.fromEntries(ph.failedKinds),
        kinds: Object.fromEntries(ph.kinds),
        sentTotal: ph.sentTotal,
        acked: ph.acked,
        done: ph.done,
        inflight,
        lastAckUs: ph.lastAckUs,
        histSend: withHist ? sparse(ph.histSend) : [],
        histChange: withHist ? sparse(ph.histChange) : [],
    };
}

function stats(withHist) {
    const ph = phase;
    if (!ph) return null;
    const hist = [];
    if (withHist) for (let i = 0; i < HIST_N; i++) if (ph.hist[i]) hist.push(i, ph.hist[i]);
    return {
        ...(ph.ops ? opsStats(withHist) : {}),
        received: ph.received,
        strays: ph.strays,
        lastRecvUs: ph.lastRecvUs,
        firstSendUs: ph.firstSendUs,
        lastSendUs: ph.lastSendUs,
        hist,
        histUs: HIST_US,
        closes: Object.fromEntries(ph.closes),
        errors: Object.fromEntries(ph.errors),
        open: countOpen(),
    };
}

function countOpen() {
    let n = 0;
    for (const c of clients.values()) if (!c.closed) n++;
    return n;
}

function endPhase() {
    if (phase) for (const s of phase.senders) {
        s.c.sender = null;
        if (s.witness) s.witness.witnessFor = null;
    }
    phase = null;
}

async function handle(m) {
    switch (m.cmd) {
        case 'open':
            return open(m);
        case 'phase':
            return runPhase(m);
        case 'opsPhase':
            return runOpsPhase(m);
        case 'stats':
            return stats(false);
        case 'endPhase': {
            const s = stats(true);
            endPhase();
            return s;
        }
        case 'count':
            return { open: countOpen(), closedOutsidePhases: Object.fromEntries(lateClosed) };
        case 'closeAll': {
            const n = clients.size;
            for (const c of clients.values()) closeClient(c);
            clients.clear();
            return { closed: n };
        }
        case 'exit':
            setImmediate(() => process.exit(0));
            return null;
        default:
            throw new Error(`unknown command ${m.cmd}`);
    }
}

process.on('message', (m) => {
    handle(m).then(
        (result) => process.send({ id: m.id, ok: true, result }),
        (err) => process.send({ id: m.id, ok: false, error: String((err && err.stack) || err) }),
    );
});
process.on('disconnect', () => process.exit(0));
process.send({ ready: true });
