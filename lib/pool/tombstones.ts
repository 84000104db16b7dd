// Names this pool deleted, and when: the partition `<pool>~deleted` of the namespaces table (RK =
// namespace name, `deletedAt`). Namespace names are global in Azure and a deleted one may linger,
// so the policy does not generate, and reconcile does not adopt, a name deleted within
// POOL_NAME_REUSE_HOURS. Older tombstones are never read again and maintenance purges them.
import { odata, type TableClient } from '@azure/data-tables';
import { z } from 'zod';
import { deleteIfExists } from '../storage/tables';
import type { DeletedName } from './poolPolicy';

const tombstoneSchema = z.object({ rowKey: z.string().min(1), deletedAt: z.iso.datetime({ offset: false }) });

export class Tombstones {
  constructor(
    private readonly table: TableClient,
    readonly poolName: string,
  ) {}

  /** Partition of the tombstones ('~' cannot occur in a pool name, so it never meets namespace rows). */
  get partition(): string {
    return `${this.poolName}~deleted`;
  }

  /**
   * Records that `name` was deleted at `deletedAt` (also for names reconcile deleted without a row).
   * Second run: overwrites the time with the later one, which only extends the no-reuse window.
   */
  async record(name: string, deletedAt: Date): Promise<void> {
    await this.table.upsertEntity(
      { partitionKey: this.partition, rowKey: name, deletedAt: deletedAt.toISOString() },
      'Replace',
    );
  }

  /** Names deleted at or after `since`. Read-only. */
  async since(since: Date): Promise<DeletedName[]> {
    const out: DeletedName[] = [];
    for await (const t of this.query(odata`deletedAt ge ${since.toISOString()}`)) out.push(t);
    return out;
  }

  /**
   * Forgets at most `limit` tombstones older than `before`; returns how many it deleted.
   * Second run: finds fewer (another purger's deletes are not counted) and deletes them.
   */
  async purge(before: Date, limit = 100): Promise<number> {
    let n = 0;
    for await (const t of this.query(odata`deletedAt lt ${before.toISOString()}`)) {
      if (n >= limit) break;
      if (await deleteIfExists(this.table, this.partition, t.name)) n++;
    }
    return n;
  }

  private async *query(condition: string): AsyncGenerator<DeletedName> {
    // Times are fixed-width UTC ISO strings, so string order is time order.
    const filter = `${odata`PartitionKey eq ${this.partition}`} and ${condition}`;
    for await (const entity of this.table.listEntities({ queryOptions: { filter } })) {
      const t = tombstoneSchema.parse(entity);
      yield { name: t.rowKey, deletedAt: new Date(t.deletedAt) };
    }
  }
}
