// GET /metrics against the Prometheus conventions docs/OPERATIONS.md relies
// on (every family has HELP and TYPE, counters end in _total, histograms in
// base units with cumulative buckets), the latency histograms counting real
// traffic (delivery, commit, publish, history, replay), and the Grafana
// dashboard in deploy/ asking only for series a real node exposes.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { api, connectUser, uniq } from '../lib/client.mjs';
import { RELAXED_RATE_ENV, startServer, stopAll, withLogs } from '../lib/server.mjs';
import { waitFor } from '../lib/valkey.mjs';

const T = { timeout: 120000 };
const SOURCE = process.env.TURBOCHAT_SOURCE_DIR || path.resolve(import.meta.dirname, '..', '..');
const HISTOGRAMS = [
    'turbochat_delivery_seconds',
    'turbochat_store_commit_seconds',
    'turbochat_publish_seconds',
    'turbochat_history_seconds',
    'turbochat_replay_read_seconds',
];

let srv;

before(async () => {
    srv = await startServer({ env: RELAXED_RATE_ENV });
});

after(stopAll);

// Parse the text exposition: { families: Map(name -> {help, type, samples:
// [{name, labels, value}]}), order: [family names in order] }. Throws on a
// line that is not a comment, HELP, TYPE or sample, or on a sample whose
// family was not introduced by its TYPE first.
function parseExposition(text) {
    const families = new Map();
    const family = (name) => {
        if (!families.has(name)) families.set(name, { name, samples: [] });
        return families.get(name);
    };
    const familyOf = (sample) => {
        for (const suffix of ['_bucket', '_sum', '_count']) {
            const base = sample.slice(0, -suffix.length);
            if (sample.endsWith(suffix) && families.get(base)?.type === 'histogram') return base;
        }
        return sample;
    };
    assert.ok(text.endsWith('\n'), 'the exposition ends with a newline');
    for (const line of text.split('\n')) {
        if (line === '') continue;
        let m = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
        if (m) {
            const f = family(m[2]);
            const key = m[1].toLowerCase();
            assert.equal(f[key], undefined, `a second ${m[1]} for ${m[2]}`);
            assert.ok(m[3].trim().length > 0, `an empty ${m[1]} for ${m[2]}`);
            if (key === 'type') {
                assert.ok(['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(m[3]), line);
                assert.equal(f.samples.length, 0, `TYPE of ${m[2]} after its samples`);
            }
            f[key] = m[3];
            continue;
        }
        assert.ok(!line.startsWith('#'), `an unknown comment line: ${line}`);
        m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? (\S+)$/.exec(line);
        assert.ok(m, `not a sample line: ${JSON.stringify(line)}`);
        const labels = {};
        for (const pair of (m[3] || '').split(',').filter(Boolean)) {
            const lm = /^([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)"$/.exec(pair);
            assert.ok(lm, `bad label ${pair} in ${line}`);
            labels[lm[1]] = lm[2];
        }
        const value = m[4] === '+Inf' ? Infinity : Number(m[4]);
        assert.ok(!Number.isNaN(value), `bad value in ${line}`);
        const fname = familyOf(m[1]);
        const f = families.get(fname);
        assert.ok(f && f.type, `sample ${m[1]} before the TYPE of its family`);
        f.samples.push({ name: m[1], labels, value });
    }
    return families;
}

function value(families, name) {
    for (const f of families.values()) {
        const s = f.samples.find((x) => x.name === name && Object.keys(x.labels).length === 0);
        if (s) return s.value;
    }
    return NaN;
}

async function scrape() {
    const r = await api(srv.url, '/metrics');
    assert.equal(r.status, 200, r.text);
    assert.match(r.headers['content-type'] || '', /^text\/plain; version=0\.0\.4/);
    return { text: r.text, families: parseExposition(r.text) };
}

// Every sample name the exposition holds (histograms: _bucket, _sum, _count).
function sampleNames(families) {
    const names = new Set();
    for (const f of families.values()) for (const s of f.samples) names.add(s.name);
    return names;
}

describe('GET /metrics follows the Prometheus conventions', () => {
    it('every family has HELP and TYPE, a prefix, units, and counters end in _total', T, withLogs(async () => {
        const { families } = await scrape();
        assert.ok(families.size >= 20, `families: ${[...families.keys()].join(' ')}`);
        for (const f of families.values()) {
            assert.ok(f.help, `${f.name} has HELP`);
            assert.ok(f.type, `${f.name} has TYPE`);
            assert.ok(f.samples.length > 0, `${f.name} has samples`);
            assert.match(f.name, /^(turbochat|process)_[a-z0-9_]+$/, 'prefix and snake_case');
            if (f.type === 'counter') assert.match(f.name, /_total$/, `counter ${f.name} ends in _total`);
            else assert.doesNotMatch(f.name, /_total$/, `${f.type} ${f.name} must not end in _total`);
            if (f.type === 'histogram') assert.match(f.name, /_seconds$/, `histogram ${f.name} in seconds`);
            assert.doesNotMatch(f.name, /_(ms|milliseconds|us|kb|mb|kilobytes|megabytes)(_|$)/, `${f.name} in base units`);
        }
        // A counter X_total and a gauge X are one family to OpenMetrics parsers.
        for (const f of families.values()) {
            if (f.type === 'counter') {
                const base = f.name.replace(/_total$/, '');
                assert.ok(!families.has(base), `counter ${f.name} collides with ${base}`);
            }
        }
        for (const name of HISTOGRAMS) assert.equal(families.get(name)?.type, 'histogram', `${name} is a histogram`);
        assert.ok(value(families, 'process_resident_memory_bytes') > 1024 * 1024, 'resident memory in bytes');
        assert.ok(value(families, 'process_open_fds') >= 3, 'open fds');
        assert.ok(value(families, 'process_max_fds') >= value(families, 'process_open_fds'), 'fd limit');
    }));

    it('histograms have cumulative buckets ending in +Inf == _count, and _sum', T, withLogs(async () => {
        const { families } = await scrape();
        for (const f of families.values()) {
            if (f.type !== 'histogram') continue;
            const buckets = f.samples.filter((s) => s.name === `${f.name}_bucket`);
            assert.ok(buckets.length >= 2, `${f.name} buckets`);
            let prevLe = -Infinity;
            let prevCount = 0;
            for (const b of buckets) {
                assert.ok('le' in b.labels, `${f.name} bucket without le`);
                const le = b.labels.le === '+Inf' ? Infinity : Number(b.labels.le);
                assert.ok(le > prevLe, `${f.name} le ascending: ${b.labels.le}`);
                assert.ok(b.value >= prevCount, `${f.name} cumulative at le=${b.labels.le}`);
                prevLe = le;
                prevCount = b.value;
            }
            assert.equal(buckets[buckets.length - 1].labels.le, '+Inf', `${f.name} ends with +Inf`);
            const count = f.samples.find((s) => s.name === `${f.name}_count`);
            const sum = f.samples.find((s) => s.name === `${f.name}_sum`);
            assert.ok(count && sum, `${f.name} has _count and _sum`);
            assert.equal(prevCount, count.value, `${f.name} +Inf bucket == _count`);
            assert.ok(sum.value >= 0, `${f.name} _sum`);
        }
    }));

    it('sends, history pages and replays are counted by their histograms', T, withLogs(async () => {
        const room = uniq('metr');
        const a = await connectUser(srv.wsUrl, 'anna', [room]);
        const b = await connectUser(srv.wsUrl, 'bob', [room]);
        const before = (await scrape()).families;
        const n = 3;
        for (let i = 1; i <= n; i++) {
            const ack = await a.sendMessage(room, `metered ${i}`);
            assert.equal(ack.type, 'ack', JSON.stringify(ack));
            await b.message(room, ack.id);
        }
        for (let i = 0; i < 2; i++) {
            const r = await api(srv.url, `/api/rooms/${room}/messages?limit=2`);
            assert.equal(r.status, 200, r.text);
            assert.equal(r.json.messages.length, 2);
        }
        const c = await connectUser(srv.wsUrl, 'carl');
        await c.join(room, 0);
        await c.message(room, n); // the replay read the room's history
        const grew = (name) => value(after, name) - value(before, name);
        let after;
        await waitFor(
            async () => {
                after = (await scrape()).families;
                return (
                    grew('turbochat_delivery_seconds_count') >= n &&
                    grew('turbochat_publish_seconds_count') >= n &&
                    grew('turbochat_store_commit_seconds_count') >= 1 &&
                    grew('turbochat_history_seconds_count') >= 2 &&
                    grew('turbochat_replay_read_seconds_count') >= 1
                );
            },
            { what: 'the latency histograms to count the traffic' },
        ).catch((err) => {
            const counts = HISTOGRAMS.map((h) => `${h}: +${grew(`${h}_count`)}`).join(', ');
            throw new Error(`${err.message}; ${counts}`);
        });
        assert.ok(grew('turbochat_messages_received_total') >= n, 'messages received');
        assert.ok(grew('turbochat_messages_delivered_total') >= 2 * n, 'a frame per member per message');
        // The delivery histogram observes once per event, not per recipient.
        assert.ok(grew('turbochat_delivery_seconds_count') < 2 * n, 'delivery counts events, not frames');
        assert.ok(value(after, 'turbochat_connections') >= 3, 'three open connections');
        assert.ok(value(after, 'turbochat_connections_accepted_total') >= 3, 'three accepted');
        for (const x of [a, b, c]) await x.close();
    }));
});

// Grafana's template syntax and the PromQL words that are not metric names.
const PROMQL_WORDS = new Set([
    'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'and', 'or', 'unless', 'offset', 'bool',
]);

// The metric names a PromQL expression reads: identifiers left once label
// matchers, grouping clauses, strings, ranges, variables, numbers and
// function calls are taken out.
function metricNames(expr) {
    const stripped = expr
        .replace(/"(?:[^"\\]|\\.)*"/g, ' ')
        .replace(/\{[^}]*\}/g, ' ')
        .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
        .replace(/\[[^\]]*\]/g, ' ')
        .replace(/\$\{?[A-Za-z_][A-Za-z0-9_:]*\}?/g, ' ')
        .replace(/\b\d+(\.\d+)?(e[+-]?\d+)?\b/gi, ' ');
    const names = [];
    for (const m of stripped.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?/g)) {
        if (m[2] || PROMQL_WORDS.has(m[1])) continue;
        names.push(m[1]);
    }
    return names;
}

