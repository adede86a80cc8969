// Fan-out benchmark: one room, many receivers, a few senders, through the
// real binary on loopback. Prints deliveries per second, delivery latency
// (p50/p99, send to receipt) and resident memory per idle connection; then,
// unless --single-only, the same fan-out on a cluster of --nodes nodes sharing
// a real valkey-server (receivers spread over the nodes, senders on node 0),
// and the cluster/single ratio of deliveries per second. Each fan-out also
// runs paced (a message every 10 ms per sender) for latency below saturation.
//
//   node bench/fanout.mjs [--receivers 200] [--senders 4] [--messages 500] [--idle 1000]
//                         [--nodes 3] [--single-only]
//
// The server is started by tests/lib/server.mjs (TURBOCHAT_BIN or
// build/turbochat) with the send rate limit lifted; the load generator is
// this one Node process, so on a 2-core machine the figures are a floor.
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import WebSocket from '../tests/node_modules/ws/wrapper.mjs';
import { startServer, stopAll, RELAXED_RATE_ENV } from '../tests/lib/server.mjs';
import { startNode, startValkey, stopAllValkey } from '../tests/lib/valkey.mjs';

const { values: opts } = parseArgs({
    options: {
        receivers: { type: 'string', default: '200' },
        senders: { type: 'string', default: '4' },
        messages: { type: 'string', default: '500' },
        idle: { type: 'string', default: '1000' },
        nodes: { type: 'string', default: '3' },
        'single-only': { type: 'boolean', default: false },
    },
});
const RECEIVERS = Number(opts.receivers);
const SENDERS = Number(opts.senders);
const MESSAGES = Number(opts.messages); // per sender
const IDLE = Number(opts.idle);
const NODES = Number(opts.nodes);
const PACE_MS = 10; // the paced runs measure latency below saturation
const ROOM = 'bench';

function rssKiB(pid) {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    return Number(/VmRSS:\s+(\d+)/.exec(status)[1]);
}

function waitFor(ws, predicate) {
    return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('benchmark client timed out')), 30000);
        const onMessage = (data) => {
            const frame = JSON.parse(data);
            if (predicate(frame)) {
                clearTimeout(timer);
                ws.off('message', onMessage);
                resolve(frame);
            }
        };
        ws.on('message', onMessage);
    });
}

async function openClient(url, name, room) {
    const ws = new WebSocket(url);
    await new Promise((resolve, reject) => {
        ws.once('open', resolve);
        ws.once('error', reject);
    });
    ws.send(JSON.stringify({ type: 'hello', name }));
    await waitFor(ws, (f) => f.type === 'welcome');
    if (room) {
        ws.send(JSON.stringify({ type: 'join', room }));
        await waitFor(ws, (f) => f.type === 'joined');
    }
    return ws;
}

async function openMany(url, count, prefix, room) {
    const clients = [];
    for (let i = 0; i < count; i += 50) {
        const batch = [];
        for (let j = i; j < Math.min(count, i + 50); j++) batch.push(openClient(url, `${prefix}${j}`, room));
        clients.push(...(await Promise.all(batch)));
    }
    return clients;
}

function percentile(sorted, p) {
    return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))];
}

async function measureMemory(server) {
    const before = rssKiB(server.proc.pid);
    const idle = await openMany(server.wsUrl, IDLE, 'idle', 'lobby');
    const after = rssKiB(server.proc.pid);
    for (const ws of idle) ws.terminate();
    return ((after - before) * 1024) / IDLE;
}

// servers[0] carries the senders; receivers are spread over all servers.
async function measureFanout(servers, paceMs = 0) {
    const receivers = [];
    for (let i = 0; i < servers.length; i++) {
        const share = Math.floor(RECEIVERS / servers.length) + (i < RECEIVERS % servers.length ? 1 : 0);
        receivers.push(...(await openMany(servers[i].wsUrl, share, `r${i}-`, ROOM)));
    }
    const senders = await openMany(servers[0].wsUrl, SENDERS, 's', ROOM);
    const expected = RECEIVERS * SENDERS * MESSAGES;
    const latencies = [];
    let received = 0;
    const done = new Promise((resolve) => {
        for (const ws of receivers) {
            ws.on('message', (data) => {
                const frame = JSON.parse(data);
                if (frame.type !== 'message') return;
                latencies.push(performance.now() - Number(frame.text));
                if (++received === expected) resolve();
            });
        }
    });
    const start = performance.now();
    await Promise.all(
        senders.map(async (ws) => {
            for (let i = 0; i < MESSAGES; i++) {
                ws.send(JSON.stringify({ type: 'send', room: ROOM, text: String(performance.now()) }));
                if (paceMs > 0) await new Promise((r) => setTimeout(r, paceMs));
                else if (i % 20 === 19) await new Promise((r) => setImmediate(r));
            }
        }),
    );
    await done;
    const seconds = (performance.now() - start) / 1000;
    for (const ws of [...receivers, ...senders]) ws.terminate();
    latencies.sort((a, b) => a - b);
    return { expected, seconds, p50: percentile(latencies, 50), p99: percentile(latencies, 99) };
}

function report(title, fan) {
    console.log(title);
    console.log(`  deliveries/s     ${Math.round(fan.expected / fan.seconds)} (${fan.expected} in ${fan.seconds.toFixed(2)} s)`);
    console.log(`  latency p50      ${fan.p50.toFixed(2)} ms`);
    console.log(`  latency p99      ${fan.p99.toFixed(2)} ms`);
}

const threads = String(IDLE + RECEIVERS + SENDERS + 64);
const workload = `${RECEIVERS} receivers, ${SENDERS} senders x ${MESSAGES} messages`;
let single;
try {
    const server = await startServer({
        env: { ...RELAXED_RATE_ENV, TURBOCHAT_THREADS: threads },
        args: ['--log-level', 'warn'],
    });
    const bytesPerConn = await measureMemory(server);
    single = await measureFanout([server]);
    report(`turbochat single node, fan-out: ${workload}`, single);
    report(`turbochat single node, paced (one message per ${PACE_MS} ms per sender): latency`,
        await measureFanout([server], PACE_MS));
    console.log(`  memory/conn      ${(bytesPerConn / 1024).toFixed(1)} KiB RSS (${IDLE} idle connections)`);
} finally {
    await stopAll();
}
if (!opts['single-only']) {
    try {
        const valkey = await startValkey();
        const env = { TURBOCHAT_THREADS: threads };
        const nodes = [];
        for (let i = 0; i < NODES; i++) nodes.push(await startNode(valkey.env, { env, args: ['--log-level', 'warn'] }));
        const cluster = await measureFanout(nodes);
        report(`turbochat ${NODES} nodes on one valkey-server, same fan-out`, cluster);
        report(`turbochat ${NODES} nodes, paced: latency`, await measureFanout(nodes, PACE_MS));
        const ratio = cluster.expected / cluster.seconds / (single.expected / single.seconds);
        console.log(`  cluster/single   ${ratio.toFixed(2)} x deliveries/s`);
    } finally {
        await stopAll();
        await stopAllValkey();
    }
}
