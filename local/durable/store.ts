// Azure Tables persistence for the durable engine (Azurite locally). One partition per instance in
// `<hub>History` holds everything that must change together: the state row (the commit point,
// guarded by its ETag), the history rows, the inbox messages and the pending work items; so an
// episode commits in one entity-group transaction. `<hub>Instances` is a query index derived
// from the state rows and repaired at startup. See README.md "Storage layout".
import {
  odata,
  RestError,
  TableClient,
  TableServiceClient,
  type TableEntity,
  type TransactionAction,
} from '@azure/data-tables';

/** 64 KiB per string property = 32K UTF-16 code units; stay well below. */
const CHUNK_CHARS = 30_000;
/** 1 MiB per entity: at most 15 chunks of 60 KB plus keys and system properties. */
const CHUNKS_PER_ROW = 15;
const MAX_BATCH_OPS = 100;
/** 4 MiB per transaction; leave headroom for the multipart envelope. */
const MAX_BATCH_BYTES = 3_500_000;

export type StoredRow = TableEntity<Record<string, unknown>>;

export interface BlobRecord {
  rowKey: string;
  text: string;
  /** Episode tag for staged rows; 0 for rows written outside an episode. */
  ep: number;
  props: Record<string, string | number | boolean>;
}

export interface EpisodeCommit {
  instanceId: string;
  /** ETag of the state row as read, or undefined to create it. */
  etag: string | undefined;
  state: BlobRecord;
  upserts: BlobRecord[];
  deletes: string[];
}

export class ConflictError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConflictError';
  }
}

/** Splits text into rows of up to CHUNK_CHARS × CHUNKS_PER_ROW characters. */
export function blobEntities(partitionKey: string, rec: BlobRecord): StoredRow[] {
  const perRow = CHUNK_CHARS * CHUNKS_PER_ROW;
  const parts = Math.max(1, Math.ceil(rec.text.length / perRow));
  const rows: StoredRow[] = [];
  for (let p = 0; p < parts; p++) {
    const slice = rec.text.slice(p * perRow, (p + 1) * perRow);
    const row: StoredRow = { partitionKey, rowKey: p === 0 ? rec.rowKey : `${rec.rowKey}.${p}` };
    const chunks = Math.max(1, Math.ceil(slice.length / CHUNK_CHARS));
    for (let c = 0; c < chunks; c++) row[`d${c}`] = slice.slice(c * CHUNK_CHARS, (c + 1) * CHUNK_CHARS);
    row.dn = chunks;
    if (p === 0) {
      row.np = parts;
      row.ep = rec.ep;
      Object.assign(row, rec.props);
    }
    rows.push(row);
  }
  return rows;
}

function rowText(row: StoredRow): string {
  const n = typeof row.dn === 'number' ? row.dn : 0;
  let s = '';
  for (let c = 0; c < n; c++) {
    const part = row[`d${c}`];
    s += typeof part === 'string' ? part : '';
  }
  return s;
}

/** Reassembles blobs from a set of rows (continuation rows are `<base>.<n>`). */
export function readBlobs(rows: StoredRow[]): Map<string, { text: string; row: StoredRow }> {
  const byKey = new Map<string, StoredRow>();
  for (const r of rows) byKey.set(r.rowKey, r);
  const out = new Map<string, { text: string; row: StoredRow }>();
  for (const r of rows) {
    if (typeof r.np !== 'number') continue; // a continuation row
    let text = rowText(r);
    let complete = true;
    for (let p = 1; p < r.np; p++) {
      const c = byKey.get(`${r.rowKey}.${p}`);
      if (!c) {
        complete = false;
        break;
      }
      text += rowText(c);
    }
    if (complete) out.set(r.rowKey, { text, row: r });
  }
  return out;
}

function estimateBytes(row: StoredRow): number {
  let n = 1024;
  for (const v of Object.values(row)) n += typeof v === 'string' ? v.length * 2 : 16;
  return n;
}

