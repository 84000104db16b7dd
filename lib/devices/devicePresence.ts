// Device presence: the agent's heartbeat, proven by its device credential, says it is alive and what
// it holds; the answer reconciles it with the control plane (what it should stop) and renews its
// enrollment before it expires. Writes are throttled: a heartbeat with nothing new writes nothing
// until `seenWriteMs` has passed, so presence costs one table write per device per `seenWriteMs`.
import { z } from 'zod';
import { DeviceNotFoundError, UnauthenticatedError } from '../errors';
import { tokenMatchesHash } from '../sealing';
import type { SessionOrchestrations } from '../sessions/orchestrations';
import { SESSION_EVENTS, type EndReason, type SessionStatus } from '../sessions/session';
import type { SessionRecord, SessionStore } from '../sessions/sessionStore';
import { heldSessionsSchema, parseHeld, type DeviceRegistry, type HeldSession } from './deviceRegistry';
import type { DevicePresenceFields, DeviceRecord, DeviceStore } from './deviceStore';

export const heartbeatSchema = z
  .object({
    /** When this agent process started: a new value means the agent restarted. */
    startedAt: z.iso.datetime(),
    /** The agent stops (Ctrl-C, service stop): offline at once, not after the threshold. */
    stopping: z.boolean().optional(),
    sessions: heldSessionsSchema,
    /** Sessions the agent refused since its last heartbeat, with its reason (sent before it answers refused). */
    refused: z
      .array(z.object({ sessionId: z.uuid(), detail: z.string().max(500) }).strict())
      .max(32)
      .optional(),
    /** Sessions the agent had and cannot take back (its listener was refused after a restart). */
    lost: z.array(z.uuid()).max(256).optional(),
  })
  .strict();
export type Heartbeat = z.infer<typeof heartbeatSchema>;

export interface HeartbeatAnswer {
  /** Sessions the agent holds that the control plane has ended (or never knew): close them. */
  stop: string[];
  /** Set when the enrollment was renewed: the agent writes the new expiry into its enrollment file. */
  renewed?: { expiresAt: string };
  /** The device's presence as the API shows it now. */
  presence: 'online' | 'offline';
}

/** Ends a session through the orchestration's end event. */
export type EndSessionFn = (session: SessionRecord, reason: EndReason) => Promise<void>;

/**
 * The session end path every other end takes: the orchestration's EndSession event with a reason,
 * then the record `ending` (as SessionControl.end does). A session whose orchestration is over is left as is.
 */
export function endThroughOrchestration(
  orchestrations: Pick<SessionOrchestrations, 'raiseEvent'>,
  sessions: Pick<SessionStore, 'transition'>,
  by: string,
): EndSessionFn {
  return async (session, reason) => {
    const raised = await orchestrations.raiseEvent(session.sessionId, SESSION_EVENTS.endSession, { reason, by });
    if (raised) await sessions.transition(session.deviceId, session.sessionId, 'ending', { reason });
  };
}

export interface DevicePresenceOptions {
  store: Pick<DeviceStore, 'get' | 'recordPresence'>;
  registry: Pick<DeviceRegistry, 'renew' | 'enrollmentSeconds'>;
  sessions: { listOpen(deviceId: string): Promise<SessionRecord[]> };
  /** A heartbeat with nothing new writes lastSeenAt at most this often. */
  seenWriteMs: number;
  /** A ready session the agent does not report for this long after it was ready is lost. */
  lostGraceMs?: number;
  now?: () => Date;
}

/** Sessions the control plane still serves: an agent may keep these. */
const OPEN: ReadonlySet<SessionStatus> = new Set<SessionStatus>(['pending', 'ready']);

export class DevicePresence {
  private readonly now: () => Date;
  constructor(private readonly o: DevicePresenceOptions) {
    this.now = o.now ?? (() => new Date());
  }

