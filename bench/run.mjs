// TurboChat benchmark suite: the WebSocket workloads of the move from
// CivetWeb's one thread per connection to epoll event loops, run against
//   baseline   turbochat built from --baseline-rev (default dc17e51, the
//              commit before the change), cached under bench/.cache/
//   new        build/turbochat (make build), or --new-bin
//   reference  Socket.IO 4 + @socket.io/redis-adapter (bench/reference)
// and printed as one table, workload | baseline | new | reference.
//
//   node bench/run.mjs [--quick] [--workloads idle,idle-tls,storm,fanout-room,fanout-rooms,mixed]
//                      [--stacks baseline,new,reference] [--baseline-rev REV]
//                      [--new-bin PATH] [--baseline-bin PATH] [--idle N] [--storm N]
//                      [--room-clients N] [--rooms-clients N] [--duration S] ...
//   node bench/run.mjs --help
//
// Workloads (every one starts fresh processes and stops them afterwards):
//   idle          N WebSockets (hello + join, rooms of --idle-room-size) on one
//                 node; VmRSS per connection at 1,000 / 5,000 / 10,000 / N;
//                 GET /healthz (new connection each, --healthz-rate a second)
//                 p99 while connecting and while idle.
//   idle-tls      the same over TLS (a self-signed P-256 certificate made now).
//   storm         --storm clients open, hello and join all at once (target 5 s):
//                 the time until the last one joined, how many did, how many
//                 within the target, and server CPU per connection.
//   fanout-room   2 nodes + 1 valkey-server, --room-clients clients in one room
//                 (half on each node), --room-senders of them sending.
//   fanout-rooms  2 nodes + 1 valkey-server, --rooms-clients clients in rooms
//                 of 10 (5 on each node), one sender per room.
//   Each fan-out runs paced (a fixed total rate, for latency) and flat out
//   (every sender keeps --room-window / --rooms-window messages in flight
//   until both it and a room member on the other node received them) for
//   --duration seconds, then
//   drains; it prints deliveries/s, latency p50/p99 (send time written in the
//   text, read at receipt), lost deliveries, and server CPU per delivery
//   (utime+stime from /proc of both nodes and valkey-server over the phase).
//   mixed         issue 8: the rooms of fanout-rooms, flat out, (a) send-only
//                 and (b) 70 % send, 20 % react (add, or remove one it added),
//                 5 % edit and 5 % delete of the sender's own recent messages;
//                 each sender keeps --mixed-window operations in flight until
//                 acked and received by its witness on the other node. Runs
//                 in the order a b b a (--mixed-rounds 2; --quick: a b), each
//                 on a fresh cluster (--mixed-keep-cluster: one cluster whose
//                 logs grow), and prints (a) and (b) side by side: operations
//                 acked/s, deliveries/s (message + update frames), latency,
//                 CPU per delivery and per operation, errors by code, and the
//                 ratio mixed / send-only (issue 8 asks >= 0.80). Only for a
//                 turbochat with PROTOCOL 2; run alone it uses --stacks new.
//
// The thread-per-connection baseline holds at most TURBOCHAT_THREADS (4096)
// WebSockets: its idle phases stop at --baseline-max-idle (1,000) and its
// storm at --baseline-max-storm (4,000); the table says so.
import { execFileSync, execSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Generator, mergeHist, nowUs, percentile } from './lib/gen.mjs';
import {
    BENCH_DIR,
    REPO,
    cpuUs,
    delay,
    healthzSampler,
    machineBusyUs,
    probeBinary,
    rssKiB,
    selfSignedCert,
    settle,
    startReference,
    startTurbochat,
    startValkey,
    sumCpuUs,
    tmpDir,
} from './lib/procs.mjs';

const ALL_WORKLOADS = ['idle', 'idle-tls', 'storm', 'fanout-room', 'fanout-rooms', 'mixed'];
const ALL_STACKS = ['baseline', 'new', 'reference'];

const { values: A } = parseArgs({
    options: {
        help: { type: 'boolean', short: 'h' },
        quick: { type: 'boolean', default: false },
        workloads: { type: 'string', default: ALL_WORKLOADS.join(',') },
        stacks: { type: 'string' },
        'baseline-rev': { type: 'string', default: 'dc17e51' },
        'baseline-bin': { type: 'string' },
        'new-bin': { type: 'string', default: path.join(REPO, 'build', 'turbochat') },
        idle: { type: 'string' },
        'idle-room-size': { type: 'string', default: '20' },
        'idle-hold': { type: 'string' },
        'idle-concurrency': { type: 'string', default: '100' },
        'healthz-rate': { type: 'string', default: '5' },
        storm: { type: 'string' },
        'storm-target': { type: 'string', default: '5' },
        'storm-timeout': { type: 'string', default: '30' },
        'room-clients': { type: 'string' },
        'room-senders': { type: 'string', default: '10' },
        'room-rate': { type: 'string' },
        'room-window': { type: 'string', default: '8' },
        'rooms-clients': { type: 'string' },
        'rooms-rate': { type: 'string' },
        'rooms-window': { type: 'string', default: '5' },
        'mixed-window': { type: 'string', default: '5' },
        'mixed-rounds': { type: 'string' },
        'mixed-order': { type: 'string' },
        'mixed-keep-cluster': { type: 'boolean', default: false },
        duration: { type: 'string' },
        'baseline-max-idle': { type: 'string', default: '1000' },
        'baseline-max-storm': { type: 'string', default: '4000' },
        workers: { type: 'string', default: '2' },
        'source-ips': { type: 'string', default: '8' },
        'max-minutes': { type: 'string', default: '60' },
        json: { type: 'string' },
    },
});

if (A.help) {
    const text = fs.readFileSync(new URL(import.meta.url), 'utf8');
    const lines = text.split('\n');
    const end = lines.findIndex((l) => !l.startsWith('//'));
    console.log(
        lines
            .slice(0, end)
            .map((l) => l.replace(/^\/\/ ?/, ''))
            .join('\n'),
    );
    console.log(`
Sizes (full / --quick): --idle 19000/2000, --storm 10000/1000,
  --room-clients 1000/200, --rooms-clients 2000/200, --duration 10/4 s,
  --room-rate 100/100 msg/s total, --rooms-rate 1000/500 msg/s total,
  --idle-hold 5/2 s.
Other options (default): --room-senders 10, --room-window 8, --rooms-window 5,
  --idle-room-size 20, --idle-concurrency 100 (opens in flight per generator
  process), --healthz-rate 5, --storm-target 5 (s), --storm-timeout 30 (s),
  --workers 2 (generator processes), --source-ips 8 (127.0.0.1..8),
  --baseline-max-idle 1000, --baseline-max-storm 4000, --max-minutes 60,
  --mixed-window 5 (operations in flight per sender), --mixed-rounds 2/1
  (rounds of a send-only and a mixed run, alternating a b / b a),
  --mixed-order STRING (the runs, e.g. aaab; overrides --mixed-rounds),
  --mixed-keep-cluster (every run on one cluster: the logs grow),
  --json FILE (default bench/.cache/last-run.json).`);
    process.exit(0);
}

