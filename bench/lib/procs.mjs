// Processes under test for bench/run.mjs: turbochat nodes, Socket.IO reference
// nodes and valkey-server, each in its own temporary directory on a free
// loopback port; /proc readings (CPU ticks, VmRSS); GET /healthz timing; a
// self-signed certificate. Every process started here is killed when this
// process exits, whatever the reason.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../../tests/lib/server.mjs';

export { freePort };

export const BENCH_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const REPO = path.resolve(BENCH_DIR, '..');
export const delay = (ms) => new Promise((r) => setTimeout(r, ms));

const running = new Set();
const tmpDirs = new Set();
export let keepTmp = !!process.env.BENCH_KEEP_TMP;

function killAll() {
    for (const p of running) {
        try {
            p.proc.kill('SIGKILL');
        } catch {
            /* gone */
        }
    }
    if (!keepTmp) for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true });
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.once(sig, () => {
        killAll();
        process.exit(128 + (os.constants.signals[sig] || 1));
    });
}

export async function tmpDir(prefix) {
    const d = await fsp.mkdtemp(path.join(os.tmpdir(), `turbochat-bench-${prefix}-`));
    tmpDirs.add(d);
    return d;
}

// ------------------------------------------------------------------ /proc

let clkTck = 100;
try {
    clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
} catch {
    /* 100 is the Linux default */
}

// utime + stime of a process (all its threads), in µs.
export function cpuUs(pid) {
    try {
        const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
        const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
        // after the comm: state is field 3, utime 14, stime 15 (1-based)
        return ((Number(f[11]) + Number(f[12])) * 1e6) / clkTck;
    } catch {
        return NaN;
    }
}

export function rssKiB(pid) {
    try {
        const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
        return m ? Number(m[1]) : NaN;
    } catch {
        return NaN;
    }
}

export const sumCpuUs = (pids) => pids.reduce((a, p) => a + cpuUs(p), 0);

// CPU time the whole machine spent busy (every core, every process), in µs.
export function machineBusyUs() {
    try {
        const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
        // user nice system idle iowait irq softirq steal
        // irq and softirq are left out: loopback traffic of our own processes lands there
        const busy = f[0] + f[1] + f[2] + (f[7] || 0);
        return (busy * 1e6) / clkTck;
    } catch {
        return NaN;
    }
}

// Wait until the processes use less than `idleFraction` of a core over
// 300 ms, or maxMs passed (presence broadcasts of a join storm, GC...).
export async function settle(pids, { idleFraction = 0.05, maxMs = 10000 } = {}) {
    const end = Date.now() + maxMs;
    let before = sumCpuUs(pids);
    while (Date.now() < end) {
        await delay(300);
        const now = sumCpuUs(pids);
        if (now - before < idleFraction * 300000) return;
        before = now;
    }
}

// ------------------------------------------------------------------ http

// One GET on a fresh connection; resolves {ms, status} (status 0: failed).
export function timedGet(url, { ca, timeoutMs = 5000 } = {}) {
    return new Promise((resolve) => {
        const t0 = performance.now();
        const mod = url.startsWith('https:') ? https : http;
        const req = mod.get(url, { agent: false, ca, timeout: timeoutMs }, (res) => {
            let body = '';
            res.setEncoding('utf8');
            res.on('data', (d) => (body += d));
            res.on('end', () => resolve({ ms: performance.now() - t0, status: res.statusCode, body }));
            res.on('error', () => resolve({ ms: performance.now() - t0, status: 0, body }));
        });
        req.on('timeout', () => req.destroy(new Error('timeout')));
        req.on('error', () => resolve({ ms: performance.now() - t0, status: 0, body: '' }));
    });
}

// GET /healthz `perSecond` times a second, each on a new connection, until
// stop(); samples carry the stage label current when they were sent.
export function healthzSampler(url, { ca, perSecond = 5 } = {}) {
    const samples = [];
    let stage = 'start';
    let stopped = false;
    const pending = new Set();
    const timer = setInterval(() => {
        if (stopped) return;
        const st = stage;
        const p = timedGet(url, { ca, timeoutMs: 5000 }).then((r) => {
            samples.push({ stage: st, ms: r.ms, ok: r.status === 200 });
            pending.delete(p);
        });
        pending.add(p);
    }, 1000 / perSecond);
    return {
        setStage(s) {
            stage = s;
        },
        async stop() {
            stopped = true;
            clearInterval(timer);
            await Promise.all([...pending]);
            return samples;
        },
    };
}

// ------------------------------------------------------------------ TLS

export async function selfSignedCert(dir) {
    const cert = path.join(dir, 'cert.pem');
    const key = path.join(dir, 'key.pem');
    execFileSync(
        'openssl',
        ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
            '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
            '-keyout', key, '-out', cert],
        { stdio: 'ignore' },
    );
    return { cert, key, ca: fs.readFileSync(cert) };
}

