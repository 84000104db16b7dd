// A tunnel session: its statuses and end reasons (closed sets), the allowed status transitions
// (one table), the request a caller makes, and the input of its orchestration.
import { z } from 'zod';
import { InvalidTransitionError } from '../errors';
import { deviceIdSchema } from '../validation';

/**
 * `ending`: the end is decided (DELETE accepted, lifetime over, device not ready, …) and the
 * hybrid connection is being deleted and the namespace recycled; `ended`/`failed` once that is done.
 */
export const SESSION_STATUSES = ['pending', 'ready', 'ending', 'ended', 'failed'] as const;
export const sessionStatusSchema = z.enum(SESSION_STATUSES);
export type SessionStatus = z.infer<typeof sessionStatusSchema>;

/**
 * How a session ended. `requested`/`lifetime`/`device_deleted`/`client_gone`/`idle` end it; the
 * others fail it. `client_gone`: its client stopped heartbeating; `idle`: no connection through it
 * for its idle minutes.
 */
export const END_REASONS = [
  'requested',
  'lifetime',
  'device_deleted',
  'client_gone',
  'idle',
  'device_not_ready',
  'pool_exhausted',
  'device_refused',
  /** The device's agent lost the session (restarted without it, or its listener cannot come back). */
  'device_lost',
  'error',
  /** Its orchestration stopped without ending it (terminated, failed, purged, a host crash): closed by the sweep. */
  'interrupted',
] as const;
export const endReasonSchema = z.enum(END_REASONS);
export type EndReason = z.infer<typeof endReasonSchema>;

const ENDED_REASONS: ReadonlySet<EndReason> = new Set([
  'requested',
  'lifetime',
  'device_deleted',
  'client_gone',
  'idle',
]);

export function statusForReason(reason: EndReason): 'ended' | 'failed' {
  return ENDED_REASONS.has(reason) ? 'ended' : 'failed';
}

export function isTerminal(status: SessionStatus): status is 'ended' | 'failed' {
  return status === 'ended' || status === 'failed';
}

export const SESSION_TRANSITIONS: Readonly<Record<SessionStatus, readonly SessionStatus[]>> = Object.freeze({
  pending: ['ready', 'ending', 'ended', 'failed'],
  ready: ['ending', 'ended', 'failed'],
  ending: ['ended', 'failed'],
  ended: [],
  failed: [],
});

export function assertSessionTransition(from: SessionStatus, to: SessionStatus): void {
  if (!SESSION_TRANSITIONS[from].includes(to)) {
    throw new InvalidTransitionError(`A session cannot go from ${from} to ${to}.`);
  }
}

/**
 * What a write of `to` does to a record now in `from`: `skip` when it is already there or was
 * overtaken (the first recorded end wins; an end requested before the ready write wins over it),
 * `apply` when the table allows it; otherwise InvalidTransitionError.
 */
export function decideSessionWrite(from: SessionStatus, to: SessionStatus): 'apply' | 'skip' {
  if (from === to || isTerminal(from)) return 'skip';
  if (from === 'ending' && to === 'ready') return 'skip';
  assertSessionTransition(from, to);
  return 'apply';
}

export const openSessionRequestSchema = z
  .object({
    deviceId: deviceIdSchema,
    port: z.number().int().min(1).max(65535).default(3389),
    maxLifetimeMinutes: z.number().int().min(1).max(720).optional(),
    /** Ends the session after this many minutes without a connection through it (0: never; default the setting). */
    idleMinutes: z.number().int().min(0).max(720).optional(),
  })
  .strict();
export type OpenSessionRequest = z.infer<typeof openSessionRequestSchema>;

/** The orchestration's input: everything it needs, decided before it starts (deterministic replay). */
export const sessionInputSchema = z.object({
  sessionId: z.uuid(),
  deviceId: deviceIdSchema,
  port: z.number().int(),
  openerId: z.string(),
  createdAt: z.iso.datetime(),
  /** When the lifetime timer fires and every token expires. */
  expiresAt: z.iso.datetime(),
  readyTimeoutMs: z.number().int().positive(),
  /**
   * The namespace leased and the tokens minted by the open request itself (SessionOpener), so the
   * orchestration starts waiting for the device in its first episode. The send token is sealed.
   * Absent (orchestrations started before this field existed): the first episode calls openSession.
   */
  opened: z
    .object({
      namespace: z.string(),
      endpoint: z.string(),
      hybridConnection: z.string(),
      generation: z.number().int(),
      sealedSendToken: z.string(),
      expiresAt: z.string(),
    })
    .optional(),
});
export type SessionInput = z.infer<typeof sessionInputSchema>;

/** What a ready session hands its opener. The send token travels sealed in the orchestration status. */
export interface RelayCredentials {
  namespace: string;
  endpoint: string;
  hybridConnection: string;
  sendToken: string;
  expiresAt: string;
}

/** The orchestration's custom status: how HTTP calls learn progress. Never a token in clear. */
export const sessionCustomStatusSchema = z.discriminatedUnion('status', [
  z.object({ status: z.literal('pending'), namespace: z.string().optional() }),
  z.object({
    status: z.literal('ready'),
    readyAt: z.string(),
    relay: z.object({
      namespace: z.string(),
      endpoint: z.string(),
      hybridConnection: z.string(),
      sealedSendToken: z.string(),
      expiresAt: z.string(),
    }),
  }),
  z.object({ status: z.literal('ending'), reason: endReasonSchema }),
  z.object({ status: z.enum(['ended', 'failed']), reason: endReasonSchema, retryAfterSeconds: z.number().optional() }),
]);
export type SessionCustomStatus = z.infer<typeof sessionCustomStatusSchema>;

/** Names of the events the orchestration waits for: one definition, used by HTTP and orchestrator. */
export const SESSION_EVENTS = { deviceReady: 'DeviceReady', endSession: 'EndSession' } as const;

export const endSessionEventSchema = z.object({
  reason: endReasonSchema.default('requested'),
  by: z.string().optional(),
});
export type EndSessionEvent = z.infer<typeof endSessionEventSchema>;
