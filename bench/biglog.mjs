// Issue 10, a big log: "On a log of 1,000,000 messages: search p95 under
// 100 ms; history pages still at least 20,000 requests per second on one
// node". One turbochat node (embedded broker, no Valkey) on a fresh log in a
// temporary directory, then:
//
//   fill     --messages (1,000,000; --quick 100,000) messages sent through the
//            real binary over WebSockets, as fast as it stores them: --users
//            (300) connections, each a user joined to one of --rooms (100)
//            rooms, spread over --fill-workers (2) worker threads, each
//            connection keeping --window (8) sends in flight (the next goes
//            when the ack comes). Texts are drawn from a word list with Zipf
//            frequencies, a tail of made-up words, CJK phrases, 2-letter
//            words and marker words of known rarity (see VOCABULARY), so
//            every query below has a realistic selectivity. Prints the fill
//            rate and the server's CPU per message.
//   search   GET /api/search for every shape of SEARCHES (common word, rare
//            word, absent word, substring inside words, CJK, 2-letter word,
//            two words, room=, from=), --search-runs (50) times one after
//            the other, then --search-parallel (4) loops at once of as many
//            runs each; p50 / p95 / p99 latency (request sent to body read,
//            on a keep-alive connection), the results of a page and how often
//            the page carried `next`.
//   history  GET /api/rooms/{room}/messages?before=ID&limit=50 with a random
//            room and a random `before` in it, from --history-workers (2)
//            worker threads holding --history-conns (16) keep-alive
//            connections between them, each with one request in flight, for
//            --duration (10) seconds after a 1 s warm-up; requests per second,
//            p50 / p99, the server's CPU per request and its VmRSS, and the
//            CPU of this process (the client: a minimal HTTP/1.1 client on
//            raw sockets, so that it costs little), to tell whether the client
//            was the bottleneck.
//
// Then one table: the targets of issue 10 with a PASS / MISS column. It only
// reports; nothing is asserted.
//
//   node bench/biglog.mjs [--quick] [--messages N] [--duration S] [--keep-db FILE]
//   node bench/biglog.mjs --db FILE      (search and history on a kept log; no fill)
//   node bench/biglog.mjs --help
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import WebSocket from 'ws';
import { nowUs } from './lib/clock.mjs';
import { percentile } from './lib/gen.mjs';
import { REPO, cpuUs, delay, machineBusyUs, rssKiB, startTurbochat } from './lib/procs.mjs';
import { prng } from '../tests/lib/prng.mjs';

// ------------------------------------------------------------------ vocabulary
//
// Deterministic (seeded), the same in every thread and every run, so that a
// kept log (--keep-db, --db) answers the same queries the same way.

// English chat words, most frequent first (drawn with Zipf weights 1/rank).
const COMMON = `the i you to a and it is that of in we for this on be have
not with do can so just but are what at if was my me get will all it's about
know like think now there up out they no yes one time good from how an they
our your or see need would go as when then back here by more lol right today
thanks did want make let work going one some still also got new really
tomorrow meeting sure sounds maybe could should morning people last week day
next please great first because call check look before after team file build
test issue fix deploy release server client update change branch review
merge code problem error log data user message room chat search page link
email document report plan project schedule lunch coffee office home weekend
friday monday tonight later soon again done working looks nice cool happy
sorry idea question answer help thing something everyone anyone nothing
appointment disappointed comment moment payment department management
environment development agreement statement requirement document argument
configuration information communication application documentation
performance database production customer support ticket account password
login browser mobile desktop screen window button feature bug crash restart
memory network latency cache queue index query table column version backup
storage cluster node service endpoint request response timeout retry limit
weather rain sunny cold warm hot travel flight hotel train station airport
birthday party dinner movie music game football match score win lose player
coach season goal practice gym run walk bike car bus ticket price money
budget invoice contract client partner vendor sales marketing design
interview candidate offer salary holiday vacation sick leave doctor family
kids school homework teacher book story photo video camera picture draw`
    .split(/\s+/)
    .filter(Boolean);

// Chinese, Japanese and Korean phrases (one in 25 messages has one).
const CJK = [
    '今天天气很好', '明天开会吗', '会议室在哪里', '我们下周见', '谢谢你的帮助', '这个问题很重要',
    '请稍等一下', '没问题', '周末愉快', '你吃饭了吗', '服务器又崩溃了', '新版本已经发布',
    'ありがとうございます', 'よろしくお願いします', 'お疲れ様です', '今日は暑いですね',
    '会議は三時からです', 'バグを修正しました', '안녕하세요', '감사합니다', '회의는 내일입니다',
    '점심 먹었어요', '배포가 끝났습니다', '좋은 하루 되세요',
];