for (const dep of ['ws', 'socket.io-client']) {
    if (!fs.existsSync(path.join(BENCH_DIR, 'node_modules', dep))) {
        console.error(`bench/node_modules/${dep} is missing: run (cd bench && npm ci) and (cd bench/reference && npm ci)`);
        process.exit(1);
    }
}

const Q = A.quick;
const num = (v, full, quick) => Number(v ?? (Q ? quick : full));
const CFG = {
    idle: num(A.idle, 19000, 2000),
    idleRoomSize: Number(A['idle-room-size']),
    idleHoldS: num(A['idle-hold'], 5, 2),
    idleConcurrency: Number(A['idle-concurrency']),
    healthzRate: Number(A['healthz-rate']),
    storm: num(A.storm, 10000, 1000),
    stormTargetS: Number(A['storm-target']),
    stormTimeoutS: Number(A['storm-timeout']),
    roomClients: num(A['room-clients'], 1000, 200),
    roomSenders: Number(A['room-senders']),
    roomRate: num(A['room-rate'], 100, 100),
    roomWindow: Number(A['room-window']),
    roomsClients: num(A['rooms-clients'], 2000, 200),
    roomsRate: num(A['rooms-rate'], 1000, 500),
    roomsWindow: Number(A['rooms-window']),
    mixedWindow: Number(A['mixed-window']),
    mixedRounds: num(A['mixed-rounds'], 2, 1),
    mixedKeepCluster: A['mixed-keep-cluster'],
    roomSize: 10,
    durationS: num(A.duration, 10, 4),
    baselineMaxIdle: Number(A['baseline-max-idle']),
    baselineMaxStorm: Number(A['baseline-max-storm']),
    workers: Number(A.workers),
    sourceIps: Number(A['source-ips']),
};
const WORKLOADS = A.workloads.split(',').map((s) => s.trim()).filter(Boolean);
// the mixed workload alone needs only `new` (the others lack PROTOCOL 2)
const STACKS = (A.stacks ?? (WORKLOADS.every((w) => w === 'mixed') ? 'new' : ALL_STACKS.join(','))).split(',').map((s) => s.trim()).filter(Boolean);
for (const w of WORKLOADS) if (!ALL_WORKLOADS.includes(w)) throw new Error(`unknown workload ${w} (${ALL_WORKLOADS})`);
for (const s of STACKS) if (!ALL_STACKS.includes(s)) throw new Error(`unknown stack ${s} (${ALL_STACKS})`);

const log = (...a) => console.error(`[${new Date().toISOString().slice(11, 19)}]`, ...a);
const fmt = (n, d = 0) =>
    Number.isFinite(n) ? n.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d }) : '-';
const fmtMs = (n) => (Number.isFinite(n) ? (n < 10 ? n.toFixed(2) : n < 100 ? n.toFixed(1) : n.toFixed(0)) : '-');

// ------------------------------------------------------------------ watchdog
const maxMs = Number(A['max-minutes']) * 60000;
const watchdog = setTimeout(() => {
    log(`the whole run exceeded --max-minutes ${A['max-minutes']}; stopping`);
    printTable();
    process.exit(2);
}, maxMs);

// ------------------------------------------------------------------ results
const rows = new Map(); // label -> {stack: cell}
const notes = [];
function put(label, stack, cell) {
    if (!rows.has(label)) rows.set(label, {});
    rows.get(label)[stack] = cell;
}
const note = (s) => {
    if (!notes.includes(s)) notes.push(s);
};

// ------------------------------------------------------------------ binaries
function ensureBaseline(rev) {
    const sha = execFileSync('git', ['-C', REPO, 'rev-parse', '--verify', `${rev}^{commit}`], { encoding: 'utf8' }).trim();
    const dir = path.join(BENCH_DIR, '.cache', `baseline-${sha.slice(0, 7)}`);
    const bin = path.join(dir, 'build', 'turbochat');
    if (fs.existsSync(bin)) return { bin, sha };
    const civet = path.join(REPO, '.deps', 'civetweb');
    if (!fs.existsSync(path.join(civet, 'src', 'civetweb.c')))
        throw new Error(`CivetWeb source missing in ${civet} (run make deps)`);
    log(`building the baseline ${sha.slice(0, 7)} in ${dir} (cached afterwards)`);
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(path.join(dir, 'src'), { recursive: true });
    const q = (s) => `'${s.replace(/'/g, "'\\''")}'`;
    execSync(`git -C ${q(REPO)} archive ${sha} | tar -x -C ${q(path.join(dir, 'src'))}`, { stdio: 'inherit' });
    const logFile = path.join(dir, 'build.log');
    execSync(
        `cmake -S ${q(path.join(dir, 'src'))} -B ${q(path.join(dir, 'build'))} -DCMAKE_BUILD_TYPE=Release ` +
            `-DCIVETWEB_SOURCE_DIR=${q(civet)} > ${q(logFile)} 2>&1 && ` +
            `cmake --build ${q(path.join(dir, 'build'))} -j2 --target turbochat >> ${q(logFile)} 2>&1`,
        { stdio: 'inherit' },
    );
    if (!fs.existsSync(bin)) throw new Error(`baseline build produced no binary; see ${logFile}`);
    return { bin, sha };
}

const stacks = [];
for (const key of STACKS) {
    if (key === 'baseline') {
        try {
            const b = A['baseline-bin'] ? { bin: path.resolve(A['baseline-bin']), sha: 'given' } : ensureBaseline(A['baseline-rev']);
            stacks.push({ key, kind: 'turbochat', bin: b.bin, title: `baseline (${A['baseline-bin'] ? 'given binary' : b.sha.slice(0, 7)})` });
        } catch (err) {
            log(`baseline unavailable: ${err.message}`);
            stacks.push({ key, kind: 'missing', why: `baseline build failed: ${err.message.split('\n')[0]}`, title: 'baseline' });
        }
    } else if (key === 'new') {
        const bin = path.resolve(A['new-bin']);
        const shown = bin.startsWith(`${REPO}${path.sep}`) ? path.relative(REPO, bin) : bin;
        if (fs.existsSync(bin)) stacks.push({ key, kind: 'turbochat', bin, title: `new (${shown})` });
        else stacks.push({ key, kind: 'missing', why: `no ${bin} (make build)`, title: 'new' });
    } else {
        const ok = fs.existsSync(path.join(BENCH_DIR, 'reference', 'node_modules', 'socket.io'));
        if (ok) stacks.push({ key, kind: 'sio', title: 'Socket.IO reference' });
        else stacks.push({ key, kind: 'missing', why: 'npm install in bench/reference first', title: 'Socket.IO reference' });
    }
}
for (const s of stacks) {
    if (s.kind !== 'turbochat') continue;
    s.probe = probeBinary(s.bin, { TURBOCHAT_THREADS: '1024', TURBOCHAT_MAX_CONNECTIONS_PER_IP: '0' });
    s.threadPerConn = s.probe.threadPerConnection;
    if (s.probe.unknown.length) note(`${s.title}: does not know ${s.probe.unknown.join(', ')} (not set)`);
}

