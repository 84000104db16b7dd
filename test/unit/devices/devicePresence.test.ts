// The presence rules without servers: the device credential check, the throttled lastSeenAt write,
// reconciliation (what to stop, what is lost), renewal, and the agent's naming of relay failures.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { describeRelayCause } from '../../../agent/deviceAgent';
import { DevicePresence, refusalDetail, type Heartbeat } from '../../../lib/devices/devicePresence';
import type { DevicePresenceFields, DeviceRecord } from '../../../lib/devices/deviceStore';
import { DeviceNotFoundError, UnauthenticatedError } from '../../../lib/errors';
import { sha256Base64url } from '../../../lib/sealing';
import type { SessionRecord } from '../../../lib/sessions/sessionStore';

const KEY = 'dk_0123456789abcdef0123456789abcdef';
const T0 = Date.parse('2026-12-01T10:00:00Z');
const S1 = '11111111-1111-4111-8111-111111111111';
const S2 = '22222222-2222-4222-8222-222222222222';

function setup(o: { open?: SessionRecord[]; expiresInMs?: number } = {}) {
  let clock = T0;
  let record: DeviceRecord & { etag: string } = {
    deviceId: 'plc-1',
    tags: {},
    queueName: 'dev-plc-1',
    policyId: 'p-1',
    sasExpiresAt: new Date(T0 + (o.expiresInMs ?? 300_000)).toISOString(),
    createdAt: new Date(T0 - 1000).toISOString(),
    createdBy: 'admin',
    credentialHash: sha256Base64url(KEY),
    etag: 'e1',
  };
  const writes: DevicePresenceFields[] = [];
  const renewals: string[] = [];
  const ended: Array<{ sessionId: string; reason: string }> = [];
  const presence = new DevicePresence({
    store: {
      get: (id) => Promise.resolve(id === 'plc-1' ? record : undefined),
      recordPresence: (_id, fields) => {
        writes.push(fields);
        record = { ...record, ...fields };
        return Promise.resolve();
      },
    },
    registry: {
      enrollmentSeconds: 300,
      renew: () => {
        const expiresAt = new Date(clock + 300_000).toISOString();
        renewals.push(expiresAt);
        record = { ...record, sasExpiresAt: expiresAt };
        return Promise.resolve({ expiresAt });
      },
    },
    sessions: { listOpen: () => Promise.resolve(o.open ?? []) },
    seenWriteMs: 15_000,
    lostGraceMs: 10_000,
    now: () => new Date(clock),
  });
  const hb = (h: Partial<Heartbeat> = {}): Heartbeat => ({
    startedAt: new Date(T0 - 60_000).toISOString(),
    sessions: [],
    ...h,
  });
  const beat = (h: Partial<Heartbeat> = {}, key = KEY) =>
    presence.heartbeat('plc-1', key, hb(h), (s, reason) => {
      ended.push({ sessionId: s.sessionId, reason });
      return Promise.resolve();
    });
  return {
    beat,
    presence,
    writes,
    renewals,
    ended,
    advance: (ms: number) => (clock += ms),
    record: () => record,
  };
}

const session = (sessionId: string, status: 'pending' | 'ready', readyAgoMs: number): SessionRecord => ({
  sessionId,
  deviceId: 'plc-1',
  openerId: 'alice',
  port: 22,
  status,
  createdAt: new Date(T0 - readyAgoMs - 1000).toISOString(),
  ...(status === 'ready' ? { readyAt: new Date(T0 - readyAgoMs).toISOString() } : {}),
  expiresAt: new Date(T0 + 3_600_000).toISOString(),
});