// ------------------------------------------------------------------ processes

// Raise the open-file limit of the child to the hard limit (the machine
// allows 20,000) before exec: a node holding 19,000 sockets needs it.
function spawnWithFdLimit(bin, args, opts) {
    return spawn('/bin/sh', ['-c', 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$0" "$@"', bin, ...args], opts);
}

function track(kind, proc, logFile, extra) {
    const p = { kind, proc, pid: proc.pid, logFile, exitInfo: null, ...extra };
    p.exited = new Promise((resolve) => {
        proc.once('exit', (code, signal) => {
            p.exitInfo = { code, signal };
            running.delete(p);
            resolve(p.exitInfo);
        });
    });
    p.logTail = (n = 30) => {
        try {
            return fs.readFileSync(logFile, 'utf8').split('\n').slice(-n).join('\n');
        } catch {
            return '';
        }
    };
    // exited without being asked to: a crash (its log is kept)
    p.crashed = () => !!p.exitInfo && !p.stopping;
    p.stop = async (timeoutMs = 10000) => {
        if (p.exitInfo) return p.exitInfo;
        p.stopping = true;
        proc.kill('SIGTERM');
        const r = await Promise.race([p.exited, delay(timeoutMs).then(() => null)]);
        if (r) return r;
        proc.kill('SIGKILL');
        return p.exited;
    };
    running.add(p);
    return p;
}

function openLog(file) {
    return fs.openSync(file, 'a');
}

// Spawn bin (with the raised fd limit) in dir with spawnEnv, stdout and
// stderr appended to dir/logName, and track it as kind with extra fields.
function spawnLogged(kind, { dir, logName, bin, args, env: spawnEnv, extra }) {
    const logFile = path.join(dir, logName);
    const fd = openLog(logFile);
    const proc = spawnWithFdLimit(bin, args, { cwd: dir, env: spawnEnv, stdio: ['ignore', fd, fd] });
    fs.closeSync(fd);
    return track(kind, proc, logFile, extra);
}

// spawnLogged() a node that serves HTTP(S) on 127.0.0.1:port, and wait until
// its GET /healthz reports nodeId (and, with readyz, GET /readyz answers 200).
// tls: {cert,key,ca} | null; extra: fields after port, dir, nodeId, url,
// wsUrl and ca.
async function startHttpNode(kind, { dir, port, nodeId, tls, wsUrl, readyz, extra, ...spawnOpts }) {
    const p = spawnLogged(kind, {
        ...spawnOpts,
        dir,
        extra: {
            port,
            dir,
            nodeId,
            url: `${tls ? 'https' : 'http'}://127.0.0.1:${port}`,
            wsUrl,
            ca: tls ? tls.ca : undefined,
            ...extra,
        },
    });
    await waitHealthy(p, p.url, { ca: p.ca, node: nodeId, readyz });
    return p;
}

export async function startValkey() {
    const dir = await tmpDir('valkey');
    const port = await freePort();
    const v = spawnLogged('valkey', {
        dir,
        logName: 'valkey.log',
        bin: process.env.VALKEY_SERVER || 'valkey-server',
        args: ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no',
            '--protected-mode', 'no', '--daemonize', 'no', '--loglevel', 'warning'],
        env: { PATH: process.env.PATH },
        extra: { port, dir },
    });
    const deadline = Date.now() + 10000;
    for (;;) {
        if (v.exitInfo) throw new Error(`valkey-server exited: ${v.logTail()}`);
        if (await tcpPing(port)) return v;
        if (Date.now() > deadline) throw new Error(`valkey-server did not answer PING: ${v.logTail()}`);
        await delay(50);
    }
}

function tcpPing(port) {
    return new Promise((resolve) => {
        const s = net.connect({ host: '127.0.0.1', port }, () => s.write('PING\r\n'));
        s.setTimeout(1000, () => {
            s.destroy();
            resolve(false);
        });
        s.on('data', (d) => {
            s.destroy();
            resolve(d.toString().startsWith('+PONG'));
        });
        s.on('error', () => resolve(false));
    });
}

async function waitHealthy(p, url, { ca, node, readyz, timeoutMs = 20000 }) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
        if (p.exitInfo) throw new Error(`${p.kind} exited before it was healthy (${JSON.stringify(p.exitInfo)}):\n${p.logTail()}`);
        const r = await timedGet(`${url}/healthz`, { ca, timeoutMs: 1000 });
        let ok = r.status === 200;
        if (ok && node) {
            try {
                ok = JSON.parse(r.body).node === node;
            } catch {
                ok = false;
            }
        }
        if (ok && readyz) ok = (await timedGet(`${url}/readyz`, { ca, timeoutMs: 1000 })).status === 200;
        if (ok) return;
        if (Date.now() > deadline) {
            p.proc.kill('SIGKILL');
            throw new Error(`${p.kind} on ${url} not healthy within ${timeoutMs} ms:\n${p.logTail()}`);
        }
        await delay(50);
    }
}

