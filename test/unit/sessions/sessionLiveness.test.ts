// Client liveness, idle sessions, the per-principal cap and operators' own listings, without
// servers: the rule (livenessVerdict) row by row, then SessionControl's heartbeat and sweep and
// SessionOpener's cap over the in-memory store and the scripted orchestration port.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { Principal } from '../../../lib/auth/principal';
import { TooManySessionsError } from '../../../lib/errors';
import { Sealer } from '../../../lib/sealing';
import { SESSION_EVENTS } from '../../../lib/sessions/session';
import { SessionControl, SYSTEM } from '../../../lib/sessions/sessionControl';
import { livenessVerdict } from '../../../lib/sessions/sessionLiveness';
import { SessionOpener } from '../../../lib/sessions/sessionOpener';
import type { SessionRecord } from '../../../lib/sessions/sessionStore';
import { FakeOrchestrations, MemorySessionStore, SAMPLE_RECORD } from './fakes';

const alice: Principal = { id: 'alice', roles: ['operator'], via: 'jwt' };
const bob: Principal = { id: 'bob', roles: ['operator'], via: 'jwt' };
const admin: Principal = { id: 'root', roles: ['admin'], via: 'jwt' };
const T0 = Date.parse('2026-11-25T10:00:00.000Z');
const at = (s: number) => new Date(T0 + s * 1000);
const iso = (s: number) => at(s).toISOString();
const limits = { clientGoneSeconds: 120, idleMinutes: 15 };
const ready: SessionRecord = { ...SAMPLE_RECORD, status: 'ready', readyAt: iso(0) };
const id = (n: number) => `6f1c2d1e-8a55-4a55-9d55-${String(n).padStart(12, '0')}`;

describe('livenessVerdict', () => {
  const rows: Array<[string, Partial<SessionRecord>, number, ReturnType<typeof livenessVerdict>]> = [
    ['a client heard within the limit is alive', { clientSeenAt: iso(100), lastActivityAt: iso(100) }, 200, undefined],
    [
      'a client silent past the limit is gone',
      { clientSeenAt: iso(100), lastActivityAt: iso(100) },
      221,
      'client_gone',
    ],
    ['a session never heartbeated is never gone (only idle)', {}, 600, undefined],
    ['no activity since ready for 15 min is idle', {}, 15 * 60 + 1, 'idle'],
    ['activity moves the idle clock', { clientSeenAt: iso(900), lastActivityAt: iso(800) }, 901, undefined],
    ['its own idle minutes win over the setting', { idleMinutes: 2 }, 121, 'idle'],
    ['idleMinutes 0 never idles', { idleMinutes: 0 }, 86_400, undefined],
    ['only ready sessions are judged', { status: 'pending', clientSeenAt: iso(0) }, 86_400, undefined],
  ];
  for (const [name, fields, now, expected] of rows) {
    it(name, () => assert.equal(livenessVerdict({ ...ready, ...fields }, limits, at(now)), expected));
  }
  it('clientGoneSeconds 0 never declares a client gone', () => {
    assert.equal(
      livenessVerdict({ ...ready, clientSeenAt: iso(0), idleMinutes: 0 }, { ...limits, clientGoneSeconds: 0 }, at(9e5)),
      undefined,
    );
  });
});

async function setup(records: SessionRecord[]) {
  const sessions = new MemorySessionStore();
  const orchestrations = new FakeOrchestrations();
  for (const r of records) {
    await sessions.insert(r);
    orchestrations.set(r.sessionId, { runtimeStatus: 'Running', customStatus: { status: r.status } });
  }
  let now = at(0);
  const audit: unknown[] = [];
  const control = new SessionControl({
    sessions,
    orchestrations,
    devices: { requireRecord: () => Promise.resolve({} as never), delete: () => Promise.resolve() },
    sealer: new Sealer(randomBytes(32)),
    audit: { append: (e) => Promise.resolve(void audit.push(e)) },
    liveness: limits,
    prices: { listenerHourUsd: 0.0134, gbUsd: 1, pricesDate: '2026-12-03' },
    now: () => now,
  });
  return { sessions, orchestrations, control, audit, setNow: (s: number) => (now = at(s)) };
}