describe('DevicePresence', () => {
  it('refuses a wrong credential and a row without one (401), and answers device_not_found only for an absent row', async () => {
    const t = setup();
    await assert.rejects(t.beat({}, 'dk_wrong-wrong-wrong-wrong'), UnauthenticatedError);
    await assert.rejects(
      t.presence.heartbeat('gone', KEY, { startedAt: new Date(T0).toISOString(), sessions: [] }, () =>
        Promise.resolve(),
      ),
      DeviceNotFoundError,
    );
    delete t.record().credentialHash;
    await assert.rejects(t.beat(), UnauthenticatedError);
    assert.equal(t.writes.length, 0);
  });

  it('writes lastSeenAt on the first heartbeat, then only after seenWriteMs or on a change', async () => {
    const t = setup();
    await t.beat();
    assert.equal(t.writes.length, 1);
    t.advance(5000);
    await t.beat();
    t.advance(5000);
    await t.beat();
    assert.equal(t.writes.length, 1, 'nothing new within 15 s: no write');
    t.advance(5000);
    await t.beat();
    assert.equal(t.writes.length, 2, 'seenWriteMs passed: a write');
    t.advance(1000);
    await t.beat({ stopping: true });
    assert.equal(t.writes.length, 3, 'stopping is a change: written at once');
    assert.equal(t.writes[2].agentState, 'stopped');
  });

  it('answers stop for a held session the control plane no longer serves', async () => {
    const t = setup({ open: [session(S1, 'ready', 60_000)] });
    const a = await t.beat({
      sessions: [
        { sessionId: S1, listener: 'online' },
        { sessionId: S2, listener: 'online' },
      ],
    });
    assert.deepEqual(a.stop, [S2]);
    assert.deepEqual(t.ended, []);
  });

  it('ends a ready session a restarted agent does not hold (device_lost), but not one just ready or pending', async () => {
    const t = setup({
      open: [session(S1, 'ready', 60_000), session(S2, 'ready', 2000)],
    });
    // Just restarted: it may not have read its state yet.
    await t.beat({ startedAt: new Date(T0 - 1000).toISOString() });
    assert.deepEqual(t.ended, []);
    t.advance(6000);
    await t.beat({ startedAt: new Date(T0 - 1000).toISOString() });
    assert.deepEqual(t.ended, [{ sessionId: S1, reason: 'device_lost' }]);
  });

  it('does not call a session lost that the agent dropped at the end of its lifetime', async () => {
    const t = setup({ open: [{ ...session(S1, 'ready', 60_000), expiresAt: new Date(T0 - 1000).toISOString() }] });
    await t.beat();
    assert.deepEqual(t.ended, []);
  });

  it('ends a session the agent reports lost, and stops it', async () => {
    const t = setup({ open: [session(S1, 'ready', 1000)] });
    const a = await t.beat({ sessions: [{ sessionId: S1, listener: 'offline' }], lost: [S1] });
    assert.deepEqual(t.ended, [{ sessionId: S1, reason: 'device_lost' }]);
    assert.deepEqual(a.stop, [S1]);
  });

  it('renews the enrollment once less than a third of its lifetime is left, not before', async () => {
    const t = setup({ expiresInMs: 150_000 });
    assert.equal((await t.beat()).renewed, undefined);
    t.advance(60_000);
    const a = await t.beat();
    assert.ok(a.renewed);
    assert.equal(Date.parse(a.renewed.expiresAt), T0 + 60_000 + 300_000);
  });

  it("keeps the agent's refusal so the open's problem names it", async () => {
    const t = setup();
    await t.beat({ refused: [{ sessionId: S1, detail: 'port 25 is not allowed on this device (allowed: 22)' }] });
    assert.equal(refusalDetail(t.record(), S1), 'port 25 is not allowed on this device (allowed: 22)');
    assert.equal(refusalDetail(t.record(), S2), undefined);
  });
});

describe("the agent's relay causes", () => {
  const err = (code: string, message = code) => Object.assign(new Error(message), { code });
  it('names TLS with the --relay-ca hint, DNS, proxy and a blocked connection', () => {
    const tls = describeRelayCause({ reason: 'x', cause: err('SELF_SIGNED_CERT_IN_CHAIN', 'self-signed certificate') });
    assert.equal(tls.kind, 'tls');
    assert.match(tls.text, /--relay-ca/);
    assert.ok(tls.definitive);
    assert.equal(describeRelayCause({ reason: 'x', cause: err('ENOTFOUND') }).kind, 'dns');
    assert.equal(describeRelayCause({ reason: 'x', statusCode: 407 }).kind, 'proxy');
    const blocked = describeRelayCause({ reason: 'x', cause: err('ECONNREFUSED') });
    assert.equal(blocked.kind, 'refused');
    assert.equal(blocked.definitive, false);
  });
});
