// Start and stop real valkey-server processes for the cluster tests, on free
// loopback ports, each in its own temporary directory (its cwd and --dir),
// with its output captured in a log file there.
//
// Two modes:
//   plain: TCP on 127.0.0.1, no password.
//   aiven: like a managed Aiven Valkey: TLS only (a CA and a server
//          certificate for localhost and 127.0.0.1 generated at start with the
//          openssl CLI), an ACL user "app" with a password, the default user
//          disabled.
// persist: true turns the append-only file on (fsync always), so that a
// stop()/restart() keeps the data, as a real outage of a managed Valkey does;
// without it a restarted Valkey is empty.
//
// startValkey() resolves once the server answers PING (after AUTH in aiven
// mode) with { port, env, urlEnv, stop(), kill(), restart(), command(), ... }:
// env is what a turbochat node needs (REDIS_HOST...), urlEnv the same as a
// REDIS_URL. stopAllValkey() stops whatever is left.
//
// Also: respConnect()/command() (a tiny RESP2 client), makeCa() and
// makeServerCert() (openssl CLI), startProxy() (a TCP proxy that can cut one
// node off Valkey), and helpers for the cluster tests: startNode() (a
// turbochat node in cluster mode, waited on until /readyz 200), readyz(),
// waitReady(), waitFor() (poll a state with a deadline), historyOf() and
// waitHistoryCount().
import { execFile, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { promisify } from 'node:util';
import { api, fetchAllMessages } from './client.mjs';
import { freePort, RELAXED_RATE_ENV, startServer } from './server.mjs';

const execFileP = promisify(execFile);

const VALKEY_BIN = process.env.VALKEY_SERVER || '/usr/bin/valkey-server';
const START_TIMEOUT_MS = Number(process.env.VALKEY_START_TIMEOUT_MS) || 15000;

const running = new Set(); // valkey instances whose process is alive
const createdDirs = new Set();
const failedDirs = new Set();
let hooksInstalled = false;

const delay = (ms) => new Promise((r) => setTimeout(r, ms));

function installHooks() {
    if (hooksInstalled) return;
    hooksInstalled = true;
    process.on('exit', () => {
        for (const v of running) {
            try {
                v.proc.kill('SIGKILL');
            } catch {
                /* gone */
            }
        }
    });
}

function readLog(file) {
    try {
        return fs.readFileSync(file, 'utf8');
    } catch {
        return '';
    }
}

function tail(text, lines = 60) {
    const all = text.split('\n');
    return all.length > lines ? all.slice(-lines).join('\n') : text;
}

// ------------------------------------------------------------------ certificates

async function openssl(dir, args) {
    try {
        await execFileP('openssl', args, { cwd: dir });
    } catch (err) {
        throw new Error(`openssl ${args.join(' ')} failed: ${err.stderr || err.message}`);
    }
}

// A self-signed CA in dir: { caCert, caKey } (paths). name keeps several apart.
export async function makeCa(dir, name = 'ca') {
    const caKey = path.join(dir, `${name}.key`);
    const caCert = path.join(dir, `${name}.crt`);
    await openssl(dir, [
        'req', '-x509', '-new', '-nodes',
        '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
        '-keyout', caKey, '-out', caCert, '-days', '2',
        '-subj', `/CN=TurboChat test CA ${name} ${process.pid}`,
    ]);
    return { caCert, caKey };
}

// A server certificate for localhost and 127.0.0.1 signed by ca, in dir.
export async function makeServerCert(dir, ca, name = 'server') {
    const key = path.join(dir, `${name}.key`);
    const csr = path.join(dir, `${name}.csr`);
    const cert = path.join(dir, `${name}.crt`);
    const ext = path.join(dir, `${name}.ext`);
    await fsp.writeFile(
        ext,
        'basicConstraints=CA:FALSE\n' +
            'keyUsage=critical,digitalSignature,keyEncipherment\n' +
            'extendedKeyUsage=serverAuth\n' +
            'subjectAltName=DNS:localhost,IP:127.0.0.1\n',
    );
    await openssl(dir, [
        'req', '-new', '-nodes',
        '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
        '-keyout', key, '-out', csr, '-subj', '/CN=localhost',
    ]);
    await openssl(dir, [
        'x509', '-req', '-in', csr, '-CA', ca.caCert, '-CAkey', ca.caKey, '-CAcreateserial',
        '-out', cert, '-days', '2', '-extfile', ext,
    ]);
    return { cert, key };
}

// ------------------------------------------------------------------ RESP

function encodeCommand(args) {
    const parts = [`*${args.length}\r\n`];
    for (const a of args) {
        const b = Buffer.isBuffer(a) ? a : Buffer.from(String(a), 'utf8');
        parts.push(`$${b.length}\r\n`, b, '\r\n');
    }
    return Buffer.concat(parts.map((p) => (Buffer.isBuffer(p) ? p : Buffer.from(p, 'utf8'))));
}

// Parse one RESP2 reply from buf at off: { value, off } or null when
// incomplete. Error replies become Error objects (value.isRespError).
function parseReply(buf, off) {
    if (off >= buf.length) return null;
    const eol = buf.indexOf('\r\n', off);
    if (eol < 0) return null;
    const kind = String.fromCharCode(buf[off]);
    const line = buf.toString('utf8', off + 1, eol);
    const next = eol + 2;
    switch (kind) {
        case '+':
            return { value: line, off: next };
        case '-': {
            const e = new Error(line);
            e.isRespError = true;
            return { value: e, off: next };
        }
        case ':':
            return { value: Number(line), off: next };
        case '$': {
            const n = Number(line);
            if (n < 0) return { value: null, off: next };
            if (buf.length < next + n + 2) return null;
            return { value: buf.toString('utf8', next, next + n), off: next + n + 2 };
        }
        case '*': {
            const n = Number(line);
            if (n < 0) return { value: null, off: next };
            const arr = [];
            let o = next;
            for (let i = 0; i < n; i++) {
                const r = parseReply(buf, o);
                if (!r) return null;
                arr.push(r.value);
                o = r.off;
            }
            return { value: arr, off: o };
        }
        default:
            throw new Error(`bad RESP reply type ${JSON.stringify(kind)}`);
    }
}

// A minimal RESP2 connection: await conn.command('GET', 'k'). Error replies
// reject (err.isRespError). Replies come in order.
export class RespConnection {
    constructor(socket) {
        this.socket = socket;
        this.buf = Buffer.alloc(0);
        this.waiters = [];
        this.closedErr = null;
        socket.on('data', (d) => {
            this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
            for (;;) {
                let r;
                try {
                    r = parseReply(this.buf, 0);
                } catch (err) {
                    this._fail(err);
                    return;
                }
                if (!r) break;
                this.buf = this.buf.subarray(r.off);
                const w = this.waiters.shift();
                if (!w) continue;
                if (r.value instanceof Error) w.reject(r.value);
                else w.resolve(r.value);
            }
        });
        socket.on('error', (err) => this._fail(err));
        socket.on('close', () => this._fail(new Error('connection closed')));
    }

    _fail(err) {
        if (!this.closedErr) this.closedErr = err;
        const ws = this.waiters;
        this.waiters = [];
        for (const w of ws) w.reject(err);
    }

    command(...args) {
        if (this.closedErr) return Promise.reject(this.closedErr);
        return new Promise((resolve, reject) => {
            this.waiters.push({ resolve, reject });
            this.socket.write(encodeCommand(args));
        });
    }

    close() {
        this.socket.destroy();
    }
}

// Open a RESP connection: opts { port, host, tls: { ca, servername },
// username, password, timeoutMs }. AUTHs when a password is given.
export function respConnect({ port, host = '127.0.0.1', tls: tlsOpts, username, password, timeoutMs = 3000 }) {
    return new Promise((resolve, reject) => {
        let socket;
        const timer = setTimeout(() => {
            socket.destroy();
            reject(new Error(`connect to valkey ${host}:${port} timed out after ${timeoutMs} ms`));
        }, timeoutMs);
        const onReady = async () => {
            socket.off('error', onError);
            const conn = new RespConnection(socket);
            try {
                if (password !== undefined) {
                    if (username !== undefined) await conn.command('AUTH', username, password);
                    else await conn.command('AUTH', password);
                }
                clearTimeout(timer);
                resolve(conn);
            } catch (err) {
                clearTimeout(timer);
                conn.close();
                reject(err);
            }
        };
        const onError = (err) => {
            clearTimeout(timer);
            socket.destroy();
            reject(err);
        };
        if (tlsOpts) {
            socket = tls.connect({ host, port, ca: tlsOpts.ca, servername: tlsOpts.servername || 'localhost' }, onReady);
        } else {
            socket = net.connect({ host, port }, onReady);
        }
        socket.once('error', onError);
    });
}

// ------------------------------------------------------------------ server

function spawnValkey(v) {
    const fd = fs.openSync(v.logFile, 'a');
    let proc;
    try {
        proc = spawn(VALKEY_BIN, v.argv, {
            cwd: v.dir,
            env: { PATH: process.env.PATH || '/usr/bin:/bin' },
            stdio: ['ignore', fd, fd],
        });
    } finally {
        fs.closeSync(fd);
    }
    v.proc = proc;
    v.exitInfo = null;
    v.exited = new Promise((resolve) => {
        proc.once('exit', (code, signal) => {
            v.exitInfo = { code, signal };
            running.delete(v);
            resolve(v.exitInfo);
        });
        proc.once('error', (err) => {
            v.exitInfo = { code: null, signal: null, error: err };
            running.delete(v);
            resolve(v.exitInfo);
        });
    });
    running.add(v);
}

async function waitValkeyPing(v, timeoutMs) {
    const deadline = Date.now() + timeoutMs;
    let lastErr = null;
    for (;;) {
        if (v.exitInfo) {
            failedDirs.add(v.dir);
            throw new Error(
                `valkey-server on port ${v.port} exited before it answered PING (${JSON.stringify(v.exitInfo)})\n` +
                    `argv: ${v.argv.join(' ')}\n--- log ${v.logFile} ---\n${tail(readLog(v.logFile))}`,
            );
        }
        try {
            const reply = await v.command('PING');
            if (reply === 'PONG') return;
            lastErr = new Error(`PING answered ${JSON.stringify(reply)}`);
        } catch (err) {
            lastErr = err;
        }
        if (Date.now() > deadline) {
            v.proc.kill('SIGKILL');
            await v.exited;
            failedDirs.add(v.dir);
            throw new Error(
                `valkey-server on port ${v.port} did not answer PING within ${timeoutMs} ms ` +
                    `(last: ${lastErr && lastErr.message})\n--- log ${v.logFile} ---\n${tail(readLog(v.logFile))}`,
            );
        }
        await delay(50);
    }
}

// Start a valkey-server. opts: mode 'plain' | 'aiven', persist (AOF on),
// port (default: a free one), startTimeoutMs.
export async function startValkey({ mode = 'plain', persist = false, port, startTimeoutMs = START_TIMEOUT_MS } = {}) {
    if (mode !== 'plain' && mode !== 'aiven') throw new Error(`unknown valkey mode ${mode}`);
    installHooks();
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'turbochat-valkey-'));
    createdDirs.add(dir);
    const fixedPort = port !== undefined;
    const v = {
        mode,
        dir,
        logFile: path.join(dir, 'valkey.log'),
        proc: null,
        exitInfo: null,
        exited: null,
        logs: () => readLog(v.logFile),
        logTail: (n = 60) => tail(readLog(v.logFile), n),
    };
    // One RESP command on a fresh connection (AUTH first in aiven mode).
    v.command = (...args) => command(v, args);

    if (mode === 'aiven') {
        v.password = crypto.randomBytes(12).toString('hex');
        v.username = 'app';
        v.ca = await makeCa(dir, 'ca');
        v.serverCert = await makeServerCert(dir, v.ca, 'server');
        v.caPem = await fsp.readFile(v.ca.caCert);
        v.aclFile = path.join(dir, 'users.acl');
        await fsp.writeFile(v.aclFile, `user default off\nuser app on >${v.password} ~* &* +@all\n`);
    }

    for (let attempt = 1; ; attempt++) {
        v.port = fixedPort ? port : await freePort();
        v.argv = buildArgv(v, persist);
        spawnValkey(v);
        try {
            await waitValkeyPing(v, startTimeoutMs);
            break;
        } catch (err) {
            const taken = /Address already in use|Could not create server TCP listening socket/i.test(v.logs());
            if (fixedPort || !taken || attempt >= 3) throw err;
            failedDirs.delete(dir);
        }
    }

    const p = String(v.port);
    if (mode === 'plain') {
        v.env = { REDIS_HOST: '127.0.0.1', REDIS_PORT: p };
        v.url = `redis://127.0.0.1:${p}`;
        v.urlEnv = { REDIS_URL: v.url };
    } else {
        v.env = {
            REDIS_HOST: 'localhost',
            REDIS_PORT: p,
            REDIS_USERNAME: v.username,
            REDIS_PASSWORD: v.password,
            REDIS_TLS: 'true',
            REDIS_CA_FILE: v.ca.caCert,
        };
        v.url = `rediss://${v.username}:${v.password}@localhost:${p}`;
        v.urlEnv = { REDIS_URL: v.url, REDIS_CA_FILE: v.ca.caCert };
    }
    v.stop = (timeoutMs = 10000) => stopValkey(v, 'SIGTERM', timeoutMs);
    v.kill = () => stopValkey(v, 'SIGKILL', 10000);
    v.restart = (timeoutMs = startTimeoutMs) => restartValkey(v, timeoutMs);
    v.isRunning = () => running.has(v);
    return v;
}