// Optional turbochat settings for `conns` WebSockets per node: the thread
// model needs a worker thread per WebSocket, the event loop no per-IP limit
// (every client comes from 127.0.0.0/8).
function turbochatEnv(stack, conns) {
    const env = { TURBOCHAT_MAX_CONNECTIONS_PER_IP: '0' };
    if (stack.threadPerConn) env.TURBOCHAT_THREADS = String(Math.min(4096, Math.max(64, conns + 64)));
    return env;
}

async function startNode(stack, { tls, valkey, conns, label }) {
    if (stack.kind === 'sio') return startReference({ tls, valkey, label });
    return startTurbochat({ bin: stack.bin, tls, valkey, label: `${stack.key}-${label}`, optionalEnv: turbochatEnv(stack, conns) });
}

// ------------------------------------------------------------------ clients
// A fresh pool of generator processes per workload; for the idle workloads
// they run at nice 10, so that the /healthz probes (sent from this process)
// measure the server rather than CPU taken by the generator.
let gen = null;
let ourCpuUs = 0; // CPU of the processes this run started, for the current workload
async function withGenerator(niceness, fn) {
    gen = new Generator(CFG.workers);
    await gen.start();
    if (niceness) for (const pid of gen.pids()) os.setPriority(pid, niceness);
    try {
        return await fn();
    } finally {
        ourCpuUs += gen.cpuUs();
        await gen.stop();
        gen = null;
    }
}
const srcIp = (idx) => `127.0.0.${1 + (idx % CFG.sourceIps)}`;
const workerOf = (idx) => Math.floor(idx / 2) % CFG.workers; // idx and idx^1 share a worker

function specsByWorker(list) {
    const by = Array.from({ length: CFG.workers }, () => []);
    for (const c of list) by[workerOf(c.idx)].push(c);
    return by;
}

async function openClients(stack, list, { concurrency = 100, timeoutMs = 30000, ca } = {}) {
    const by = specsByWorker(list);
    const proto = stack.kind === 'sio' ? 'sio' : 'tc';
    const res = await gen.all(
        (i) => ({ cmd: 'open', proto, clients: by[i], concurrency, timeoutMs, ca: ca ? ca.toString() : undefined }),
        timeoutMs + 600000,
    );
    const out = { ok: 0, failed: 0, errors: {}, doneAt: [] };
    for (const r of res) {
        out.ok += r.ok;
        out.failed += r.failed;
        for (const [k, v] of Object.entries(r.errors)) out.errors[k] = (out.errors[k] || 0) + v;
        out.doneAt.push(...r.doneAt);
    }
    return out;
}

const errSummary = (errors) =>
    Object.entries(errors)
        .sort((a, b) => b[1] - a[1])
        .slice(0, 3)
        .map(([k, v]) => `${v}x ${k}`)
        .join('; ');

function clientSpec(stack, node, idx, room) {
    return { idx, url: node.wsUrl, room, name: `u${idx}`, localAddress: srcIp(idx) };
}

// Close every client and stop the processes; a process that had exited by
// itself (a crash) fails the workload, its log kept under bench/.cache/.
async function stopAll(procs) {
    procs = procs.filter(Boolean);
    ourCpuUs += sumCpuUs(procs.map((p) => p.pid).filter((pid) => !Number.isNaN(cpuUs(pid))));
    const crashed = procs.filter((p) => p.crashed());
    await gen.closeAll().catch(() => {});
    await Promise.allSettled(procs.map((p) => p.stop()));
    if (crashed.length) {
        const msgs = crashed.map((p) => {
            const keep = path.join(BENCH_DIR, '.cache', `crash-${p.kind}-${p.pid}.log`);
            try {
                fs.mkdirSync(path.dirname(keep), { recursive: true });
                fs.copyFileSync(p.logFile, keep);
            } catch {
                /* log gone */
            }
            log(`${p.kind} pid ${p.pid} exited by itself ${JSON.stringify(p.exitInfo)}; log in ${keep}:\n${p.logTail(20)}`);
            return `${p.kind} exited by itself (${p.exitInfo.signal || `code ${p.exitInfo.code}`})`;
        });
        throw new Error(msgs.join('; '));
    }
}

