// In-memory stand-ins for the session rules' two dependencies that need servers: the orchestration
// port (a scripted Durable client) and the sessions table. Unit tests only.
import { SessionExistsError, SessionNotFoundError } from '../../../lib/errors';
import type { InstanceState, SessionOrchestrations } from '../../../lib/sessions/orchestrations';
import { decideSessionWrite, type SessionInput, type SessionStatus } from '../../../lib/sessions/session';
import type { ClientReport, SessionLocation, SessionRecord, SessionStore } from '../../../lib/sessions/sessionStore';

/** A pending session of alice's on plc-1, as the opener records it. */
export const SAMPLE_RECORD: Readonly<SessionRecord> = Object.freeze({
  sessionId: '6f1c2d1e-8a55-4a55-9d55-0a0b0c0d0e0f',
  deviceId: 'plc-1',
  openerId: 'alice',
  port: 22,
  status: 'pending',
  createdAt: '2026-11-25T10:00:00.000Z',
  expiresAt: '2026-11-25T11:00:00.000Z',
});

export interface RaisedEvent {
  sessionId: string;
  eventName: string;
  data: unknown;
}

/** Instances by id; `onStatusRead` lets a test move an instance along as it is polled. */
export class FakeOrchestrations implements SessionOrchestrations {
  readonly instances = new Map<string, InstanceState>();
  readonly started: SessionInput[] = [];
  readonly raised: RaisedEvent[] = [];
  statusReads = 0;
  onStart?: (input: SessionInput) => void;
  onStatusRead?: (sessionId: string, reads: number) => void;

  startNew(input: SessionInput): Promise<void> {
    this.started.push(input);
    this.instances.set(input.sessionId, { runtimeStatus: 'Running', customStatus: { status: 'pending' }, input });
    this.onStart?.(input);
    return Promise.resolve();
  }

  getStatus(sessionId: string): Promise<InstanceState | undefined> {
    this.statusReads++;
    this.onStatusRead?.(sessionId, this.statusReads);
    return Promise.resolve(this.instances.get(sessionId));
  }

  raiseEvent(sessionId: string, eventName: string, data: unknown): Promise<boolean> {
    const st = this.instances.get(sessionId);
    if (!st || (st.runtimeStatus !== 'Running' && st.runtimeStatus !== 'Pending')) return Promise.resolve(false);
    this.raised.push({ sessionId, eventName, data });
    return Promise.resolve(true);
  }

  set(sessionId: string, state: Partial<InstanceState>): void {
    const current = this.instances.get(sessionId) ?? { runtimeStatus: 'Running' };
    this.instances.set(sessionId, { ...current, ...state });
  }
}

type StoreSurface = Pick<
  SessionStore,
  'insert' | 'locate' | 'get' | 'list' | 'listOpen' | 'transition' | 'countOpen' | 'recordHeartbeat' | 'listReady'
>;

/** The sessions table's contract (record + index row, guarded transitions) in a Map. */
export class MemorySessionStore implements StoreSurface {
  readonly records = new Map<string, SessionRecord>();
  readonly index = new Map<string, SessionLocation>();

  insert(r: SessionRecord): Promise<void> {
    if (this.records.has(r.sessionId)) throw new SessionExistsError(`Session ${r.sessionId} exists.`);
    this.records.set(r.sessionId, { ...r });
    this.index.set(r.sessionId, { deviceId: r.deviceId, openerId: r.openerId });
    return Promise.resolve();
  }

  locate(sessionId: string): Promise<SessionLocation | undefined> {
    return Promise.resolve(this.index.get(sessionId));
  }

  get(deviceId: string, sessionId: string): Promise<SessionRecord | undefined> {
    const r = this.records.get(sessionId);
    return Promise.resolve(r && r.deviceId === deviceId ? { ...r } : undefined);
  }

  list(
    filter: { deviceId?: string; status?: SessionStatus; openerId?: string; limit?: number } = {},
  ): Promise<SessionRecord[]> {
    return Promise.resolve(
      [...this.records.values()]
        .filter(
          (r) =>
            (!filter.deviceId || r.deviceId === filter.deviceId) &&
            (!filter.status || r.status === filter.status) &&
            (!filter.openerId || r.openerId === filter.openerId),
        )
        .sort((a, b) => b.createdAt.localeCompare(a.createdAt))
        .slice(0, filter.limit ?? 1000),
    );
  }

  countOpen(openerId: string): Promise<number> {
    return Promise.resolve(
      [...this.records.values()].filter((r) => r.openerId === openerId && r.status !== 'ended' && r.status !== 'failed')
        .length,
    );
  }

  listReady(): Promise<SessionRecord[]> {
    return Promise.resolve([...this.records.values()].filter((r) => r.status === 'ready').map((r) => ({ ...r })));
  }

  recordHeartbeat(
    deviceId: string,
    sessionId: string,
    report: ClientReport,
    at: Date,
    clientAddress?: string,
  ): Promise<SessionRecord> {
    const r = this.records.get(sessionId);
    if (!r || r.deviceId !== deviceId) throw new SessionNotFoundError(`Session ${sessionId} is not recorded.`);
    if (r.status === 'ended' || r.status === 'failed') return Promise.resolve({ ...r });
    const active = report.openConnections > 0 || report.connections > (r.connections ?? 0);
    const next: SessionRecord = {
      ...r,
      ...report,
      clientSeenAt: at.toISOString(),
      ...(active ? { lastActivityAt: at.toISOString() } : {}),
      ...(clientAddress ? { clientAddress } : {}),
    };
    this.records.set(sessionId, next);
    return Promise.resolve({ ...next });
  }

  listOpen(deviceId: string): Promise<SessionRecord[]> {
    return Promise.resolve(
      [...this.records.values()].filter(
        (r) => r.deviceId === deviceId && (r.status === 'pending' || r.status === 'ready'),
      ),
    );
  }

  transition(
    deviceId: string,
    sessionId: string,
    status: SessionStatus,
    fields: Partial<SessionRecord> = {},
  ): Promise<SessionRecord> {
    const r = this.records.get(sessionId);
    if (!r || r.deviceId !== deviceId) throw new SessionNotFoundError(`Session ${sessionId} is not recorded.`);
    if (decideSessionWrite(r.status, status) === 'skip') return Promise.resolve({ ...r });
    const next = { ...r, ...fields, status };
    this.records.set(sessionId, next);
    return Promise.resolve({ ...next });
  }
}
