// The load generator seen from bench/run.mjs: a pool of forked worker
// processes (bench/lib/worker.mjs), requests to one or all of them, and the
// statistics that combine their answers.
import { fork } from 'node:child_process';
import path from 'node:path';
import { BENCH_DIR, cpuUs } from './procs.mjs';

export { nowUs } from './clock.mjs';

const live = new Set(); // generators whose workers may still run
process.on('exit', () => {
    for (const g of live) for (const w of g.workers) w.child.kill('SIGKILL');
});

export class Generator {
    constructor(n) {
        this.n = n;
        this.workers = [];
        this.seq = 0;
    }

    async start() {
        for (let i = 0; i < this.n; i++) {
            const child = fork(path.join(BENCH_DIR, 'lib', 'worker.mjs'), [], {
                execArgv: ['--max-old-space-size=8192'],
                stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
            });
            const w = { child, pending: new Map(), dead: null };
            child.on('message', (m) => {
                if (m.ready) return w.onReady && w.onReady();
                const p = w.pending.get(m.id);
                if (!p) return;
                w.pending.delete(m.id);
                if (m.ok) p.resolve(m.result);
                else p.reject(new Error(`generator worker ${i}: ${m.error}`));
            });
            child.on('exit', (code, signal) => {
                w.dead = new Error(`generator worker ${i} exited (${code ?? signal})`);
                for (const p of w.pending.values()) p.reject(w.dead);
                w.pending.clear();
            });
            await new Promise((resolve, reject) => {
                w.onReady = resolve;
                child.once('error', reject);
            });
            this.workers.push(w);
        }
        live.add(this);
    }

    pids() {
        return this.workers.map((w) => w.child.pid);
    }

    cpuUs() {
        return this.pids().reduce((a, p) => a + cpuUs(p), 0);
    }

    request(i, msg, timeoutMs = 600000) {
        const w = this.workers[i];
        if (w.dead) return Promise.reject(w.dead);
        const id = ++this.seq;
        return new Promise((resolve, reject) => {
            const timer = setTimeout(() => {
                w.pending.delete(id);
                reject(new Error(`generator worker ${i}: ${msg.cmd} timed out after ${timeoutMs} ms`));
            }, timeoutMs);
            w.pending.set(id, {
                resolve: (v) => {
                    clearTimeout(timer);
                    resolve(v);
                },
                reject: (e) => {
                    clearTimeout(timer);
                    reject(e);
                },
            });
            w.child.send({ ...msg, id });
        });
    }

    // msgFor(i) -> message for worker i (or null to skip it)
    all(msgFor, timeoutMs) {
        return Promise.all(
            this.workers.map((_, i) => {
                const m = msgFor(i);
                return m ? this.request(i, m, timeoutMs) : Promise.resolve(null);
            }),
        );
    }

    async closeAll() {
        await this.all(() => ({ cmd: 'closeAll' }), 60000);
    }

    async stop() {
        await Promise.allSettled(this.workers.map((w, i) => this.request(i, { cmd: 'exit' }, 5000)));
        await Promise.all(
            this.workers.map(
                (w) =>
                    w.dead ||
                    new Promise((resolve) => {
                        const t = setTimeout(() => {
                            w.child.kill('SIGKILL');
                            resolve();
                        }, 5000);
                        w.child.once('exit', () => {
                            clearTimeout(t);
                            resolve();
                        });
                    }),
            ),
        );
        live.delete(this);
    }
}

// Merge sparse histograms [idx, count, idx, count...] of bucket width histUs.
export function mergeHist(parts) {
    const m = new Map();
    let width = 20;
    for (const p of parts) {
        if (!p) continue;
        width = p.histUs;
        for (let i = 0; i < p.hist.length; i += 2) m.set(p.hist[i], (m.get(p.hist[i]) || 0) + p.hist[i + 1]);
    }
    const keys = [...m.keys()].sort((a, b) => a - b);
    const total = keys.reduce((a, k) => a + m.get(k), 0);
    // percentile in ms: the upper edge of the bucket holding rank p
    return {
        total,
        pct(p) {
            if (!total) return NaN;
            const rank = Math.ceil((total * p) / 100);
            let acc = 0;
            for (const k of keys) {
                acc += m.get(k);
                if (acc >= rank) return ((k + 1) * width) / 1000;
            }
            return ((keys[keys.length - 1] + 1) * width) / 1000;
        },
    };
}

export function percentile(values, p) {
    if (!values.length) return NaN;
    const s = [...values].sort((a, b) => a - b);
    return s[Math.min(s.length - 1, Math.max(0, Math.ceil((s.length * p) / 100) - 1))];
}
