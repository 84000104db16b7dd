// Everything asked of a session after it is opened: read it (its opener and admins only), list
// them, end it, take the device's ready answer, and end a device's sessions before the device goes.
// A session is found by its id through the store's index row, not through orchestration history.
import type { AuditLog } from '../audit/auditLog';
import type { Principal } from '../auth/principal';
import { isAdmin } from '../auth/principal';
import type { DeviceRegistry } from '../devices/deviceRegistry';
import { InvalidReadyTokenError, SessionNotFoundError, SessionNotPendingError } from '../errors';
import { sha256Base64url, tokenMatchesHash, type Sealer } from '../sealing';
import { SESSION_EVENTS, sessionInputSchema, type EndReason, type SessionStatus } from './session';
import { livenessVerdict, type LivenessLimits } from './sessionLiveness';
import { isRunning, type SessionOrchestrations } from './orchestrations';
import { readCustomStatus, sessionState } from './sessionState';
import type { ClientReport, SessionListFilter, SessionRecord, SessionStore } from './sessionStore';
import { assertCanSee, buildView, type SessionView } from './sessionView';
import { estimateSessionCost, type RelayPrices } from '../audit/cost';

export interface SessionControlOptions {
  sessions: Pick<SessionStore, 'locate' | 'get' | 'list' | 'listOpen' | 'transition'> &
    Partial<Pick<SessionStore, 'recordHeartbeat' | 'listReady'>>;
  orchestrations: SessionOrchestrations;
  devices: Pick<DeviceRegistry, 'requireRecord' | 'delete'>;
  sealer: Sealer;
  /** Where admin actions (a session ended by someone) are recorded; none: not recorded. */
  audit?: Pick<AuditLog, 'append'>;
  liveness?: LivenessLimits;
  /** Cost estimates in views; none: no estimate. */
  prices?: RelayPrices;
  now?: () => Date;
}

/** The heartbeat's answer: how the session stands and when to beat again. */
export interface HeartbeatAnswer {
  sessionId: string;
  status: SessionStatus;
  reason?: EndReason;
  heartbeatSeconds: number;
}

export interface DeviceReadyAnswer {
  readyToken: string;
  status: 'ready' | 'refused';
  detail?: string;
}

/** Who ends a session the control plane decided to end (client gone, idle). */
export const SYSTEM = 'system';

/** DELETE's answer: the status now; `changed` false when it was ending or over already (nothing done). */
export interface EndAnswer {
  sessionId: string;
  status: SessionStatus;
  reason?: EndReason;
  endedBy?: string;
  endedAt?: string;
  changed: boolean;
}

export class SessionControl {
  private readonly now: () => Date;
  constructor(private readonly o: SessionControlOptions) {
    this.now = o.now ?? (() => new Date());
  }

  /** The session as `principal` may see it (credentials only for its opener, only while ready). */
  async get(principal: Principal, sessionId: string): Promise<SessionView> {
    // Both reads at once; the instance is only read, never shown, before the visibility check.
    const [record, instance] = await Promise.all([
      this.find(principal, sessionId),
      this.o.orchestrations.getStatus(sessionId),
    ]);
    return this.view(record, sessionState(record, instance), principal);
  }

  /**
   * Sessions from their records alone, the newest `limit`, newest first: an admin's of everyone
   * (or `openerId`'s), an operator's of their own only. Listings never carry credentials.
   */
  async list(principal: Principal, filter: SessionListFilter): Promise<SessionView[]> {
    const scoped: SessionListFilter = isAdmin(principal) ? filter : { ...filter, openerId: principal.id };
    const records = await this.o.sessions.list(scoped);
    return records.map((r) => this.view(r, sessionState(r, undefined), principal));
  }

  private view(record: SessionRecord, state: ReturnType<typeof sessionState>, principal: Principal): SessionView {
    const v = buildView(record, state, principal, this.o.sealer);
    if (record.endedBy) v.endedBy = record.endedBy;
    if (record.bytesToDevice !== undefined) v.bytesToDevice = record.bytesToDevice;
    if (record.bytesFromDevice !== undefined) v.bytesFromDevice = record.bytesFromDevice;
    if (record.clientSeenAt) v.clientSeenAt = record.clientSeenAt;
    if (this.o.prices) v.cost = estimateSessionCost(record, this.o.prices, this.now());
    return v;
  }

