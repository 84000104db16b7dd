// The `sessions` table (PK deviceId, RK sessionId): who opened what, when, on which namespace, how
// it ended and who ended it, what its client reported (heartbeat, connections, bytes). It never
// holds a token or a key. Beside each record, index rows: `~session~`/<sessionId> names its device,
// so a session is found by its id alone (no orchestration history needed); `~time~` and
// `~opener~<principal>` list sessions newest first (RK: inverted creation time), the opener's row
// also saying whether the session is still open (the per-principal cap counts those). '~' sorts
// after every device id, so `PartitionKey lt '~'` selects records only. `~live~` holds one row per
// ready session, so the liveness sweep reads the ready ones without scanning the history.
import { odata, TableClient, type TableEntity } from '@azure/data-tables';
import { z } from 'zod';
import { PartitionBatcher } from '../storage/partitionBatcher';
import { conditionalUpdate, getOrUndefined, insertOrConflict, tableFault } from '../storage/tables';
import { SessionExistsError, SessionNotFoundError } from '../errors';
import {
  decideSessionWrite,
  endReasonSchema,
  isTerminal,
  sessionStatusSchema,
  type EndReason,
  type SessionStatus,
} from './session';

export const sessionRecordSchema = z.object({
  sessionId: z.string(),
  deviceId: z.string(),
  openerId: z.string(),
  openerName: z.string().optional(),
  port: z.number().int(),
  status: sessionStatusSchema,
  reason: endReasonSchema.optional(),
  namespace: z.string().optional(),
  namespaceGeneration: z.number().int().optional(),
  createdAt: z.string(),
  readyAt: z.string().optional(),
  endedAt: z.string().optional(),
  expiresAt: z.string(),
  /** The request's idle limit; absent: the setting's. */
  idleMinutes: z.number().int().optional(),
  /** Who ended it: a principal id (DELETE), `system` (client gone, idle), or absent (lifetime, device, failure). */
  endedBy: z.string().optional(),
  /** The client's last heartbeat, and the last time it reported a connection open or bytes moving. */
  clientSeenAt: z.string().optional(),
  lastActivityAt: z.string().optional(),
  clientAddress: z.string().optional(),
  /** As the client last reported: connections carried so far, open now, and bytes each way. */
  connections: z.number().int().optional(),
  openConnections: z.number().int().optional(),
  bytesToDevice: z.number().optional(),
  bytesFromDevice: z.number().optional(),
});
export type SessionRecord = z.infer<typeof sessionRecordSchema>;

function fromEntity(e: Record<string, unknown>): SessionRecord & { etag: string } {
  const { partitionKey, rowKey, etag, timestamp: _t, 'odata.metadata': _m, ...rest } = e;
  const clean = Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== null && v !== undefined));
  return {
    ...sessionRecordSchema.parse({ ...clean, deviceId: partitionKey, sessionId: rowKey }),
    etag: typeof etag === 'string' ? etag : '',
  };
}

function toEntity(r: SessionRecord): TableEntity<Record<string, unknown>> {
  const { deviceId, sessionId, ...rest } = r;
  return {
    partitionKey: deviceId,
    rowKey: sessionId,
    ...Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== undefined)),
  };
}

/** The session-id index: one shared partition (RK the session id), so a burst's rows go out in one transaction. */
const SESSION_INDEX = '~session~';
// Sessions recorded before the shared partition had one partition each (`~session~<id>`, RK '~').
const LEGACY_INDEX_ROW = '~';
const legacyIndexKey = (sessionId: string) => `${SESSION_INDEX}${sessionId}`;
const TIME_INDEX = '~time~';
/** One row per ready session (from its ready write to its end): the liveness sweep reads these, not the table. */
const LIVE_INDEX = '~live~';
// Principal ids may hold characters a PartitionKey may not (/, #, ?): encoded.
const openerIndex = (openerId: string) => `~opener~${encodeURIComponent(openerId)}`;
/** Newest first: the key grows as creation time goes back; the id keeps keys unique. */
const timeKey = (r: Pick<SessionRecord, 'createdAt' | 'sessionId'>) =>
  `${String(9_999_999_999_999 - Date.parse(r.createdAt)).padStart(13, '0')}_${r.sessionId}`;
const timeIndexSchema = z.object({ deviceId: z.string(), sessionId: z.string() });