function statusOf(err: unknown): number | undefined {
  if (err instanceof RestError) return err.statusCode;
  const s = (err as { statusCode?: unknown })?.statusCode;
  return typeof s === 'number' ? s : undefined;
}

export function isTransient(err: unknown): boolean {
  const s = statusOf(err);
  if (s === undefined) return true; // network errors
  return s === 408 || s === 429 || s >= 500;
}

export interface IndexRecord {
  instanceId: string;
  name: string;
  runtimeStatus: string;
  createdTime: Date;
  lastUpdatedTime: Date;
  /** JSON text, or undefined when too large for the index (read it from the state then). */
  input?: string;
  output?: string;
  customStatus?: string;
  large: boolean;
  episode: number;
}

export interface IndexQuery {
  runtimeStatus?: string[];
  createdTimeFrom?: Date;
  createdTimeTo?: Date;
  instanceIdPrefix?: string;
}

export class DurableStore {
  readonly history: TableClient;
  readonly index: TableClient;
  private readonly service: TableServiceClient;

  constructor(
    connectionString: string,
    readonly hubName: string,
  ) {
    const opts = {
      allowInsecureConnection: true,
      retryOptions: { maxRetries: 4, retryDelayInMs: 50, maxRetryDelayInMs: 1000 },
    };
    this.service = TableServiceClient.fromConnectionString(connectionString, opts);
    this.history = TableClient.fromConnectionString(connectionString, `${hubName}History`, opts);
    this.index = TableClient.fromConnectionString(connectionString, `${hubName}Instances`, opts);
  }

  async init(): Promise<void> {
    for (const t of [this.history.tableName, this.index.tableName]) {
      try {
        await this.service.createTable(t);
      } catch (err) {
        if (statusOf(err) !== 409) throw err;
      }
    }
  }

  /** Every row of one instance's partition. */
  async loadPartition(instanceId: string, rowKeyFrom?: string, rowKeyTo?: string): Promise<StoredRow[]> {
    const filter =
      rowKeyFrom !== undefined && rowKeyTo !== undefined
        ? odata`PartitionKey eq ${instanceId} and RowKey ge ${rowKeyFrom} and RowKey lt ${rowKeyTo}`
        : odata`PartitionKey eq ${instanceId}`;
    const rows: StoredRow[] = [];
    for await (const e of this.history.listEntities<Record<string, unknown>>({ queryOptions: { filter } }))
      rows.push(e as StoredRow);
    return rows;
  }

  /** Rows across all partitions whose RowKey is in [from, to) (startup recovery scans). */
  async scan(rowKeyFrom: string, rowKeyTo: string): Promise<StoredRow[]> {
    const rows: StoredRow[] = [];
    const filter = odata`RowKey ge ${rowKeyFrom} and RowKey lt ${rowKeyTo}`;
    for await (const e of this.history.listEntities<Record<string, unknown>>({ queryOptions: { filter } }))
      rows.push(e as StoredRow);
    return rows;
  }

