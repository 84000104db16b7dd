// Every leased namespace is recycled, whatever became of its session's orchestration: a sweep, run
// by pool maintenance's timer, that ends what no orchestration will end any more (terminated,
// failed, purged, a host crash mid-open): leases whose session is not running get their hybrid
// connection deleted and their next generation prepared; audit records left open with no running
// orchestration are closed (`failed`, reason `interrupted`, or the end they were already `ending` with).
import { describeError } from '../errors';
import type { NamespaceStore } from '../pool/namespaceStore';
import { isRunning, type SessionOrchestrations } from './orchestrations';
import { isTerminal, statusForReason, type SessionStatus } from './session';
import type { SessionService } from './sessionService';
import type { SessionRecord, SessionStore } from './sessionStore';

export interface SessionSweepOptions {
  namespaces: NamespaceStore;
  sessions: SessionStore;
  service: Pick<SessionService, 'endRelay' | 'prepareNext'>;
  orchestrations: Pick<SessionOrchestrations, 'getStatus'>;
  /**
   * A lease or record younger than this is left alone: its orchestration may not have been
   * started or scheduled yet (default 60 s; more than the time from the open's record to its start).
   */
  graceMs?: number;
  /** Records per open status looked at per run (default 200). */
  maxRecords?: number;
  now?: () => Date;
}

export interface SessionSweepOutcome {
  /** Leases whose session was not running, whose hybrid connection is now deleted. */
  leasesEnded: number;
  /** Open audit records with no running orchestration, now closed. */
  recordsClosed: number;
  /** One line per failure (surfaced in the maintenance log); the next run tries again. */
  errors: string[];
}

const OPEN_STATUSES: readonly SessionStatus[] = ['pending', 'ready', 'ending'];

export class SessionSweep {
  private readonly now: () => Date;
  constructor(private readonly o: SessionSweepOptions) {
    this.now = o.now ?? (() => new Date());
  }

  /**
   * One sweep. Second run: what was ended or closed is no longer leased or open; what failed is
   * tried again (each step is itself idempotent).
   */
  async run(): Promise<SessionSweepOutcome> {
    const out: SessionSweepOutcome = { leasesEnded: 0, recordsClosed: 0, errors: [] };
    const before = this.now().getTime() - (this.o.graceMs ?? 60_000);
    const note = (what: string, err: unknown) => {
      if (out.errors.length < 20) out.errors.push(`${what}: ${describeError(err, 300)}`);
    };
    for (const row of await this.o.namespaces.list({ states: ['leased'] })) {
      if (!row.sessionId || (row.leasedAt?.getTime() ?? 0) > before) continue;
      try {
        if (isRunning(await this.o.orchestrations.getStatus(row.sessionId))) continue;
        const ref = { sessionId: row.sessionId, namespace: row.name, generation: row.generation };
        if ((await this.o.service.endRelay(ref)) !== 'deleted') continue;
        out.leasesEnded++;
        await this.o.service.prepareNext(ref).catch((err: unknown) => note(`next generation of ${row.name}`, err));
      } catch (err) {
        note(`lease of ${row.name} (session ${row.sessionId})`, err);
      }
    }
    for (const status of OPEN_STATUSES) {
      for (const record of await this.o.sessions.list({ status, limit: this.o.maxRecords ?? 200 })) {
        if (Date.parse(record.createdAt) > before) continue;
        try {
          if (await this.closeIfAbandoned(record)) out.recordsClosed++;
        } catch (err) {
          note(`record of session ${record.sessionId}`, err);
        }
      }
    }
    return out;
  }

  /** Closes an open record whose orchestration is not running, once its hybrid connection is gone. */
  private async closeIfAbandoned(record: SessionRecord): Promise<boolean> {
    if (isTerminal(record.status)) return false;
    if (isRunning(await this.o.orchestrations.getStatus(record.sessionId))) return false;
    const ended = await this.o.service.endRelay({
      sessionId: record.sessionId,
      ...(record.namespace ? { namespace: record.namespace, generation: record.namespaceGeneration } : {}),
    });
    if (ended !== 'deleted') return false; // never `ended` before the hybrid connection is gone
    const reason = record.status === 'ending' && record.reason ? record.reason : 'interrupted';
    await this.o.sessions.transition(record.deviceId, record.sessionId, statusForReason(reason), {
      reason,
      endedAt: this.now().toISOString(),
    });
    return true;
  }
}
