// What the agent does with one queue message (pure): open, refuse, close, or ignore/drop with a
// reason. The side effects live in deviceAgent.ts; the rules live here, where they are tested.
import { decodeDeviceMessage, type SessionCloseMessage, type SessionOpenMessage } from '../lib/devices/deviceNotifier';
import { describeError } from '../lib/errors';
import { z } from 'zod';

export type MessageDecision =
  | { action: 'open'; message: SessionOpenMessage }
  /** Tell the control plane at once (readyUrl, status refused) so the session fails with a reason. */
  | { action: 'refuse'; message: SessionOpenMessage; detail: string }
  | { action: 'close'; message: SessionCloseMessage }
  | {
      action: 'ignore';
      reason: 'expired' | 'duplicate' | 'other_device' | 'lifetime_over' | 'unknown_session';
      sessionId: string;
      detail: string;
    }
  /** Not a message we understand: delete it and log, never crash. */
  | { action: 'drop'; reason: 'malformed'; detail: string };

export interface DecisionContext {
  deviceId: string;
  allowPorts: ReadonlySet<number>;
  now: Date;
  /** Sessions this agent runs right now. */
  running: ReadonlySet<string>;
  /** Sessions this agent already handled (opened, refused or closed), for redelivered copies. */
  handled: ReadonlySet<string>;
}

export function decideMessage(text: string, ctx: DecisionContext): MessageDecision {
  let message;
  try {
    message = decodeDeviceMessage(text);
  } catch (err) {
    // The zod message names fields, never values; a JSON error names a position.
    const detail =
      err instanceof z.ZodError
        ? `not a device message: ${err.issues
            .slice(0, 3)
            .map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`)
            .join('; ')}`
        : `not base64 JSON: ${describeError(err)}`;
    return { action: 'drop', reason: 'malformed', detail: describeError(detail, 200) };
  }
  if (message.deviceId !== ctx.deviceId) {
    return {
      action: 'ignore',
      reason: 'other_device',
      sessionId: message.sessionId,
      detail: `addressed to device ${message.deviceId}, this is ${ctx.deviceId}`,
    };
  }
  if (message.type === 'session.close') {
    if (!ctx.running.has(message.sessionId)) {
      return {
        action: 'ignore',
        reason: 'unknown_session',
        sessionId: message.sessionId,
        detail: 'close for a session not running here',
      };
    }
    return { action: 'close', message };
  }
  if (ctx.running.has(message.sessionId) || ctx.handled.has(message.sessionId)) {
    return {
      action: 'ignore',
      reason: 'duplicate',
      sessionId: message.sessionId,
      detail: 'session already handled by this agent',
    };
  }
  const notAfter = Date.parse(message.notAfter);
  if (!Number.isFinite(notAfter) || notAfter <= ctx.now.getTime()) {
    return {
      action: 'ignore',
      reason: 'expired',
      sessionId: message.sessionId,
      detail: `past its notAfter (${message.notAfter})`,
    };
  }
  const expiresAt = Date.parse(message.relay.expiresAt);
  if (!Number.isFinite(expiresAt) || expiresAt <= ctx.now.getTime()) {
    return {
      action: 'ignore',
      reason: 'lifetime_over',
      sessionId: message.sessionId,
      detail: `the session's lifetime is over (${message.relay.expiresAt})`,
    };
  }
  if (!ctx.allowPorts.has(message.port)) {
    return {
      action: 'refuse',
      message,
      detail: `port ${message.port} is not allowed on this device (allowed: ${[...ctx.allowPorts].sort((a, b) => a - b).join(', ')})`,
    };
  }
  return { action: 'open', message };
}