// ------------------------------------------------------------------ idle
async function runIdle(stack, tlsOn) {
    const tag = tlsOn ? 'idle wss' : 'idle ws';
    let n = CFG.idle;
    if (stack.threadPerConn && n > CFG.baselineMaxIdle) {
        n = CFG.baselineMaxIdle;
        note(`${stack.title}: one thread per WebSocket (TURBOCHAT_THREADS, at most 4096), so its idle runs stop at ${fmt(n)} connections`);
    }
    const checkpoints = [...new Set([1000, 5000, 10000, n].filter((c) => c <= n))].sort((a, b) => a - b);
    let tls = null;
    if (tlsOn) tls = await selfSignedCert(await tmpDir('cert'));
    const server = await startNode(stack, { tls, conns: n, label: 'idle' });
    const procs = [server];
    try {
        await settle([server.pid], { maxMs: 3000 });
        const rss0 = rssKiB(server.pid);
        const sampler = healthzSampler(`${server.url}/healthz`, { ca: tls && tls.ca, perSecond: CFG.healthzRate });
        sampler.setStage('connecting');
        let opened = 0;
        let openMs = 0;
        let openCpuUs = 0;
        let genCpuUs = 0;
        const perConn = {};
        for (const cp of checkpoints) {
            const list = [];
            for (let i = opened; i < cp; i++) list.push(clientSpec(stack, server, i, `idle-${Math.floor(i / CFG.idleRoomSize)}`));
            const t0 = performance.now();
            const c0 = cpuUs(server.pid);
            const g0 = gen.cpuUs();
            const r = await openClients(stack, list, { concurrency: CFG.idleConcurrency, ca: tls && tls.ca });
            openMs += performance.now() - t0;
            openCpuUs += cpuUs(server.pid) - c0;
            genCpuUs += gen.cpuUs() - g0;
            opened = cp;
            if (r.failed) throw new Error(`${r.failed} of ${list.length} clients failed to open (${errSummary(r.errors)})`);
            sampler.setStage('settling');
            await settle([server.pid], { maxMs: 5000 });
            const rss = rssKiB(server.pid);
            perConn[cp] = (rss - rss0) / cp;
            put(`${tag}: RSS per connection @${fmt(cp)}`, stack.key, `${fmt(perConn[cp], 1)} KiB`);
            log(`${stack.key} ${tag}: ${fmt(cp)} open, RSS ${fmt(rss / 1024, 1)} MiB, ${fmt(perConn[cp], 1)} KiB/conn`);
            sampler.setStage('connecting');
        }
        sampler.setStage('idle');
        await delay(CFG.idleHoldS * 1000);
        const samples = await sampler.stop();
        const counts = await gen.all(() => ({ cmd: 'count' }));
        const stillOpen = counts.reduce((a, c) => a + c.open, 0);
        const stage = (s) => samples.filter((x) => x.stage === s);
        const conn = stage('connecting');
        const idle = stage('idle');
        const failures = samples.filter((x) => !x.ok).length;
        for (const cp of [1000, 5000, 10000, CFG.idle]) {
            if (cp > CFG.idle || perConn[cp] !== undefined) continue;
            put(`${tag}: RSS per connection @${fmt(cp)}`, stack.key, `n/a (holds ${fmt(n)})`);
        }
        put(`${tag}: time to open + hello + join all`, stack.key,
            `${fmt(openMs / 1000, 1)} s for ${fmt(n)} (${fmt(n / (openMs / 1000))}/s)`);
        put(`${tag}: server CPU per connection (open + hello + join)`, stack.key, `${fmt(openCpuUs / n)} µs`);
        log(`${stack.key} ${tag}: opening took ${fmt(openMs / 1000, 1)} s, server ${fmt(openCpuUs / 1000 / openMs, 2)} cores, generator ${fmt(genCpuUs / 1000 / openMs, 2)} cores`);
        put(`${tag}: /healthz p99 connecting / idle`, stack.key,
            `${fmtMs(percentile(conn.map((x) => x.ms), 99))} / ${fmtMs(percentile(idle.map((x) => x.ms), 99))} ms` +
                (failures ? ` (${failures} failed)` : ''));
        if (stillOpen !== n) put(`${tag}: connections dropped while idle`, stack.key, `${n - stillOpen}`);
        log(`${stack.key} ${tag}: healthz p99 ${fmtMs(percentile(conn.map((x) => x.ms), 99))} / ${fmtMs(percentile(idle.map((x) => x.ms), 99))} ms over ${samples.length} requests, ${failures} failed; ${stillOpen}/${n} still open`);
    } finally {
        await stopAll(procs);
    }
}

// ------------------------------------------------------------------ storm
async function runStorm(stack) {
    let n = CFG.storm;
    if (stack.threadPerConn && n > CFG.baselineMaxStorm) {
        n = CFG.baselineMaxStorm;
        note(`${stack.title}: its storm has ${fmt(n)} clients (one thread per WebSocket, at most 4096)`);
    }
    const server = await startNode(stack, { conns: n, label: 'storm' });
    try {
        await settle([server.pid], { maxMs: 3000 });
        const list = [];
        for (let i = 0; i < n; i++) list.push(clientSpec(stack, server, i, `storm-${Math.floor(i / 20)}`));
        const cpu0 = cpuUs(server.pid);
        const t0 = nowUs();
        const r = await openClients(stack, list, { concurrency: 1e9, timeoutMs: CFG.stormTimeoutS * 1000 });
        const cpu1 = cpuUs(server.pid);
        const done = r.doneAt.map((t) => (t - t0) / 1e6).sort((a, b) => a - b);
        const last = done.length ? done[done.length - 1] : NaN;
        const inTarget = done.filter((t) => t <= CFG.stormTargetS).length;
        put(`storm: ${fmt(CFG.storm)} clients open + hello + join at once: time to the last joined`, stack.key,
            `${fmt(last, 2)} s (p50 ${fmt(percentile(done, 50), 2)} s)${n !== CFG.storm ? `, ${fmt(n)} clients` : ''}`);
        put(`storm: joined / joined within ${CFG.stormTargetS} s`, stack.key, `${fmt(r.ok)} / ${fmt(inTarget)} of ${fmt(n)}`);
        put('storm: server CPU per connection', stack.key, `${fmt((cpu1 - cpu0) / Math.max(1, r.ok))} µs`);
        log(`${stack.key} storm: ${r.ok}/${n} joined, last at ${fmt(last, 2)} s, ${inTarget} within ${CFG.stormTargetS} s, p50 ${fmt(percentile(done, 50), 2)} s` +
            (r.failed ? `; failures: ${errSummary(r.errors)}` : ''));
    } finally {
        await stopAll([server]);
    }
}

// ------------------------------------------------------------------ fan-out
let phaseSeq = 0;