// Which of the given optional TURBOCHAT_* variables a binary knows: it
// refuses unknown TURBOCHAT_* names in --check-config. Also reports whether
// the binary still has a per-connection thread model (threads without
// max_connections_per_ip), which caps its WebSockets at TURBOCHAT_THREADS.
const probed = new Map();
export function probeBinary(bin, optionalEnv) {
    const key = `${bin}\n${Object.keys(optionalEnv).join(',')}`;
    if (probed.has(key)) return probed.get(key);
    const env = { PATH: process.env.PATH, ...optionalEnv };
    const cwd = os.tmpdir();
    let out = '';
    const unknown = new Set();
    for (let i = 0; i < 5; i++) {
        try {
            out = execFileSync(bin, ['--check-config'], { env, cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
            break;
        } catch (err) {
            out = `${err.stdout || ''}${err.stderr || ''}`;
            const names = [...out.matchAll(/(TURBOCHAT_[A-Z0-9_]+)[^\n]*unknown/g)].map((m) => m[1]);
            if (!names.length) break; // some other complaint: leave it to the start
            for (const n of names) {
                unknown.add(n);
                delete env[n];
            }
        }
    }
    const has = (k) => new RegExp(`^${k}\\s*=`, 'm').test(out);
    const info = {
        unknown: [...unknown],
        known: Object.keys(optionalEnv).filter((k) => !unknown.has(k)),
        threadPerConnection: has('threads') && !has('max_connections_per_ip'),
        // PROTOCOL 2 (edit, delete, react: issue 8)
        protocol2: has('edit_window_s'),
    };
    probed.set(key, info);
    return info;
}

// A turbochat node. o: {bin, tls: {cert,key,ca} | null, valkey, env, label}
export async function startTurbochat(o) {
    const dir = await tmpDir('node');
    const port = await freePort();
    const nodeId = `bench-${o.label || 'node'}-${port}`;
    const listen = o.tls ? `127.0.0.1:${port}s` : `127.0.0.1:${port}`;
    // Every bench client comes from 127.0.0.1: no per-address write budget
    // (a binary that predates it is probed and left without).
    const optional = { TURBOCHAT_ADDRESS_RATE_LIMIT: '0', ...(o.optionalEnv || {}) };
    const info = probeBinary(o.bin, optional);
    const env = {
        PATH: process.env.PATH,
        HOME: process.env.HOME || dir,
        TURBOCHAT_LISTEN: listen,
        TURBOCHAT_DB: path.join(dir, 'turbochat.db'),
        TURBOCHAT_NODE_ID: nodeId,
        TURBOCHAT_LOG_LEVEL: 'warn',
        TURBOCHAT_RATE_LIMIT: '100000',
        TURBOCHAT_RATE_BURST: '100000',
        ...o.env,
    };
    for (const k of info.known) env[k] = optional[k];
    if (o.tls) {
        env.TURBOCHAT_TLS_CERT = o.tls.cert;
        env.TURBOCHAT_TLS_KEY = o.tls.key;
    }
    if (o.valkey) {
        env.REDIS_HOST = '127.0.0.1';
        env.REDIS_PORT = String(o.valkey.port);
        env.REDIS_TLS = '0';
    }
    return startHttpNode('turbochat', {
        dir,
        logName: 'turbochat.log',
        bin: o.bin,
        args: [],
        env,
        port,
        nodeId,
        tls: o.tls,
        wsUrl: `${o.tls ? 'wss' : 'ws'}://127.0.0.1:${port}/ws`,
        readyz: !!o.valkey,
        extra: { env, dropped: info.unknown },
    });
}

// A Socket.IO reference node. o: {tls, valkey, label}
export async function startReference(o) {
    const dir = await tmpDir('sio');
    const port = await freePort();
    const nodeId = `sio-${o.label || 'node'}-${port}`;
    const args = [path.join(BENCH_DIR, 'reference', 'server.mjs'), '--listen', `127.0.0.1:${port}`, '--node-id', nodeId];
    if (o.valkey) args.push('--redis', `127.0.0.1:${o.valkey.port}`);
    if (o.tls) args.push('--tls-cert', o.tls.cert, '--tls-key', o.tls.key);
    return startHttpNode('reference', {
        dir,
        logName: 'sio.log',
        bin: process.execPath,
        args,
        env: { PATH: process.env.PATH, HOME: process.env.HOME || dir, NODE_ENV: 'production' },
        port,
        nodeId,
        tls: o.tls,
        wsUrl: `${o.tls ? 'https' : 'http'}://127.0.0.1:${port}`,
        extra: { dropped: [] },
    });
}