const report = (open: number, total: number) => ({
  openConnections: open,
  connections: total,
  bytesToDevice: 1000 * total,
  bytesFromDevice: 5000 * total,
});

describe('SessionControl: heartbeats and the liveness sweep', () => {
  it('stores the heartbeat for the opener only and answers when to beat again', async () => {
    const t = await setup([{ ...ready, sessionId: id(1) }]);
    t.setNow(10);
    const answer = await t.control.heartbeat(alice, id(1), report(1, 1), '203.0.113.7');
    assert.deepEqual(answer, { sessionId: id(1), status: 'ready', heartbeatSeconds: 30 });
    const r = t.sessions.records.get(id(1))!;
    assert.equal(r.clientSeenAt, iso(10));
    assert.equal(r.lastActivityAt, iso(10));
    assert.equal(r.clientAddress, '203.0.113.7');
    assert.equal(r.bytesFromDevice, 5000);
    await assert.rejects(t.control.heartbeat(bob, id(1), report(0, 0)), { status: 404, code: 'session_not_found' });
    await assert.rejects(t.control.heartbeat(admin, id(1), report(0, 0)), { status: 404 });
  });

  it('ends a session whose client went silent with client_gone, by system, and leaves a live one', async () => {
    const t = await setup([
      { ...ready, sessionId: id(1) },
      { ...ready, sessionId: id(2) },
    ]);
    t.setNow(10);
    await t.control.heartbeat(alice, id(1), report(1, 1));
    await t.control.heartbeat(alice, id(2), report(1, 1));
    t.setNow(100);
    await t.control.heartbeat(alice, id(2), report(1, 1));
    t.setNow(131); // id(1) silent for 121 s, id(2) for 31 s
    const ended = await t.control.sweepLiveness();
    assert.deepEqual(ended, [{ sessionId: id(1), deviceId: 'plc-1', reason: 'client_gone' }]);
    assert.deepEqual(t.orchestrations.raised, [
      { sessionId: id(1), eventName: SESSION_EVENTS.endSession, data: { reason: 'client_gone', by: SYSTEM } },
    ]);
    const r = t.sessions.records.get(id(1))!;
    assert.equal(r.status, 'ending');
    assert.equal(r.reason, 'client_gone');
    assert.equal(r.endedBy, SYSTEM);
    assert.equal(t.sessions.records.get(id(2))!.status, 'ready');
    // Second run: the session is no longer ready; nothing is raised again.
    assert.deepEqual(await t.control.sweepLiveness(), []);
    assert.equal(t.orchestrations.raised.length, 1);
  });

  it('ends a session with no connection through it for its idle minutes, and keeps a busy one', async () => {
    const t = await setup([
      { ...ready, sessionId: id(1), idleMinutes: 1 },
      { ...ready, sessionId: id(2), idleMinutes: 1 },
    ]);
    for (let s = 20; s <= 80; s += 20) {
      t.setNow(s);
      await t.control.heartbeat(alice, id(1), report(0, 0)); // alive, but nothing through it
      await t.control.heartbeat(alice, id(2), report(1, 1)); // a connection open
    }
    t.setNow(81);
    assert.deepEqual(await t.control.sweepLiveness(), [{ sessionId: id(1), deviceId: 'plc-1', reason: 'idle' }]);
    assert.equal(t.sessions.records.get(id(1))!.reason, 'idle');
  });

  it('answers a heartbeat on an ended session with its end, so the client learns it at once', async () => {
    const t = await setup([{ ...ready, sessionId: id(1), status: 'ended', reason: 'idle', endedAt: iso(5) }]);
    const answer = await t.control.heartbeat(alice, id(1), report(0, 0));
    assert.equal(answer.status, 'ended');
    assert.equal(answer.reason, 'idle');
  });
});