// One send/receive phase; returns the figures.
async function runPhase(ctx, mode) {
    const { senders, members, serverPids } = ctx;
    const id = ++phaseSeq;
    const rateEach = ctx.rate / senders.length;
    const bySenderWorker = Array.from({ length: CFG.workers }, () => []);
    senders.forEach((s, k) =>
        bySenderWorker[workerOf(s.idx)].push({
            idx: s.idx,
            witness: s.witness,
            rate: rateEach,
            offset: k / senders.length,
            window: ctx.window,
        }),
    );
    const cpu0 = sumCpuUs(serverPids);
    const g0 = gen.cpuUs();
    const startUs = nowUs() + 200000;
    const sendRes = await gen.all(
        (i) => ({ cmd: 'phase', phase: id, mode, senders: bySenderWorker[i], durationMs: CFG.durationS * 1000, startUs }),
        CFG.durationS * 1000 + 60000,
    );
    // expected deliveries: every message reaches every member of its room
    let expected = 0;
    let sentTotal = 0;
    for (const r of sendRes) {
        sentTotal += r.sentTotal;
        for (const [room, k] of Object.entries(r.sent)) expected += k * members.get(room);
    }
    // drain: until everything arrived, or 3 s without progress (30 s at most)
    let received = 0;
    let lastChange = Date.now();
    let cpu1 = sumCpuUs(serverPids);
    let g1 = gen.cpuUs();
    const drainEnd = Date.now() + 30000;
    for (;;) {
        const st = await gen.all(() => ({ cmd: 'stats' }));
        const now = st.reduce((a, s) => a + (s ? s.received : 0), 0);
        if (now !== received) {
            received = now;
            lastChange = Date.now();
            cpu1 = sumCpuUs(serverPids);
            g1 = gen.cpuUs();
        }
        if (received >= expected || Date.now() - lastChange > 3000 || Date.now() > drainEnd) break;
        await delay(50);
    }
    const parts = await gen.all(() => ({ cmd: 'endPhase' }));
    const hist = mergeHist(parts);
    const lastRecv = Math.max(...parts.map((p) => p.lastRecvUs));
    const firstSend = Math.min(...parts.map((p) => p.firstSendUs || Infinity));
    const lastSend = Math.max(...parts.map((p) => p.lastSendUs));
    const seconds = (lastRecv - firstSend) / 1e6;
    const closes = {};
    const errors = {};
    let strays = 0;
    for (const p of parts) {
        strays += p.strays;
        for (const [k, v] of Object.entries(p.closes)) closes[k] = (closes[k] || 0) + v;
        for (const [k, v] of Object.entries(p.errors)) errors[k] = (errors[k] || 0) + v;
    }
    const r = {
        mode,
        sent: sentTotal,
        msgsPerS: sentTotal / ((lastSend - firstSend) / 1e6),
        expected,
        received,
        lost: expected - received,
        deliveriesPerS: received / seconds,
        p50: hist.pct(50),
        p99: hist.pct(99),
        cpuPerDelivery: (cpu1 - cpu0) / Math.max(1, received),
        serverCores: (cpu1 - cpu0) / 1e6 / seconds,
        genCores: (g1 - g0) / 1e6 / seconds,
        seconds,
        closes,
        errors,
        strays,
    };
    log(`${ctx.stack.key} ${ctx.tag} ${mode}: sent ${fmt(sentTotal)} msgs (${fmt(r.msgsPerS)}/s), ` +
        `${fmt(received)}/${fmt(expected)} deliveries in ${fmt(seconds, 2)} s = ${fmt(r.deliveriesPerS)}/s, ` +
        `p50 ${fmtMs(r.p50)} p99 ${fmtMs(r.p99)} ms, lost ${r.lost}, ${fmt(r.cpuPerDelivery, 2)} µs CPU/delivery, ` +
        `servers ${fmt(r.serverCores, 2)} cores, generator ${fmt(r.genCores, 2)} cores` +
        (Object.keys(closes).length ? `, closes ${JSON.stringify(closes)}` : '') +
        (Object.keys(errors).length ? `, errors ${JSON.stringify(errors)}` : '') + (strays ? `, strays ${strays}` : ''));
    return r;
}

// Start valkey-server and 2 nodes, open the clients of a fan-out (one room
// of nClients, or rooms of CFG.roomSize) alternating between the nodes, and
// choose the senders, each with a witness on the other node.
async function startFanout(stack, oneRoom, nClients, procs) {
    const nRooms = oneRoom ? 1 : Math.ceil(nClients / CFG.roomSize);
    const tag = oneRoom ? `fan-out 1 room x ${fmt(nClients)}` : `fan-out ${fmt(nRooms)} rooms x ${CFG.roomSize}`;
    const roomOf = (i) => (oneRoom ? 'fan' : `fan-${Math.floor(i / CFG.roomSize)}`);
    const valkey = await startValkey();
    procs.push(valkey);
    const nodes = [];
    for (let k = 0; k < 2; k++) {
        const node = await startNode(stack, { valkey, conns: Math.ceil(nClients / 2), label: `fan${k}` });
        nodes.push(node);
        procs.push(node);
    }
    const serverPids = procs.map((p) => p.pid);
    const list = [];
    const members = new Map();
    for (let i = 0; i < nClients; i++) {
        const room = roomOf(i);
        list.push(clientSpec(stack, nodes[i % 2], i, room));
        members.set(room, (members.get(room) || 0) + 1);
    }
    // senders: even indices (node 0 or 1 by idx parity is even -> node 0;
    // alternate by taking pairs), each with witness idx+1 on the other node
    const senders = [];
    if (oneRoom) {
        const step = Math.max(2, 2 * Math.floor(nClients / (2 * CFG.roomSenders)));
        for (let k = 0; k < CFG.roomSenders; k++) {
            const i = (k * step) % (nClients - 1);
            const s = i % 2 === 0 ? i : i - 1;
            // alternate the sending node: odd k sends from idx+1 (node 1), witness idx (node 0)
            senders.push(k % 2 === 0 ? { idx: s, witness: s + 1 } : { idx: s + 1, witness: s });
        }
    } else {
        for (let r = 0; r < nRooms; r++) {
            const i = r * CFG.roomSize;
            if (i + 1 >= nClients) break;
            senders.push(r % 2 === 0 ? { idx: i, witness: i + 1 } : { idx: i + 1, witness: i });
        }
    }
    const t0 = performance.now();
    const r = await openClients(stack, list, { concurrency: 100 });
    if (r.failed) throw new Error(`${r.failed} of ${nClients} clients failed to open (${errSummary(r.errors)})`);
    log(`${stack.key} ${tag}: ${fmt(nClients)} clients joined in ${fmt((performance.now() - t0) / 1000, 1)} s on 2 nodes`);
    await settle(serverPids, { maxMs: 15000 });
    return { stack, tag, nodes, senders, members, serverPids, valkey };
}

async function runFanout(stack, shape) {
    const oneRoom = shape === 'room';
    const nClients = oneRoom ? CFG.roomClients : CFG.roomsClients;
    const procs = [];
    try {
        const ctx = await startFanout(stack, oneRoom, nClients, procs);
        const { tag, serverPids } = ctx;
        const rate = oneRoom ? CFG.roomRate : CFG.roomsRate;
        const paced = await runPhase({ ...ctx, rate, window: 0 }, 'rate');
        await settle(serverPids, { maxMs: 5000 });
        const flat = await runPhase({ ...ctx, rate: 0, window: oneRoom ? CFG.roomWindow : CFG.roomsWindow }, 'flat');
        const cells = (label, ph) => {
            put(`${tag}, ${label}: deliveries/s (msgs/s)`, stack.key, `${fmt(ph.deliveriesPerS)} (${fmt(ph.msgsPerS)})`);
            put(`${tag}, ${label}: latency p50 / p99`, stack.key, `${fmtMs(ph.p50)} / ${fmtMs(ph.p99)} ms`);
            put(`${tag}, ${label}: lost deliveries`, stack.key,
                `${fmt(ph.lost)}${Object.keys(ph.closes).length ? ` (closed: ${JSON.stringify(ph.closes)})` : ''}`);
            put(`${tag}, ${label}: server CPU per delivery (nodes + valkey)`, stack.key, `${fmt(ph.cpuPerDelivery, 2)} µs`);
        };
        cells(`${fmt(rate)} msg/s`, paced);
        cells('flat out', flat);
        put(`${tag}: generator CPU, paced / flat out`, stack.key, `${fmt(paced.genCores, 2)} / ${fmt(flat.genCores, 2)} cores`);
    } finally {
        await stopAll(procs);
    }
}