const SHORT = ['ok', 'hi', 'ty', 'np', 'brb', 'gg', 'ya', 'yo']; // some of 2 letters

// Marker words and how often a message has one: their counts in a log of N
// messages are about N * rate, which the table prints next to the queries.
const MARKERS = [
    ['xylophone', 1e-5], // rare: about 10 in a million
    ['quasar', 1e-4], // about 100
    ['kubernetes', 1e-3], // about 1,000
];
const ABSENT = 'zyzzyva'; // never written

// A tail of made-up words (names, jargon): one word in ten, uniformly.
const SYLLABLES = `ka ri to mo na sha ven dor el la qui ber tan gro fu zen pa lo mi
ster ax on ub rat ci vel hom ju ne ost pri dal wy sk ir tho gan bri ce fle`
    .split(/\s+/)
    .filter(Boolean);
function tailWords(n) {
    const rnd = prng(1234);
    const set = new Set();
    while (set.size < n) {
        const k = 2 + Math.floor(rnd() * 2);
        let w = '';
        for (let i = 0; i < k; i++) w += SYLLABLES[Math.floor(rnd() * SYLLABLES.length)];
        set.add(w);
    }
    return [...set];
}

function zipfTable(n) {
    const cum = new Float64Array(n);
    let s = 0;
    for (let i = 0; i < n; i++) cum[i] = s += 1 / (i + 1);
    for (let i = 0; i < n; i++) cum[i] /= s;
    return cum;
}