  /**
   * Authenticates the device credential (constant-time against the stored sha256), records the
   * heartbeat when something changed or `seenWriteMs` passed, ends the sessions the agent lost
   * (`device_lost`, through `endSession`), and answers what the agent should stop.
   * Second run: the same answer; the write is skipped (nothing changed), a lost session already
   * `ending` is not in the open list any more.
   */
  async heartbeat(
    deviceId: string,
    deviceKey: string,
    hb: Heartbeat,
    endSession: EndSessionFn,
  ): Promise<HeartbeatAnswer> {
    const record = await this.o.store.get(deviceId);
    // "Removed" must be unambiguous for the agent: only an absent row answers device_not_found.
    if (!record) throw new DeviceNotFoundError(`Device ${deviceId} is not registered (it was removed).`);
    this.authenticate(record, deviceKey);
    const now = this.now();

    const held = hb.sessions;
    const graceMs = this.o.lostGraceMs ?? 10_000;
    // The open sessions are read only when there is something to reconcile: the agent holds some,
    // held some at its last write, reports some lost, or has just (re)started.
    const reconcile =
      held.length > 0 ||
      (hb.lost?.length ?? 0) > 0 ||
      (record.heldJson !== undefined && record.heldJson !== '[]') ||
      now.getTime() - Date.parse(hb.startedAt) < 3 * graceMs;
    const open = reconcile ? await this.o.sessions.listOpen(deviceId) : [];
    const openIds = new Set(open.filter((s) => OPEN.has(s.status)).map((s) => s.sessionId));
    const heldIds = new Set(held.map((s) => s.sessionId));
    const lost = new Set(hb.lost ?? []);
    // A ready session the agent no longer holds (restarted without it): lost once it had time to
    // report it. Pending ones are left alone: the open message may not have reached the agent yet.
    for (const s of open) {
      if (s.status !== 'ready' || heldIds.has(s.sessionId) || hb.stopping) continue;
      // Past (or at) its lifetime the agent drops it by itself: that is the lifetime end, not a loss.
      if (Date.parse(s.expiresAt) - now.getTime() <= graceMs) continue;
      const since = Date.parse(s.readyAt ?? s.createdAt);
      if (now.getTime() - since >= graceMs && now.getTime() - Date.parse(hb.startedAt) >= graceMs / 2)
        lost.add(s.sessionId);
    }
    for (const s of open) {
      if (lost.has(s.sessionId) && Date.parse(s.expiresAt) - now.getTime() > graceMs)
        await endSession(s, 'device_lost');
    }

    // Before the presence write: the renewal's replace carries the ETag read above.
    let renewed: HeartbeatAnswer['renewed'];
    // Renewed once a third of its lifetime is left: a device that reports at all never expires.
    const leftMs = Date.parse(record.sasExpiresAt) - now.getTime();
    if (!hb.stopping && leftMs < (this.o.registry.enrollmentSeconds * 1000) / 3) {
      renewed = await this.o.registry.renew(record);
    }
    const fields = this.presenceWrite(record, hb, now);
    if (fields) await this.o.store.recordPresence(deviceId, fields);
    return {
      stop: held.map((s) => s.sessionId).filter((id) => !openIds.has(id) || lost.has(id)),
      ...(renewed ? { renewed } : {}),
      presence: hb.stopping ? 'offline' : 'online',
    };
  }

  private authenticate(record: DeviceRecord, deviceKey: string): void {
    // Checked whatever the row holds, so a missing hash costs the same as a wrong key.
    const ok = tokenMatchesHash(deviceKey, record.credentialHash ?? '');
    if (!ok || !record.credentialHash) {
      throw new UnauthenticatedError(
        `The device credential of ${record.deviceId} is not valid: the enrollment was rotated or predates device credentials.`,
      );
    }
    if (Date.parse(record.sasExpiresAt) <= this.now().getTime()) {
      throw new UnauthenticatedError(`The enrollment of ${record.deviceId} has expired.`);
    }
  }

  /** What to write for this heartbeat, or undefined when nothing changed and the last write is recent. */
  private presenceWrite(record: DeviceRecord, hb: Heartbeat, now: Date): DevicePresenceFields | undefined {
    const heldJson = JSON.stringify(hb.sessions.map(normalise).sort((a, b) => a.sessionId.localeCompare(b.sessionId)));
    const agentState = hb.stopping ? 'stopped' : 'running';
    const refusal = hb.refused?.at(-1);
    const changed =
      !record.lastSeenAt ||
      record.agentState !== agentState ||
      record.agentStartedAt !== hb.startedAt ||
      JSON.stringify(parseHeld(record.heldJson).map(normalise)) !== heldJson ||
      refusal !== undefined;
    const stale = !record.lastSeenAt || now.getTime() - Date.parse(record.lastSeenAt) >= this.o.seenWriteMs;
    if (!changed && !stale) return undefined;
    return {
      lastSeenAt: now.toISOString(),
      agentState,
      agentStartedAt: hb.startedAt,
      heldJson,
      ...(refusal ? { lastRefusalJson: JSON.stringify({ ...refusal, at: now.toISOString() }) } : {}),
    };
  }
}

function normalise(s: HeldSession): HeldSession {
  return { sessionId: s.sessionId, listener: s.listener, ...(s.targetError ? { targetError: s.targetError } : {}) };
}

/** The agent's reason for refusing `sessionId`, if its last reported refusal is that session's. */
export function refusalDetail(record: Pick<DeviceRecord, 'lastRefusalJson'>, sessionId: string): string | undefined {
  if (!record.lastRefusalJson) return undefined;
  try {
    const r = z.object({ sessionId: z.string(), detail: z.string() }).safeParse(JSON.parse(record.lastRefusalJson));
    return r.success && r.data.sessionId === sessionId ? r.data.detail : undefined;
  } catch {
    return undefined;
  }
}
