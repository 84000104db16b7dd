// Opening a session without servers: the orchestration port and the sessions table are fakes, the
// clock is the test's (the record's times) and the open budget short, so the wait runs for real.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { Principal } from '../../../lib/auth/principal';
import { DeviceNotFoundError, toProblem } from '../../../lib/errors';
import { Sealer } from '../../../lib/sealing';
import { OpenAdmission } from '../../../lib/sessions/openAdmission';
import { SessionOpener, type SessionOpenerOptions } from '../../../lib/sessions/sessionOpener';
import { SessionReadyWatcher } from '../../../lib/sessions/sessionReadyWatcher';
import { FakeOrchestrations, MemorySessionStore } from './fakes';

const alice: Principal = { id: 'alice', name: 'Alice', roles: ['operator'], via: 'jwt' };
const admin: Principal = { id: 'root', roles: ['admin'], via: 'jwt' };
const SESSION_ID = '6f1c2d1e-8a55-4a55-9d55-0a0b0c0d0e0f';
const T0 = Date.parse('2026-11-25T10:00:00Z');

/** Short, so a wait that runs out does so quickly; the watcher's deadline timer is real. */
const BUDGET_MS = 150;

function setup(
  o: {
    granted?: boolean;
    devices?: string[];
    watcher?: SessionReadyWatcher;
    service?: SessionOpenerOptions['service'];
    admission?: OpenAdmission;
    newId?: () => string;
  } = {},
) {
  const sealer = new Sealer(randomBytes(32));
  const orchestrations = new FakeOrchestrations();
  const sessions = new MemorySessionStore();
  const clock = T0;
  const limited: string[] = [];
  const watcher = o.watcher ?? new SessionReadyWatcher({ intervalMs: 2, now: () => clock });
  const opener = new SessionOpener({
    sessions,
    orchestrations,
    grants: { isGranted: (p, d) => Promise.resolve(o.granted ?? (p === 'alice' && d === 'plc-1')) },
    devices: {
      requireRecord: (d) =>
        (o.devices ?? ['plc-1']).includes(d)
          ? Promise.resolve({} as never)
          : Promise.reject(new DeviceNotFoundError(`Device ${d} is not registered.`)),
    },
    rateLimiter: { enforce: (id) => void limited.push(id) },
    sealer,
    limits: { openBudgetMs: BUDGET_MS, readyTimeoutMs: 7000, defaultLifetimeMinutes: 60, maxLifetimeMinutes: 120 },
    now: () => clock,
    watcher,
    ...(o.service ? { service: o.service } : {}),
    ...(o.admission ? { admission: o.admission } : {}),
    newId: o.newId ?? (() => SESSION_ID),
  });
  const readyStatus = () => ({
    status: 'ready',
    readyAt: new Date(clock).toISOString(),
    relay: {
      namespace: 'rbk-ns-1',
      endpoint: 'https://rbk-ns-1.servicebus.windows.net/',
      hybridConnection: 'tunnel',
      sealedSendToken: sealer.seal('SharedAccessSignature sr=a&sig=b&se=1&skn=send', SESSION_ID),
      expiresAt: '2026-11-25T11:00:00.000Z',
    },
  });
  return { opener, orchestrations, sessions, limited, readyStatus, watcher };
}

