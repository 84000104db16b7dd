import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { Principal } from '../../../lib/auth/principal';
import { Sealer } from '../../../lib/sealing';
import {
  assertSessionTransition,
  decideSessionWrite,
  openSessionRequestSchema,
  SESSION_STATUSES,
  SESSION_TRANSITIONS,
  statusForReason,
  type SessionStatus,
} from '../../../lib/sessions/session';
import { sessionState } from '../../../lib/sessions/sessionState';
import { assertCanSee, buildView, openFailure } from '../../../lib/sessions/sessionView';
import type { SessionRecord } from '../../../lib/sessions/sessionStore';
import { SAMPLE_RECORD } from './fakes';

// The expected table, written out independently of the module so a change to either is caught.
const ALLOWED: ReadonlyArray<[SessionStatus, SessionStatus]> = [
  ['pending', 'ready'],
  ['pending', 'ending'],
  ['pending', 'ended'],
  ['pending', 'failed'],
  ['ready', 'ending'],
  ['ready', 'ended'],
  ['ready', 'failed'],
  ['ending', 'ended'],
  ['ending', 'failed'],
];
const isAllowed = (from: SessionStatus, to: SessionStatus) => ALLOWED.some(([f, t]) => f === from && t === to);
const STATUSES: readonly SessionStatus[] = ['pending', 'ready', 'ending', 'ended', 'failed'];

describe('session state machine', () => {
  it('has exactly the expected statuses and table (25 pairs, 9 allowed)', () => {
    assert.deepEqual([...SESSION_STATUSES].sort(), [...STATUSES].sort());
    const fromTable = SESSION_STATUSES.flatMap((from) => SESSION_TRANSITIONS[from].map((to) => `${from}->${to}`));
    assert.deepEqual(fromTable.sort(), ALLOWED.map(([f, t]) => `${f}->${t}`).sort());
  });
  for (const from of STATUSES) {
    for (const to of STATUSES) {
      const allowed = isAllowed(from, to);
      it(`${from} → ${to} is ${allowed ? 'allowed' : 'refused'}`, () => {
        if (allowed) assert.doesNotThrow(() => assertSessionTransition(from, to));
        else assert.throws(() => assertSessionTransition(from, to), { code: 'invalid_transition' });
      });
    }
  }
  // What a store write does to a record already in a status: skipped when already there or
  // overtaken (the first end wins; an end requested before ready wins), applied when allowed.
  const SKIPPED: ReadonlyArray<[SessionStatus, SessionStatus]> = [
    ['pending', 'pending'],
    ['ready', 'ready'],
    ['ending', 'ending'],
    ['ending', 'ready'],
    ...STATUSES.flatMap((to) => [
      ['ended', to] as [SessionStatus, SessionStatus],
      ['failed', to] as [SessionStatus, SessionStatus],
    ]),
  ];
  for (const from of STATUSES) {
    for (const to of STATUSES) {
      const skipped = SKIPPED.some(([f, t]) => f === from && t === to);
      const expected = skipped ? 'skip' : isAllowed(from, to) ? 'apply' : 'refused';
      it(`a write of ${to} on a ${from} record: ${expected}`, () => {
        if (expected === 'refused') assert.throws(() => decideSessionWrite(from, to), { code: 'invalid_transition' });
        else assert.equal(decideSessionWrite(from, to), expected);
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
  const record: SessionRecord = { ...SAMPLE_RECORD, namespace: 'rbk-ns-1' };
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
    const v = buildView(record, sessionState(record, { runtimeStatus: 'Running', customStatus: ready }), alice, sealer);
    assert.equal(v.status, 'ready');
    assert.equal(v.relay?.sendToken, 'SharedAccessSignature sr=a&sig=b&se=1&skn=send');
    assert.equal(v.openedBy, undefined);
  });
  it('never gives an admin who did not open it the credentials', () => {
    const v = buildView(record, sessionState(record, { runtimeStatus: 'Running', customStatus: ready }), admin, sealer);
    assert.equal(v.relay, undefined);
    assert.equal(v.openedBy, 'alice');
  });
  it('gives no credentials once the session ended', () => {
    const ended: SessionRecord = { ...record, status: 'ended', reason: 'requested' };
    const v = buildView(ended, sessionState(ended, { runtimeStatus: 'Running', customStatus: ready }), alice, sealer);
    assert.equal(v.status, 'ended');
    assert.equal(v.relay, undefined);
  });
  it('hides a session from other operators with a 404', () => {
    assert.throws(() => assertCanSee(bob, 'alice', record.sessionId), { status: 404, code: 'session_not_found' });
    assert.doesNotThrow(() => assertCanSee(admin, 'alice', record.sessionId));
    assert.doesNotThrow(() => assertCanSee(alice, 'alice', record.sessionId));
  });
  it('shows an ending session as ending, with its reason and without credentials', () => {
    const st = sessionState(record, {
      runtimeStatus: 'Running',
      customStatus: { status: 'ending', reason: 'requested' },
    });
    const v = buildView(record, st, alice, sealer);
    assert.equal(v.status, 'ending');
    assert.equal(v.reason, 'requested');
    assert.equal(v.relay, undefined);
  });
  it('maps open failures to their status codes', () => {
    assert.equal(openFailure('pool_exhausted', 12).status, 503);
    assert.equal(openFailure('pool_exhausted', 12).headers['retry-after'], '12');
    assert.equal(openFailure('device_not_ready').status, 504);
    assert.equal(openFailure('device_refused').code, 'device_refused');
  });
});
