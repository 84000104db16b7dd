// A finished session as an audit row: who opened it, to which device and port, when it was ready
// and ended, why and by whom, what its client carried, from where, and what it cost.
import type { SessionRecord } from '../sessions/sessionStore';
import type { AuditEntryInput, AuditLog } from './auditLog';
import { estimateSessionCost, type RelayPrices } from './cost';

export function sessionAuditEntry(r: SessionRecord, prices: RelayPrices): AuditEntryInput {
  const at = r.endedAt ?? r.readyAt ?? r.createdAt;
  const cost = estimateSessionCost(r, prices, new Date(at));
  const details: Record<string, string | number> = {
    port: r.port,
    createdAt: r.createdAt,
    ...(r.readyAt ? { readyAt: r.readyAt } : {}),
    ...(r.endedAt ? { endedAt: r.endedAt } : {}),
    ...(r.reason ? { reason: r.reason } : {}),
    ...(r.endedBy ? { endedBy: r.endedBy } : {}),
    ...(r.namespace ? { namespace: r.namespace } : {}),
    ...(r.clientAddress ? { clientAddress: r.clientAddress } : {}),
    bytesToDevice: r.bytesToDevice ?? 0,
    bytesFromDevice: r.bytesFromDevice ?? 0,
    connections: r.connections ?? 0,
    costUsd: cost.usd,
    pricesDate: cost.pricesDate,
  };
  return {
    at,
    action: 'session',
    principal: r.openerId,
    deviceId: r.deviceId,
    sessionId: r.sessionId,
    outcome: r.status,
    details,
  };
}

/** The SessionStore hook that writes a session's row once it is final (keyed by its id: idempotent). */
export function auditSessionEnds(audit: AuditLog, prices: RelayPrices): (r: SessionRecord) => Promise<void> {
  return (r) => audit.append(sessionAuditEntry(r, prices), r.sessionId);
}