  /**
   * A client's heartbeat (the session's opener only; others 404): stores what it reports and
   * answers how the session stands and when to beat again (a quarter of the client-gone limit).
   * Second run: the same report stored again.
   */
  async heartbeat(
    principal: Principal,
    sessionId: string,
    report: ClientReport,
    clientAddress?: string,
  ): Promise<HeartbeatAnswer> {
    const where = await this.o.sessions.locate(sessionId);
    if (!where || where.openerId !== principal.id)
      throw new SessionNotFoundError(`Session ${sessionId} does not exist.`);
    if (!this.o.sessions.recordHeartbeat) throw new Error('SessionControl: the store takes no heartbeats');
    const r = await this.o.sessions.recordHeartbeat(where.deviceId, sessionId, report, this.now(), clientAddress);
    const goneSeconds = this.o.liveness?.clientGoneSeconds ?? 0;
    return {
      sessionId,
      status: r.status,
      ...(r.reason ? { reason: r.reason } : {}),
      heartbeatSeconds: goneSeconds > 0 ? Math.max(1, Math.floor(goneSeconds / 4)) : 30,
    };
  }

  /**
   * Ends every ready session whose client is gone or that has been idle too long (livenessVerdict),
   * through the orchestration's end event, recorded `ending` with `endedBy: system`. Returns what it
   * ended. Second run: those sessions are no longer `ready` (or their event is raised again: the
   * orchestration takes the first).
   */
  async sweepLiveness(
    onError: (sessionId: string, err: unknown) => void = () => undefined,
  ): Promise<Array<{ sessionId: string; deviceId: string; reason: 'client_gone' | 'idle' }>> {
    const limits = this.o.liveness;
    if (!limits || !this.o.sessions.listReady) return [];
    const now = this.now();
    const ended: Array<{ sessionId: string; deviceId: string; reason: 'client_gone' | 'idle' }> = [];
    for (const r of await this.o.sessions.listReady()) {
      const reason = livenessVerdict(r, limits, now);
      if (!reason) continue;
      try {
        const raised = await this.o.orchestrations.raiseEvent(r.sessionId, SESSION_EVENTS.endSession, {
          reason,
          by: SYSTEM,
        });
        if (!raised) continue;
        await this.o.sessions.transition(r.deviceId, r.sessionId, 'ending', { reason, endedBy: SYSTEM });
        ended.push({ sessionId: r.sessionId, deviceId: r.deviceId, reason });
      } catch (err) {
        onError(r.sessionId, err);
      }
    }
    return ended;
  }

  /**
   * Asks the session's orchestration to end it and records the session `ending` until the recycle
   * is done. Answers the status the session has now: `ending`, or its end if it had one already.
   * Second run (or a session already ending for another reason): no event, no write, `ending`.
   */
  async end(principal: Principal, sessionId: string): Promise<EndAnswer> {
    const [record, instance] = await Promise.all([
      this.find(principal, sessionId),
      this.o.orchestrations.getStatus(sessionId),
    ]);
    const state = sessionState(record, instance);
    const asIs = (): EndAnswer => ({
      sessionId,
      status: state.status,
      ...(state.reason ? { reason: state.reason } : {}),
      ...(record.endedBy ? { endedBy: record.endedBy } : {}),
      ...(record.endedAt ? { endedAt: record.endedAt } : {}),
      changed: false,
    });
    // Already ending or over; or no orchestration to ask (history gone), so nothing can end it.
    if (state.status !== 'pending' && state.status !== 'ready') return asIs();
    if (!isRunning(instance)) return asIs();
    const raised = await this.o.orchestrations.raiseEvent(sessionId, SESSION_EVENTS.endSession, {
      reason: 'requested',
      by: principal.id,
    });
    if (!raised) {
      // It finished between the read and the event (lifetime, ready timeout): say how it stands now.
      const after = sessionState(record, await this.o.orchestrations.getStatus(sessionId));
      return { sessionId, status: after.status, ...(after.reason ? { reason: after.reason } : {}), changed: false };
    }
    const now = await this.o.sessions.transition(record.deviceId, sessionId, 'ending', {
      reason: 'requested',
      endedBy: principal.id,
    });
    await this.o.audit?.append({
      at: this.now().toISOString(),
      action: 'session.end',
      principal: principal.id,
      deviceId: record.deviceId,
      sessionId,
      outcome: 'ok',
      details: { openedBy: record.openerId },
    });
    return { sessionId, status: now.status, ...(now.reason ? { reason: now.reason } : {}), changed: true };
  }