/** What a client reports in its heartbeat. */
export interface ClientReport {
  openConnections: number;
  connections: number;
  bytesToDevice: number;
  bytesFromDevice: number;
}

export interface SessionListFilter {
  deviceId?: string;
  status?: SessionStatus;
  /** Only this principal's sessions (an operator's own listing). */
  openerId?: string;
  /** The newest this many (default 1000). */
  limit?: number;
}

export interface SessionStoreOptions {
  /**
   * Called once a record reaches ended/failed, with the final record (the audit table's session
   * row). Called again when a retried end finds the record final already: it must be idempotent.
   */
  onEnded?: (record: SessionRecord) => Promise<void>;
}
const sessionIndexSchema = z.object({ deviceId: z.string(), openerId: z.string() });
/** Where a session's record lives, and who may see it, from the index row. */
export type SessionLocation = z.infer<typeof sessionIndexSchema>;

export class SessionStore {
  /** The index rows (shared partitions) go through one group commit per process. */
  private readonly batcher: PartitionBatcher;

  constructor(
    private readonly table: TableClient,
    private readonly options: SessionStoreOptions = {},
  ) {
    this.batcher = new PartitionBatcher(table);
  }

  async ensureTable(): Promise<void> {
    await this.table.createTable();
  }

  /**
   * Writes the record and its index rows (in parallel: they live in different partitions, so no
   * transaction joins them; an index row without its record reads as not found). The index rows
   * live in shared partitions and go through the group commit: in a burst, one request carries
   * many sessions' rows.
   * Second run: ConflictError if the session already exists.
   */
  async insert(r: SessionRecord): Promise<void> {
    const exists = () => new SessionExistsError(`Session ${r.sessionId} exists.`);
    const create = async (entity: TableEntity<Record<string, unknown>>) => {
      if ((await insertOrConflict(this.table, entity)) === 'conflict') throw exists();
    };
    const createIndex = async (entity: TableEntity<Record<string, unknown>>) => {
      if ((await this.batcher.write({ kind: 'create', entity })) === 'conflict') throw exists();
    };
    const byTime = { rowKey: timeKey(r), deviceId: r.deviceId, sessionId: r.sessionId };
    await Promise.all([
      createIndex({ partitionKey: SESSION_INDEX, rowKey: r.sessionId, deviceId: r.deviceId, openerId: r.openerId }),
      create(toEntity(r)),
      createIndex({ partitionKey: TIME_INDEX, ...byTime }),
      createIndex({ partitionKey: openerIndex(r.openerId), ...byTime, open: !isTerminal(r.status) }),
      ...(r.status === 'ready' ? [this.markLive(r)] : []),
    ]);
  }

  /** The device and opener of a session, from its index row; undefined when there is none. */
  async locate(sessionId: string): Promise<SessionLocation | undefined> {
    const parse = (e: Record<string, unknown>) =>
      sessionIndexSchema.parse({ deviceId: e.deviceId, openerId: e.openerId });
    return (
      (await getOrUndefined(this.table, SESSION_INDEX, sessionId, parse)) ??
      (await getOrUndefined(this.table, legacyIndexKey(sessionId), LEGACY_INDEX_ROW, parse))
    );
  }

  async get(deviceId: string, sessionId: string): Promise<SessionRecord | undefined> {
    const row = await this.read(deviceId, sessionId);
    if (!row) return undefined;
    const { etag: _e, ...r } = row;
    return r;
  }

  /**
   * Moves the record to `status` with the given fields, checking the transition table and the
   * ETag it read. Second run: a record already in `status` (or past it, see decideSessionWrite)
   * is returned unchanged.
   */
  async transition(
    deviceId: string,
    sessionId: string,
    status: SessionStatus,
    fields: Partial<
      Pick<SessionRecord, 'reason' | 'namespace' | 'namespaceGeneration' | 'readyAt' | 'endedAt' | 'endedBy'>
    > = {},
  ): Promise<SessionRecord> {
    return conditionalUpdate<SessionRecord & { etag: string }, SessionRecord>({
      op: 'sessionStore.transition',
      subject: `session ${sessionId}`,
      attempts: 5,
      read: () => this.read(deviceId, sessionId),
      decide: (current) => {
        if (!current) throw new SessionNotFoundError(`Session ${sessionId} is not recorded.`);
        const { etag, ...record } = current;
        if (decideSessionWrite(record.status, status) === 'skip') {
          // A retried end: the first run may have failed after its write, before its side effects.
          return {
            write: async () => {
              if (isTerminal(record.status) && isTerminal(status)) await this.afterEnd(record);
              return record;
            },
          };
        }
        // An end decided by someone (ending) keeps its author through the final write.
        const next: SessionRecord = {
          ...record,
          ...fields,
          status,
          ...(record.endedBy ? { endedBy: record.endedBy } : {}),
        };
        return {
          write: async () => {
            await this.table.updateEntity(toEntity(next), 'Replace', { etag });
            if (next.status === 'ready') await this.markLive(next);
            if (isTerminal(next.status)) await this.afterEnd(next);
            return next;
          },
        };
      },
      // Only a lost race (412) is read again; a vanished row is not a race to retry.
      retry: (fault) => fault === 'preconditionFailed',
    });
  }