// ------------------------------------------------------------------ mixed
// Issue 8: the rooms of fanout-rooms, flat out, once with sends only and once
// with the mix of MIX, the same clients, senders, witnesses and window.
const MIX = { send: 0.7, react: 0.2, edit: 0.05, delete: 0.05 };
const SEND_ONLY = { send: 1, react: 0, edit: 0, delete: 0 };
const sideTables = []; // {title, head, rows}

async function runOpsPhase(ctx, label, mix) {
    const { senders, members, serverPids, nodes, valkey } = ctx;
    const id = ++phaseSeq;
    const by = Array.from({ length: CFG.workers }, () => []);
    for (const s of senders) by[workerOf(s.idx)].push({ idx: s.idx, witness: s.witness, window: CFG.mixedWindow });
    const pids = [...nodes.map((n) => n.pid), valkey.pid];
    const snap = () => ({ each: pids.map(cpuUs), gen: gen.cpuUs(), busy: machineBusyUs(), self: process.cpuUsage() });
    const s0 = snap();
    const startUs = nowUs() + 200000;
    await gen.all(
        (i) => ({ cmd: 'opsPhase', phase: id, mix, senders: by[i], durationMs: CFG.durationS * 1000, startUs }),
        CFG.durationS * 1000 + 60000,
    );
    // drain: until every operation completed and every delivery arrived, or
    // 3 s without progress (30 s at most)
    const expectedOf = (st) => {
        let e = 0;
        for (const s of st) {
            for (const [room, k] of Object.entries(s.sent)) e += (k - (s.failed[room] || 0)) * members.get(room);
        }
        return e;
    };
    let progress = -1;
    let lastChange = Date.now();
    let s1 = snap();
    const drainEnd = Date.now() + 30000;
    for (;;) {
        const st = await gen.all(() => ({ cmd: 'stats' }));
        const received = st.reduce((a, s) => a + s.received, 0);
        const inflight = st.reduce((a, s) => a + s.inflight, 0);
        const now = received + st.reduce((a, s) => a + s.acked, 0);
        if (now !== progress) {
            progress = now;
            lastChange = Date.now();
            s1 = snap();
        }
        if ((received >= expectedOf(st) && inflight === 0) || Date.now() - lastChange > 3000 || Date.now() > drainEnd) break;
        await delay(50);
    }
    const parts = await gen.all(() => ({ cmd: 'endPhase' }));
    const sum = (f) => parts.reduce((a, p) => a + f(p), 0);
    const merge = (f) => {
        const m = {};
        for (const p of parts) for (const [k, v] of Object.entries(f(p))) m[k] = (m[k] || 0) + v;
        return m;
    };
    const firstSend = Math.min(...parts.map((p) => p.firstSendUs || Infinity));
    const lastRecv = Math.max(...parts.map((p) => p.lastRecvUs));
    const lastAck = Math.max(...parts.map((p) => p.lastAckUs));
    const selfD = process.cpuUsage(s0.self);
    const each = pids.map((_, k) => s1.each[k] - s0.each[k]);
    const cpu = each.reduce((a, b) => a + b, 0);
    const wallUs = lastRecv - firstSend;
    const r = {
        label,
        mix,
        sent: sum((p) => p.sentTotal),
        kinds: merge((p) => p.kinds),
        acked: sum((p) => p.acked),
        stuck: sum((p) => p.inflight),
        failedKinds: merge((p) => p.failedKinds),
        errors: merge((p) => p.errors),
        closes: merge((p) => p.closes),
        ackUs: lastAck - firstSend,
        received: sum((p) => p.received),
        expected: expectedOf(parts),
        wallUs,
        hist: parts.map((p) => ({ hist: p.hist, histUs: p.histUs })),
        histSend: parts.map((p) => ({ hist: p.histSend, histUs: p.histUs })),
        histChange: parts.map((p) => ({ hist: p.histChange, histUs: p.histUs })),
        cpu,
        each,
        genCpu: s1.gen - s0.gen,
        // busy time of the machine not spent by this run's processes (noise)
        otherCpu: Math.max(0, s1.busy - s0.busy - cpu - (s1.gen - s0.gen) - selfD.user - selfD.system),
    };
    const v = summarize([r]);
    log(`${ctx.stack.key} ${ctx.tag} ${label}: ${fmt(r.acked)}/${fmt(r.sent)} operations acked ${JSON.stringify(r.kinds)}, ` +
        `${fmt(v.opsPerS)} ops/s; ${fmt(r.received)}/${fmt(r.expected)} deliveries in ${fmt(wallUs / 1e6, 2)} s = ${fmt(v.deliveriesPerS)}/s; ` +
        `latency p50 ${fmtMs(v.p50)} p99 ${fmtMs(v.p99)} ms (sends ${fmtMs(v.sendP50)}/${fmtMs(v.sendP99)}, changes ${fmtMs(v.changeP50)}/${fmtMs(v.changeP99)}); ` +
        `${fmt(v.cpuPerDelivery, 2)} µs CPU/delivery, ${fmt(v.cpuPerOp, 1)} µs CPU/op; servers ${fmt(v.serverCores, 2)} cores ` +
        `(node0 ${fmt(v.coresEach[0], 2)}, node1 ${fmt(v.coresEach[1], 2)}, valkey ${fmt(v.coresEach[2], 2)}), generator ${fmt(v.genCores, 2)} cores, ` +
        `other processes ${fmt(v.otherCores, 2)} cores` +
        (r.stuck ? `, ${r.stuck} operations never completed` : '') +
        (Object.keys(r.errors).length ? `, errors ${JSON.stringify(r.errors)} (of ${JSON.stringify(r.failedKinds)})` : '') +
        (Object.keys(r.closes).length ? `, closes ${JSON.stringify(r.closes)}` : ''));
    return r;
}

