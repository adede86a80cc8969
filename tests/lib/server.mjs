// Start and stop the real turbochat binary for integration and browser tests.
// Each server runs in its own temporary directory (its cwd, so no
// turbochat.conf or .env of the repository is read) on a free port, with its
// stdout and stderr captured in a log file there. stop() fails on a sanitizer
// report or on a non-zero exit after SIGTERM; stopAll() stops whatever is left.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

// Readiness timeout; ASan builds start slower.
const START_TIMEOUT_MS = Number(process.env.TURBOCHAT_START_TIMEOUT_MS) || 20000;

// Environment that lifts the write budgets (per user, and per address: every
// test client comes from 127.0.0.1), for tests that send many messages but are
// not about rate limiting.
export const RELAXED_RATE_ENV = {
    TURBOCHAT_RATE_LIMIT: '10000',
    TURBOCHAT_RATE_BURST: '10000',
    TURBOCHAT_ADDRESS_RATE_LIMIT: '0',
};

const SANITIZER_RE =
    /ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer|WARNING: ThreadSanitizer|ERROR: ThreadSanitizer/;

const PASS_ENV = ['PATH', 'HOME', 'ASAN_OPTIONS', 'UBSAN_OPTIONS', 'LSAN_OPTIONS', 'TSAN_OPTIONS'];

const running = new Set(); // servers not yet stopped
const failedDirs = new Set(); // temp dirs kept for inspection
const createdDirs = new Set(); // temp dirs made by startServer
let seq = 0;
let hooksInstalled = false;

// Path of the binary under test: $TURBOCHAT_BIN (relative to the cwd, or to
// the repository) or <repo>/build/turbochat.
export function binaryPath() {
    const b = process.env.TURBOCHAT_BIN;
    if (!b) return path.join(REPO, 'build', 'turbochat');
    if (path.isAbsolute(b)) return b;
    const fromCwd = path.resolve(process.cwd(), b);
    return fs.existsSync(fromCwd) ? fromCwd : path.resolve(REPO, b);
}

// A port that was free on 127.0.0.1 a moment ago.
export function freePort() {
    return new Promise((resolve, reject) => {
        const srv = net.createServer();
        srv.unref();
        srv.on('error', reject);
        srv.listen(0, '127.0.0.1', () => {
            const { port } = srv.address();
            srv.close(() => resolve(port));
        });
    });
}

function installHooks() {
    if (hooksInstalled) return;
    hooksInstalled = true;
    const killAll = () => {
        for (const s of running) {
            try {
                s.proc.kill('SIGKILL');
            } catch {
                /* already gone */
            }
        }
    };
    process.on('exit', killAll);
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
        process.once(sig, () => {
            killAll();
            process.exit(128 + (os.constants.signals[sig] || 1));
        });
    }
}

// GET /healthz: { status (0 when unreachable), node (the node id it reported) }.
function healthz(port) {
    return new Promise((resolve) => {
        const req = http.get({ host: '127.0.0.1', port, path: '/healthz', agent: false, timeout: 1000 }, (res) => {
            let body = '';
            res.setEncoding('utf8');
            res.on('data', (chunk) => {
                body += chunk;
            });
            res.on('end', () => {
                let node = null;
                try {
                    node = JSON.parse(body).node;
                } catch {
                    /* not JSON: not a turbochat */
                }
                resolve({ status: res.statusCode, node });
            });
            res.on('error', () => resolve({ status: 0, node: null }));
        });
        req.on('timeout', () => req.destroy());
        req.on('error', () => resolve({ status: 0, node: null }));
    });
}

const delay = (ms) => new Promise((r) => setTimeout(r, ms));

function tail(text, lines = 80) {
    const all = text.split('\n');
    return all.length > lines ? `(... ${all.length - lines} earlier lines)\n${all.slice(-lines).join('\n')}` : text;
}

function readLog(file) {
    try {
        return fs.readFileSync(file, 'utf8');
    } catch {
        return '';
    }
}

// Excerpt around the first sanitizer report in text, or null.
function sanitizerExcerpt(text) {
    const m = SANITIZER_RE.exec(text);
    if (!m) return null;
    const start = text.lastIndexOf('\n', Math.max(0, m.index - 2000)) + 1;
    return text.slice(start, m.index + 6000);
}

