// Group commit for one table: writes of this process to the same partition that arrive while one
// is in flight go out together as one entity-group transaction (up to 100 rows) instead of one
// request each. Alone (low load) a write goes out at once as itself; under a burst of opens, the
// shared index partitions cost one request per batch. Each caller still gets its own outcome.
import type { TableClient, TableEntity, TransactionAction } from '@azure/data-tables';
import { tableFault } from './tables';

/** A create (fails on an existing key: `conflict`) or a Replace upsert. */
export type BatchedWrite =
  | { kind: 'create'; entity: TableEntity<Record<string, unknown>> }
  | { kind: 'upsert'; entity: TableEntity<Record<string, unknown>> };

export type BatchedOutcome = 'written' | 'conflict';

interface Entry {
  write: BatchedWrite;
  resolve: (outcome: BatchedOutcome) => void;
  reject: (err: unknown) => void;
}

/** Azure Tables: at most 100 operations per entity-group transaction. */
const MAX_BATCH = 100;

export class PartitionBatcher {
  /** Writes waiting, per partition, for that partition's request in flight to end. */
  private readonly queued = new Map<string, Entry[]>();
  private readonly inFlight = new Set<string>();
  /** Requests sent and rows they carried, for tests and logs. */
  readonly stats = { requests: 0, rows: 0 };

  constructor(private readonly table: TableClient) {}

  /** Writes one row; resolves once it is stored (`conflict`: a create whose key exists). */
  write(write: BatchedWrite): Promise<BatchedOutcome> {
    return new Promise((resolve, reject) => {
      const pk = write.entity.partitionKey;
      const queue = this.queued.get(pk) ?? [];
      queue.push({ write, resolve, reject });
      this.queued.set(pk, queue);
      if (!this.inFlight.has(pk)) void this.drain(pk);
    });
  }

  private async drain(pk: string): Promise<void> {
    this.inFlight.add(pk);
    try {
      for (;;) {
        const queue = this.queued.get(pk) ?? [];
        if (queue.length === 0) break;
        // One row key at most once per transaction (Azure refuses duplicates).
        const batch: Entry[] = [];
        const keys = new Set<string>();
        for (const e of queue) {
          if (batch.length >= MAX_BATCH) break;
          if (keys.has(e.write.entity.rowKey)) continue;
          keys.add(e.write.entity.rowKey);
          batch.push(e);
        }
        this.queued.set(
          pk,
          queue.filter((e) => !batch.includes(e)),
        );
        await this.send(batch);
      }
    } finally {
      this.inFlight.delete(pk);
      this.queued.delete(pk);
    }
  }

  private async send(batch: Entry[]): Promise<void> {
    if (batch.length > 1) {
      this.stats.requests++;
      this.stats.rows += batch.length;
      try {
        await this.table.submitTransaction(batch.map((e) => toAction(e.write)));
        for (const e of batch) e.resolve('written');
        return;
      } catch (err) {
        // A row fault (a create whose key exists) fails the whole group: each row alone then
        // learns its own outcome. Anything else (storage busy) is every row's answer.
        if (tableFault(err) === undefined) {
          for (const e of batch) e.reject(err);
          return;
        }
      }
    }
    await Promise.all(batch.map((e) => this.sendOne(e)));
  }

  private async sendOne(e: Entry): Promise<void> {
    this.stats.requests++;
    this.stats.rows++;
    try {
      if (e.write.kind === 'create') await this.table.createEntity(e.write.entity);
      else await this.table.upsertEntity(e.write.entity, 'Replace');
      e.resolve('written');
    } catch (err) {
      if (e.write.kind === 'create' && tableFault(err) === 'conflict') e.resolve('conflict');
      else e.reject(err);
    }
  }
}

function toAction(w: BatchedWrite): TransactionAction {
  return w.kind === 'create' ? ['create', w.entity] : ['upsert', w.entity, 'Replace'];
}
