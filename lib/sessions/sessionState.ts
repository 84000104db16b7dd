// A session's public status, computed in one place from its two sources: the audit record (the
// truth once it is written, and all that remains once the orchestration's history is purged) and
// the orchestration (fresher while the session runs).
import {
  isTerminal,
  sessionCustomStatusSchema,
  type EndReason,
  type SessionCustomStatus,
  type SessionStatus,
} from './session';
import type { InstanceState } from './orchestrations';
import type { SessionRecord } from './sessionStore';

export interface SessionState {
  status: SessionStatus;
  reason?: EndReason;
  readyAt?: string;
  /** Only while ready: the relay the client connects to, its send token still sealed. */
  relay?: Extract<SessionCustomStatus, { status: 'ready' }>['relay'];
  /** Only for pool_exhausted: when to retry. */
  retryAfterSeconds?: number;
}

/** Parses a custom status read back from the orchestration; absent or unknown counts as pending. */
export function readCustomStatus(raw: unknown): SessionCustomStatus {
  const r = sessionCustomStatusSchema.safeParse(raw);
  return r.success ? r.data : { status: 'pending' };
}

/**
 * The rules, first match wins:
 * 1. a record that says ended/failed is final (the first recorded end wins);
 * 2. a Failed or Terminated orchestration is `ending` (its own end reason if it had one, else
 *    `interrupted`), whatever its last custom status said (it may still say ready: it is not, but
 *    its hybrid connection may still carry traffic): the sweep (sessionSweep.ts) deletes it and
 *    closes the record, and only then does the record say it ended;
 * 3. the orchestration's own end (ended/failed), then its `ending`;
 * 4. a record that says `ending` (DELETE accepted, the orchestration has not taken it up yet);
 * 5. the orchestration's ready (with the sealed relay) or pending;
 * 6. no orchestration (not started yet, or its history purged): the record as it is.
 */
export function sessionState(record: SessionRecord, instance: InstanceState | undefined): SessionState {
  const fromRecord = (): SessionState => ({
    status: record.status,
    ...(record.reason ? { reason: record.reason } : {}),
    ...(record.readyAt ? { readyAt: record.readyAt } : {}),
  });
  if (isTerminal(record.status)) return fromRecord();
  if (!instance) return fromRecord();
  if (instance.runtimeStatus === 'Failed' || instance.runtimeStatus === 'Terminated') {
    const cs = readCustomStatus(instance.customStatus);
    if (cs.status === 'ended' || cs.status === 'failed') return { status: cs.status, reason: cs.reason };
    return { status: 'ending', reason: cs.status === 'ending' ? cs.reason : (record.reason ?? 'interrupted') };
  }
  const cs = readCustomStatus(instance.customStatus);
  switch (cs.status) {
    case 'ended':
    case 'failed':
      return {
        status: cs.status,
        reason: cs.reason,
        ...(cs.retryAfterSeconds !== undefined ? { retryAfterSeconds: cs.retryAfterSeconds } : {}),
      };
    case 'ending':
      return { status: 'ending', reason: cs.reason };
    default:
      if (record.status === 'ending') return fromRecord();
      if (cs.status === 'ready') return { status: 'ready', readyAt: record.readyAt ?? cs.readyAt, relay: cs.relay };
      return { status: 'pending' };
  }
}
