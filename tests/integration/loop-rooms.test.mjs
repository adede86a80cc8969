// Room traffic on the event loops: the join/leave rate limit
// (TURBOCHAT_JOIN_RATE_LIMIT, TURBOCHAT_JOIN_RATE_BURST) protects a room's
// members from a connection that churns; re-joining a joined room does not
// replay again; a replay far larger than the outbound queue is paged as the
// queue drains instead of overflowing it, also while the client pings and the
// room is busy.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { connectUser, sendMany, uniq, WAIT_MS, withTimeout } from '../lib/client.mjs';
import { connectHello as rawHello, encodeFrame } from '../lib/rawws.mjs';
import { RELAXED_RATE_ENV, startServer, stopAll, withLogs } from '../lib/server.mjs';

const T = { timeout: 90000 };

let srv; // default join rate limit (10/s, burst 60)
let smallQueue; // 64 KiB outbound queue

before(async () => {
    [srv, smallQueue] = await Promise.all([
        startServer({ env: RELAXED_RATE_ENV }),
        startServer({ env: { ...RELAXED_RATE_ENV, TURBOCHAT_OUTBOUND_MAX_KIB: '64' } }),
    ]);
});

after(stopAll);

describe('join rate limit', () => {
    it('join/leave churn over the bucket gets rate_limited; the 50 members are not closed and keep getting messages', T, withLogs(async () => {
        const room = uniq('churn');
        const members = await Promise.all(
            Array.from({ length: 50 }, (_, i) => connectUser(srv.wsUrl, `member${i}`, [room], { timeoutMs: 30000 })),
        );
        const speaker = await connectUser(srv.wsUrl, 'speaker', [room]);
        const churner = await connectUser(srv.wsUrl, 'churner');

        // 150 join/leave pairs as fast as they can be written: far over the burst
        const PAIRS = 150;
        for (let i = 0; i < PAIRS; i++) {
            churner.send({ type: 'join', room });
            churner.send({ type: 'leave', room });
        }
        // every one of those 300 frames is answered: joined, left or an error for the room
        const isAnswer = (f) => f.room === room && ['joined', 'left', 'error'].includes(f.type);
        await withTimeout(
            (async () => {
                while (churner.seen(isAnswer).length < 2 * PAIRS) await churner.next(isAnswer);
            })(),
            3 * WAIT_MS,
            `answers to all ${2 * PAIRS} join/leave frames`,
        );
        const answers = churner.seen(isAnswer);
        const limited = answers.filter((f) => f.type === 'error' && f.code === 'rate_limited');
        const counts = {};
        for (const f of answers) counts[f.type === 'error' ? f.code : f.type] = (counts[f.type === 'error' ? f.code : f.type] || 0) + 1;
        process.stderr.write(`# join/leave churn answers: ${JSON.stringify(counts)}\n`);
        assert.ok(limited.length > 0, `some join/leave frames must be rate_limited: ${JSON.stringify(counts)}`);
        for (const e of limited) {
            assert.equal(e.room, room, `rate_limited carries the room: ${JSON.stringify(e)}`);
            assert.equal(typeof e.message, 'string');
        }
        assert.ok((counts.joined || 0) >= 1, 'joins within the burst are accepted');
        assert.equal(churner.closeInfo, null, 'rate limiting does not close the churner');
        await churner.ping();

        // the members survived the churn and still get what is said afterwards
        const closed = members.filter((m) => m.closeInfo).map((m) => `${m.user}: ${JSON.stringify(m.closeInfo)}`);
        assert.deepEqual(closed, [], 'no member may be closed (1013) by the churn');
        const ids = [];
        for (let i = 1; i <= 5; i++) {
            const ack = await speaker.sendMessage(room, `after the churn ${i}`);
            assert.equal(ack.type, 'ack', JSON.stringify(ack));
            ids.push(ack.id);
        }
        for (const m of members) {
            for (const id of ids) await m.message(room, id);
        }
        assert.deepEqual(members.filter((m) => m.closeInfo).map((m) => m.user), [], 'members still open');
        await Promise.all([...members, speaker, churner].map((c) => c.close()));
    }));
});

describe('re-join', () => {
    it('joining a room already joined answers joined again and does not replay again', T, withLogs(async () => {
        const room = uniq('rejoin');
        const poster = await connectUser(srv.wsUrl, 'poster', [room]);
        for (let i = 1; i <= 3; i++) assert.equal((await poster.sendMessage(room, `m${i}`)).id, i);

        const c = await connectUser(srv.wsUrl, 'rejoiner');
        const first = await c.join(room, 0);
        assert.equal(first.last_id, 3);
        for (let id = 1; id <= 3; id++) await c.message(room, id);

        const second = await c.join(room, 0);
        assert.equal(second.type, 'joined');
        assert.equal(second.room, room);
        // a barrier: replayed frames come before live ones of the room
        const ack = await poster.sendMessage(room, 'barrier');
        assert.equal(ack.id, 4);
        await c.message(room, 4);
        const at = c.frames.indexOf(second);
        const after = c.frames.slice(at + 1).filter((f) => f.type === 'message' && f.room === room).map((f) => f.id);
        assert.deepEqual(after, [4], 'after the second joined: only the live message, no replay of 1..3');
        const all = c.seen((f) => f.type === 'message' && f.room === room).map((f) => f.id);
        assert.deepEqual(all, [1, 2, 3, 4], 'each message once');
        await Promise.all([poster.close(), c.close()]);
    }));
});