describe('SessionOpener', () => {
  it('records the session pending, starts its orchestration, and answers ready with unsealed credentials', async () => {
    const t = setup();
    t.orchestrations.onStatusRead = (id, reads) => {
      if (reads === 3) t.orchestrations.set(id, { customStatus: t.readyStatus() });
    };
    const r = await t.opener.open(alice, { deviceId: 'plc-1', port: 22 });
    assert.equal(r.status, 'ready');
    assert.equal(r.sessionId, SESSION_ID);
    assert.equal(r.status === 'ready' && r.relay.sendToken, 'SharedAccessSignature sr=a&sig=b&se=1&skn=send');
    const record = t.sessions.records.get(SESSION_ID)!;
    assert.equal(record.status, 'pending');
    assert.equal(record.openerId, 'alice');
    assert.equal(record.openerName, 'Alice');
    assert.deepEqual(t.sessions.index.get(SESSION_ID), { deviceId: 'plc-1', openerId: 'alice' });
    assert.deepEqual(t.orchestrations.started, [
      {
        sessionId: SESSION_ID,
        deviceId: 'plc-1',
        port: 22,
        openerId: 'alice',
        createdAt: '2026-11-25T10:00:00.000Z',
        expiresAt: '2026-11-25T11:00:00.000Z',
        readyTimeoutMs: 7000,
      },
    ]);
    assert.deepEqual(t.limited, ['alice']);
  });

  it('works on opens a few at a time in arrival order, and one still waiting at its budget is refused 503 with nothing created', async () => {
    let n = 0;
    const t = setup({ admission: new OpenAdmission({ concurrency: 1 }), newId: () => `s-${++n}` });
    // The first open's record write hangs until released: it holds the only slot.
    let releaseInsert!: () => void;
    const insert = t.sessions.insert.bind(t.sessions);
    let inserts = 0;
    t.sessions.insert = async (r) => {
      if (++inserts === 1) await new Promise<void>((res) => (releaseInsert = res));
      return insert(r);
    };
    const first = t.opener.open(alice, { deviceId: 'plc-1', port: 22 });
    const second = t.opener.open(alice, { deviceId: 'plc-1', port: 22 });
    const refused = await second.then(
      () => assert.fail('the second open should have been refused'),
      (err: unknown) => err,
    );
    const problem = toProblem(refused);
    assert.equal(problem.status, 503);
    assert.equal(problem.body.code, 'service_busy');
    assert.match(
      String(problem.body.detail),
      /1 at a time \(SESSION_OPEN_CONCURRENCY\), and 0 more were waiting .*nothing was created/,
    );
    assert.ok(Number(problem.headers['retry-after']) >= 1);
    // Only the first open was recorded or started.
    assert.equal(inserts, 1);
    releaseInsert();
    assert.equal((await first).sessionId, 's-1');
    assert.deepEqual([...t.sessions.records.keys()], ['s-1']);
    assert.equal(t.orchestrations.started.length, 1);
  });

  it('answers pending when the budget runs out, and leaves nothing waiting', async () => {
    const t = setup();
    const r = await t.opener.open(alice, { deviceId: 'plc-1', port: 22 });
    assert.deepEqual(r, { status: 'pending', sessionId: SESSION_ID });
    assert.equal(t.watcher.waiting, 0);
  });

  it('turns an orchestration that ends before ready into the error of its reason', async () => {
    const t = setup();
    t.orchestrations.onStart = (input) =>
      t.orchestrations.set(input.sessionId, { customStatus: { status: 'ending', reason: 'device_not_ready' } });
    await assert.rejects(t.opener.open(alice, { deviceId: 'plc-1', port: 22 }), {
      status: 504,
      code: 'device_not_ready',
    });
  });

  it('passes the pool’s retry delay on', async () => {
    const t = setup();
    t.orchestrations.onStart = (input) =>
      t.orchestrations.set(input.sessionId, {
        runtimeStatus: 'Completed',
        customStatus: { status: 'failed', reason: 'pool_exhausted', retryAfterSeconds: 12 },
      });
    await assert.rejects(
      t.opener.open(alice, { deviceId: 'plc-1', port: 22 }),
      (err: { status: number; headers: Record<string, string> }) => {
        assert.equal(err.status, 503);
        assert.equal(err.headers['retry-after'], '12');
        return true;
      },
    );
  });

  it('never hands out credentials from a failed orchestration whose last status said ready', async () => {
    const t = setup();
    t.orchestrations.onStart = (input) =>
      t.orchestrations.set(input.sessionId, { runtimeStatus: 'Failed', customStatus: t.readyStatus() });
    await assert.rejects(t.opener.open(alice, { deviceId: 'plc-1', port: 22 }), { code: 'session_failed' });
  });

  it('answers 503 service_busy, not 500, when the orchestration runtime is overloaded at start', async () => {
    const t = setup();
    t.orchestrations.onStart = () => {
      throw new Error('The operation failed with an unexpected status code: 500. Details: "storage timed out"');
    };
    const err = await t.opener.open(alice, { deviceId: 'plc-1', port: 22 }).then(
      () => assert.fail('the open should fail'),
      (e: unknown) => e,
    );
    const p = toProblem(err);
    assert.equal(p.status, 503);
    assert.equal(p.body.code, 'service_busy');
    assert.ok(p.headers['retry-after']);
  });

  it('leases in the request and starts the orchestration with what it leased before the device is told', async () => {
    const steps: string[] = [];
    const leased = {
      namespace: 'rbk-ns-1',
      endpoint: 'https://rbk-ns-1.servicebus.windows.net/',
      hybridConnection: 'tunnel',
      generation: 2,
      sealedSendToken: 'v1.sealed',
      expiresAt: '2026-11-25T11:00:00.000Z',
    };
    const ended: unknown[] = [];
    const t = setup({
      service: {
        open: async (_input, options) => {
          steps.push('lease');
          await options?.beforeNotify?.(leased);
          steps.push('notify');
          return { ok: true, ...leased };
        },
        recordEnd: (e) => (ended.push(e), Promise.resolve()),
      },
    });
    t.orchestrations.onStart = () => steps.push('start');
    const r = await t.opener.open(alice, { deviceId: 'plc-1', port: 22 });
    assert.equal(r.status, 'pending');
    assert.deepEqual(steps, ['lease', 'start', 'notify']);
    assert.deepEqual(t.orchestrations.started[0].opened, leased);
    assert.deepEqual(ended, []);
  });

  it('answers pool_exhausted at once with no orchestration, and closes the record', async () => {
    const ended: Array<{ reason: string }> = [];
    const t = setup({
      service: {
        open: () => Promise.resolve({ ok: false, reason: 'pool_exhausted', retryAfterSeconds: 30 }),
        recordEnd: (e) => (ended.push(e), Promise.resolve()),
      },
    });
    await assert.rejects(t.opener.open(alice, { deviceId: 'plc-1', port: 22 }), { code: 'pool_exhausted' });
    assert.equal(t.orchestrations.started.length, 0);
    assert.deepEqual(
      ended.map((e) => e.reason),
      ['pool_exhausted'],
    );
  });

  it('refuses a lifetime over the configured cap with validation_failed, before writing anything', async () => {
    const t = setup();
    await assert.rejects(t.opener.open(alice, { deviceId: 'plc-1', port: 22, maxLifetimeMinutes: 121 }), {
      status: 400,
      code: 'validation_failed',
    });
    assert.equal(t.sessions.records.size, 0);
    assert.equal(t.orchestrations.started.length, 0);
  });

  it('checks the grant before the device exists, so an operator cannot probe device ids', async () => {
    const t = setup();
    await assert.rejects(t.opener.open(alice, { deviceId: 'no-such-device', port: 22 }), {
      status: 403,
      code: 'device_not_granted',
    });
    await assert.rejects(t.opener.open(admin, { deviceId: 'no-such-device', port: 22 }), {
      status: 404,
      code: 'device_not_found',
    });
    assert.equal(t.orchestrations.started.length, 0);
  });
});
