// lib/storage/tables.ts against Azurite through the real @azure/data-tables client: what 404, 409
// and 412 are called, the point read / insert / delete helpers, and the conditional
// read-decide-write loop under real concurrent writers (retried, then the typed error).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { TableClient } from '@azure/data-tables';
import { z } from 'zod';
import { startAzurite, type Azurite } from '../../../local/azurite';
import { ConcurrencyError } from '../../../lib/errors';
import {
  conditionalUpdate,
  deleteIfExists,
  getOrUndefined,
  insertOrConflict,
  tableFault,
} from '../../../lib/storage/tables';

let azurite: Azurite;
let seq = 0;

async function freshTable(): Promise<TableClient> {
  const table = TableClient.fromConnectionString(azurite.connectionString, `tables${Date.now().toString(36)}${seq++}`, {
    allowInsecureConnection: true,
  });
  await table.createTable();
  return table;
}

const counterSchema = z.object({ n: z.number().int(), etag: z.string() });
type Counter = z.infer<typeof counterSchema>;
const readCounter = (table: TableClient) => () => getOrUndefined(table, 'p', 'c', (e) => counterSchema.parse(e));

/** Adds one to the counter row with the loop under test; `attempts` bounds it. */
function increment(table: TableClient, attempts?: number, beforeWrite?: () => Promise<void>): Promise<number> {
  return conditionalUpdate<Counter, number>({
    op: 'test.increment',
    subject: 'counter p/c',
    ...(attempts ? { attempts } : {}),
    read: readCounter(table),
    decide: (cur) => {
      const n = (cur?.n ?? 0) + 1;
      return {
        write: async () => {
          await beforeWrite?.();
          if (cur) await table.updateEntity({ partitionKey: 'p', rowKey: 'c', n }, 'Replace', { etag: cur.etag });
          else await table.createEntity({ partitionKey: 'p', rowKey: 'c', n });
          return n;
        },
      };
    },
  });
}

before(async () => {
  azurite = await startAzurite();
});
after(async () => {
  await azurite?.close();
});

describe('tableFault', () => {
  it('names the 404, 409 and 412 the service answers, and nothing else', async () => {
    const table = await freshTable();
    const fault = (p: Promise<unknown>) =>
      p.then(
        () => 'resolved',
        (err: unknown) => tableFault(err),
      );
    assert.equal(await fault(table.getEntity('p', 'missing')), 'notFound');
    const created = await table.createEntity({ partitionKey: 'p', rowKey: 'r', v: 1 });
    assert.equal(await fault(table.createEntity({ partitionKey: 'p', rowKey: 'r', v: 2 })), 'conflict');
    await table.updateEntity({ partitionKey: 'p', rowKey: 'r', v: 3 }, 'Replace', { etag: created.etag });
    assert.equal(
      await fault(table.updateEntity({ partitionKey: 'p', rowKey: 'r', v: 4 }, 'Replace', { etag: created.etag })),
      'preconditionFailed',
    );
    // A transaction raises the failing sub-request's status.
    assert.equal(
      await fault(
        table.submitTransaction([['update', { partitionKey: 'p', rowKey: 'r' }, 'Replace', { etag: created.etag }]]),
      ),
      'preconditionFailed',
    );
    assert.equal(tableFault(new Error('socket hang up')), undefined);
    assert.equal(tableFault({ statusCode: 412 }), undefined, 'only the SDK error is trusted');
  });
});

describe('point helpers', () => {
  it('get-or-undefined, insert-or-conflict and delete-if-exists say what they found', async () => {
    const table = await freshTable();
    const parse = (e: Record<string, unknown>) => z.object({ v: z.number() }).parse(e).v;
    assert.equal(await getOrUndefined(table, 'p', 'r', parse), undefined);
    const first = await insertOrConflict(table, { partitionKey: 'p', rowKey: 'r', v: 1 });
    assert.ok(first !== 'conflict' && first.etag.length > 0);
    assert.equal(await insertOrConflict(table, { partitionKey: 'p', rowKey: 'r', v: 2 }), 'conflict');
    assert.equal(await getOrUndefined(table, 'p', 'r', parse), 1, 'the conflicting insert wrote nothing');
    await table.updateEntity({ partitionKey: 'p', rowKey: 'r', v: 5 }, 'Replace');
    await assert.rejects(
      deleteIfExists(table, 'p', 'r', first.etag),
      (err: unknown) => tableFault(err) === 'preconditionFailed',
      'a delete conditional on an old ETag is refused',
    );
    assert.equal(await deleteIfExists(table, 'p', 'r'), true);
    assert.equal(await deleteIfExists(table, 'p', 'r'), false, 'second run');
  });
});

