// Everything asked of a session after it is opened: read it (its opener and admins only), list
// them, end it, take the device's ready answer, and end a device's sessions before the device goes.
// A session is found by its id through the store's index row, not through orchestration history.
import type { Principal } from '../auth/principal';
import type { DeviceRegistry } from '../devices/deviceRegistry';
import { InvalidReadyTokenError, SessionNotFoundError, SessionNotPendingError } from '../errors';
import { sha256Base64url, tokenMatchesHash, type Sealer } from '../sealing';
import { SESSION_EVENTS, sessionInputSchema, type SessionStatus } from './session';
import { isRunning, type SessionOrchestrations } from './orchestrations';
import { readCustomStatus, sessionState } from './sessionState';
import type { SessionRecord, SessionStore } from './sessionStore';
import { assertCanSee, buildView, type SessionView } from './sessionView';

export interface SessionControlOptions {
  sessions: Pick<SessionStore, 'locate' | 'get' | 'list' | 'listOpen' | 'transition'>;
  orchestrations: SessionOrchestrations;
  devices: Pick<DeviceRegistry, 'requireRecord' | 'delete'>;
  sealer: Sealer;
}

export interface DeviceReadyAnswer {
  readyToken: string;
  status: 'ready' | 'refused';
  detail?: string;
}

export class SessionControl {
  constructor(private readonly o: SessionControlOptions) {}

  /** The session as `principal` may see it (credentials only for its opener, only while ready). */
  async get(principal: Principal, sessionId: string): Promise<SessionView> {
    // Both reads at once; the instance is only read, never shown, before the visibility check.
    const [record, instance] = await Promise.all([
      this.find(principal, sessionId),
      this.o.orchestrations.getStatus(sessionId),
    ]);
    return buildView(record, sessionState(record, instance), principal, this.o.sealer);
  }

  /** Sessions from their records alone, newest first. Listings never carry credentials, not even the caller's own. */
  async list(
    principal: Principal,
    filter: { deviceId?: string; status?: SessionStatus; limit?: number },
  ): Promise<SessionView[]> {
    const records = await this.o.sessions.list(filter);
    return records.map((r) => buildView(r, sessionState(r, undefined), principal, this.o.sealer));
  }

  /**
   * Asks the session's orchestration to end it and records the session `ending` until the recycle
   * is done. Answers the status the session has now: `ending`, or its end if it had one already.
   * Second run (or a session already ending for another reason): no event, no write, `ending`.
   */
  async end(principal: Principal, sessionId: string): Promise<{ sessionId: string; status: SessionStatus }> {
    const [record, instance] = await Promise.all([
      this.find(principal, sessionId),
      this.o.orchestrations.getStatus(sessionId),
    ]);
    const state = sessionState(record, instance);
    // Already ending or over; or no orchestration to ask (history gone), so nothing can end it.
    if (state.status !== 'pending' && state.status !== 'ready') return { sessionId, status: state.status };
    if (!isRunning(instance)) return { sessionId, status: state.status };
    const raised = await this.o.orchestrations.raiseEvent(sessionId, SESSION_EVENTS.endSession, {
      reason: 'requested',
      by: principal.id,
    });
    if (!raised) {
      // It finished between the read and the event (lifetime, ready timeout): say how it stands now.
      return { sessionId, status: sessionState(record, await this.o.orchestrations.getStatus(sessionId)).status };
    }
    const now = await this.o.sessions.transition(record.deviceId, sessionId, 'ending', { reason: 'requested' });
    return { sessionId, status: now.status };
  }

  /**
   * The device's answer to session.open, proven by the session's readyToken (derived: the check
   * needs no read and reveals nothing about existence). Only a session waiting for its device takes it.
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
