// An admin action as an audit row: who did what to which device, now, `ok` (failed actions answer
// an error and change nothing, so they are not recorded).
import type { AuditAction, AuditEntryInput } from './auditLog';

export function adminAction(
  action: Exclude<AuditAction, 'session'>,
  principal: string,
  deviceId: string,
  details: Record<string, string | number | boolean> = {},
  at: Date = new Date(),
): AuditEntryInput {
  return { at: at.toISOString(), action, principal, deviceId, outcome: 'ok', details };
}