  /**
   * Commits an episode. Rows that do not fit in the final transaction are written first, tagged
   * with the episode; they are invisible until the state row (written last, ETag-checked)
   * says that episode committed. Returns the state row's new ETag.
   */
  async commit(c: EpisodeCommit): Promise<string> {
    const pk = c.instanceId;
    const stateRows = blobEntities(pk, c.state);
    const staged: StoredRow[] = c.upserts.flatMap((u) => blobEntities(pk, u));
    const finalOps: TransactionAction[] = [];
    let finalBytes = 0;
    for (const r of stateRows) finalBytes += estimateBytes(r);
    const deletes = c.deletes.map((rk) => ['delete', { partitionKey: pk, rowKey: rk }] as TransactionAction);
    const budgetOps = MAX_BATCH_OPS - stateRows.length - deletes.length;
    if (budgetOps < 0) throw new Error(`Episode of ${pk} deletes too many rows at once (${deletes.length})`);
    // Fill the final transaction with as many staged rows as fit; stage the rest before it.
    const early: StoredRow[] = [];
    for (const r of staged) {
      const b = estimateBytes(r);
      if (finalOps.length < budgetOps && finalBytes + b < MAX_BATCH_BYTES) {
        finalOps.push(['upsert', r, 'Replace']);
        finalBytes += b;
      } else early.push(r);
    }
    for (const batch of batches(early))
      await this.history.submitTransaction(batch.map((r) => ['upsert', r, 'Replace'] as TransactionAction));
    const [base, ...rest] = stateRows;
    const stateOp: TransactionAction =
      c.etag === undefined ? ['create', base] : ['update', base, 'Replace', { etag: c.etag }];
    const ops: TransactionAction[] = [
      stateOp,
      ...rest.map((r) => ['upsert', r, 'Replace'] as TransactionAction),
      ...finalOps,
      ...deletes,
    ];
    try {
      const res = await this.history.submitTransaction(ops);
      const etag = res.subResponses[0]?.etag;
      if (etag) return etag;
      const fresh = await this.history.getEntity(pk, c.state.rowKey);
      return fresh.etag;
    } catch (err) {
      const s = statusOf(err);
      if (s === 412 || s === 409 || s === 404)
        throw new ConflictError(`commit of ${pk} conflicted (${s}): ${(err as Error).message}`);
      throw err;
    }
  }

  /** Writes rows (messages) outside an episode, optionally deleting others in the same partition atomically. */
  async put(instanceId: string, upserts: BlobRecord[], deletes: string[] = []): Promise<void> {
    const rows = upserts.flatMap((u) => blobEntities(instanceId, u));
    const ops: TransactionAction[] = [
      ...rows.map((r) => ['upsert', r, 'Replace'] as TransactionAction),
      ...deletes.map((rk) => ['delete', { partitionKey: instanceId, rowKey: rk }] as TransactionAction),
    ];
    if (ops.length <= MAX_BATCH_OPS) {
      await this.history.submitTransaction(ops);
      return;
    }
    for (const batch of batches(rows))
      await this.history.submitTransaction(batch.map((r) => ['upsert', r, 'Replace'] as TransactionAction));
    for (let i = 0; i < deletes.length; i += MAX_BATCH_OPS) {
      await this.history.submitTransaction(
        deletes
          .slice(i, i + MAX_BATCH_OPS)
          .map((rk) => ['delete', { partitionKey: instanceId, rowKey: rk }] as TransactionAction),
      );
    }
  }

  /** Best-effort delete of rows (404s ignored). */
  async deleteRows(instanceId: string, rowKeys: string[]): Promise<void> {
    for (let i = 0; i < rowKeys.length; i += MAX_BATCH_OPS) {
      const chunk = rowKeys.slice(i, i + MAX_BATCH_OPS);
      try {
        await this.history.submitTransaction(
          chunk.map((rk) => ['delete', { partitionKey: instanceId, rowKey: rk }] as TransactionAction),
        );
      } catch {
        for (const rk of chunk) await this.history.deleteEntity(instanceId, rk).catch(() => undefined);
      }
    }
  }

  /** Deletes a whole partition and its index row. */
  async purge(instanceId: string): Promise<void> {
    const rows = await this.loadPartition(instanceId);
    await this.deleteRows(
      instanceId,
      rows.map((r) => r.rowKey),
    );
    await this.index.deleteEntity(instanceId, '').catch((err: unknown) => {
      if (statusOf(err) !== 404) throw err;
    });
  }

  // --- the Instances index --------------------------------------------------------------------

