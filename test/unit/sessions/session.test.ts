import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { Principal } from '../../../lib/auth/principal';
import { Sealer } from '../../../lib/sealing';
import {
  assertSessionTransition,
  openSessionRequestSchema,
  SESSION_STATUSES,
  SESSION_TRANSITIONS,
  statusForReason,
} from '../../../lib/sessions/session';
import { assertCanSee, buildView, openFailure, publicStatus } from '../../../lib/sessions/sessionView';
import type { SessionRecord } from '../../../lib/sessions/sessionStore';

describe('session state machine', () => {
  for (const from of SESSION_STATUSES) {
    for (const to of SESSION_STATUSES) {
      const allowed = SESSION_TRANSITIONS[from].includes(to);
      it(`${from} → ${to} is ${allowed ? 'allowed' : 'refused'}`, () => {
        if (allowed) assert.doesNotThrow(() => assertSessionTransition(from, to));
        else assert.throws(() => assertSessionTransition(from, to), { code: 'invalid_transition' });
      });
    }
  }
  it('maps end reasons to ended or failed', () => {
    assert.equal(statusForReason('requested'), 'ended');
    assert.equal(statusForReason('lifetime'), 'ended');
    assert.equal(statusForReason('device_deleted'), 'ended');
    assert.equal(statusForReason('device_not_ready'), 'failed');
    assert.equal(statusForReason('pool_exhausted'), 'failed');
  });
});

describe('open request', () => {
  it('defaults the port to 3389 and refuses unknown fields and bad lifetimes', () => {
    assert.deepEqual(openSessionRequestSchema.parse({ deviceId: 'abc' }), { deviceId: 'abc', port: 3389 });
    assert.equal(openSessionRequestSchema.safeParse({ deviceId: 'abc', x: 1 }).success, false);
    assert.equal(openSessionRequestSchema.safeParse({ deviceId: 'abc', maxLifetimeMinutes: 721 }).success, false);
    assert.equal(openSessionRequestSchema.safeParse({ deviceId: 'abc', port: 0 }).success, false);
    assert.equal(openSessionRequestSchema.safeParse({ deviceId: 'abc', port: 22.5 }).success, false);
  });
});

describe('session view', () => {
  const sealer = new Sealer(randomBytes(32));
  const record: SessionRecord = {
    sessionId: '6f1c2d1e-8a55-4a55-9d55-0a0b0c0d0e0f',
    deviceId: 'plc-1',
    openerId: 'alice',
    port: 22,
    status: 'pending',
    createdAt: '2026-11-25T10:00:00.000Z',
    expiresAt: '2026-11-25T11:00:00.000Z',
    namespace: 'rbk-ns-1',
  };
  const ready = {
    status: 'ready' as const,
    readyAt: '2026-11-25T10:00:02.000Z',
    relay: {
      namespace: 'rbk-ns-1',
      endpoint: 'https://rbk-ns-1.servicebus.windows.net/',
      hybridConnection: 'tunnel',
      sealedSendToken: sealer.seal('SharedAccessSignature sr=a&sig=b&se=1&skn=send', record.sessionId),
      expiresAt: record.expiresAt,
    },
  };
  const alice: Principal = { id: 'alice', roles: ['operator'], via: 'jwt' };
  const bob: Principal = { id: 'bob', roles: ['operator'], via: 'jwt' };
  const admin: Principal = { id: 'root', roles: ['admin'], via: 'jwt' };

  it('gives the opener the credentials while ready', () => {
    const v = buildView(record, ready, alice, sealer);
    assert.equal(v.status, 'ready');
    assert.equal(v.relay?.sendToken, 'SharedAccessSignature sr=a&sig=b&se=1&skn=send');
    assert.equal(v.openedBy, undefined);
  });
  it('never gives an admin who did not open it the credentials', () => {
    const v = buildView(record, ready, admin, sealer);
    assert.equal(v.relay, undefined);
    assert.equal(v.openedBy, 'alice');
  });
  it('gives no credentials once the session ended', () => {
    const v = buildView({ ...record, status: 'ended', reason: 'requested' }, ready, alice, sealer);
    assert.equal(v.status, 'ended');
    assert.equal(v.relay, undefined);
  });
  it('hides a session from other operators with a 404', () => {
    assert.throws(() => assertCanSee(bob, 'alice', record.sessionId), { status: 404, code: 'session_not_found' });
    assert.doesNotThrow(() => assertCanSee(admin, 'alice', record.sessionId));
    assert.doesNotThrow(() => assertCanSee(alice, 'alice', record.sessionId));
  });
  it('shows an ending session as ended or failed', () => {
    assert.deepEqual(publicStatus({ status: 'ending', reason: 'device_not_ready' }), {
      status: 'failed',
      reason: 'device_not_ready',
    });
    assert.deepEqual(publicStatus({ status: 'ending', reason: 'requested' }), { status: 'ended', reason: 'requested' });
  });
  it('maps open failures to their status codes', () => {
    assert.equal(openFailure('pool_exhausted', 12).status, 503);
    assert.equal(openFailure('pool_exhausted', 12).headers['retry-after'], '12');
    assert.equal(openFailure('device_not_ready').status, 504);
    assert.equal(openFailure('device_refused').code, 'device_refused');
  });
});