  /**
   * The device's answer to session.open, proven by the session's readyToken (derived: the check
   * needs no read and reveals nothing about existence). Only a session waiting for its device takes it;
   * a repeated `ready` for a session that is ready already is answered the same (idempotent).
   */
  async deviceReady(sessionId: string, answer: DeviceReadyAnswer): Promise<void> {
    if (!tokenMatchesHash(answer.readyToken, sha256Base64url(this.o.sealer.readyToken(sessionId)))) {
      throw new InvalidReadyTokenError('The readyToken does not match this session.');
    }
    const instance = await this.o.orchestrations.getStatus(sessionId);
    if (!instance) throw new SessionNotFoundError(`Session ${sessionId} does not exist.`);
    const cs = readCustomStatus(instance.customStatus);
    const notPending = () =>
      new SessionNotPendingError(`Session ${sessionId} is not waiting for its device (it is ${cs.status}).`);
    // The same ready again (the device's first call timed out on its side after the event was
    // taken): the session is ready as it says, so the answer is the same 204, with no second event.
    if (isRunning(instance) && cs.status === 'ready' && answer.status === 'ready') return;
    if (!isRunning(instance) || cs.status !== 'pending') throw notPending();
    const raised = await this.o.orchestrations.raiseEvent(sessionId, SESSION_EVENTS.deviceReady, {
      status: answer.status,
      ...(answer.detail ? { detail: answer.detail } : {}),
    });
    if (!raised) throw notPending();
  }

  /**
   * Ends every open session of the device (reason `device_deleted`), then deletes the device:
   * their recycle must not wait for a device that is gone. A session that cannot be signalled is
   * reported through `onError` and does not stop the deletion. Returns how many were open.
   * Second run: the device is gone, NotFoundError.
   */
  async deleteDevice(deviceId: string, onError: (sessionId: string, err: unknown) => void): Promise<number> {
    await this.o.devices.requireRecord(deviceId);
    const open = await this.o.sessions.listOpen(deviceId);
    for (const s of open) {
      await this.o.orchestrations
        .raiseEvent(s.sessionId, SESSION_EVENTS.endSession, { reason: 'device_deleted' })
        .catch((err: unknown) => onError(s.sessionId, err));
    }
    await this.o.devices.delete(deviceId);
    return open.length;
  }

  /**
   * The session's record, for its opener or an admin; 404 for anyone else, as for an id that does
   * not exist. Sessions recorded before the index row existed are found through their orchestration.
   */
  private async find(principal: Principal, sessionId: string): Promise<SessionRecord> {
    const notFound = () => new SessionNotFoundError(`Session ${sessionId} does not exist.`);
    const where = (await this.o.sessions.locate(sessionId)) ?? (await this.locateByOrchestration(sessionId));
    if (!where) throw notFound();
    assertCanSee(principal, where.openerId, sessionId);
    const record = await this.o.sessions.get(where.deviceId, sessionId);
    if (!record) throw notFound();
    return record;
  }

  private async locateByOrchestration(sessionId: string): Promise<{ deviceId: string; openerId: string } | undefined> {
    const parsed = sessionInputSchema
      .pick({ deviceId: true, openerId: true })
      .safeParse((await this.o.orchestrations.getStatus(sessionId))?.input);
    return parsed.success ? parsed.data : undefined;
  }
}
