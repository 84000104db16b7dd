// When a ready session should end because of its client: the client stopped heartbeating
// (`client_gone`), or nothing went through the session for its idle minutes (`idle`). Pure: the
// sweep (SessionControl.sweepLiveness) reads the records and raises the ends.
import type { SessionRecord } from './sessionStore';

export interface LivenessLimits {
  /** 0: never declare a client gone. */
  clientGoneSeconds: number;
  /** The default idle limit when the session sets none (0: never idle). */
  idleMinutes: number;
}

/**
 * `client_gone` once a client that heartbeated has been silent longer than `clientGoneSeconds` (a
 * session opened without a heartbeating client, e.g. by curl, is never declared gone); `idle` when
 * no connection was open or carried since `idleMinutes` (counted from ready when nothing was reported).
 */
export function livenessVerdict(
  r: Pick<SessionRecord, 'status' | 'readyAt' | 'createdAt' | 'clientSeenAt' | 'lastActivityAt' | 'idleMinutes'>,
  limits: LivenessLimits,
  now: Date,
): 'client_gone' | 'idle' | undefined {
  if (r.status !== 'ready') return undefined;
  const t = now.getTime();
  if (limits.clientGoneSeconds > 0 && r.clientSeenAt) {
    if (t - Date.parse(r.clientSeenAt) > limits.clientGoneSeconds * 1000) return 'client_gone';
  }
  const idleMinutes = r.idleMinutes ?? limits.idleMinutes;
  if (idleMinutes > 0) {
    const since = r.lastActivityAt ?? r.readyAt ?? r.createdAt;
    if (t - Date.parse(since) > idleMinutes * 60_000) return 'idle';
  }
  return undefined;
}
