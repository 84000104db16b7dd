// What callers see of a session: built from its audit record and its computed state, with the
// relay credentials only for the principal that opened it, only while it is ready.
import type { Principal } from '../auth/principal';
import { isAdmin } from '../auth/principal';
import {
  DeviceNotFoundError,
  DeviceNotReadyError,
  DeviceRefusedError,
  SessionEndedError,
  SessionFailedError,
  SessionNotFoundError,
  type BrokerError,
} from '../errors';
import type { CostEstimate } from '../audit/cost';
import { poolExhausted, type PoolGrowth } from '../pool/poolGrowth';
import type { Sealer } from '../sealing';
import type { EndReason, RelayCredentials, SessionStatus } from './session';
import type { SessionState } from './sessionState';
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
  /** Who ended it (a principal id, or `system` for client_gone/idle). */
  endedBy?: string;
  /** As its client last reported. */
  bytesToDevice?: number;
  bytesFromDevice?: number;
  clientSeenAt?: string;
  /** Relay cost so far (or in all, once ended), estimated from its ready time and bytes. */
  cost?: CostEstimate;
  relay?: RelayCredentials;
}

/** Who may see a session at all: its opener and admins. Others get 404 so ids do not leak. */
export function assertCanSee(principal: Principal, openerId: string, sessionId: string): void {
  if (principal.id !== openerId && !isAdmin(principal))
    throw new SessionNotFoundError(`Session ${sessionId} does not exist.`);
}

/** The view of a session for `principal`, from its record and its computed state (sessionState). */
export function buildView(
  record: SessionRecord,
  state: SessionState,
  principal: Principal,
  sealer: Sealer,
): SessionView {
  const view: SessionView = {
    sessionId: record.sessionId,
    deviceId: record.deviceId,
    status: state.status,
    ...(state.reason ? { reason: state.reason } : {}),
    port: record.port,
    createdAt: record.createdAt,
    ...(state.readyAt ? { readyAt: state.readyAt } : {}),
    ...(record.endedAt ? { endedAt: record.endedAt } : {}),
    expiresAt: record.expiresAt,
    ...(record.namespace ? { namespace: record.namespace } : {}),
  };
  if (isAdmin(principal)) view.openedBy = record.openerId;
  // Tokens go to exactly the principal that opened the session, and only while it is ready.
  if (state.status === 'ready' && state.relay && principal.id === record.openerId) {
    view.relay = credentialsFrom(state.relay, record.sessionId, sealer);
  }
  return view;
}

/** Unseals the send token for the session's opener. */
export function credentialsFrom(
  relay: NonNullable<SessionState['relay']>,
  sessionId: string,
  sealer: Sealer,
): RelayCredentials {
  return {
    namespace: relay.namespace,
    endpoint: relay.endpoint,
    hybridConnection: relay.hybridConnection,
    sendToken: sealer.open(relay.sealedSendToken, sessionId),
    expiresAt: relay.expiresAt,
  };
}

/**
 * The error an open that failed turns into for its caller; a pool_exhausted one says whether the
 * pool is still growing or at POOL_CAP / its quotas, when `growth` is known.
 */
export function openFailure(
  reason: EndReason,
  retryAfterSeconds = 30,
  deviceDetail?: string,
  growth?: PoolGrowth,
): BrokerError {
  switch (reason) {
    case 'pool_exhausted':
      return poolExhausted(growth, retryAfterSeconds);
    case 'device_not_ready':
      return new DeviceNotReadyError(
        'The device did not report ready in time: check that its agent is running and can reach its queue.',
      );
    case 'device_refused':
      return new DeviceRefusedError(
        deviceDetail
          ? `The device refused the session: ${deviceDetail}.`
          : 'The device refused the session (for example, the port is not in its --allow list).',
        deviceDetail ? { extensions: { deviceReason: deviceDetail } } : {},
      );
    case 'device_lost':
      return new SessionFailedError(
        "The device's agent lost the session (it restarted and could not take it back). Open a new one.",
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