function buildArgv(v, persist) {
    const a = ['--bind', '127.0.0.1', '--dir', v.dir, '--save', '', '--logfile', '', '--daemonize', 'no'];
    a.push('--protected-mode', 'no');
    if (persist) a.push('--appendonly', 'yes', '--appendfsync', 'always');
    else a.push('--appendonly', 'no');
    if (v.mode === 'plain') {
        a.push('--port', String(v.port));
    } else {
        a.push(
            '--port', '0',
            '--tls-port', String(v.port),
            '--tls-cert-file', v.serverCert.cert,
            '--tls-key-file', v.serverCert.key,
            '--tls-ca-cert-file', v.ca.caCert,
            '--tls-auth-clients', 'no',
            '--aclfile', v.aclFile,
        );
    }
    return a;
}

// Connection options for the RESP helpers (the mode's credentials).
function connOpts(v, timeoutMs) {
    const o = { port: v.port, timeoutMs };
    if (v.mode === 'aiven') {
        o.tls = { ca: v.caPem, servername: 'localhost' };
        o.username = v.username;
        o.password = v.password;
    }
    return o;
}

async function command(v, args, timeoutMs = 3000) {
    const conn = await respConnect(connOpts(v, timeoutMs));
    try {
        let timer;
        return await Promise.race([
            conn.command(...args),
            new Promise((_, reject) => {
                timer = setTimeout(() => reject(new Error(`valkey ${args[0]} timed out`)), timeoutMs);
            }),
        ]).finally(() => clearTimeout(timer));
    } finally {
        conn.close();
    }
}

