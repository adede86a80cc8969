// The reference stack of the TurboChat benchmarks: a Socket.IO 4 chat server
// with the same workload semantics as turbochat's WebSocket contract (hello,
// join a room, send; every accepted message is broadcast to every member of
// the room, the sender included, and acknowledged to the sender). With
// --redis HOST:PORT several processes form one cluster through
// @socket.io/redis-adapter (the `redis` client) on the same valkey-server the
// turbochat nodes use.
//
//   node bench/reference/server.mjs --listen 127.0.0.1:PORT [--node-id ID]
//        [--redis 127.0.0.1:6379] [--tls-cert cert.pem --tls-key key.pem]
//
// Events (client to server, each with an acknowledgement callback):
//   hello {name}          -> {type:'welcome', user, node, server_time, protocol:1}
//   join  {room}          -> {type:'joined', room, last_id:0, recovered:true}
//   leave {room}          -> {type:'left', room}
//   send  {room,text,ref} -> {type:'ack', ref, room, ts}, and to every member of
//                            the room on every node the event
//                            'message' {room, user, text, ts}
//   anything refused      -> {type:'error', code, message}
// GET /healthz answers 200 {"status":"ok","node":ID}.
//
// What it does not do, unlike turbochat (so it does less work per message):
// no message ids or storage, no history or replay, no dedup by ref, no
// presence events or member lists, no rate limit. Validation matches the
// contract's limits (room name, user name, text length, 16 KiB frames).
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { parseArgs } from 'node:util';
import { Server } from 'socket.io';

const { values: opts } = parseArgs({
    options: {
        listen: { type: 'string', default: '127.0.0.1:3000' },
        'node-id': { type: 'string' },
        redis: { type: 'string' },
        'tls-cert': { type: 'string' },
        'tls-key': { type: 'string' },
    },
});

const colon = opts.listen.lastIndexOf(':');
const host = colon > 0 ? opts.listen.slice(0, colon) : '127.0.0.1';
const port = Number(colon >= 0 ? opts.listen.slice(colon + 1) : opts.listen);
const NODE_ID = opts['node-id'] || `sio-${port}`;
const ROOM_RE = /^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$/;
const MAX_TEXT = 4000;
const MAX_ROOMS = 50;

function onRequest(req, res) {
    if (req.method === 'GET' && req.url === '/healthz') {
        const body = JSON.stringify({ status: 'ok', node: NODE_ID });
        res.writeHead(200, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(body) });
        res.end(body);
        return;
    }
    // Socket.IO handles its own path before this listener is reached.
    if (!req.url.startsWith('/socket.io')) {
        res.writeHead(404, { 'Content-Type': 'application/json; charset=utf-8' });
        res.end('{"error":{"code":"not_found","message":"not found"}}');
    }
}

const httpServer =
    opts['tls-cert'] && opts['tls-key']
        ? https.createServer({ cert: fs.readFileSync(opts['tls-cert']), key: fs.readFileSync(opts['tls-key']) }, onRequest)
        : http.createServer(onRequest);
httpServer.keepAliveTimeout = 5000;

const io = new Server(httpServer, {
    transports: ['websocket'], // like turbochat's /ws: no long-polling fallback
    maxHttpBufferSize: 16384, // the contract's largest client frame
    perMessageDeflate: false,
    serveClient: false,
    cors: { origin: false },
});

let redisClients = [];
if (opts.redis) {
    const { createClient } = await import('redis');
    const { createAdapter } = await import('@socket.io/redis-adapter');
    const pub = createClient({ url: `redis://${opts.redis}` });
    const sub = pub.duplicate();
    for (const c of [pub, sub]) c.on('error', (err) => console.error(`${NODE_ID} redis: ${err.message}`));
    await Promise.all([pub.connect(), sub.connect()]);
    io.adapter(createAdapter(pub, sub));
    redisClients = [pub, sub];
}

const err = (code, message) => ({ type: 'error', code, message });
const reply = (ack, value) => {
    if (typeof ack === 'function') ack(value);
};

function trimmedText(text) {
    if (typeof text !== 'string') return null;
    const t = text.trim();
    if (!t) return null;
    // eslint-disable-next-line no-control-regex
    if (/[\x00-\x08\x0b\x0c\x0e-\x1f]/.test(t)) return null;
    let n = 0;
    for (const _ of t) if (++n > MAX_TEXT) return null;
    return t;
}

io.on('connection', (socket) => {
    socket.data.user = null;
    socket.on('hello', (msg, ack) => {
        const name = msg && typeof msg.name === 'string' ? msg.name.trim() : '';
        if (!name || [...name].length > 32 || /[\x00-\x1f\x7f]/.test(name)) {
            reply(ack, err('bad_request', 'name required'));
            socket.disconnect(true);
            return;
        }
        socket.data.user = name;
        reply(ack, { type: 'welcome', user: name, node: NODE_ID, server_time: Date.now(), protocol: 1 });
    });
    socket.on('join', (msg, ack) => {
        if (!socket.data.user) return reply(ack, err('hello_required', 'hello first'));
        const room = msg && msg.room;
        if (typeof room !== 'string' || !ROOM_RE.test(room)) return reply(ack, err('room_invalid', 'bad room name'));
        if (!socket.rooms.has(room) && socket.rooms.size - 1 >= MAX_ROOMS)
            return reply(ack, err('too_many_rooms', 'too many rooms'));
        socket.join(room);
        reply(ack, { type: 'joined', room, last_id: 0, recovered: true });
    });
    socket.on('leave', (msg, ack) => {
        const room = msg && msg.room;
        if (typeof room === 'string') socket.leave(room);
        reply(ack, { type: 'left', room });
    });
    socket.on('send', (msg, ack) => {
        if (!socket.data.user) return reply(ack, err('hello_required', 'hello first'));
        const room = msg && msg.room;
        if (typeof room !== 'string' || !socket.rooms.has(room)) return reply(ack, err('not_joined', 'join first'));
        const text = trimmedText(msg.text);
        if (text === null) return reply(ack, err('text_invalid', 'bad text'));
        const ts = Date.now();
        io.to(room).emit('message', { room, user: socket.data.user, text, ts });
        reply(ack, { type: 'ack', ref: msg.ref ?? null, room, ts });
    });
    socket.on('ping_', (msg, ack) => reply(ack, { type: 'pong', ref: msg && msg.ref }));
});

httpServer.listen(port, host, () => {
    console.error(`${NODE_ID} listening on ${host}:${port}${opts.redis ? ` redis ${opts.redis}` : ''}`);
});

let stopping = false;
async function stop() {
    if (stopping) return;
    stopping = true;
    const force = setTimeout(() => process.exit(0), 3000);
    force.unref();
    io.close();
    for (const c of redisClients) await c.quit().catch(() => {});
    process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
