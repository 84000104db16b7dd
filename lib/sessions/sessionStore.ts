// The `sessions` table (PK deviceId, RK sessionId): the audit trail of who opened what, when,
// on which namespace, and how it ended. It never holds a token or a key. Beside each record, an
// index row (PK `~session~<sessionId>`) names its device, so a session is found by its id alone
// (no orchestration history needed). '~' sorts after every device id, so `PartitionKey lt '~'`
// selects records only.
import { odata, RestError, TableClient, type TableEntity } from '@azure/data-tables';
import { z } from 'zod';
import { ConcurrencyError, SessionExistsError, SessionNotFoundError } from '../errors';
import {
  decideSessionWrite,
  endReasonSchema,
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

const INDEX_PREFIX = '~session~';
const INDEX_ROW = '~';
const indexKey = (sessionId: string) => `${INDEX_PREFIX}${sessionId}`;
const sessionIndexSchema = z.object({ deviceId: z.string(), openerId: z.string() });
/** Where a session's record lives, and who may see it, from the index row. */
export type SessionLocation = z.infer<typeof sessionIndexSchema>;

export class SessionStore {
  constructor(private readonly table: TableClient) {}

  async ensureTable(): Promise<void> {
    await this.table.createTable();
  }

  /**
   * Writes the record and its index row (in parallel: they live in different partitions, so no
   * transaction joins them; an index row without its record reads as not found).
   * Second run: ConflictError if the session already exists.
   */
  async insert(r: SessionRecord): Promise<void> {
    const create = async (entity: TableEntity<Record<string, unknown>>) => {
      try {
        await this.table.createEntity(entity);
      } catch (err) {
        if (err instanceof RestError && err.statusCode === 409)
          throw new SessionExistsError(`Session ${r.sessionId} exists.`);
        throw err;
      }
    };
    await Promise.all([
      create({ partitionKey: indexKey(r.sessionId), rowKey: INDEX_ROW, deviceId: r.deviceId, openerId: r.openerId }),
      create(toEntity(r)),
    ]);
  }

  /** The device and opener of a session, from its index row; undefined when there is none. */
  async locate(sessionId: string): Promise<SessionLocation | undefined> {
    try {
      const e = await this.table.getEntity<Record<string, unknown>>(indexKey(sessionId), INDEX_ROW);
      return sessionIndexSchema.parse({ deviceId: e.deviceId, openerId: e.openerId });
    } catch (err) {
      if (err instanceof RestError && err.statusCode === 404) return undefined;
      throw err;
    }
  }

  async get(deviceId: string, sessionId: string): Promise<SessionRecord | undefined> {
    try {
      const { etag: _e, ...r } = fromEntity(await this.table.getEntity<Record<string, unknown>>(deviceId, sessionId));
      return r;
    } catch (err) {
      if (err instanceof RestError && err.statusCode === 404) return undefined;
      throw err;
    }
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
    fields: Partial<Pick<SessionRecord, 'reason' | 'namespace' | 'namespaceGeneration' | 'readyAt' | 'endedAt'>> = {},
  ): Promise<SessionRecord> {
    for (let attempt = 0; attempt < 5; attempt++) {
      let current: SessionRecord & { etag: string };
      try {
        current = fromEntity(await this.table.getEntity<Record<string, unknown>>(deviceId, sessionId));
      } catch (err) {
        if (err instanceof RestError && err.statusCode === 404)
          throw new SessionNotFoundError(`Session ${sessionId} is not recorded.`);
        throw err;
      }
      const { etag, ...record } = current;
      if (decideSessionWrite(record.status, status) === 'skip') return record;
      const next: SessionRecord = { ...record, ...fields, status };
      try {
        await this.table.updateEntity(toEntity(next), 'Replace', { etag });
        return next;
      } catch (err) {
        if (err instanceof RestError && err.statusCode === 412) continue;
        throw err;
      }
    }
    throw new ConcurrencyError(`Session ${sessionId} kept changing; try again.`);
  }

  async list(filter: { deviceId?: string; status?: SessionStatus; limit?: number } = {}): Promise<SessionRecord[]> {
    // Records only: index rows sort after them.
    const clauses: string[] = [odata`PartitionKey lt ${'~'}`];
    if (filter.deviceId) clauses.push(odata`PartitionKey eq ${filter.deviceId}`);
    if (filter.status) clauses.push(odata`status eq ${filter.status}`);
    const limit = filter.limit ?? 1000;
    const out: SessionRecord[] = [];
    const iter = this.table.listEntities<Record<string, unknown>>({
      queryOptions: { filter: clauses.join(' and ') },
    });
    for await (const e of iter) {
      const { etag: _e, ...r } = fromEntity(e);
      out.push(r);
      if (out.length >= limit) break;
    }
    return out.sort((a, b) => b.createdAt.localeCompare(a.createdAt));
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