  /** The record with the ETag it was read with; undefined when there is none. Read-only. */
  private read(deviceId: string, sessionId: string): Promise<(SessionRecord & { etag: string }) | undefined> {
    return getOrUndefined(this.table, deviceId, sessionId, fromEntity);
  }

  private async markLive(r: SessionRecord): Promise<void> {
    await this.batcher.write({
      kind: 'upsert',
      entity: { partitionKey: LIVE_INDEX, rowKey: r.sessionId, deviceId: r.deviceId, sessionId: r.sessionId },
    });
  }

  /** The opener's index row says closed, the live row goes, and the audit hears of the end. All idempotent. */
  private async afterEnd(record: SessionRecord): Promise<void> {
    await this.closeOpenerRow(record);
    await this.dropLive(record.sessionId);
    await this.options.onEnded?.(record);
  }

  private async dropLive(sessionId: string): Promise<void> {
    try {
      await this.table.deleteEntity(LIVE_INDEX, sessionId);
    } catch (err) {
      if (tableFault(err) !== 'notFound') throw err;
    }
  }

  private async closeOpenerRow(r: Pick<SessionRecord, 'openerId' | 'createdAt' | 'sessionId'>): Promise<void> {
    try {
      await this.table.updateEntity(
        { partitionKey: openerIndex(r.openerId), rowKey: timeKey(r), open: false },
        'Merge',
      );
    } catch (err) {
      // Sessions recorded before the opener index existed have no row: nothing to close.
      if (tableFault(err) !== 'notFound') throw err;
    }
  }

  /**
   * Stores a client's heartbeat: when it was seen, from where, what it carries; `lastActivityAt`
   * moves when a connection is open or a new one was carried since the last report. Returns the
   * record as it is now (a final one is left unchanged: its client learns it is over).
   * Second run: the same fields again.
   */
  async recordHeartbeat(
    deviceId: string,
    sessionId: string,
    report: ClientReport,
    at: Date,
    clientAddress?: string,
  ): Promise<SessionRecord> {
    return conditionalUpdate<SessionRecord & { etag: string }, SessionRecord>({
      op: 'sessionStore.recordClientReport',
      subject: `session ${sessionId}`,
      attempts: 5,
      read: () => this.read(deviceId, sessionId),
      decide: (current) => {
        if (!current) throw new SessionNotFoundError(`Session ${sessionId} is not recorded.`);
        const { etag, ...record } = current;
        if (isTerminal(record.status)) return { done: record };
        const active = report.openConnections > 0 || report.connections > (record.connections ?? 0);
        const fields = {
          clientSeenAt: at.toISOString(),
          ...(active ? { lastActivityAt: at.toISOString() } : {}),
          ...(clientAddress ? { clientAddress } : {}),
          connections: report.connections,
          openConnections: report.openConnections,
          bytesToDevice: report.bytesToDevice,
          bytesFromDevice: report.bytesFromDevice,
        };
        return {
          write: async () => {
            await this.table.updateEntity({ partitionKey: deviceId, rowKey: sessionId, ...fields }, 'Merge', { etag });
            return { ...record, ...fields };
          },
        };
      },
      retry: (fault) => fault === 'preconditionFailed',
    });
  }

