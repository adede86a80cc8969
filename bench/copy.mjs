// TurboChat benchmark of issue 10: how long a new cluster node takes to copy
// the log from a live peer before it reports ready ("a new node copies
// 1,000,000 messages in under 60 s").
//
//   node bench/copy.mjs [--messages N] [--rooms R] [--senders S] [--window W]
//                       [--page P] [--timeout S] [--bin PATH]
//
// Starts a valkey-server and one node (build/turbochat, or --bin), fills its
// log through the real binary (S WebSockets, each keeping W sends in flight,
// spread over R rooms), then starts a second node on an empty database and
// times it from spawn to /readyz 200 (its copy is done then). Prints the fill
// rate, the copy time, events/s, the node's own sync_done line and the new
// node's peak RSS (VmHWM).
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import { REPO, delay, startTurbochat, startValkey, timedGet } from './lib/procs.mjs';

const { values: opt } = parseArgs({
    options: {
        messages: { type: 'string', default: '1000000' },
        rooms: { type: 'string', default: '1' },
        senders: { type: 'string', default: '4' },
        window: { type: 'string', default: '256' },
        page: { type: 'string', default: '' },
        timeout: { type: 'string', default: '300' },
        bin: { type: 'string', default: path.join(REPO, 'build', 'turbochat') },
        help: { type: 'boolean', default: false },
    },
});
if (opt.help) {
    console.log(fs.readFileSync(new URL(import.meta.url), 'utf8').split('\n').slice(0, 14).join('\n'));
    process.exit(0);
}
const N = Number(opt.messages);
const ROOMS = Number(opt.rooms);
const SENDERS = Number(opt.senders);
const WINDOW = Number(opt.window);
const roomName = (i) => `copy${i % ROOMS}`;

// One sender: hello, join every room, then keep WINDOW sends in flight until
// its share is acked. Message frames (the fan-out) are skipped unparsed.
function sender(url, idx, share) {
    return new Promise((resolve, reject) => {
        const ws = new WebSocket(url, { perMessageDeflate: false });
        let sent = 0;
        let acked = 0;
        let joined = 0;
        const pump = () => {
            while (sent < share && sent - acked < WINDOW) {
                const i = sent++;
                ws.send(JSON.stringify({ type: 'send', room: roomName(i), text: `bench ${idx}.${i} lorem ipsum dolor`, ref: `${idx}-${i}` }));
            }
        };
        ws.on('open', () => ws.send(JSON.stringify({ type: 'hello', name: `bench${idx}` })));
        ws.on('error', reject);
        ws.on('message', (data) => {
            const s = data.toString();
            if (s.startsWith('{"type":"message"')) return;
            const f = JSON.parse(s);
            if (f.type === 'welcome') {
                for (let r = 0; r < ROOMS; r++) ws.send(JSON.stringify({ type: 'join', room: roomName(r) }));
            } else if (f.type === 'joined') {
                if (++joined === ROOMS) pump();
            } else if (f.type === 'ack') {
                acked++;
                if (acked === share) {
                    ws.close();
                    resolve();
                } else pump();
            } else if (f.type === 'error') {
                reject(new Error(`sender ${idx}: ${s}`));
            }
        });
    });
}

async function lastIds(url) {
    const r = await timedGet(`${url}/api/rooms`, { timeoutMs: 10000 });
    const rooms = JSON.parse(r.body).rooms;
    return rooms.reduce((a, x) => a + x.last_id, 0);
}

const vk = await startValkey();
const pageEnv = opt.page ? { TURBOCHAT_SYNC_PAGE_SIZE: opt.page } : {};
const a = await startTurbochat({ bin: opt.bin, valkey: vk, label: 'peer', env: { ...pageEnv } });
console.log(`filling ${N} messages into ${ROOMS} room(s) of ${a.url} over ${SENDERS} WebSockets, ${WINDOW} in flight each`);
let t0 = Date.now();
const shares = Array.from({ length: SENDERS }, (_, i) => Math.floor(N / SENDERS) + (i < N % SENDERS ? 1 : 0));
await Promise.all(shares.map((share, i) => sender(a.wsUrl, i, share)));
while ((await lastIds(a.url)) < N) await delay(200);
const fillS = (Date.now() - t0) / 1000;
console.log(`filled in ${fillS.toFixed(1)} s (${Math.round(N / fillS)} messages/s)`);

// The new node: Valkey by env, not by `valkey`, so that the start returns once
// it is healthy and the copy is timed here (up to --timeout), from spawn.
const valkeyEnv = { REDIS_HOST: '127.0.0.1', REDIS_PORT: String(vk.port), REDIS_TLS: '0' };
t0 = Date.now();
const b = await startTurbochat({ bin: opt.bin, label: 'new', env: { ...pageEnv, ...valkeyEnv, TURBOCHAT_LOG_LEVEL: 'info' } });
for (;;) {
    const r = await timedGet(`${b.url}/readyz`, { timeoutMs: 5000 });
    if (r.status === 200) break;
    if (Date.now() - t0 > Number(opt.timeout) * 1000) throw new Error(`not ready after ${opt.timeout} s: ${r.status} ${r.body}`);
    await delay(20);
}
const copyS = (Date.now() - t0) / 1000;
const hwm = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${b.proc.pid}/status`, 'utf8'));
const done = /sync_done[^\n]*/.exec(fs.readFileSync(b.logFile, 'utf8'));
const copied = await lastIds(b.url);
console.log(`new node ready after ${copyS.toFixed(2)} s: ${copied} of ${N} events, ${Math.round(copied / copyS)} events/s`);
console.log(`peak RSS of the new node: ${hwm ? (Number(hwm[1]) / 1024).toFixed(1) : '?'} MiB`);
console.log(`its log: ${done ? done[0] : '(no sync_done line)'}`);
process.exit(copied === N ? 0 : 1);