  async writeIndex(r: IndexRecord): Promise<void> {
    const entity: StoredRow = {
      partitionKey: r.instanceId,
      rowKey: '',
      Name: r.name,
      RuntimeStatus: r.runtimeStatus,
      CreatedTime: r.createdTime,
      LastUpdatedTime: r.lastUpdatedTime,
      Large: r.large,
      Episode: r.episode,
    };
    if (r.input !== undefined) entity.Input = r.input;
    if (r.output !== undefined) entity.Output = r.output;
    if (r.customStatus !== undefined) entity.CustomStatus = r.customStatus;
    await this.index.upsertEntity(entity, 'Replace');
  }

  async readIndex(instanceId: string): Promise<IndexRecord | undefined> {
    try {
      return toIndexRecord(await this.index.getEntity<Record<string, unknown>>(instanceId, ''));
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw err;
    }
  }

  async queryIndex(
    q: IndexQuery,
    top: number,
    continuationToken?: string,
  ): Promise<{ records: IndexRecord[]; continuationToken?: string }> {
    const filter = indexFilter(q);
    const iter = this.index
      .listEntities<Record<string, unknown>>({ queryOptions: filter ? { filter } : undefined })
      .byPage({ maxPageSize: top, continuationToken });
    const next = await iter.next();
    if (next.done || !next.value) return { records: [] };
    const page = next.value;
    return { records: page.map((e) => toIndexRecord(e)), continuationToken: page.continuationToken };
  }

  async scanIndex(): Promise<IndexRecord[]> {
    const out: IndexRecord[] = [];
    for await (const e of this.index.listEntities<Record<string, unknown>>()) out.push(toIndexRecord(e));
    return out;
  }
}

function toIndexRecord(e: Record<string, unknown> & { partitionKey?: string }): IndexRecord {
  const date = (v: unknown): Date => (v instanceof Date ? v : new Date(String(v)));
  return {
    instanceId: String(e.partitionKey),
    name: typeof e.Name === 'string' ? e.Name : '',
    runtimeStatus: typeof e.RuntimeStatus === 'string' ? e.RuntimeStatus : 'Pending',
    createdTime: date(e.CreatedTime),
    lastUpdatedTime: date(e.LastUpdatedTime),
    input: typeof e.Input === 'string' ? e.Input : undefined,
    output: typeof e.Output === 'string' ? e.Output : undefined,
    customStatus: typeof e.CustomStatus === 'string' ? e.CustomStatus : undefined,
    large: e.Large === true,
    episode: typeof e.Episode === 'number' ? e.Episode : 0,
  };
}

function indexFilter(q: IndexQuery): string | undefined {
  const parts: string[] = [];
  if (q.runtimeStatus?.length) parts.push(`(${q.runtimeStatus.map((s) => odata`RuntimeStatus eq ${s}`).join(' or ')})`);
  if (q.createdTimeFrom) parts.push(odata`CreatedTime ge ${q.createdTimeFrom}`);
  if (q.createdTimeTo) parts.push(odata`CreatedTime le ${q.createdTimeTo}`);
  if (q.instanceIdPrefix) {
    // A prefix range on the partition key; '~' sorts after every id character we accept.
    parts.push(odata`PartitionKey ge ${q.instanceIdPrefix} and PartitionKey lt ${q.instanceIdPrefix + '~'}`);
  }
  return parts.length ? parts.join(' and ') : undefined;
}

function batches(rows: StoredRow[]): StoredRow[][] {
  const out: StoredRow[][] = [];
  let cur: StoredRow[] = [];
  let bytes = 0;
  for (const r of rows) {
    const b = estimateBytes(r);
    if (cur.length >= MAX_BATCH_OPS || (cur.length > 0 && bytes + b > MAX_BATCH_BYTES)) {
      out.push(cur);
      cur = [];
      bytes = 0;
    }
    cur.push(r);
    bytes += b;
  }
  if (cur.length) out.push(cur);
  return out;
}

export function etagOf(row: StoredRow): string | undefined {
  const e = (row as { etag?: unknown }).etag;
  return typeof e === 'string' ? e : undefined;
}
