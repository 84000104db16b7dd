// The instances the engine knows: live ones in memory, recently finished ones in a small cache,
// and the stored state and history of any other, read on demand from DurableStore.
import {
  historyKey,
  historyPrefix,
  Instance,
  type InstanceState,
  type Message,
  TERMINAL,
  type WorkItem,
} from './instance';
import type { HistoryEvent } from './protocol';
import { type DurableStore, etagOf, type IndexRecord, readBlobs, type StoredRow } from './store';

/** Finished instances whose state stays readable from memory. */
const FINISHED_CACHE = 5000;

export class InstanceRegistry {
  private readonly live = new Map<string, Instance>();
  private readonly finished = new Map<string, InstanceState>();

  constructor(readonly store: DurableStore) {}

  get(id: string): Instance | undefined {
    return this.live.get(id);
  }
  add(inst: Instance): void {
    this.live.set(inst.id, inst);
  }
  delete(id: string): void {
    this.live.delete(id);
  }
  values(): IterableIterator<Instance> {
    return this.live.values();
  }
  get size(): number {
    return this.live.size;
  }
  clear(): void {
    this.live.clear();
  }

  /** The last state of a recently finished instance. */
  finishedState(id: string): InstanceState | undefined {
    return this.finished.get(id);
  }
  /** A terminal instance leaves memory; its status stays readable from the cache and the index. */
  retire(inst: Instance): void {
    this.live.delete(inst.id);
    this.finished.set(inst.id, inst.state);
    if (this.finished.size > FINISHED_CACHE) this.finished.delete(this.finished.keys().next().value as string);
  }
  /** Purged (or replaced): its cached state must not answer reads any more. */
  forget(id: string): void {
    this.finished.delete(id);
  }

  /** Live, recently finished, or stored state; undefined when the instance does not exist. */
  async knownState(id: string): Promise<InstanceState | undefined> {
    return this.live.get(id)?.state ?? this.finished.get(id) ?? (await this.readState(id))?.state;
  }

  /**
   * Loads every instance that is not terminal with its inbox, drops rows no commit owns, repairs
   * index rows that lag their state, and returns the pending work rows (a second run finds the
   * same instances and nothing left to drop or repair).
   */
  async recover(): Promise<Array<{ instanceId: string; item: WorkItem }>> {
    const [stateRows, pendingRows, index] = await Promise.all([
      this.store.scan('~state', '~state~'),
      this.store.scan('m-', 'x'),
      this.store.scanIndex(),
    ]);
    const byPartition = new Map<string, StoredRow[]>();
    for (const r of [...stateRows, ...pendingRows]) {
      const list = byPartition.get(r.partitionKey) ?? [];
      list.push(r);
      byPartition.set(r.partitionKey, list);
    }
    const indexById = new Map(index.map((r) => [r.instanceId, r]));
    const work: Array<{ instanceId: string; item: WorkItem }> = [];
    for (const [pk, rows] of byPartition) {
      const blobs = readBlobs(rows);
      const stateRead = blobs.get('~state');
      if (!stateRead) {
        // Messages for an instance that does not exist (purged, or never created): drop them.
        await this.store.deleteRows(
          pk,
          rows.map((r) => r.rowKey),
        );
        continue;
      }
      const state = JSON.parse(stateRead.text) as InstanceState;
      const inst = new Instance(state, etagOf(stateRead.row));
      const stale = loadInbox(inst, rows, blobs, TERMINAL.has(state.status));
      if (stale.length) await this.store.deleteRows(pk, stale);
      const indexed = indexById.get(pk);
      if (!indexed || indexed.episode !== state.episode || indexed.runtimeStatus !== state.status) {
        await this.store.writeIndex(indexRecord(state));
      }
      inst.indexedEpisode = state.episode;
      if (TERMINAL.has(state.status)) continue;
      this.live.set(pk, inst);
      for (const [key, blob] of blobs) {
        if (!key.startsWith('w-') || !inst.rowKeys.has(key)) continue;
        work.push({ instanceId: inst.id, item: JSON.parse(blob.text) as WorkItem });
      }
    }
    return work;
  }

  /** Replaces an instance's memory with what storage holds; true when it turns out finished. */
  async reload(inst: Instance): Promise<boolean> {
    const rows = await this.store.loadPartition(inst.id);
    const blobs = readBlobs(rows);
    const stateRead = blobs.get('~state');
    if (!stateRead) {
      this.live.delete(inst.id);
      return false;
    }
    inst.state = JSON.parse(stateRead.text) as InstanceState;
    inst.etag = etagOf(stateRead.row);
    inst.history = undefined;
    inst.messages.clear();
    inst.rowKeys.clear();
    loadInbox(inst, rows, blobs, false);
    return TERMINAL.has(inst.state.status);
  }

  async readState(instanceId: string): Promise<{ state: InstanceState; etag: string | undefined } | undefined> {
    const rows = await this.store.loadPartition(instanceId, '~state', '~state~');
    const blob = readBlobs(rows).get('~state');
    return blob ? { state: JSON.parse(blob.text) as InstanceState, etag: etagOf(blob.row) } : undefined;
  }

  async loadHistory(state: InstanceState): Promise<HistoryEvent[]> {
    const from = historyPrefix(state.gen);
    const rows = await this.store.loadPartition(state.instanceId, from, `${from}~`);
    const blobs = readBlobs(rows);
    const out: HistoryEvent[] = [];
    for (let seq = 0; seq < state.historyCount; seq++) {
      const b = blobs.get(historyKey(state.gen, seq));
      if (!b) throw new Error(`History of ${state.instanceId} is missing event ${seq} (of ${state.historyCount})`);
      out.push(JSON.parse(b.text) as HistoryEvent);
    }
    return out;
  }
}

export function indexRecord(state: InstanceState): IndexRecord {
  const small = (s: string | undefined) => (s !== undefined && s.length <= 30_000 ? s : undefined);
  const large = [state.input, state.output, state.customStatus].some((s) => s !== undefined && s.length > 30_000);
  return {
    instanceId: state.instanceId,
    name: state.name,
    runtimeStatus: state.status,
    createdTime: new Date(state.createdTime),
    lastUpdatedTime: new Date(state.lastUpdatedTime),
    input: small(state.input),
    output: small(state.output),
    customStatus: small(state.customStatus),
    large,
    episode: state.episode,
  };
}

/**
 * Reads an instance's inbox (`m-`) and work (`w-`) rows into memory and returns the row keys to
 * delete: those staged by an episode whose commit never happened, or all when `dropAll` (a
 * finished instance). History and state rows are not the inbox and are never collected here.
 */
function loadInbox(
  inst: Instance,
  rows: StoredRow[],
  blobs: Map<string, { text: string; row: StoredRow }>,
  dropAll: boolean,
): string[] {
  const stale: string[] = [];
  for (const [key, blob] of blobs) {
    if (!key.startsWith('m-') && !key.startsWith('w-')) continue;
    const ep = typeof blob.row.ep === 'number' ? blob.row.ep : 0;
    const keys = rows.filter((r) => r.rowKey === key || r.rowKey.startsWith(`${key}.`)).map((r) => r.rowKey);
    if (ep > inst.state.episode || dropAll) {
      stale.push(...keys);
      continue;
    }
    inst.rowKeys.set(key, keys);
    if (key.startsWith('m-')) inst.messages.set(key, JSON.parse(blob.text) as Message);
  }
  return stale;
}