async function stopValkey(v, signal, timeoutMs) {
    if (v.exitInfo || !v.proc) return v.exitInfo;
    v.proc.kill(signal);
    let timer;
    const info = await Promise.race([
        v.exited,
        new Promise((r) => {
            timer = setTimeout(() => r(null), timeoutMs);
        }),
    ]);
    clearTimeout(timer);
    if (!info) {
        v.proc.kill('SIGKILL');
        await v.exited;
        failedDirs.add(v.dir);
        throw new Error(`valkey-server on port ${v.port} did not exit within ${timeoutMs} ms after ${signal}`);
    }
    return info;
}

async function restartValkey(v, timeoutMs) {
    if (!v.exitInfo) throw new Error(`valkey-server on port ${v.port} is still running; stop() it first`);
    // The port was ours a moment ago; retry a little in case the kernel still
    // holds it.
    const deadline = Date.now() + timeoutMs;
    for (;;) {
        spawnValkey(v);
        try {
            await waitValkeyPing(v, Math.max(1000, deadline - Date.now()));
            failedDirs.delete(v.dir);
            return v;
        } catch (err) {
            const taken = /Address already in use/i.test(v.logTail(5));
            if (!taken || Date.now() > deadline) throw err;
            failedDirs.delete(v.dir);
            await delay(200);
        }
    }
}

