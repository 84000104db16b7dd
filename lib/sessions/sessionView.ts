// What callers see of a session: built from its audit record and its orchestration status, with
// the relay credentials only for the principal that opened it, only while it is ready.
import type { Principal } from '../auth/principal';
import { isAdmin } from '../auth/principal';
import {
  DeviceNotFoundError,
  DeviceNotReadyError,
  DeviceRefusedError,
  PoolExhaustedError,
  SessionEndedError,
  SessionFailedError,
  SessionNotFoundError,
  type BrokerError,
} from '../errors';
import type { Sealer } from '../sealing';
import {
  sessionCustomStatusSchema,
  type EndReason,
  type RelayCredentials,
  type SessionCustomStatus,
  type SessionStatus,
} from './session';
import type { SessionRecord } from './sessionStore';

export interface SessionView {
  sessionId: string;
  deviceId: string;
  status: SessionStatus;
  reason?: EndReason;
  port: number;
  createdAt: string;
  readyAt?: string;
  endedAt?: string;
  expiresAt: string;
  openedBy?: string;
  namespace?: string;
  relay?: RelayCredentials;
}

/** Parses a custom status read back from the durable client; anything unknown counts as pending. */
export function readCustomStatus(raw: unknown): SessionCustomStatus {
  const r = sessionCustomStatusSchema.safeParse(raw);
  return r.success ? r.data : { status: 'pending' };
}

/** The session's status as callers know it: `ending` is still `ready`/`pending` to no one; it is ended. */
export function publicStatus(cs: SessionCustomStatus): { status: SessionStatus; reason?: EndReason } {
  switch (cs.status) {
    case 'pending':
      return { status: 'pending' };
    case 'ready':
      return { status: 'ready' };
    case 'ending':
      return {
        status:
          cs.reason === 'requested' || cs.reason === 'lifetime' || cs.reason === 'device_deleted' ? 'ended' : 'failed',
        reason: cs.reason,
      };
    default:
      return { status: cs.status, reason: cs.reason };
  }
}

/** Who may see a session at all: its opener and admins. Others get 404 so ids do not leak. */
export function assertCanSee(principal: Principal, openerId: string, sessionId: string): void {
  if (principal.id !== openerId && !isAdmin(principal))
    throw new SessionNotFoundError(`Session ${sessionId} does not exist.`);
}

export function buildView(
  record: SessionRecord,
  cs: SessionCustomStatus | undefined,
  principal: Principal,
  sealer: Sealer,
): SessionView {
  const live = cs ? publicStatus(cs) : undefined;
  // The audit record is written by activities; the orchestration status is fresher while running.
  const status = live && record.status !== 'ended' && record.status !== 'failed' ? live.status : record.status;
  const reason = record.reason ?? live?.reason;
  const view: SessionView = {
    sessionId: record.sessionId,
    deviceId: record.deviceId,
    status,
    ...(reason ? { reason } : {}),
    port: record.port,
    createdAt: record.createdAt,
    ...(record.readyAt || (cs?.status === 'ready' && cs.readyAt)
      ? { readyAt: record.readyAt ?? (cs?.status === 'ready' ? cs.readyAt : undefined) }
      : {}),
    ...(record.endedAt ? { endedAt: record.endedAt } : {}),
    expiresAt: record.expiresAt,
    ...(record.namespace ? { namespace: record.namespace } : {}),
  };
  if (isAdmin(principal)) view.openedBy = record.openerId;
  // Tokens go to exactly the principal that opened the session, and only while it is ready.
  if (cs?.status === 'ready' && status === 'ready' && principal.id === record.openerId) {
    view.relay = credentialsFrom(cs, record.sessionId, sealer);
  }
  return view;
}

export function credentialsFrom(
  cs: Extract<SessionCustomStatus, { status: 'ready' }>,
  sessionId: string,
  sealer: Sealer,
): RelayCredentials {
  return {
    namespace: cs.relay.namespace,
    endpoint: cs.relay.endpoint,
    hybridConnection: cs.relay.hybridConnection,
    sendToken: sealer.open(cs.relay.sealedSendToken, sessionId),
    expiresAt: cs.relay.expiresAt,
  };
}

/** The error an open that failed turns into for its caller. */
export function openFailure(reason: EndReason, retryAfterSeconds = 30): BrokerError {
  switch (reason) {
    case 'pool_exhausted':
      return new PoolExhaustedError(
        'Every relay namespace is in use; the pool is growing. Retry after the indicated delay.',
        retryAfterSeconds,
      );
    case 'device_not_ready':
      return new DeviceNotReadyError(
        'The device did not report ready in time: check that its agent is running and can reach its queue.',
      );
    case 'device_refused':
      return new DeviceRefusedError(
        'The device refused the session (for example, the port is not in its --allow list).',
      );
    case 'device_deleted':
      return new DeviceNotFoundError('The device was deleted while the session opened.');
    case 'requested':
      return new SessionEndedError('The session was ended before it became ready.');
    default:
      return new SessionFailedError(
        'The session could not be opened; the namespace was returned to the pool. Try again.',
      );
  }
}