describe('operators list their own sessions, newest first', () => {
  it('scopes an operator to their own and takes the newest N', async () => {
    const mk = (n: number, openerId: string): SessionRecord => ({
      ...SAMPLE_RECORD,
      sessionId: id(n),
      openerId,
      createdAt: iso(n * 60),
    });
    const t = await setup([mk(1, 'alice'), mk(2, 'bob'), mk(3, 'alice'), mk(4, 'alice'), mk(5, 'bob')]);
    const mine = await t.control.list(alice, { limit: 2 });
    assert.deepEqual(
      mine.map((v) => v.sessionId),
      [id(4), id(3)],
    );
    // An operator cannot widen the scope by naming someone else.
    assert.deepEqual(
      (await t.control.list(alice, { openerId: 'bob' })).map((v) => v.sessionId),
      [id(4), id(3), id(1)],
    );
    assert.deepEqual(
      (await t.control.list(admin, { openerId: 'bob' })).map((v) => v.sessionId),
      [id(5), id(2)],
    );
    assert.equal((await t.control.list(admin, {})).length, 5);
  });

  it('shows who ended a session, its bytes and its cost estimate', async () => {
    const t = await setup([
      {
        ...ready,
        sessionId: id(1),
        status: 'ended',
        reason: 'requested',
        endedBy: 'alice',
        endedAt: new Date(T0 + 3_600_000).toISOString(),
        bytesToDevice: 4e6,
        bytesFromDevice: 200e6,
      },
    ]);
    const [v] = await t.control.list(alice, {});
    assert.equal(v.endedBy, 'alice');
    assert.equal(v.bytesFromDevice, 200e6);
    // 1 listener-hour × 0.0134 + (0.204 GB − 5/730 GB) × 1.00
    assert.equal(v.cost?.listenerHours, 1);
    assert.ok(Math.abs((v.cost?.usd ?? 0) - (0.0134 + 0.204 - 5 / 730)) < 1e-6, String(v.cost?.usd));
    assert.equal(v.cost?.pricesDate, '2026-12-03');
  });

  it('records who ended a session in the audit', async () => {
    const t = await setup([{ ...ready, sessionId: id(1) }]);
    await t.control.end(admin, id(1));
    assert.deepEqual(t.audit, [
      {
        at: iso(0),
        action: 'session.end',
        principal: 'root',
        deviceId: 'plc-1',
        sessionId: id(1),
        outcome: 'ok',
        details: { openedBy: 'alice' },
      },
    ]);
  });
});

describe('SessionOpener: the per-principal cap', () => {
  it('refuses an operator’s open past the cap with too_many_sessions, counting only open sessions', async () => {
    const sessions = new MemorySessionStore();
    let n = 10;
    const opener = new SessionOpener({
      sessions,
      orchestrations: new FakeOrchestrations(),
      grants: { isGranted: () => Promise.resolve(true) },
      devices: { requireRecord: () => Promise.resolve({} as never) },
      rateLimiter: { enforce: () => undefined },
      sealer: new Sealer(randomBytes(32)),
      limits: {
        openBudgetMs: 0,
        readyTimeoutMs: 7000,
        defaultLifetimeMinutes: 60,
        maxLifetimeMinutes: 120,
        maxPerPrincipal: 2,
      },
      newId: () => id(++n),
    });
    await opener.open(alice, { deviceId: 'plc-1', port: 22 });
    await opener.open(alice, { deviceId: 'plc-1', port: 22 });
    const refused = await opener.open(alice, { deviceId: 'plc-1', port: 22 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(refused instanceof TooManySessionsError);
    assert.equal(refused.status, 429);
    assert.deepEqual(refused.extensions, { openSessions: 2, cap: 2 });
    // Another principal has a cap of their own; an ended session frees a place.
    await opener.open(bob, { deviceId: 'plc-1', port: 22 });
    await sessions.transition('plc-1', id(11), 'ended', { reason: 'requested' });
    await opener.open(alice, { deviceId: 'plc-1', port: 22 });
    assert.equal(sessions.records.size, 4);
    // Admins are not capped.
    for (let i = 0; i < 3; i++) await opener.open(admin, { deviceId: 'plc-1', port: 22 });
  });
});
