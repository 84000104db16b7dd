// A session's public status from its record and its orchestration, case by case: the one place
// the two sources are merged.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { InstanceState } from '../../../lib/sessions/orchestrations';
import { sessionState, type SessionState } from '../../../lib/sessions/sessionState';
import type { SessionRecord } from '../../../lib/sessions/sessionStore';
import { SAMPLE_RECORD } from './fakes';

const base: SessionRecord = SAMPLE_RECORD;
const relay = {
  namespace: 'rbk-ns-1',
  endpoint: 'https://rbk-ns-1.servicebus.windows.net/',
  hybridConnection: 'tunnel',
  sealedSendToken: 'sealed',
  expiresAt: base.expiresAt,
};
const running = (customStatus: unknown): InstanceState => ({ runtimeStatus: 'Running', customStatus });
const readyCs = { status: 'ready', readyAt: '2026-11-25T10:00:02.000Z', relay };

const CASES: ReadonlyArray<[string, Partial<SessionRecord>, InstanceState | undefined, SessionState]> = [
  ['a new session with no orchestration yet is pending', {}, undefined, { status: 'pending' }],
  ['a running orchestration without a status yet is pending', {}, running(undefined), { status: 'pending' }],
  ['an unknown custom status counts as pending', {}, running({ status: 'odd' }), { status: 'pending' }],
  [
    'pending while the orchestration says pending',
    {},
    running({ status: 'pending', namespace: 'n' }),
    { status: 'pending' },
  ],
  [
    'ready with the sealed relay while the orchestration says ready',
    {},
    running(readyCs),
    { status: 'ready', readyAt: readyCs.readyAt, relay },
  ],
  [
    'ending with the orchestration’s reason once it ends',
    { status: 'ready' },
    running({ status: 'ending', reason: 'lifetime' }),
    { status: 'ending', reason: 'lifetime' },
  ],
  [
    'ending from the record when the end was requested and the orchestration has not taken it up',
    { status: 'ending', reason: 'requested' },
    running(readyCs),
    { status: 'ending', reason: 'requested' },
  ],
  [
    'the orchestration’s failure, with its retry delay',
    {},
    { runtimeStatus: 'Completed', customStatus: { status: 'failed', reason: 'pool_exhausted', retryAfterSeconds: 30 } },
    { status: 'failed', reason: 'pool_exhausted', retryAfterSeconds: 30 },
  ],
  [
    'the orchestration’s end before the record caught up',
    { status: 'ending', reason: 'requested' },
    { runtimeStatus: 'Completed', customStatus: { status: 'ended', reason: 'requested' } },
    { status: 'ended', reason: 'requested' },
  ],
  [
    'a failed orchestration whose last status said ready is ending/interrupted until the sweep closes it',
    { status: 'ready' },
    { runtimeStatus: 'Failed', customStatus: readyCs },
    { status: 'ending', reason: 'interrupted' },
  ],
  [
    'a terminated orchestration is ending/interrupted (never ended before its hybrid connection is gone)',
    {},
    { runtimeStatus: 'Terminated', customStatus: { status: 'pending' } },
    { status: 'ending', reason: 'interrupted' },
  ],
  [
    'a terminated orchestration that was ending keeps its reason',
    { status: 'ending', reason: 'requested' },
    { runtimeStatus: 'Terminated', customStatus: { status: 'ending', reason: 'requested' } },
    { status: 'ending', reason: 'requested' },
  ],
  [
    'a recorded end is final, whatever the orchestration says',
    { status: 'ended', reason: 'requested', readyAt: '2026-11-25T10:00:02.000Z' },
    running(readyCs),
    { status: 'ended', reason: 'requested', readyAt: '2026-11-25T10:00:02.000Z' },
  ],
  [
    'the record alone once the history is purged',
    { status: 'failed', reason: 'device_not_ready' },
    undefined,
    { status: 'failed', reason: 'device_not_ready' },
  ],
];

describe('sessionState', () => {
  for (const [title, record, instance, expected] of CASES) {
    it(title, () => assert.deepEqual(sessionState({ ...base, ...record }, instance), expected));
  }
});
