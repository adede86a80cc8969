// TurboChat benchmark suite: the WebSocket workloads of the move from
// CivetWeb's one thread per connection to epoll event loops, run against
//   baseline   turbochat built from --baseline-rev (default dc17e51, the
//              commit before the change), cached under bench/.cache/
//   new        build/turbochat (make build), or --new-bin
//   reference  Socket.IO 4 + @socket.io/redis-adapter (bench/reference)
// and printed as one table, workload | baseline | new | reference.
//
//   node bench/run.mjs [--quick] [--workloads idle,idle-tls,storm,fanout-room,fanout-rooms]
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

const ALL_WORKLOADS = ['idle', 'idle-tls', 'storm', 'fanout-room', 'fanout-rooms'];
const ALL_STACKS = ['baseline', 'new', 'reference'];

const { values: A } = parseArgs({
    options: {
        help: { type: 'boolean', short: 'h' },
        quick: { type: 'boolean', default: false },
        workloads: { type: 'string', default: ALL_WORKLOADS.join(',') },
        stacks: { type: 'string', default: ALL_STACKS.join(',') },
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
    roomSize: 10,
    durationS: num(A.duration, 10, 4),
    baselineMaxIdle: Number(A['baseline-max-idle']),
    baselineMaxStorm: Number(A['baseline-max-storm']),
    workers: Number(A.workers),
    sourceIps: Number(A['source-ips']),
};
const WORKLOADS = A.workloads.split(',').map((s) => s.trim()).filter(Boolean);
const STACKS = A.stacks.split(',').map((s) => s.trim()).filter(Boolean);
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

async function runFanout(stack, shape) {
    const oneRoom = shape === 'room';
    const nClients = oneRoom ? CFG.roomClients : CFG.roomsClients;
    const nRooms = oneRoom ? 1 : Math.ceil(nClients / CFG.roomSize);
    const tag = oneRoom ? `fan-out 1 room x ${fmt(nClients)}` : `fan-out ${fmt(nRooms)} rooms x ${CFG.roomSize}`;
    const roomOf = (i) => (oneRoom ? 'fan' : `fan-${Math.floor(i / CFG.roomSize)}`);
    const valkey = await startValkey();
    const procs = [valkey];
    try {
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
        const ctx = { stack, tag, senders, members, serverPids };
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
    for (const n of notes) console.log(`- ${n}`);
    const out = A.json || path.join(BENCH_DIR, '.cache', 'last-run.json');
    try {
        fs.mkdirSync(path.dirname(out), { recursive: true });
        fs.writeFileSync(out, JSON.stringify({ date: new Date().toISOString(), config: CFG, stacks, rows: Object.fromEntries(rows), notes }, null, 2));
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
