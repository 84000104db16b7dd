// The record of the last pool maintenance run, kept in the namespaces table under a reserved
// partition (`<pool>~runs`, RK `last`): what GET /pool shows, and what the next run carries over
// (the shrink hysteresis `aboveTargetSince`, subscriptions found full).
import type { TableClient } from '@azure/data-tables';
import { z } from 'zod';
import { ConcurrencyError } from '../errors';
import { conditionalUpdate, getOrUndefined } from '../storage/tables';

const isoTime = z.iso.datetime({ offset: false });

/** What provisioning learnt of ARM's limits per subscription (the run record's `armBudget`). */
export const armBudgetSchema = z.record(
  z.string(),
  z.object({
    namespaceWritesRemaining: z.number().int().min(0).optional(),
    refusedUntil: isoTime.optional(),
    throttled: z.number().int().min(0).optional(),
  }),
);

export const poolRunRecordSchema = z.object({
  runId: z.string().min(1).max(200),
  startedAt: isoTime,
  finishedAt: isoTime,
  durationMs: z.number().int().min(0),
  /** succeeded: every step ran without error; partial: some items or steps failed; failed: no plan. */
  outcome: z.enum(['succeeded', 'partial', 'failed']),
  target: z.number().int().min(0).optional(),
  usable: z.number().int().min(0).optional(),
  /** The policy's reasons for the target, as planned at the start of the run. */
  reasons: z.array(z.string().max(1000)).max(50),
  /** Carried into the next plan (the shrink hysteresis). */
  aboveTargetSince: isoTime.optional(),
  /** Counts per step and result, e.g. `{provision: {available: 3, failed: 1}}`. */
  steps: z.record(z.string(), z.record(z.string(), z.number().int().min(0))),
  errors: z.array(z.string().max(1000)).max(50),
  /** Subscriptions that answered "quota exceeded", skipped by plans until the given time. */
  fullSubscriptions: z.record(z.string(), isoTime),
  /**
   * What provisioning learnt of ARM's limits per subscription (lib/pool/provisionPacing.ts): Relay's
   * namespace writes left, a refusal's end, the 429s drawn (every one handled). The next plan paces by it.
   */
  armBudget: armBudgetSchema.optional(),
});
export type PoolRunRecord = z.infer<typeof poolRunRecordSchema>;

const runEntitySchema = z.object({ record: z.string().min(2), startedAt: isoTime, etag: z.string().optional() });

export class PoolRunStore {
  static readonly ROW_KEY = 'last';

  constructor(
    private readonly table: TableClient,
    readonly poolName: string,
  ) {}

  /** Partition of run records ('~' cannot occur in a pool name, so it never meets namespace rows). */
  get partition(): string {
    return `${this.poolName}~runs`;
  }

  /** The last recorded run, or undefined. A stored record that does not parse is treated as absent. Read-only. */
  async last(): Promise<PoolRunRecord | undefined> {
    return (await this.read())?.record;
  }

  /**
   * Stores `record` as the last run unless a later run (by `startedAt`) is already stored.
   * Returns whether it was stored. Conditional on the ETag read, so two writers never interleave.
   * Second run: writes the same record again (or keeps a later one).
   */
  async record(record: PoolRunRecord): Promise<boolean> {
    const checked = poolRunRecordSchema.parse(record);
    const entity = {
      partitionKey: this.partition,
      rowKey: PoolRunStore.ROW_KEY,
      record: JSON.stringify(checked),
      startedAt: checked.startedAt,
    };
    try {
      return await conditionalUpdate<{ record?: PoolRunRecord; etag: string }, boolean>({
        op: 'poolRunStore.record',
        subject: `the last run record of pool ${this.poolName}`,
        read: () => this.read(),
        decide: (current) => {
          if (current?.record && current.record.startedAt > checked.startedAt) return { done: false };
          return {
            write: async () => {
              // A create that finds the row (409) or a replace that lost the race (412) reads again.
              if (current) await this.table.updateEntity(entity, 'Replace', { etag: current.etag });
              else await this.table.createEntity(entity);
              return true;
            },
          };
        },
      });
    } catch (err) {
      // Lost the race on every attempt: not stored (as `false` says); the next run records again.
      if (err instanceof ConcurrencyError) return false;
      throw err;
    }
  }

  private async read(): Promise<{ record?: PoolRunRecord; etag: string } | undefined> {
    const raw = await getOrUndefined(this.table, this.partition, PoolRunStore.ROW_KEY, (e) => e);
    if (raw === undefined) return undefined;
    // A row that does not parse (written by another version, or damaged) counts as no record: the
    // next run writes a good one over it, instead of every plan failing on it.
    const entity = runEntitySchema.safeParse(raw);
    const etag = entity.success ? entity.data.etag : z.object({ etag: z.string() }).safeParse(raw).data?.etag;
    let record: PoolRunRecord | undefined;
    if (entity.success) {
      try {
        const parsed = poolRunRecordSchema.safeParse(JSON.parse(entity.data.record));
        record = parsed.success ? parsed.data : undefined;
      } catch {
        record = undefined;
      }
    }
    return { ...(record ? { record } : {}), etag: etag ?? '*' };
  }
}
