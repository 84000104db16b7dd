// The `sessions` table (PK deviceId, RK sessionId): the audit trail of who opened what, when,
// on which namespace, and how it ended. It never holds a token or a key.
import { odata, RestError, TableClient, type TableEntity } from '@azure/data-tables';
import { z } from 'zod';
import { ConcurrencyError, SessionExistsError, SessionNotFoundError } from '../errors';
import {
  assertSessionTransition,
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
    etag: String(etag ?? ''),
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

export class SessionStore {
  constructor(private readonly table: TableClient) {}

  async ensureTable(): Promise<void> {
    await this.table.createTable();
  }

  /** Second run: ConflictError if the session already exists. */
  async insert(r: SessionRecord): Promise<void> {
    try {
      await this.table.createEntity(toEntity(r));
    } catch (err) {
      if (err instanceof RestError && err.statusCode === 409)
        throw new SessionExistsError(`Session ${r.sessionId} exists.`);
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
   * ETag it read. Second run: a record already in `status` is returned unchanged.
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
      if (record.status === status) return record;
      if (record.status === 'ended' || record.status === 'failed') return record; // terminal: first end wins
      assertSessionTransition(record.status, status);
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
    const clauses: string[] = [];
    if (filter.deviceId) clauses.push(odata`PartitionKey eq ${filter.deviceId}`);
    if (filter.status) clauses.push(odata`status eq ${filter.status}`);
    const limit = filter.limit ?? 1000;
    const out: SessionRecord[] = [];
    const iter = this.table.listEntities<Record<string, unknown>>({
      queryOptions: clauses.length ? { filter: clauses.join(' and ') } : undefined,
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