describe('deploy/grafana-dashboard.json', () => {
    const dashboard = JSON.parse(fs.readFileSync(path.join(SOURCE, 'deploy', 'grafana-dashboard.json'), 'utf8'));
    const panels = (dashboard.panels || []).flatMap((p) => [p, ...(p.panels || [])]);
    const targets = panels.flatMap((p) => (p.targets || []).map((t) => ({ panel: p.title, expr: t.expr })));

    it('is a Grafana dashboard with a Prometheus datasource and an instance variable', T, () => {
        assert.ok(dashboard.schemaVersion >= 36, `schemaVersion ${dashboard.schemaVersion}`);
        assert.ok(dashboard.title && dashboard.uid, 'title and uid');
        const vars = dashboard.templating.list;
        const ds = vars.find((v) => v.name === 'datasource');
        assert.equal(ds?.type, 'datasource');
        assert.equal(ds.query, 'prometheus');
        const inst = vars.find((v) => v.name === 'instance');
        assert.equal(inst?.type, 'query');
        for (const p of panels.filter((x) => x.type !== 'row')) {
            assert.equal(p.datasource?.uid, '${datasource}', `panel ${p.title} uses the datasource variable`);
            assert.ok(p.targets?.length > 0, `panel ${p.title} has queries`);
            for (const t of p.targets) assert.match(t.expr, /instance=~"\$instance"/, `${p.title}: ${t.expr} filters on $instance`);
        }
    });

    it('every expression reads only series a real node exposes', T, withLogs(async () => {
        const exposed = sampleNames((await scrape()).families);
        const used = new Set();
        const inst = dashboard.templating.list.find((v) => v.name === 'instance');
        const queries = [...targets, { panel: 'variable instance', expr: inst.query.query ?? inst.query }];
        for (const { panel, expr } of queries) {
            const names = metricNames(expr.replace(/^label_values\(([^,]*),.*\)$/, '$1'));
            assert.ok(names.length > 0, `${panel}: ${expr} reads a metric`);
            for (const name of names) {
                assert.ok(exposed.has(name), `${panel}: ${expr} reads ${name}, which /metrics does not expose`);
                used.add(name);
            }
        }
        // What the dashboard is for: every latency at p50 and p99, memory.
        for (const h of ['delivery', 'store_commit', 'publish', 'history']) {
            for (const q of ['0.5', '0.99']) {
                assert.ok(
                    targets.some((t) => t.expr.includes(`histogram_quantile(${q}`) && t.expr.includes(`turbochat_${h}_seconds_bucket`)),
                    `a p${Number(q) * 100} panel for turbochat_${h}_seconds`,
                );
            }
        }
        for (const name of [
            'turbochat_connections',
            'turbochat_messages_received_total',
            'turbochat_messages_delivered_total',
            'turbochat_rate_limited_total',
            'turbochat_frames_rejected_total',
            'turbochat_store_queue_depth',
            'turbochat_store_errors_total',
            'turbochat_broker_connected',
            'turbochat_broker_reconnects_total',
            'turbochat_broker_gaps_repaired_total',
            'process_resident_memory_bytes',
        ]) {
            assert.ok(used.has(name), `the dashboard shows ${name}`);
        }
    }));
});