async function launch({ env, args, dir, dbPath, port, startTimeoutMs }) {
    const bin = binaryPath();
    if (!fs.existsSync(bin)) throw new Error(`turbochat binary not found at ${bin} (set TURBOCHAT_BIN)`);
    seq += 1;
    const logFile = path.join(dir, `server-${port}-${seq}.log`);
    const fd = fs.openSync(logFile, 'a');
    // HTTP worker threads only (WebSockets live on the event loops); fewer than
    // the default 32 keep many parallel (and ASan) servers light.
    const cleanEnv = { TURBOCHAT_THREADS: '16' };
    for (const k of PASS_ENV) if (process.env[k] !== undefined) cleanEnv[k] = process.env[k];
    Object.assign(cleanEnv, env);
    const argv = [
        '--listen', `127.0.0.1:${port}`,
        '--db', dbPath,
        '--node-id', `test-${port}`,
        '--log-level', 'debug',
        ...args,
    ];
    const nodeId = argv[argv.lastIndexOf('--node-id') + 1];
    let proc;
    try {
        proc = spawn(bin, argv, { cwd: dir, env: cleanEnv, stdio: ['ignore', fd, fd] });
    } finally {
        fs.closeSync(fd);
    }
    let exitInfo = null;
    const exited = new Promise((resolve) => {
        proc.once('exit', (code, signal) => {
            exitInfo = { code, signal };
            resolve(exitInfo);
        });
        proc.once('error', (err) => {
            exitInfo = { code: null, signal: null, error: err };
            resolve(exitInfo);
        });
    });

    const server = {
        port,
        url: `http://127.0.0.1:${port}`,
        wsUrl: `ws://127.0.0.1:${port}/ws`,
        dir,
        dbPath,
        proc,
        logFile,
        exited,
        get exitInfo() {
            return exitInfo;
        },
        logs: () => readLog(logFile),
        logTail: (lines = 80) => tail(readLog(logFile), lines),
        stop: (signal = 'SIGTERM', timeoutMs = 10000) => stopServer(server, signal, timeoutMs),
        kill9: () => kill9Server(server),
    };
    running.add(server);

    const deadline = Date.now() + startTimeoutMs;
    for (;;) {
        if (exitInfo) {
            running.delete(server);
            const err = new Error(
                `turbochat exited before it was healthy (${JSON.stringify(exitInfo)}), ` +
                    `argv: ${argv.join(' ')}\n--- log ${logFile} ---\n${tail(readLog(logFile))}`,
            );
            err.log = readLog(logFile);
            throw err;
        }
        // the node id proves this process answers on the port (and not another
        // test's server that took it while ours was down)
        const health = await healthz(port);
        if (health.status === 200 && health.node === nodeId) return server;
        if (Date.now() > deadline) {
            proc.kill('SIGKILL');
            await exited;
            running.delete(server);
            failedDirs.add(dir);
            throw new Error(
                `turbochat on port ${port} not healthy within ${startTimeoutMs} ms\n--- log ${logFile} ---\n` +
                    tail(readLog(logFile)),
            );
        }
        await delay(50);
    }
}

// Start turbochat; see the file comment. env is merged over a minimal clean
// environment; args are appended to the default flags. Pass dir (and dbPath)
// to restart on existing data. Resolves once GET /healthz answers 200.
export async function startServer({ env = {}, args = [], dir, dbPath, port, startTimeoutMs = START_TIMEOUT_MS } = {}) {
    installHooks();
    if (!dir) {
        dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'turbochat-test-'));
        createdDirs.add(dir);
    }
    if (!dbPath) dbPath = path.join(dir, 'turbochat.db');
    const fixedPort = port !== undefined;
    for (let attempt = 1; ; attempt++) {
        const p = fixedPort ? port : await freePort();
        try {
            return await launch({ env, args, dir, dbPath, port: p, startTimeoutMs });
        } catch (err) {
            // Another process may have taken the free port in between.
            const portTaken = /address already in use|EADDRINUSE|cannot bind|failed to bind/i.test(err.log || '');
            if (fixedPort || !portTaken || attempt >= 3) {
                failedDirs.add(dir);
                throw err;
            }
        }
    }
}

function failure(server, what) {
    failedDirs.add(server.dir);
    return new Error(`turbochat (port ${server.port}) ${what}\n--- log ${server.logFile} ---\n${tail(server.logs(), 120)}`);
}

async function stopServer(server, signal, timeoutMs) {
    const wasRunning = running.has(server);
    running.delete(server);
    let info = server.exitInfo;
    const crashedBefore = info !== null && wasRunning;
    if (!info) {
        server.proc.kill(signal);
        let timer;
        info = await Promise.race([
            server.exited,
            new Promise((r) => {
                timer = setTimeout(() => r(null), timeoutMs);
            }),
        ]);
        clearTimeout(timer);
        if (!info) {
            server.proc.kill('SIGKILL');
            await server.exited;
            throw failure(server, `did not exit within ${timeoutMs} ms after ${signal}`);
        }
    }
    const san = sanitizerExcerpt(server.logs());
    if (san) throw failure(server, `reported a sanitizer error:\n${san}\n--- end of excerpt ---`);
    if (crashedBefore) throw failure(server, `had already exited before stop(): ${JSON.stringify(info)}`);
    if ((signal === 'SIGTERM' || signal === 'SIGINT') && (info.code !== 0 || info.signal)) {
        throw failure(server, `exited with ${JSON.stringify(info)} after ${signal}, expected code 0`);
    }
    return { code: info.code, signal: info.signal };
}

async function kill9Server(server) {
    running.delete(server);
    if (!server.exitInfo) server.proc.kill('SIGKILL');
    await server.exited;
    const san = sanitizerExcerpt(server.logs());
    if (san) throw failure(server, `reported a sanitizer error:\n${san}\n--- end of excerpt ---`);
}

// Stop every server still running (SIGTERM, checked like stop()), then remove
// the temporary directories of runs that went well. Throws the first failure.
export async function stopAll() {
    const servers = [...running];
    const results = await Promise.allSettled(servers.map((s) => s.stop()));
    const errors = results.filter((r) => r.status === 'rejected').map((r) => r.reason);
    if (!process.env.TURBOCHAT_KEEP_TMP) {
        for (const dir of createdDirs) {
            if (failedDirs.has(dir) || [...running].some((s) => s.dir === dir)) continue;
            await fsp.rm(dir, { recursive: true, force: true });
            createdDirs.delete(dir);
        }
    }
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1) throw new Error(errors.map((e) => e.message).join('\n\n'));
}

// Wrap a test function so that a failure carries the log tails of the
// servers still running (STYLE.md: on failure, dump the server logs).
export function withLogs(fn) {
    return async (...a) => {
        try {
            return await fn(...a);
        } catch (err) {
            const parts = [...running].map((s) => `--- turbochat log ${s.logFile} (tail) ---\n${s.logTail(60)}`);
            if (parts.length && err && typeof err === 'object') {
                try {
                    err.message = `${err.message}\n${parts.join('\n')}`;
                } catch {
                    /* read-only message */
                }
            }
            throw err;
        }
    };
}