// The figures of one or more runs of the same kind taken together: rates
// over the summed times, percentiles of the merged histograms.
function summarize(runs) {
    const sum = (f) => runs.reduce((a, r) => a + f(r), 0);
    const addMaps = (f) => {
        const m = {};
        for (const r of runs) for (const [k, v] of Object.entries(f(r))) m[k] = (m[k] || 0) + v;
        return m;
    };
    const wallS = sum((r) => r.wallUs) / 1e6;
    const acked = sum((r) => r.acked);
    const received = sum((r) => r.received);
    const cpu = sum((r) => r.cpu);
    const hist = mergeHist(runs.flatMap((r) => r.hist));
    const histSend = mergeHist(runs.flatMap((r) => r.histSend));
    const histChange = mergeHist(runs.flatMap((r) => r.histChange));
    return {
        mix: runs[0].mix,
        sent: sum((r) => r.sent),
        kinds: addMaps((r) => r.kinds),
        acked,
        stuck: sum((r) => r.stuck),
        errors: addMaps((r) => r.errors),
        closes: addMaps((r) => r.closes),
        lost: sum((r) => r.expected - r.received),
        opsPerS: acked / (sum((r) => r.ackUs) / 1e6),
        opsPerSEach: runs.map((r) => r.acked / (r.ackUs / 1e6)),
        deliveriesPerS: received / wallS,
        p50: hist.pct(50),
        p99: hist.pct(99),
        sendP50: histSend.pct(50),
        sendP99: histSend.pct(99),
        changeP50: histChange.pct(50),
        changeP99: histChange.pct(99),
        cpuPerDelivery: cpu / Math.max(1, received),
        cpuPerOp: cpu / Math.max(1, acked),
        serverCores: cpu / 1e6 / wallS,
        coresEach: runs[0].each.map((_, k) => sum((r) => r.each[k]) / 1e6 / wallS),
        genCores: sum((r) => r.genCpu) / 1e6 / wallS,
        otherCores: sum((r) => r.otherCpu) / 1e6 / wallS,
    };
}

async function runMixed(stack) {
    if (stack.kind !== 'turbochat' || !stack.probe.protocol2) {
        put('mixed: not applicable', stack.key, stack.kind === 'sio' ? 'no edit/delete/react' : 'binary without PROTOCOL 2');
        return;
    }
    // rounds alternate the order (a b, b a, a b, ...) so that a drift (other
    // processes, the logs growing on a kept cluster) does not favour one side
    let order = [];
    for (let k = 0; k < CFG.mixedRounds; k++) order.push(...(k % 2 ? ['mixed', 'send-only'] : ['send-only', 'mixed']));
    if (A['mixed-order']) order = [...A['mixed-order']].map((ch) => (ch === 'b' ? 'mixed' : 'send-only'));
    if (!order.includes('mixed') || !order.includes('send-only')) throw new Error('--mixed-order needs an a and a b');
    // Each run on a fresh cluster (valkey + 2 nodes, empty logs; the same
    // clients reopened), unless --mixed-keep-cluster: then the rooms' logs
    // grow from run to run.
    const keep = CFG.mixedKeepCluster;
    let procs = [];
    let ctx = null;
    const runs = [];
    try {
        for (const label of order) {
            if (ctx && !keep) {
                await stopAll(procs);
                procs = [];
                ctx = null;
            }
            if (!ctx) ctx = await startFanout(stack, false, CFG.roomsClients, procs);
            else await settle(ctx.serverPids, { maxMs: 5000 });
            runs.push(await runOpsPhase(ctx, label, label === 'mixed' ? MIX : SEND_ONLY));
        }
    } finally {
        await stopAll(procs);
    }
    const a = summarize(runs.filter((r) => r.label === 'send-only'));
    const b = summarize(runs.filter((r) => r.label === 'mixed'));
    const pct = (m) => Object.entries(m).filter(([, v]) => v > 0).map(([k, v]) => `${Math.round(v * 100)} % ${k}`).join(', ');
    const kinds = (r) => Object.entries(r.kinds).sort((x, y) => y[1] - x[1]).map(([k, v]) => `${k} ${fmt((100 * v) / r.sent, 1)} %`).join(', ');
    const errs = (r) => {
        const e = Object.entries(r.errors);
        return (e.length ? e.map(([k, v]) => `${fmt(v)}x ${k}`).join(', ') : 'none') + (r.stuck ? `; ${fmt(r.stuck)} never completed` : '');
    };
    const ratio = (f) => (x, y) => fmt(f(y) / f(x), 2);
    const rows = [
        ['operations: mix asked', (r) => pct(r.mix)],
        ['operations: mix sent', kinds],
        ['operations acked / s', (r) => fmt(r.opsPerS), ratio((r) => r.opsPerS)],
        ...(CFG.mixedRounds > 1 ? [['  each run', (r) => r.opsPerSEach.map((x) => fmt(x)).join(', ')]] : []),
        ['deliveries / s (message + update frames)', (r) => fmt(r.deliveriesPerS), ratio((r) => r.deliveriesPerS)],
        ["latency p50 / p99 (sent -> other node's member)", (r) => `${fmtMs(r.p50)} / ${fmtMs(r.p99)} ms`, ratio((r) => r.p50)],
        ['  sends; changes', (r) => `${fmtMs(r.sendP50)} / ${fmtMs(r.sendP99)} ms` + (r.kinds.send === r.sent ? '' : `; ${fmtMs(r.changeP50)} / ${fmtMs(r.changeP99)} ms`)],
        ['server CPU per delivery (nodes + valkey)', (r) => `${fmt(r.cpuPerDelivery, 2)} µs`, ratio((r) => r.cpuPerDelivery)],
        ['server CPU per operation', (r) => `${fmt(r.cpuPerOp, 1)} µs`, ratio((r) => r.cpuPerOp)],
        ['server cores: node 0 + node 1 + valkey', (r) => r.coresEach.map((x) => fmt(x, 2)).join(' + ')],
        ['generator / other processes CPU', (r) => `${fmt(r.genCores, 2)} / ${fmt(r.otherCores, 2)} cores`],
        ['operations sent / acked', (r) => `${fmt(r.sent)} / ${fmt(r.acked)}`],
        ['lost deliveries', (r) => fmt(r.lost) + (Object.keys(r.closes).length ? ` (closed: ${JSON.stringify(r.closes)})` : '')],
        ['errors by code', errs],
    ].map(([name, f, rf]) => [name, f(a), f(b), rf ? rf(a, b) : '']);
    const ratioOps = b.opsPerS / a.opsPerS;
    rows.push(['mixed / send-only operations per second (target >= 0.80)', '', '', `${fmt(ratioOps, 2)} ${ratioOps >= 0.8 ? 'met' : 'NOT met'}`]);
    sideTables.push({
        title: `mixed workload (issue 8) on ${stack.title}: ${ctx.tag} on 2 nodes + valkey, ${ctx.senders.length} senders ` +
            `(one per room, its witness on the other node), each keeping ${CFG.mixedWindow} operations in flight until acked ` +
            `and received by the witness; runs of ${CFG.durationS} s in the order ${order.map((l) => (l === 'mixed' ? 'b' : 'a')).join(' ')}, ` +
            (keep ? 'all on one cluster (the logs grow from run to run)' : 'each on a fresh cluster (empty logs)'),
        head: ['', '(a) send-only', '(b) mixed', 'mixed / send-only'],
        rows,
    });
    put('mixed: operations acked/s, send-only -> mixed (ratio, target >= 0.80)', stack.key,
        `${fmt(a.opsPerS)} -> ${fmt(b.opsPerS)} (${fmt(ratioOps, 2)})`);
    put('mixed: errors, send-only / mixed', stack.key, `${errs(a)} / ${errs(b)}`);
}