describe('paged replay', () => {
    const N = 400;
    const text = (i) => `${i} ${'r'.repeat(2000)}`;

    // A room holding N messages of ~2 KB (ids 1..N), sent before anyone below joins.
    async function filledRoom(prefix) {
        const room = uniq(prefix);
        const sender = await connectUser(smallQueue.wsUrl, 'sender', [room]);
        const ids = await sendMany(sender, room, N, text);
        assert.deepEqual(ids, Array.from({ length: N }, (_, i) => i + 1), `ids 1..${N}`);
        await sender.close();
        return room;
    }

    // c got exactly the messages from..to of room, in order, with their texts, and is open.
    async function expectAll(c, room, from, to, textOf) {
        await c.seenOrNext((f) => f.type === 'message' && f.room === room && f.id === to, 3 * WAIT_MS);
        const got = c.seen((f) => f.type === 'message' && f.room === room);
        assert.deepEqual(
            got.map((f) => f.id),
            Array.from({ length: to - from + 1 }, (_, i) => from + i),
            `${c.user}: every message ${from}..${to}, once, in order`,
        );
        const wrong = got.filter((f) => f.text !== textOf(f.id)).map((f) => f.id);
        assert.deepEqual(wrong, [], 'texts intact');
        assert.equal(c.closeInfo, null, `${c.user} is not closed`);
    }

    it('400 missed messages of ~2 KB (about 800 KB) replay in order through a 64 KiB queue, without a close', T, withLogs(async () => {
        const room = await filledRoom('replay');
        const late = await connectUser(smallQueue.wsUrl, 'late');
        const j = await late.join(room, 0);
        assert.equal(j.recovered, true, `since 0: ${JSON.stringify(j)}`);
        assert.equal(j.last_id, N);
        await expectAll(late, room, 1, N, text);

        const half = await connectUser(smallQueue.wsUrl, 'half-late');
        const jh = await half.join(room, 200);
        assert.equal(jh.recovered, true, `since 200: ${JSON.stringify(jh)}`);
        await expectAll(half, room, 201, N, text);

        // both still work: a live message after the replay
        const more = await connectUser(smallQueue.wsUrl, 'more', [room]);
        const ack = await more.sendMessage(room, 'live after replay');
        await Promise.all([late.message(room, ack.id), half.message(room, ack.id)]);
        await Promise.all([late.close(), half.close(), more.close()]);
    }));

    it('traffic during a paged replay (its own ping, new messages, members joining) neither closes the client nor overtakes the replay', T, withLogs(async () => {
        const room = await filledRoom('replay-live');
        const talker = await connectUser(smallQueue.wsUrl, 'talker', [room]);
        const others = await Promise.all([1, 2, 3].map((i) => connectUser(smallQueue.wsUrl, `newcomer${i}`)));
        const late = await rawHello({ port: smallQueue.port }, 'late-live');

        // the join and a ping in one write: the pong is due while the replay is queued
        await late.sendRaw(Buffer.concat([
            encodeFrame({ payload: JSON.stringify({ type: 'join', room, since: 0 }) }),
            encodeFrame({ payload: JSON.stringify({ type: 'ping', ref: 'during-replay' }) }),
        ]));
        // while the replay is under way: three members join, ten messages are sent
        const LIVE = 10;
        const joins = others.map((o) => o.join(room));
        const acks = [];
        for (let i = 1; i <= LIVE; i++) acks.push(await talker.sendMessage(room, text(N + i)));
        await Promise.all(joins);
        assert.deepEqual(acks.map((a) => a.id), Array.from({ length: LIVE }, (_, i) => N + 1 + i));

        const j = await late.nextJson((f) => (f.type === 'joined' || f.type === 'error') && f.room === room);
        assert.equal(j.type, 'joined', JSON.stringify(j));
        assert.equal(j.recovered, true);
        await late.nextJson((f) => f.type === 'message' && f.room === room && f.id === N + LIVE, 3 * WAIT_MS);
        await late.nextJson((f) => f.type === 'pong' && f.ref === 'during-replay');
        const got = late.seenJson((f) => f.type === 'message' && f.room === room);
        assert.deepEqual(got.map((f) => f.id), Array.from({ length: N + LIVE }, (_, i) => i + 1), 'every message once, in order');
        assert.deepEqual(got.filter((f) => f.text !== text(f.id)).map((f) => f.id), [], 'texts intact');
        assert.equal(late.closeInfo, null, 'no close frame');
        // A newcomer who joined before late's `joined` was made is in its members;
        // one who joined after it is announced by a presence frame.
        const joinedLater = late.seenJson((f) => f.type === 'presence' && f.event === 'join').map((f) => f.user);
        const known = new Set([...j.members, ...joinedLater]);
        assert.deepEqual(['newcomer1', 'newcomer2', 'newcomer3'].filter((u) => !known.has(u)), [],
            'every newcomer is in joined.members or announced by presence');
        late.destroy();
        await Promise.all([talker, ...others].map((c) => c.close()));
    }));
});