describe('conditionalUpdate', () => {
  it('retries a conflicting concurrent update: 20 concurrent increments all land', async () => {
    const table = await freshTable();
    await table.createEntity({ partitionKey: 'p', rowKey: 'c', n: 0 });
    // Enough attempts that every writer gets through even when all 20 race for every version.
    const results = await Promise.all(Array.from({ length: 20 }, () => increment(table, 25)));
    assert.deepEqual(
      [...results].sort((a, b) => a - b),
      Array.from({ length: 20 }, (_, i) => i + 1),
      'each writer saw its own version: none overwrote another',
    );
    assert.equal((await readCounter(table)())?.n, 20);
  });

  it('a create that loses to a concurrent create reads again and updates', async () => {
    const table = await freshTable();
    let raced = false;
    const n = await increment(table, 4, async () => {
      if (raced) return;
      raced = true; // someone else creates the row between our read and our create
      await table.createEntity({ partitionKey: 'p', rowKey: 'c', n: 10 });
    });
    assert.equal(n, 11);
    assert.equal((await readCounter(table)())?.n, 11);
  });

  it('gives up with ConcurrencyError once its attempts are spent, and wrote nothing', async () => {
    const table = await freshTable();
    await table.createEntity({ partitionKey: 'p', rowKey: 'c', n: 0 });
    let writes = 0;
    // Every attempt is overtaken by another writer between its read and its write.
    const overtaken = increment(table, 3, async () => {
      writes++;
      await table.updateEntity({ partitionKey: 'p', rowKey: 'c', n: 100 + writes }, 'Replace');
    });
    await assert.rejects(
      overtaken,
      (err: unknown) =>
        err instanceof ConcurrencyError &&
        err.code === 'concurrent_update' &&
        err.op === 'test.increment' &&
        /counter p\/c kept changing; gave up after 3 attempts/.test(err.message),
    );
    assert.equal(writes, 3, 'exactly the bounded number of attempts');
    assert.equal((await readCounter(table)())?.n, 103, 'only the other writer wrote');
  });

  it('stops at the first lost race when the caller says not to retry', async () => {
    const table = await freshTable();
    await table.createEntity({ partitionKey: 'p', rowKey: 'c', n: 0 });
    let reads = 0;
    const once = conditionalUpdate<Counter, number>({
      op: 'test.once',
      subject: 'counter p/c',
      read: async () => {
        reads++;
        return readCounter(table)();
      },
      decide: (cur) => ({
        write: async () => {
          await table.updateEntity({ partitionKey: 'p', rowKey: 'c', n: 7 }, 'Replace'); // someone else
          await table.updateEntity({ partitionKey: 'p', rowKey: 'c', n: 1 }, 'Replace', { etag: cur!.etag });
          return 1;
        },
      }),
      retry: () => false,
    });
    await assert.rejects(
      once,
      (err: unknown) => err instanceof ConcurrencyError && /changed since it was read/.test(err.message),
    );
    assert.equal(reads, 1);
  });

  it('returns a decision that needs no write without writing, and passes other errors through', async () => {
    const table = await freshTable();
    assert.equal(
      await conditionalUpdate<Counter, string>({
        op: 'test.noop',
        subject: 'counter p/c',
        read: readCounter(table),
        decide: (cur) => ({ done: cur ? 'present' : 'absent' }),
      }),
      'absent',
    );
    await assert.rejects(
      conditionalUpdate<Counter, number>({
        op: 'test.fail',
        subject: 'counter p/c',
        read: readCounter(table),
        decide: () => ({
          write: () => Promise.reject(new TypeError('not a table fault')),
        }),
      }),
      TypeError,
    );
  });
});