// Stop every valkey-server still running, then remove the temporary
// directories of runs that went well.
export async function stopAllValkey() {
    const vs = [...running];
    const results = await Promise.allSettled(vs.map((v) => stopValkey(v, 'SIGTERM', 10000)));
    if (!process.env.TURBOCHAT_KEEP_TMP) {
        for (const dir of createdDirs) {
            if (failedDirs.has(dir)) continue;
            await fsp.rm(dir, { recursive: true, force: true });
            createdDirs.delete(dir);
        }
    }
    const errors = results.filter((r) => r.status === 'rejected').map((r) => r.reason);
    if (errors.length) throw errors[0];
}


// ------------------------------------------------------------------ cluster helpers
// (for tests/cluster; they combine valkey-server with lib/server.mjs)

// Poll fn (sync or async) until it returns a truthy value, which is returned;
// throws after timeoutMs with what and the last value or error. For waiting
// on a state with a deadline, not for fixed sleeps.
export async function waitFor(fn, { timeoutMs = 10000, intervalMs = 100, what = 'condition' } = {}) {
    const deadline = Date.now() + timeoutMs;
    let last;
    let lastErr;
    for (;;) {
        try {
            last = await fn();
            lastErr = undefined;
            if (last) return last;
        } catch (err) {
            lastErr = err;
        }
        if (Date.now() > deadline) {
            let lv;
            try {
                lv = JSON.stringify(last);
            } catch {
                lv = String(last);
            }
            if (lv && lv.length > 600) lv = `${lv.slice(0, 600)}...`;
            throw new Error(
                `timed out after ${timeoutMs} ms waiting for ${what}` +
                    (lastErr ? `; last error: ${lastErr.message}` : `; last value: ${lv}`),
            );
        }
        await delay(intervalMs);
    }
}