// ------------------------------------------------------------------ table
function printTable() {
    const cols = stacks.map((s) => s.key);
    const head = ['workload', ...stacks.map((s) => s.title)];
    const body = [...rows.entries()].map(([label, cells]) => [label, ...cols.map((c) => cells[c] ?? '-')]);
    const widths = head.map((h, i) => Math.max(h.length, ...body.map((r) => r[i].length)));
    const line = (r) => `| ${r.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
    console.log('');
    console.log(line(head));
    console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
    for (const r of body) console.log(line(r));
    console.log('');
    for (const t of sideTables) {
        const w = t.head.map((h, i) => Math.max(h.length, ...t.rows.map((r) => r[i].length)));
        const ln = (r) => `| ${r.map((c, i) => c.padEnd(w[i])).join(' | ')} |`;
        console.log(t.title);
        console.log('');
        console.log(ln(t.head));
        console.log(`|${w.map((x) => '-'.repeat(x + 2)).join('|')}|`);
        for (const r of t.rows) console.log(ln(r));
        console.log('');
    }
    for (const n of notes) console.log(`- ${n}`);
    const out = A.json || path.join(BENCH_DIR, '.cache', 'last-run.json');
    try {
        fs.mkdirSync(path.dirname(out), { recursive: true });
        fs.writeFileSync(out, JSON.stringify({ date: new Date().toISOString(), config: CFG, stacks, rows: Object.fromEntries(rows), sideTables, notes }, null, 2));
        console.log(`- the same figures as JSON: ${path.relative(process.cwd(), out)}`);
    } catch {
        /* the table is printed */
    }
}

// ------------------------------------------------------------------ main
note(`the load generator (${CFG.workers} Node processes) shares the machine's ${os.cpus().length} cores with the servers and Valkey: every throughput figure is a floor, and latency includes the generator's own queueing`);
note('CPU per delivery: utime+stime from /proc/<pid>/stat of every server process and valkey-server, from the start of the phase to the last delivery, divided by the deliveries; RSS per connection: VmRSS delta from before the first connection, divided by the connections');
note('Socket.IO reference: Socket.IO 4 + @socket.io/redis-adapter (redis client) on the same valkey-server, websocket transport only; it does less per message than turbochat (no ids, storage, replay, dedup, presence or member lists)');
note(`fan-out: 2 nodes + 1 valkey-server; clients alternate between the nodes; paced = a fixed total message rate for ${CFG.durationS} s; flat out = each sender keeps a window of messages in flight until it and a room member on the other node received them (${CFG.roomWindow} per sender in one room, ${CFG.roomsWindow} in rooms of ${CFG.roomSize}), ${CFG.durationS} s; lost = deliveries expected (messages sent x room members) minus received`);

{
    let valkeyVersion = '?';
    try {
        valkeyVersion = /v=(\S+)/.exec(execFileSync(process.env.VALKEY_SERVER || 'valkey-server', ['--version'], { encoding: 'utf8' }))[1];
    } catch {
        /* reported when it fails to start */
    }
    note(`machine: ${os.cpus().length} cores (${os.cpus()[0].model.trim()}), ${fmt(os.totalmem() / 2 ** 30)} GiB, Linux ${os.release()}, Node ${process.version}, valkey-server ${valkeyVersion}; --quick: ${Q}`);
}
{
    // Node raises its own soft limit to the hard one; the servers get the
    // hard limit through `ulimit -n` in lib/procs.mjs.
    const hard = Number(execFileSync('/bin/sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).trim());
    if (Number.isFinite(hard) && hard < CFG.idle + 500)
        note(`the open-file hard limit is ${hard}: a server cannot hold ${fmt(CFG.idle)} WebSockets (raise it, or pass a smaller --idle)`);
}
log(`config: ${JSON.stringify(CFG)}`);
log(`stacks: ${stacks.map((s) => `${s.key}=${s.bin || s.kind}${s.threadPerConn ? ' (thread per connection)' : ''}`).join(', ')}`);
const RUN = {
    idle: (s) => withGenerator(10, () => runIdle(s, false)),
    'idle-tls': (s) => withGenerator(10, () => runIdle(s, true)),
    storm: (s) => withGenerator(0, () => runStorm(s)),
    'fanout-room': (s) => withGenerator(0, () => runFanout(s, 'room')),
    'fanout-rooms': (s) => withGenerator(0, () => runFanout(s, 'rooms')),
    mixed: (s) => withGenerator(0, () => runMixed(s)),
};
for (const w of WORKLOADS) {
    for (const stack of stacks) {
        if (stack.kind === 'missing') {
            note(`${stack.title}: not run: ${stack.why}`);
            continue;
        }
        log(`--- ${w} on ${stack.title}`);
        // CPU the rest of the machine used meanwhile: busy time of every
        // core minus the processes of this run (a noise indicator)
        const wall0 = performance.now();
        const busy0 = machineBusyUs();
        const self0 = process.cpuUsage();
        ourCpuUs = 0;
        try {
            await RUN[w](stack);
        } catch (err) {
            log(`${stack.key} ${w} failed: ${err.stack || err}`);
            put(`${w}: FAILED`, stack.key, String(err.message || err).split('\n')[0].slice(0, 100));
        }
        const selfD = process.cpuUsage(self0);
        const other = (machineBusyUs() - busy0 - ourCpuUs - selfD.user - selfD.system) / ((performance.now() - wall0) * 1000);
        put(`${w}: CPU of other processes meanwhile (noise indicator)`, stack.key, `${fmt(Math.max(0, other), 2)} cores`);
        if (other > 0.2) note(`other processes used ${fmt(other, 2)} cores on average during ${w} on ${stack.title}: its figures are noisier`);
        await delay(1000);
    }
}
clearTimeout(watchdog);
printTable();
process.exit(0);