  /**
   * How many sessions of `openerId` are open (pending, ready or ending), from its index rows; a row
   * still marked open whose record is final (its close was lost) is counted out and repaired.
   */
  async countOpen(openerId: string): Promise<number> {
    const rows: Array<z.infer<typeof timeIndexSchema>> = [];
    const filter = odata`PartitionKey eq ${openerIndex(openerId)} and open eq ${true}`;
    for await (const e of this.table.listEntities<Record<string, unknown>>({ queryOptions: { filter } })) {
      rows.push(timeIndexSchema.parse(e));
    }
    const records = await Promise.all(rows.map((r) => this.get(r.deviceId, r.sessionId)));
    let open = 0;
    for (const r of records) {
      if (!r) continue;
      if (isTerminal(r.status)) await this.closeOpenerRow(r);
      else open++;
    }
    return open;
  }

  /**
   * Every ready session (the liveness sweep reads their client reports), from the live index: as
   * many reads as sessions are ready, however long the table's history. A live row whose record
   * moved on (ending) is skipped; one whose record is final (its removal was lost) is removed.
   */
  async listReady(): Promise<SessionRecord[]> {
    const rows: Array<z.infer<typeof timeIndexSchema>> = [];
    const filter = odata`PartitionKey eq ${LIVE_INDEX}`;
    for await (const e of this.table.listEntities<Record<string, unknown>>({ queryOptions: { filter } })) {
      rows.push(timeIndexSchema.parse(e));
    }
    const out: SessionRecord[] = [];
    for (let i = 0; i < rows.length; i += 50) {
      const records = await Promise.all(rows.slice(i, i + 50).map((r) => this.get(r.deviceId, r.sessionId)));
      for (const r of records) {
        if (r?.status === 'ready') out.push(r);
        else if (r && isTerminal(r.status)) await this.dropLive(r.sessionId);
      }
    }
    return out;
  }

  /**
   * The newest `limit` sessions that match, newest first. A device's come from its partition (read
   * whole, then sorted); otherwise the time index (all, or the opener's) is walked newest first and
   * each row's record read, until `limit` match. Sessions recorded before the time index existed
   * appear only in a device's listing.
   */
  async list(filter: SessionListFilter = {}): Promise<SessionRecord[]> {
    const limit = filter.limit ?? 1000;
    const matches = (r: SessionRecord) =>
      (!filter.status || r.status === filter.status) && (!filter.openerId || r.openerId === filter.openerId);
    if (filter.deviceId) {
      const clauses = [odata`PartitionKey eq ${filter.deviceId}`];
      if (filter.status) clauses.push(odata`status eq ${filter.status}`);
      if (filter.openerId) clauses.push(odata`openerId eq ${filter.openerId}`);
      const all: SessionRecord[] = [];
      const iter = this.table.listEntities<Record<string, unknown>>({
        queryOptions: { filter: clauses.join(' and ') },
      });
      for await (const e of iter) {
        const { etag: _e, ...r } = fromEntity(e);
        all.push(r);
      }
      return all.sort((a, b) => b.createdAt.localeCompare(a.createdAt)).slice(0, limit);
    }
    const pk = filter.openerId ? openerIndex(filter.openerId) : TIME_INDEX;
    const out: SessionRecord[] = [];
    let batch: Array<z.infer<typeof timeIndexSchema>> = [];
    const drain = async () => {
      const records = await Promise.all(batch.map((b) => this.get(b.deviceId, b.sessionId)));
      batch = [];
      for (const r of records) if (r && matches(r) && out.length < limit) out.push(r);
    };
    const iter = this.table.listEntities<Record<string, unknown>>({
      queryOptions: { filter: odata`PartitionKey eq ${pk}` },
    });
    for await (const e of iter) {
      batch.push(timeIndexSchema.parse(e));
      // Reads in parallel, in batches no larger than what is still wanted (at least 8).
      if (batch.length >= Math.min(50, Math.max(8, limit - out.length))) await drain();
      if (out.length >= limit) break;
    }
    if (out.length < limit && batch.length) await drain();
    return out;
  }

  /** Every session of a device that has not ended (to end them when the device is deleted), all pages. */
  async listOpen(deviceId: string): Promise<SessionRecord[]> {
    const out: SessionRecord[] = [];
    const filter = odata`PartitionKey eq ${deviceId} and (status eq ${'pending'} or status eq ${'ready'})`;
    for await (const e of this.table.listEntities<Record<string, unknown>>({ queryOptions: { filter } })) {
      const { etag: _e, ...r } = fromEntity(e);
      out.push(r);
    }
    return out;
  }
}

export type { EndReason };