// GET /readyz: { status, text }; status 0 when the node does not answer.
export async function readyz(node, timeoutMs = 3000) {
    try {
        const r = await api(node.url, '/readyz', { timeoutMs });
        return { status: r.status, text: r.text };
    } catch (err) {
        return { status: 0, text: err.message };
    }
}

// Wait until GET /readyz answers want (200 by default).
export async function waitReady(node, { want = 200, timeoutMs = 20000 } = {}) {
    let last;
    await waitFor(
        async () => {
            last = await readyz(node);
            return last.status === want;
        },
        { timeoutMs, what: `/readyz ${want} on ${node.url} (last: ${last ? `${last.status} ${last.text}` : '-'})` },
    ).catch((err) => {
        err.message += ` (last /readyz: ${last ? `${last.status} ${last.text}` : '-'})`;
        throw err;
    });
}

// Start a turbochat node in cluster mode with the given Valkey env (the
// relaxed send rate unless env overrides it); waits for /readyz 200 unless
// ready: false. Other options go to startServer (dir, dbPath, port...).
export async function startNode(valkeyEnv, { env = {}, ready = true, readyTimeoutMs = 20000, ...opts } = {}) {
    const node = await startServer({ env: { ...RELAXED_RATE_ENV, ...valkeyEnv, ...env }, ...opts });
    if (ready) await waitReady(node, { timeoutMs: readyTimeoutMs });
    return node;
}

