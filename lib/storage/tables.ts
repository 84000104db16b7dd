// The one place that knows how Azure Tables answers: which failures mean "not there" (404),
// "already there" (409) and "changed since you read it" (412), and the helpers every store builds
// on: a point read that may find nothing, an insert that may find the row taken, a delete that may
// find it gone, and the conditional read-decide-write loop with a bounded retry.
import { RestError, type TableClient, type TableEntity } from '@azure/data-tables';
import { ConcurrencyError } from '../errors';

/** What a failed Tables request says about the row; undefined for any other failure (throttling, 5xx, auth...). */
export type TableFault = 'notFound' | 'conflict' | 'preconditionFailed';

const FAULTS: Readonly<Record<number, TableFault>> = { 404: 'notFound', 409: 'conflict', 412: 'preconditionFailed' };

/**
 * Classifies an error of the @azure/data-tables client (a single request, or a transaction: the
 * SDK raises the failing sub-request's status). Anything but 404/409/412 is not a row fault and
 * callers rethrow it.
 */
export function tableFault(err: unknown): TableFault | undefined {
  if (!(err instanceof RestError) || err.statusCode === undefined) return undefined;
  return FAULTS[err.statusCode];
}

/** The entity at (partitionKey, rowKey) parsed with `parse`, or undefined when there is none. Read-only. */
export async function getOrUndefined<T>(
  table: TableClient,
  partitionKey: string,
  rowKey: string,
  parse: (entity: Record<string, unknown>) => T,
): Promise<T | undefined> {
  let entity: Record<string, unknown>;
  try {
    entity = await table.getEntity<Record<string, unknown>>(partitionKey, rowKey);
  } catch (err) {
    if (tableFault(err) === 'notFound') return undefined;
    throw err;
  }
  return parse(entity);
}

/**
 * Creates the entity unless its key is taken: `{ etag }` of the new row, or `'conflict'` when a row
 * with that key exists already (the caller decides whether that is a second run or a clash).
 */
export async function insertOrConflict<T extends object>(
  table: TableClient,
  entity: TableEntity<T>,
): Promise<{ etag: string } | 'conflict'> {
  try {
    const res = await table.createEntity(entity);
    return { etag: res.etag ?? '' };
  } catch (err) {
    if (tableFault(err) === 'conflict') return 'conflict';
    throw err;
  }
}

/**
 * Deletes the row, conditional on `etag` when given. True when it deleted it, false when there was
 * no row. A row that changed since `etag` is a 412 left to the caller (`tableFault`).
 * Second run: false.
 */
export async function deleteIfExists(
  table: TableClient,
  partitionKey: string,
  rowKey: string,
  etag?: string,
): Promise<boolean> {
  try {
    await table.deleteEntity(partitionKey, rowKey, etag === undefined ? undefined : { etag });
    return true;
  } catch (err) {
    if (tableFault(err) === 'notFound') return false;
    throw err;
  }
}

/** What `decide` chose: return a value without writing, or attempt a write. */
export type Step<R> = { done: R } | { write: () => Promise<R> };

export interface ConditionalUpdate<Row, R> {
  /** Logical location for the typed error, e.g. `namespaceStore.markAvailable`. */
  op: string;
  /** What is being changed, for messages: `namespace rbk-1`. Never a secret. */
  subject: string;
  /** Read-decide-write cycles before giving up with ConcurrencyError (default 4). */
  attempts?: number;
  /** The current row with the ETag it was read with, or undefined when there is none. */
  read: () => Promise<Row | undefined>;
  /**
   * Decides from what was read, pure apart from what it captures. Its write must be conditional
   * (If-Match on the ETag read, or a create), so a race it loses is a 412, 409 or 404.
   */
  decide: (current: Row | undefined) => Step<R>;
  /**
   * Whether a write that lost its race (the fault says how) is worth another read-decide-write
   * cycle (default: yes). A caller that said which version it read answers no: the row changed
   * under it, which is a ConcurrencyError at once.
   */
  retry?: (fault: TableFault, err: unknown) => boolean;
}

/**
 * The optimistic-concurrency loop every store uses: read (with ETag) → decide → conditional write;
 * a write that lost a race (412, or 404/409 for a row that vanished or appeared meanwhile) reads
 * and decides again, at most `attempts` times, then throws ConcurrencyError. Any other failure is
 * thrown as is. The decision must be idempotent: it may run once per attempt.
 */
export async function conditionalUpdate<Row, R>(spec: ConditionalUpdate<Row, R>): Promise<R> {
  const attempts = spec.attempts ?? 4;
  for (let attempt = 0; attempt < attempts; attempt++) {
    const step = spec.decide(await spec.read());
    if ('done' in step) return step.done;
    try {
      return await step.write();
    } catch (err) {
      const fault = tableFault(err);
      if (fault === undefined) throw err;
      if (spec.retry && !spec.retry(fault, err)) {
        throw new ConcurrencyError(`${spec.subject} changed since it was read`, { op: spec.op, cause: err });
      }
    }
  }
  throw new ConcurrencyError(`${spec.subject} kept changing; gave up after ${attempts} attempts`, { op: spec.op });
}
