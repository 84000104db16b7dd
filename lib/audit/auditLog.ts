// The append-only audit table: one row per admin action (device add/rotate/remove, grant add/remove,
// session end by whom) and one per finished session. PK is the UTC day of the event, RK its inverted
// time, so a day reads newest first and retention deletes whole old days. Rows are never updated;
// a row written twice (a retried step) has the same key and the same content.
import { randomBytes } from 'node:crypto';
import { odata, RestError, TableClient, type TableEntity } from '@azure/data-tables';
import { z } from 'zod';
import { ValidationError } from '../errors';

export const AUDIT_ACTIONS = [
  'device.add',
  'device.rotate',
  'device.remove',
  'grant.add',
  'grant.remove',
  'session.end',
  'session',
] as const;
export const auditActionSchema = z.enum(AUDIT_ACTIONS);
export type AuditAction = z.infer<typeof auditActionSchema>;

/** An entry: who did what to which device, when, and how it came out; the rest depends on the action. */
export const auditEntrySchema = z.object({
  /** When it happened (for a session: when it ended). */
  at: z.iso.datetime(),
  action: auditActionSchema,
  /** Who did it (for a session: its opener). */
  principal: z.string(),
  deviceId: z.string().optional(),
  sessionId: z.string().optional(),
  /** `ok` for admin actions; a session's final status (`ended`/`failed`). */
  outcome: z.string(),
  /** Anything else, flat: port, times, reason, endedBy, bytes, client address, cost, target principal. */
  details: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).default({}),
});
export type AuditEntry = z.infer<typeof auditEntrySchema>;
export type AuditEntryInput = z.input<typeof auditEntrySchema>;

export interface AuditQuery {
  since: Date;
  until: Date;
  deviceId?: string;
  principal?: string;
  outcome?: string;
  action?: AuditAction;
  limit: number;
  continuation?: string;
}

export interface AuditPage {
  entries: AuditEntry[];
  /** Opaque: pass it back as `continuation` for the next page; absent on the last page. */
  continuation?: string;
}

const MAX_MS = 9_999_999_999_999;
const DAY_MS = 86_400_000;
const dayOf = (d: Date) => d.toISOString().slice(0, 10);
/** Newest first within a day: the row key grows as time goes back. */
const invertedTime = (d: Date) => String(MAX_MS - d.getTime()).padStart(13, '0');

const continuationSchema = z.object({ day: z.iso.date(), after: z.string().min(1).max(200) });

function encodeContinuation(day: string, after: string): string {
  return Buffer.from(JSON.stringify({ day, after })).toString('base64url');
}

function decodeContinuation(token: string): z.infer<typeof continuationSchema> {
  try {
    return continuationSchema.parse(JSON.parse(Buffer.from(token, 'base64url').toString('utf8')));
  } catch {
    throw new ValidationError('The continuation token is not one this API issued.', [
      { path: 'continuation', message: 'unknown token' },
    ]);
  }
}

function toEntity(e: AuditEntry, rowKey: string): TableEntity<Record<string, unknown>> {
  return {
    partitionKey: dayOf(new Date(e.at)),
    rowKey,
    at: e.at,
    action: e.action,
    principal: e.principal,
    ...(e.deviceId ? { deviceId: e.deviceId } : {}),
    ...(e.sessionId ? { sessionId: e.sessionId } : {}),
    outcome: e.outcome,
    details: JSON.stringify(e.details),
  };
}

function fromEntity(e: Record<string, unknown>): AuditEntry {
  let details: unknown;
  try {
    details = typeof e.details === 'string' ? JSON.parse(e.details) : {};
  } catch {
    details = {};
  }
  return auditEntrySchema.parse({
    at: e.at,
    action: e.action,
    principal: e.principal,
    ...(typeof e.deviceId === 'string' ? { deviceId: e.deviceId } : {}),
    ...(typeof e.sessionId === 'string' ? { sessionId: e.sessionId } : {}),
    outcome: e.outcome,
    details,
  });
}

export class AuditLog {
  constructor(private readonly table: TableClient) {}

  async ensureTable(): Promise<void> {
    await this.table.createTable();
  }

  /**
   * Appends an entry. `key` makes it idempotent (a session's row: its id): the same key and time
   * write the same row. Without one, a random suffix keeps two actions in the same millisecond apart.
   * Second run: with a key, the same row again; without, a second row.
   */
  async append(input: AuditEntryInput, key?: string): Promise<void> {
    const entry = auditEntrySchema.parse(input);
    const rowKey = `${invertedTime(new Date(entry.at))}_${key ?? randomBytes(6).toString('hex')}`;
    await this.table.upsertEntity(toEntity(entry, rowKey), 'Replace');
  }

  /**
   * Entries in [since, until], newest first, filtered, at most `limit` per page; day partitions are
   * read from `until` back to `since`, and the continuation names the day and last row returned.
   */
  async query(q: AuditQuery): Promise<AuditPage> {
    if (q.since.getTime() > q.until.getTime()) {
      throw new ValidationError('since must not be after until.', [{ path: 'since', message: 'after until' }]);
    }
    const start = q.continuation ? decodeContinuation(q.continuation) : undefined;
    let day = start ? new Date(`${start.day}T00:00:00.000Z`) : new Date(`${dayOf(q.until)}T00:00:00.000Z`);
    const lastDay = new Date(`${dayOf(q.since)}T00:00:00.000Z`);
    const entries: AuditEntry[] = [];
    let after = start?.after;
    while (day.getTime() >= lastDay.getTime()) {
      const pk = dayOf(day);
      const clauses = [
        odata`PartitionKey eq ${pk}`,
        odata`RowKey ge ${invertedTime(q.until)}`,
        odata`RowKey lt ${String(Number(invertedTime(q.since)) + 1).padStart(13, '0')}`,
      ];
      if (after) clauses.push(odata`RowKey gt ${after}`);
      if (q.deviceId) clauses.push(odata`deviceId eq ${q.deviceId}`);
      if (q.principal) clauses.push(odata`principal eq ${q.principal}`);
      if (q.outcome) clauses.push(odata`outcome eq ${q.outcome}`);
      if (q.action) clauses.push(odata`action eq ${q.action}`);
      const iter = this.table.listEntities<Record<string, unknown>>({
        queryOptions: { filter: clauses.join(' and ') },
      });
      for await (const e of iter) {
        entries.push(fromEntity(e));
        if (entries.length >= q.limit) {
          // One more might exist in this day or an earlier one: the next page says.
          return { entries, continuation: encodeContinuation(pk, String(e.rowKey)) };
        }
      }
      after = undefined;
      day = new Date(day.getTime() - DAY_MS);
    }
    return { entries };
  }

  /**
   * Deletes every row of a day before `cutoff`'s (retention), at most `max` per run, oldest days
   * first. Returns how many it deleted. Second run: deletes what is left (a deleted row is a 404, skipped).
   */
  async deleteOlderThan(cutoff: Date, max = 10_000): Promise<number> {
    const iter = this.table.listEntities<Record<string, unknown>>({
      queryOptions: { filter: odata`PartitionKey lt ${dayOf(cutoff)}`, select: ['PartitionKey', 'RowKey'] },
    });
    let deleted = 0;
    for await (const e of iter) {
      try {
        await this.table.deleteEntity(String(e.partitionKey), String(e.rowKey));
      } catch (err) {
        if (!(err instanceof RestError && err.statusCode === 404)) throw err;
      }
      if (++deleted >= max) break;
    }
    return deleted;
  }
}