// Every message of room on node (paging with after=).
// n nodes on one Valkey, started together; opts as for startNode.
export function startNodes(valkeyEnv, n, opts = {}) {
    return Promise.all(Array.from({ length: n }, () => startNode(valkeyEnv, opts)));
}

export function historyOf(node, room) {
    return fetchAllMessages(node.url, room);
}

// Wait until every node's history of room has count messages; resolves with
// the histories (one array per node).
export async function waitHistoryCount(nodes, room, count, timeoutMs = 15000) {
    const hs = new Array(nodes.length);
    await waitFor(
        async () => {
            for (let i = 0; i < nodes.length; i++) hs[i] = await historyOf(nodes[i], room);
            return hs.every((h) => h.length >= count);
        },
        { timeoutMs, what: `${count} messages in ${room} on every node` },
    ).catch((err) => {
        err.message += ` (history lengths: ${hs.map((h) => (h ? h.length : '?')).join(', ')})`;
        throw err;
    });
    return hs;
}

// Wait until every node's history of room reaches lastId and all are alike;
// resolves with the histories. Use it rather than a count when a message may
// be stored without its ack (a killed sender, an outage), since a count can
// then be met while another node's acked message is still on its way.
export async function waitSameHistory(nodes, room, lastId, timeoutMs = 15000) {
    let hs = [];
    const lastOf = (h) => (h.length ? h[h.length - 1].id : 0);
    await waitFor(
        async () => {
            hs = await Promise.all(nodes.map((n) => historyOf(n, room)));
            return hs.every((h) => lastOf(h) >= lastId && JSON.stringify(h) === JSON.stringify(hs[0]));
        },
        { timeoutMs, what: `every node's history of ${room} through id ${lastId}, alike` },
    ).catch((err) => {
        err.message += ` (last ids: ${hs.map(lastOf).join(', ')})`;
        throw err;
    });
    return hs;
}

// A TCP proxy on a free loopback port to 127.0.0.1:targetPort, to cut one
// node off Valkey while the others stay connected. cut(): close the listener
// and reset every proxied connection (new connections are refused);
// restore(): listen again on the same port. env(valkeyEnv) gives the node env
// pointing at the proxy. close() at the end.
export async function startProxy(targetPort) {
    const conns = new Set();
    let server = null;
    const proxy = { port: await freePort(), connections: 0 };
    const listen = () =>
        new Promise((resolve, reject) => {
            server = net.createServer((client) => {
                proxy.connections += 1;
                const upstream = net.connect({ host: '127.0.0.1', port: targetPort });
                conns.add(client);
                conns.add(upstream);
                const drop = () => {
                    client.destroy();
                    upstream.destroy();
                    conns.delete(client);
                    conns.delete(upstream);
                };
                client.on('error', drop);
                upstream.on('error', drop);
                client.on('close', drop);
                upstream.on('close', drop);
                client.pipe(upstream);
                upstream.pipe(client);
            });
            server.once('error', reject);
            server.listen(proxy.port, '127.0.0.1', () => {
                server.off('error', reject);
                resolve();
            });
        });
    const closeServer = () =>
        new Promise((resolve) => {
            if (!server) return resolve();
            const s = server;
            server = null;
            s.close(() => resolve());
            for (const c of conns) c.resetAndDestroy ? c.resetAndDestroy() : c.destroy();
            conns.clear();
        });
    proxy.cut = closeServer;
    proxy.restore = async () => {
        const deadline = Date.now() + 5000;
        for (;;) {
            try {
                await listen();
                return;
            } catch (err) {
                if (err.code !== 'EADDRINUSE' || Date.now() > deadline) throw err;
                await delay(100);
            }
        }
    };
    proxy.close = closeServer;
    proxy.env = (valkeyEnv) => ({ ...valkeyEnv, REDIS_PORT: String(proxy.port) });
    await listen();
    return proxy;
}