function pickCum(cum, r) {
    let lo = 0;
    let hi = cum.length - 1;
    while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (cum[mid] < r) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

// A message text generator with its own seed.
function textMaker(seed) {
    const rnd = prng(seed);
    const tail = tailWords(20000);
    const zipfCommon = zipfTable(COMMON.length);
    const zipfCjk = zipfTable(CJK.length);
    return () => {
        // words: 1 + exponential with mean 8, at most 60
        const len = Math.min(60, 1 + Math.floor(-Math.log(1 - rnd()) * 8));
        const words = [];
        for (let i = 0; i < len; i++) {
            const r = rnd();
            if (r < 0.1) words.push(tail[Math.floor(rnd() * tail.length)]);
            else if (r < 0.12) words.push(SHORT[Math.floor(rnd() * SHORT.length)]);
            else words.push(COMMON[pickCum(zipfCommon, rnd())]);
        }
        for (const [w, rate] of MARKERS) if (rnd() < rate) words.splice(Math.floor(rnd() * (words.length + 1)), 0, w);
        if (rnd() < 0.04) {
            const p = CJK[pickCum(zipfCjk, rnd())];
            if (rnd() < 0.5) return p; // a message in CJK alone
            words.push(p);
        }
        let t = words.join(' ');
        t = t[0].toUpperCase() + t.slice(1);
        const e = rnd();
        return e < 0.15 ? `${t}?` : e < 0.25 ? `${t}!` : e < 0.45 ? `${t}.` : t;
    };
}

const roomName = (i) => `room${String(i).padStart(3, '0')}`;
const userName = (i) => `user${String(i).padStart(3, '0')}`;

// ------------------------------------------------------------------ workers

// Fill: every connection is a user in one room; it keeps `window` sends in
// flight until the worker's quota of messages is stored (acked).
function fillWorker(o) {
    const next = textMaker(o.seed);
    let toSend = o.quota;
    let acked = 0;
    let errors = 0;
    const codes = {};
    let opened = 0;
    const conns = [];
    const report = () => parentPort.postMessage({ type: 'progress', acked, errors });
    const progress = setInterval(report, 500);
    const finishIfDone = () => {
        if (acked < o.quota) return;
        clearInterval(progress);
        for (const c of conns) c.ws.close();
        parentPort.postMessage({ type: 'done', acked, errors, codes });
    };
    const pump = (c) => {
        while (c.ready && c.inflight < o.window && toSend > 0) {
            toSend--;
            c.inflight++;
            c.ws.send(`{"type":"send","room":"${c.room}","text":${JSON.stringify(next())}}`);
        }
    };
    for (const u of o.users) {
        const ws = new WebSocket(o.wsUrl, { perMessageDeflate: false });
        const c = { ws, room: u.room, inflight: 0, ready: false };
        conns.push(c);
        ws.on('open', () => ws.send(JSON.stringify({ type: 'hello', name: u.name })));
        ws.on('message', (data) => {
            // {"type":"ack"... | {"type":"message"... (ignored) | others
            const t = data[9];
            if (t === 0x61 /* a */) {
                c.inflight--;
                acked++;
                pump(c);
                if (acked >= o.quota) finishIfDone();
                return;
            }
            if (t === 0x6d /* m */ || t === 0x70 /* p: presence */) return;
            const f = JSON.parse(data);
            if (f.type === 'welcome') ws.send(JSON.stringify({ type: 'join', room: c.room }));
            else if (f.type === 'joined') {
                c.ready = true;
                if (++opened === o.users.length) parentPort.postMessage({ type: 'joined' });
            } else if (f.type === 'error') {
                errors++;
                codes[f.code] = (codes[f.code] || 0) + 1;
                if (c.inflight > 0) {
                    c.inflight--;
                    toSend++; // refused, not stored: send another
                }
                if (errors > 1000) throw new Error(`fill: too many errors ${JSON.stringify(codes)}`);
                pump(c);
            }
        });
        ws.on('error', (err) => {
            throw new Error(`fill: ${u.name}: ${err.message}`);
        });
        ws.on('close', (code) => {
            if (acked < o.quota) throw new Error(`fill: ${u.name} closed (${code}) before the end`);
        });
    }
    parentPort.on('message', (m) => {
        if (m.cmd === 'go') for (const c of conns) pump(c);
    });
}

// History: `conns` keep-alive connections, each one GET in flight; latency
// in HIST_US buckets; only requests completed in [startUs, endUs] count.
const HIST_US = 10;
const HIST_N = 200000; // up to 2 s

function historyWorker(o) {
    const hist = new Uint32Array(HIST_N);
    const rnd = prng(o.seed);
    const status = {};
    let count = 0;
    let bytes = 0;
    let checked = 0;
    let badPages = 0;
    let closed = 0;
    let startUs = Infinity;
    let endUs = Infinity;
    let stopping = false;
    let elu0 = null; // event-loop use of this thread at the start of the window
    let elu = NaN;
    const open = new Set();
    const request = () => {
        const r = o.rooms[Math.floor(rnd() * o.rooms.length)];
        const before = 2 + Math.floor(rnd() * r.lastId); // 2..last_id+1
        return `GET /api/rooms/${r.name}/messages?before=${before}&limit=50 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`;
    };
    const finish = () => {
        if (open.size) return;
        const sparse = [];
        for (let i = 0; i < HIST_N; i++) if (hist[i]) sparse.push(i, hist[i]);
        parentPort.postMessage({ type: 'done', count, bytes, status, hist: sparse, checked, badPages, closed, elu });
    };
    const connect = () => {
        const s = net.connect({ host: '127.0.0.1', port: o.port });
        s.setNoDelay(true);
        open.add(s);
        let buf = null;
        let need = -1; // bytes of the whole response, once the header is read
        let sent = 0;
        let code = 0;
        const send = () => {
            if (stopping) {
                s.end();
                return;
            }
            sent = nowUs();
            s.write(request());
        };
        s.on('connect', send);
        s.on('data', (d) => {
            buf = buf ? Buffer.concat([buf, d]) : d;
            if (need < 0) {
                const end = buf.indexOf('\r\n\r\n');
                if (end < 0) return;
                const head = buf.toString('latin1', 0, end);
                code = Number(head.slice(9, 12));
                const m = /\r\ncontent-length:\s*(\d+)/i.exec(head);
                if (!m) throw new Error(`history: a response without Content-Length: ${head}`);
                need = end + 4 + Number(m[1]);
            }
            if (buf.length < need) return;
            const t = nowUs();
            if (t >= startUs && t <= endUs) {
                count++;
                bytes += need;
                status[code] = (status[code] || 0) + 1;
                const b = Math.floor((t - sent) / HIST_US);
                hist[b < HIST_N ? b : HIST_N - 1]++;
                // one page in 500: ids ascending, at most 50 of them
                if (code === 200 && count % 500 === 1) {
                    checked++;
                    const body = JSON.parse(buf.toString('utf8', buf.indexOf('\r\n\r\n') + 4, need));
                    const ids = body.messages.map((x) => x.id);
                    if (!ids.length || ids.length > 50 || ids.some((id, i) => i && id <= ids[i - 1])) badPages++;
                }
            }
            buf = buf.length > need ? buf.subarray(need) : null;
            need = -1;
            send();
        });
        s.on('error', (err) => {
            if (!stopping) throw new Error(`history: ${err.message}`);
        });
        s.on('close', () => {
            open.delete(s);
            if (!stopping) closed++;
            if (stopping) finish();
        });
    };
    for (let i = 0; i < o.conns; i++) connect();
    parentPort.on('message', (m) => {
        if (m.cmd === 'window') {
            startUs = m.startUs;
            endUs = m.endUs;
            setTimeout(() => (elu0 = performance.eventLoopUtilization()), (startUs - nowUs()) / 1000);
            setTimeout(() => (elu = performance.eventLoopUtilization(elu0).utilization), (endUs - nowUs()) / 1000);
        } else if (m.cmd === 'stop') {
            stopping = true;
            if (!open.size) finish();
        }
    });
}

// ------------------------------------------------------------------ main

async function main() {
    const { values: A } = parseArgs({
        options: {
            help: { type: 'boolean', short: 'h' },
            quick: { type: 'boolean', default: false },
            messages: { type: 'string' },
            rooms: { type: 'string', default: '100' },
            users: { type: 'string', default: '300' },
            window: { type: 'string', default: '8' },
            'fill-workers': { type: 'string', default: '2' },
            'search-runs': { type: 'string', default: '50' },
            'search-parallel': { type: 'string', default: '4' },
            duration: { type: 'string', default: '10' },
            'history-workers': { type: 'string', default: '2' },
            'history-conns': { type: 'string', default: '16' },
            bin: { type: 'string', default: path.join(REPO, 'build', 'turbochat') },
            db: { type: 'string' },
            'keep-db': { type: 'string' },
        },
    });
    if (A.help) {
        const text = fs.readFileSync(new URL(import.meta.url), 'utf8').split('\n');
        const end = text.findIndex((l) => !l.startsWith('//'));
        console.log(text.slice(0, end).map((l) => l.replace(/^\/\/ ?/, '')).join('\n'));
        console.log(`
Options (default): --messages 1000000 (--quick 100000), --rooms 100, --users 300,
  --window 8 (sends in flight per connection), --fill-workers 2,
  --search-runs 50, --search-parallel 4, --duration 10 (s of history),
  --history-workers 2, --history-conns 16 (below the server's 32 HTTP threads:
  a keep-alive connection holds one), --bin build/turbochat,
  --keep-db FILE (move the log there at the end), --db FILE (use that log: no fill).`);
        return;
    }
    const CFG = {
        messages: Number(A.messages ?? (A.quick ? 100000 : 1000000)),
        rooms: Number(A.rooms),
        users: Number(A.users),
        window: Number(A.window),
        fillWorkers: Number(A['fill-workers']),
        searchRuns: Number(A['search-runs']),
        searchParallel: Number(A['search-parallel']),
        durationS: Number(A.duration),
        historyWorkers: Number(A['history-workers']),
        historyConns: Number(A['history-conns']),
    };
    const log = (...a) => console.error(`[${new Date().toISOString().slice(11, 19)}]`, ...a);
    const fmt = (n, d = 0) =>
        Number.isFinite(n) ? n.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d }) : '-';
    const fmtMs = (n) => (Number.isFinite(n) ? (n < 10 ? n.toFixed(2) : n < 100 ? n.toFixed(1) : n.toFixed(0)) : '-');
    const loadavg = () => os.loadavg().map((x) => x.toFixed(2)).join(' ');
    const myCpuUs = () => {
        const u = process.cpuUsage();
        return u.user + u.system; // every thread of this process
    };

    const bin = path.resolve(A.bin);
    if (!fs.existsSync(bin)) throw new Error(`no ${bin} (make build)`);
    const dbGiven = A.db ? path.resolve(A.db) : null;
    const env = {
        TURBOCHAT_RATE_LIMIT: '1000000',
        TURBOCHAT_RATE_BURST: '1000000',
        TURBOCHAT_JOIN_RATE_LIMIT: '1000000',
        TURBOCHAT_JOIN_RATE_BURST: '1000000',
        TURBOCHAT_MAX_CONNECTIONS_PER_IP: '0',
    };
    if (dbGiven) env.TURBOCHAT_DB = dbGiven;
    const loadStart = loadavg();
    console.log(`turbochat biglog: ${path.relative(REPO, bin) || bin}, ${os.cpus().length} cores, load ${loadStart}`);
    const node = await startTurbochat({ bin, label: 'biglog', env });
    running = node;
    const dbFile = node.env.TURBOCHAT_DB;
    log(`node ${node.nodeId} on ${node.url}, log ${dbFile}`);

    const out = { cfg: CFG, fill: null, search: [], history: null };

    // ---------------------------------------------------------------- fill
    if (!dbGiven) {
        const users = Array.from({ length: CFG.users }, (_, i) => ({ name: userName(i), room: roomName(i % CFG.rooms) }));
        const nw = CFG.fillWorkers;
        const workers = [];
        const acked = new Array(nw).fill(0);
        let joined = 0;
        let allJoined;
        const joinedP = new Promise((r) => (allJoined = r));
        const dones = [];
        for (let k = 0; k < nw; k++) {
            const quota = Math.floor(CFG.messages / nw) + (k < CFG.messages % nw ? 1 : 0);
            const wk = new Worker(new URL(import.meta.url), {
                workerData: {
                    role: 'fill',
                    wsUrl: node.wsUrl,
                    users: users.filter((_, i) => i % nw === k),
                    quota,
                    window: CFG.window,
                    seed: 1000 + k,
                },
            });
            dones.push(
                new Promise((resolve, reject) => {
                    wk.on('message', (m) => {
                        if (m.type === 'progress') acked[k] = m.acked;
                        else if (m.type === 'joined' && ++joined === nw) allJoined();
                        else if (m.type === 'done') {
                            acked[k] = m.acked;
                            resolve(m);
                        }
                    });
                    wk.on('error', reject);
                    wk.on('exit', (code) => reject(new Error(`fill worker exited (${code})`)));
                }),
            );
            workers.push(wk);
        }
        await Promise.race([joinedP, delay(60000).then(() => Promise.reject(new Error('fill: users did not join in 60 s')))]);
        log(`${CFG.users} users joined ${CFG.rooms} rooms; filling ${fmt(CFG.messages)} messages`);
        const t0 = nowUs();
        const srv0 = cpuUs(node.pid);
        const me0 = myCpuUs();
        for (const wk of workers) wk.postMessage({ cmd: 'go' });
        let lastLog = t0;
        let lastN = 0;
        const ticker = setInterval(() => {
            const t = nowUs();
            const n = acked.reduce((a, b) => a + b, 0);
            if (t - lastLog >= 10e6) {
                log(`  ${fmt(n)} stored, ${fmt(((n - lastN) * 1e6) / (t - lastLog))}/s lately, server RSS ${fmt(rssKiB(node.pid) / 1024)} MiB`);
                lastLog = t;
                lastN = n;
            }
            if (node.crashed()) log(`the node exited: ${node.logTail()}`);
        }, 1000);
        let results;
        try {
            results = await Promise.all(dones);
        } finally {
            clearInterval(ticker);
        }
        const t1 = nowUs();
        const srvUs = cpuUs(node.pid) - srv0;
        const meUs = myCpuUs() - me0;
        for (const wk of workers) wk.terminate();
        const stored = results.reduce((a, r) => a + r.acked, 0);
        const errors = {};
        for (const r of results) for (const [c, n] of Object.entries(r.codes)) errors[c] = (errors[c] || 0) + n;
        const secs = (t1 - t0) / 1e6;
        out.fill = {
            stored,
            secs,
            rate: stored / secs,
            srvUsPerMsg: srvUs / stored,
            srvCores: srvUs / (t1 - t0),
            clientCores: meUs / (t1 - t0),
            errors,
        };
        log(`filled ${fmt(stored)} in ${secs.toFixed(1)} s: ${fmt(stored / secs)} messages/s`);
    }

    // the log as it is now
    const api = new http.Agent({ keepAlive: true, maxSockets: 16 });
    const get = (p) =>
        new Promise((resolve, reject) => {
            const t0 = performance.now();
            const req = http.get(`${node.url}${p}`, { agent: api, timeout: 60000 }, (res) => {
                const chunks = [];
                res.on('data', (d) => chunks.push(d));
                res.on('end', () => {
                    const ms = performance.now() - t0;
                    const text = Buffer.concat(chunks).toString('utf8');
                    let body = null;
                    try {
                        body = JSON.parse(text);
                    } catch {
                        /* leave null */
                    }
                    resolve({ ms, status: res.statusCode, body, text });
                });
            });
            req.on('timeout', () => req.destroy(new Error(`GET ${p} timed out`)));
            req.on('error', reject);
        });
    const roomsAnswer = await get('/api/rooms');
    const rooms = roomsAnswer.body.rooms.filter((r) => r.last_id > 0).map((r) => ({ name: r.name, lastId: r.last_id }));
    const totalEvents = rooms.reduce((a, r) => a + r.lastId, 0);
    const dbBytes = ['', '-wal'].reduce((a, s) => a + (fs.existsSync(dbFile + s) ? fs.statSync(dbFile + s).size : 0), 0);
    const rssAfterFill = rssKiB(node.pid);
    out.log = { rooms: rooms.length, events: totalEvents, dbBytes, rssAfterFill };
    log(`log: ${fmt(totalEvents)} events in ${rooms.length} rooms, ${fmt(dbBytes / 1048576)} MiB on disk, server RSS ${fmt(rssAfterFill / 1024)} MiB`);
    if (!rooms.length) throw new Error('the log is empty');

    // ---------------------------------------------------------------- search
    const aRoom = () => rooms[Math.floor(Math.random() * rooms.length)].name;
    const aUser = () => userName(Math.floor(Math.random() * CFG.users));
    const n = totalEvents;
    const SEARCHES = [
        { name: 'common word "the"', q: () => 'the' },
        { name: 'common word "meeting"', q: () => 'meeting' },
        { name: `rare word "xylophone" (~${fmt(n * 1e-5)})`, q: () => 'xylophone' },
        { name: `rare word "quasar" (~${fmt(n * 1e-4)})`, q: () => 'quasar' },
        { name: `absent word "${ABSENT}"`, q: () => ABSENT },
        { name: 'inside words "ppoint"', q: () => 'ppoint' },
        { name: 'inside words "ation"', q: () => 'ation' },
        { name: 'CJK "天气很"', q: () => '天气很' },
        { name: 'CJK "お疲れ様"', q: () => 'お疲れ様' },
        { name: '2 letters "ok"', q: () => 'ok' },
        { name: 'two words "meeting tomorrow"', q: () => 'meeting tomorrow' },
        { name: 'rare + common "quasar the"', q: () => 'quasar the' },
        { name: 'two rare-ish "kubernetes quasar"', q: () => 'kubernetes quasar' },
        { name: '"the" room=<random>', q: () => 'the', room: aRoom },
        { name: '"meeting" room=<random>', q: () => 'meeting', room: aRoom },
        { name: '"kubernetes" room=<random>', q: () => 'kubernetes', room: aRoom },
        { name: '"ok" room=<random>', q: () => 'ok', room: aRoom },
        { name: '"meeting" from=<random>', q: () => 'meeting', from: aUser },
        { name: '"quasar" from=<random>', q: () => 'quasar', from: aUser },
    ];
    const searchPath = (s) => {
        const qs = new URLSearchParams({ q: s.q() });
        if (s.room) qs.set('room', s.room());
        if (s.from) qs.set('from', s.from());
        return `/api/search?${qs}`;
    };
    let retried = 0;
    const runSearch = async (s, samples) => {
        const p = searchPath(s);
        let r;
        try {
            r = await get(p);
        } catch (err) {
            // the server closes a keep-alive connection idle for 500 ms
            // (CivetWeb's keep_alive_timeout_ms); one reused as it closed
            // fails: once more on a new one, unless the node is gone
            if (node.exitInfo || err.code !== 'ECONNRESET') throw err;
            retried++;
            r = await get(p);
        }
        if (r.status !== 200 || !r.body) throw new Error(`search ${s.name}: ${r.status} ${r.text.slice(0, 200)}`);
        samples.push({ ms: r.ms, results: r.body.results.length, next: r.body.next !== undefined });
    };
    // warm the page cache once over every shape, as a live node would be
    for (const s of SEARCHES) await runSearch(s, []);
    const srvSearch0 = cpuUs(node.pid);
    const busySearch0 = machineBusyUs();
    const tSearch0 = nowUs();
    let searches = 0;
    for (const s of SEARCHES) {
        const seq = [];
        const cpu0 = cpuUs(node.pid);
        for (let i = 0; i < CFG.searchRuns; i++) await runSearch(s, seq);
        const cpuMs = (cpuUs(node.pid) - cpu0) / 1000 / CFG.searchRuns;
        const par = [];
        await Promise.all(
            Array.from({ length: CFG.searchParallel }, async () => {
                for (let i = 0; i < CFG.searchRuns; i++) await runSearch(s, par);
            }),
        );
        searches += seq.length + par.length;
        const ms = (a) => a.map((x) => x.ms);
        const resultCounts = seq.map((x) => x.results);
        const row = {
            name: s.name,
            seq: { p50: percentile(ms(seq), 50), p95: percentile(ms(seq), 95), p99: percentile(ms(seq), 99) },
            par: { p50: percentile(ms(par), 50), p95: percentile(ms(par), 95), p99: percentile(ms(par), 99) },
            resultsMin: Math.min(...resultCounts),
            resultsMax: Math.max(...resultCounts),
            cpuMs,
            next: seq.filter((x) => x.next).length,
            runs: seq.length,
        };
        out.search.push(row);
        log(`  ${s.name}: p50 ${fmtMs(row.seq.p50)} p95 ${fmtMs(row.seq.p95)} ms; ${CFG.searchParallel} at once p95 ${fmtMs(row.par.p95)} ms`);
    }
    out.searchSrvMsPerReq = (cpuUs(node.pid) - srvSearch0) / 1000 / searches;
    out.searchRetried = retried;
    out.searchMachineCores = (machineBusyUs() - busySearch0) / (nowUs() - tSearch0);
    api.destroy();

    // ---------------------------------------------------------------- history
    const cores = os.cpus().length;
    {
        const nw = CFG.historyWorkers;
        const workers = [];
        const dones = [];
        for (let k = 0; k < nw; k++) {
            const conns = Math.floor(CFG.historyConns / nw) + (k < CFG.historyConns % nw ? 1 : 0);
            const wk = new Worker(new URL(import.meta.url), {
                workerData: { role: 'history', port: node.port, rooms, conns, seed: 77 + k },
            });
            dones.push(
                new Promise((resolve, reject) => {
                    wk.on('message', (m) => m.type === 'done' && resolve(m));
                    wk.on('error', reject);
                }),
            );
            workers.push(wk);
        }
        const startUs = nowUs() + 1e6; // 1 s of warm-up
        const endUs = startUs + CFG.durationS * 1e6;
        for (const wk of workers) wk.postMessage({ cmd: 'window', startUs, endUs });
        await delay((startUs - nowUs()) / 1000);
        const srv0 = cpuUs(node.pid);
        const me0 = myCpuUs();
        const busy0 = machineBusyUs();
        await delay((endUs - nowUs()) / 1000);
        const srvUs = cpuUs(node.pid) - srv0;
        const meUs = myCpuUs() - me0;
        const busyUs = machineBusyUs() - busy0;
        const rss = rssKiB(node.pid);
        for (const wk of workers) wk.postMessage({ cmd: 'stop' });
        const res = await Promise.race([Promise.all(dones), delay(30000).then(() => null)]);
        for (const wk of workers) wk.terminate();
        if (!res) throw new Error('history workers did not stop within 30 s');
        const hist = new Map();
        let count = 0;
        let bytes = 0;
        let badPages = 0;
        let checked = 0;
        let closed = 0;
        const elus = [];
        const status = {};
        for (const r of res) {
            count += r.count;
            bytes += r.bytes;
            badPages += r.badPages;
            checked += r.checked;
            closed += r.closed;
            elus.push(r.elu);
            for (const [c, k] of Object.entries(r.status)) status[c] = (status[c] || 0) + k;
            for (let i = 0; i < r.hist.length; i += 2) hist.set(r.hist[i], (hist.get(r.hist[i]) || 0) + r.hist[i + 1]);
        }
        const keys = [...hist.keys()].sort((a, b) => a - b);
        const pct = (p) => {
            const rank = Math.ceil((count * p) / 100);
            let acc = 0;
            for (const k of keys) if ((acc += hist.get(k)) >= rank) return ((k + 1) * HIST_US) / 1000;
            return NaN;
        };
        const wallUs = endUs - startUs;
        out.history = {
            count,
            rate: (count * 1e6) / wallUs,
            p50: pct(50),
            p99: pct(99),
            bytesPerReq: bytes / count,
            srvUsPerReq: srvUs / count,
            srvCores: srvUs / wallUs,
            clientCores: meUs / wallUs,
            machineCores: busyUs / wallUs,
            ceiling: (cores * 1e6) / (srvUs / count),
            elus,
            rss,
            status,
            badPages,
            checked,
            closed,
        };
        log(`history: ${fmt(out.history.rate)} requests/s, p99 ${fmtMs(out.history.p99)} ms`);
    }

    // ---------------------------------------------------------------- the end
    await node.stop();
    if (A['keep-db'] && !dbGiven) {
        const dest = path.resolve(A['keep-db']);
        fs.renameSync(dbFile, dest);
        for (const s of ['-wal', '-shm']) if (fs.existsSync(dbFile + s)) fs.renameSync(dbFile + s, dest + s);
        log(`the log is kept in ${dest} (run again with --db ${dest})`);
    }

    // ---------------------------------------------------------------- table
    const lines = [];
    const p = (s = '') => lines.push(s);
    p();
    p(`## issue 10: a log of ${fmt(out.log.events)} events (${out.log.rooms} rooms, ${CFG.users} users), one node, ${cores} cores, load average ${loadStart} at the start, ${loadavg()} at the end`);
    p();
    if (out.fill) {
        const f = out.fill;
        const errs = Object.entries(f.errors).map(([c, k]) => `${c} ${k}`).join(', ') || 'none';
        p(`fill: ${fmt(f.stored)} messages in ${f.secs.toFixed(1)} s = ${fmt(f.rate)} messages/s over ${CFG.users} WebSockets (window ${CFG.window}); ` +
            `server ${fmt(f.srvUsPerMsg, 1)} µs CPU/message (${f.srvCores.toFixed(2)} cores), client ${f.clientCores.toFixed(2)} cores; errors: ${errs}`);
    } else p(`fill: none (--db ${dbGiven})`);
    p(`log on disk: ${fmt(out.log.dbBytes / 1048576)} MiB (db + wal); server VmRSS ${out.fill ? 'after the fill' : 'at the start'}: ${fmt(out.log.rssAfterFill / 1024)} MiB`);
    p();
    p(`search: ${CFG.searchRuns} runs one after the other, then ${CFG.searchParallel} loops of ${CFG.searchRuns} at once; ms; default limit 20; ` +
        `server CPU: ms per search of the runs one after the other (${fmt(out.searchSrvMsPerReq, 2)} ms on average over all); ` +
        `machine busy ${out.searchMachineCores.toFixed(2)} of ${cores} cores meanwhile; ` +
        `${out.searchRetried} requests sent again after the server closed an idle keep-alive connection`);
    p();
    p('| query | p50 | p95 | p99 | p50 ×4 | p95 ×4 | p99 ×4 | server CPU | results | next |');
    p('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const r of out.search) {
        const res = r.resultsMin === r.resultsMax ? `${r.resultsMin}` : `${r.resultsMin}-${r.resultsMax}`;
        p(`| ${r.name} | ${fmtMs(r.seq.p50)} | ${fmtMs(r.seq.p95)} | ${fmtMs(r.seq.p99)} | ${fmtMs(r.par.p50)} | ${fmtMs(r.par.p95)} | ${fmtMs(r.par.p99)} | ${fmtMs(r.cpuMs)} | ${res} | ${r.next}/${r.runs} |`);
    }
    const h = out.history;
    p();
    p(`history: GET /api/rooms/{room}/messages?before=<random>&limit=50, ${CFG.historyConns} keep-alive connections in ${CFG.historyWorkers} worker threads, ${CFG.durationS} s: ` +
        `${fmt(h.count)} requests, ${fmt(h.rate)}/s, p50 ${fmtMs(h.p50)} ms, p99 ${fmtMs(h.p99)} ms, ${fmt(h.bytesPerReq / 1024, 1)} KiB/response; ` +
        `statuses ${JSON.stringify(h.status)}; pages checked ${h.checked} (bad ${h.badPages}); connections closed by the server ${h.closed}`);
    p(`  server ${fmt(h.srvUsPerReq, 1)} µs CPU/request (${h.srvCores.toFixed(2)} cores), VmRSS ${fmt(h.rss / 1024)} MiB; ` +
        `client ${h.clientCores.toFixed(2)} cores (its threads' event loops busy ${h.elus.map((u) => `${Math.round(u * 100)} %`).join(', ')}); ` +
        `whole machine busy ${h.machineCores.toFixed(2)} of ${cores} cores`);
    p(`  at that CPU per request, all ${cores} cores given to the server would serve at most ${fmt(h.ceiling)} requests/s`);
    const clientBound = h.elus.some((u) => u >= 0.9);
    const machineBound = h.machineCores >= cores * 0.9;
    if (clientBound) p('  a client thread was busy 90 % of the time or more: the client may have been the bottleneck');
    if (machineBound) p(`  the machine was saturated (server + client + others): the rate is a floor`);
    p();
    const worstSeq = out.search.reduce((a, r) => (r.seq.p95 > a.seq.p95 ? r : a));
    const worstPar = out.search.reduce((a, r) => (r.par.p95 > a.par.p95 ? r : a));
    const verdict = (ok) => (ok ? 'PASS' : 'MISS');
    p('| target (issue 10) | measured | |');
    p('|---|---|---|');
    for (const r of out.search) p(`| search p95 < 100 ms: ${r.name} | ${fmtMs(r.seq.p95)} ms (×4 at once: ${fmtMs(r.par.p95)} ms) | ${verdict(r.seq.p95 < 100)} |`);
    p(`| search p95 < 100 ms, worst shape one at a time | ${fmtMs(worstSeq.seq.p95)} ms (${worstSeq.name}) | ${verdict(worstSeq.seq.p95 < 100)} |`);
    p(`| search p95 < 100 ms, worst shape 4 at once | ${fmtMs(worstPar.par.p95)} ms (${worstPar.name}) | ${verdict(worstPar.par.p95 < 100)} |`);
    p(`| history ≥ 20,000 requests/s | ${fmt(h.rate)}/s (p99 ${fmtMs(h.p99)} ms${clientBound ? ', client-bound' : ''}) | ${verdict(h.rate >= 20000)} |`);
    console.log(lines.join('\n'));
    fs.mkdirSync(path.join(REPO, 'bench', '.cache'), { recursive: true });
    fs.writeFileSync(path.join(REPO, 'bench', '.cache', 'biglog-last-run.json'), JSON.stringify(out, null, 2));
    process.exit(0);
}

// The node of the run: when it exits by itself, its log is kept.
let running = null;

if (isMainThread) {
    try {
        await main();
    } catch (err) {
        if (running && !running.stopping) await Promise.race([running.exited, delay(1000)]);
        if (running && running.crashed()) {
            const kept = path.join(REPO, 'bench', '.cache', `biglog-crash-${Date.now()}.log`);
            fs.mkdirSync(path.dirname(kept), { recursive: true });
            fs.copyFileSync(running.logFile, kept);
            console.error(`the node exited (${JSON.stringify(running.exitInfo)}); its log is kept in ${kept}:\n${running.logTail()}`);
        }
        throw err;
    }
}
else if (workerData.role === 'fill') fillWorker(workerData);
else historyWorker(workerData);
