// NamespaceStore against Azurite through the real @azure/data-tables client: every transition,
// ETag conditions, idempotent retries, and concurrent leases that never double-lease.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { TableClient } from '@azure/data-tables';
import { startAzurite, type Azurite } from '../../../local/azurite';
import {
  ConcurrencyError,
  ConflictError,
  InvalidTransitionError,
  PoolExhaustedError,
  ValidationError,
} from '../../../lib/errors';
import { countNamespaces, namespaceToEntity, type Namespace } from '../../../lib/pool/namespace';
import { holdsRecycleClaim, NamespaceStore, RECYCLE_CLAIM_STALE_MS } from '../../../lib/pool/namespaceStore';

const POOL = 'itest';
const T0 = new Date('2026-03-02T10:00:00.000Z');
const at = (seconds: number) => new Date(T0.getTime() + seconds * 1000);
const HOUR_LATER = at(3600);

let azurite: Azurite;
let tableSeq = 0;

async function freshStore(): Promise<{ store: NamespaceStore; table: TableClient }> {
  const table = TableClient.fromConnectionString(
    azurite.connectionString,
    `pool${Date.now().toString(36)}${tableSeq++}`,
    { allowInsecureConnection: true },
  );
  const store = new NamespaceStore(table, POOL);
  await store.ensureTable();
  return { store, table };
}

function availableEntity(name: string, sub = 'sub-a'): Namespace {
  return {
    pool: POOL,
    name,
    state: 'available',
    subscriptionId: sub,
    resourceGroup: 'rg',
    location: 'local',
    endpoint: `https://${name}.servicebus.windows.net:443/`,
    hybridConnection: 'tunnel',
    generation: 1,
    createdAt: T0,
    stateChangedAt: T0,
    recycleFailures: 0,
  };
}

/** Writes `n` available rows in batches (one transaction per 100 rows of the partition). */
async function seedAvailable(table: TableClient, n: number): Promise<string[]> {
  const names = Array.from({ length: n }, (_, i) => `rbk-ns${i.toString().padStart(5, '0')}`);
  for (let i = 0; i < names.length; i += 100) {
    await table.submitTransaction(
      names.slice(i, i + 100).map((name) => ['create', namespaceToEntity(availableEntity(name))]),
    );
  }
  return names;
}

async function createAvailable(store: NamespaceStore, name: string): Promise<Namespace> {
  await store.insertCreating({
    name,
    subscriptionId: 'sub-a',
    resourceGroup: 'rg',
    location: 'local',
    hybridConnection: 'tunnel',
    now: T0,
  });
  return store.markAvailable(name, {
    endpoint: `https://${name}.servicebus.windows.net:443/`,
    hybridConnection: 'tunnel',
    now: at(1),
  });
}

before(async () => {
  azurite = await startAzurite();
});
after(async () => {
  await azurite?.close();
});

describe('NamespaceStore transitions', () => {
  it('walks creating → available → leased → recycling → available, bumping generation once', async () => {
    const { store } = await freshStore();
    const creating = await store.insertCreating({
      name: 'rbk-walk01',
      subscriptionId: 'sub-a',
      resourceGroup: 'rg',
      location: 'local',
      now: T0,
    });
    assert.equal(creating.state, 'creating');
    assert.equal(creating.generation, 0);
    // Second run of insertCreating: the same row back.
    assert.equal(
      (
        await store.insertCreating({
          name: 'rbk-walk01',
          subscriptionId: 'sub-a',
          resourceGroup: 'rg',
          location: 'local',
        })
      ).etag,
      creating.etag,
    );
    await assert.rejects(
      store.insertCreating({ name: 'rbk-walk01', subscriptionId: 'sub-b', resourceGroup: 'rg', location: 'local' }),
      ConflictError,
    );

    const failed = await store.recordCreateFailure('rbk-walk01', 'ARM 500', 3, at(1));
    assert.deepEqual([failed.state, failed.recycleFailures, failed.lastError], ['creating', 1, 'ARM 500']);

    const available = await store.markAvailable('rbk-walk01', {
      endpoint: 'https://rbk-walk01.servicebus.windows.net:443/',
      hybridConnection: 'tunnel',
      now: at(2),
    });
    assert.deepEqual([available.state, available.recycleFailures, available.lastError], ['available', 0, undefined]);
    const again = await store.markAvailable('rbk-walk01', {
      endpoint: 'https://rbk-walk01.servicebus.windows.net:443/',
      hybridConnection: 'tunnel',
    });
    assert.equal(again.etag, available.etag, 'second markAvailable changes nothing');

    const leased = await store.lease('s-1', { leaseExpiresAt: HOUR_LATER, now: at(3) });
    assert.deepEqual([leased.name, leased.state, leased.sessionId], ['rbk-walk01', 'leased', 's-1']);
    assert.equal(leased.leaseExpiresAt?.toISOString(), HOUR_LATER.toISOString());

    const recycling = await store.beginRecycle('rbk-walk01', { sessionId: 's-1', now: at(4) });
    assert.deepEqual([recycling.state, recycling.sessionId], ['recycling', 's-1']);
    assert.equal(
      (await store.beginRecycle('rbk-walk01', { sessionId: 's-1' })).etag,
      recycling.etag,
      'second beginRecycle changes nothing',
    );
    assert.equal(await store.leaseFor('s-1'), undefined);

    const recycled = await store.markRecycled('rbk-walk01', { now: at(5), fromGeneration: 0 });
    assert.deepEqual(
      [recycled.state, recycled.generation, recycled.sessionId, recycled.leasedAt],
      ['available', 1, undefined, undefined],
    );
    assert.equal(recycled.lastLeasedAt?.toISOString(), at(3).toISOString(), 'lastLeasedAt survives recycle');
    const twice = await store.markRecycled('rbk-walk01', { fromGeneration: 0 });
    assert.equal(twice.generation, 1, 'a second markRecycled never bumps generation again');
    assert.deepEqual(await store.get('rbk-walk01'), twice);
  });

  it('lets one recycler at a time claim the ARM work of a recycle, the first claim in the write that ends the lease', async () => {
    const { store } = await freshStore();
    await createAvailable(store, 'rbk-claim1');
    const leased = await store.lease('s-claim', { leaseExpiresAt: HOUR_LATER, now: at(2) });
    const STALE = RECYCLE_CLAIM_STALE_MS;
    const a = await store.beginRecycle('rbk-claim1', { sessionId: 's-claim', claimId: 'session:s-claim', now: at(4) });
    assert.deepEqual([a.state, a.recycleClaim], ['recycling', 'session:s-claim']);
    assert.ok(holdsRecycleClaim(a, 'session:s-claim'));
    assert.equal(await store.leaseFor('s-claim'), undefined, 'the lease ended in the same write');
    assert.notEqual(a.etag, leased.etag);
    const refused = await store.beginRecycle('rbk-claim1', { claimId: 'maintenance:x', now: at(5) });
    assert.equal(holdsRecycleClaim(refused, 'maintenance:x'), false, 'a fresh claim holds');
    assert.equal(refused.etag, a.etag, 'a refused claim writes nothing');
    assert.equal(
      (
        await store.beginRecycle('rbk-claim1', { sessionId: 's-claim', claimId: 'session:s-claim', now: at(6) })
      ).recycleClaimedAt?.toISOString(),
      at(6).toISOString(),
      'the holder renews',
    );
    const failed = await store.recordRecycleFailure('rbk-claim1', 'ARM 500', 10, at(7));
    assert.equal(failed.recycleClaim, undefined, 'a failed attempt releases the claim');
    assert.equal(
      (await store.beginRecycle('rbk-claim1', { claimId: 'maintenance:x', now: at(8) })).recycleClaim,
      'maintenance:x',
    );
    const stale = await store.beginRecycle('rbk-claim1', {
      claimId: 'session:s-claim',
      now: new Date(at(8).getTime() + STALE + 1),
    });
    assert.equal(stale.recycleClaim, 'session:s-claim', 'a stale claim can be taken over');
    const recycled = await store.markRecycled('rbk-claim1', { now: at(700), fromGeneration: 1 });
    assert.deepEqual(
      [recycled.state, recycled.recycleClaim, recycled.recycleClaimedAt],
      ['available', undefined, undefined],
    );
    const other = await store.beginRecycle('rbk-claim1', { sessionId: 's-other', claimId: 'session:s-other' });
    assert.deepEqual(
      [other.state, holdsRecycleClaim(other, 'session:s-other')],
      ['available', false],
      'nothing to claim outside recycling',
    );
  });

  it('rotates keys of an idle namespace, quarantines after N failed recycles, repairs it', async () => {
    const { store } = await freshStore();
    await createAvailable(store, 'rbk-fail01');
    assert.equal((await store.beginRecycle('rbk-fail01')).state, 'recycling');
    assert.equal((await store.recordRecycleFailure('rbk-fail01', 'regenerateKeys 500', 3)).state, 'recycling');
    assert.equal((await store.recordRecycleFailure('rbk-fail01', 'regenerateKeys 500', 3)).state, 'recycling');
    const q = await store.recordRecycleFailure('rbk-fail01', 'regenerateKeys 429', 3);
    assert.deepEqual([q.state, q.recycleFailures], ['quarantined', 3]);
    assert.match(q.quarantineReason ?? '', /recycling failed 3 times: regenerateKeys 429/);
    assert.equal(
      (await store.recordRecycleFailure('rbk-fail01', 'late retry', 3)).etag,
      q.etag,
      'second run on quarantined changes nothing',
    );
    assert.equal((await store.quarantine('rbk-fail01', 'again')).quarantineReason, q.quarantineReason);

    assert.equal((await store.beginRecycle('rbk-fail01')).state, 'recycling');
    const repaired = await store.markRecycled('rbk-fail01');
    assert.deepEqual(
      [repaired.state, repaired.generation, repaired.recycleFailures, repaired.quarantineReason],
      ['available', 1, 0, undefined],
      'failed recycles never bumped generation',
    );
  });

  it('quarantines a creating namespace, deletes it, and records the deleted name', async () => {
    const { store } = await freshStore();
    await store.insertCreating({ name: 'rbk-del001', subscriptionId: 'sub-a', resourceGroup: 'rg', location: 'local' });
    assert.equal((await store.quarantine('rbk-del001', 'stuck activating')).quarantineReason, 'stuck activating');
    const deleting = await store.beginDelete('rbk-del001', at(10));
    assert.equal(deleting.state, 'deleting');
    assert.equal((await store.beginDelete('rbk-del001')).etag, deleting.etag, 'second beginDelete changes nothing');
    await store.remove('rbk-del001', at(20));
    assert.equal(await store.get('rbk-del001'), undefined);
    await store.remove('rbk-del001', at(30)); // second run: no-op
    assert.deepEqual(await store.tombstones.since(at(0)), [{ name: 'rbk-del001', deletedAt: at(20) }]);
    assert.deepEqual(await store.tombstones.since(at(21)), []);
    // The tombstone lives in its own partition: it is not a pool row.
    assert.equal((await store.list()).length, 0);
    assert.equal(await store.tombstones.purge(at(21)), 1);
    assert.deepEqual(await store.tombstones.since(at(0)), []);
  });

  it('deletes an available namespace but refuses to delete a leased one', async () => {
    const { store } = await freshStore();
    await createAvailable(store, 'rbk-del002');
    await createAvailable(store, 'rbk-del003');
    await store.beginDelete('rbk-del002');
    const leased = await store.lease('s-9', { leaseExpiresAt: HOUR_LATER });
    assert.equal(leased.name, 'rbk-del003');
    await assert.rejects(store.beginDelete('rbk-del003'), InvalidTransitionError);
    await assert.rejects(store.remove('rbk-del003'), ConflictError);
    await assert.rejects(
      store.markAvailable('rbk-del003', { endpoint: 'x', hybridConnection: 'y' }),
      InvalidTransitionError,
    );
    await assert.rejects(store.quarantine('rbk-del003', 'no'), InvalidTransitionError);
    await assert.rejects(store.recordRecycleFailure('rbk-del003', 'no', 3), InvalidTransitionError);
    assert.equal((await store.get('rbk-del003'))?.state, 'leased');
  });

  it('ends only the lease of the given session', async () => {
    const { store } = await freshStore();
    await createAvailable(store, 'rbk-own001');
    await store.lease('s-owner', { leaseExpiresAt: HOUR_LATER });
    const untouched = await store.beginRecycle('rbk-own001', { sessionId: 's-stale' });
    assert.deepEqual([untouched.state, untouched.sessionId], ['leased', 's-owner']);
    assert.equal((await store.beginRecycle('rbk-own001', { sessionId: 's-owner' })).state, 'recycling');
  });
});

describe('NamespaceStore ETags', () => {
  it('refuses a write based on a stale ETag', async () => {
    const { store, table } = await freshStore();
    const read = await createAvailable(store, 'rbk-etag01');
    await store.beginRecycle('rbk-etag01'); // someone else changes it
    await assert.rejects(store.markRecycled('rbk-etag01', {}, read.etag), ConcurrencyError);
    await assert.rejects(store.beginDelete('rbk-etag01', undefined, read.etag), ConcurrencyError);
    // And the service itself refuses the stale If-Match.
    await assert.rejects(
      table.updateEntity(namespaceToEntity(read), 'Replace', { etag: read.etag }),
      (err: unknown) => (err as { statusCode?: number }).statusCode === 412,
    );
    assert.equal((await store.get('rbk-etag01'))?.state, 'recycling');
  });

  it('accepts a write based on the current ETag', async () => {
    const { store } = await freshStore();
    const read = await createAvailable(store, 'rbk-etag02');
    assert.equal((await store.beginDelete('rbk-etag02', undefined, read.etag)).state, 'deleting');
  });
});

describe('NamespaceStore lease', () => {
  it('returns the namespace a session already holds when the lease is retried', async () => {
    const { store, table } = await freshStore();
    await seedAvailable(table, 5);
    const first = await store.lease('s-retry', { leaseExpiresAt: HOUR_LATER });
    const second = await store.lease('s-retry', { leaseExpiresAt: HOUR_LATER });
    assert.equal(second.name, first.name);
    assert.equal(store.stats.idempotentHits, 1);
    assert.equal((await store.list({ states: ['leased'] })).length, 1);
    assert.equal((await store.leaseFor('s-retry'))?.name, first.name);
  });

  it('concurrent retries of one session lease one namespace and all return it', async () => {
    const { table } = await freshStore();
    await seedAvailable(table, 20);
    const stores = Array.from({ length: 2 }, () => new NamespaceStore(table, POOL));
    const got = await Promise.all(
      Array.from({ length: 10 }, (_, i) => stores[i % 2].lease('s-twice', { leaseExpiresAt: HOUR_LATER })),
    );
    assert.equal(new Set(got.map((n) => n.name)).size, 1);
    const leased = await stores[0].list({ states: ['leased'] });
    assert.deepEqual(
      leased.map((n) => [n.name, n.sessionId]),
      [[got[0].name, 's-twice']],
    );
  });

  it('refuses a session id that cannot be a row key', async () => {
    const { store } = await freshStore();
    await assert.rejects(store.lease('a/b', { leaseExpiresAt: HOUR_LATER }), ValidationError);
  });

  it('a second lease of the last available namespace gets pool_exhausted', async () => {
    const { store, table } = await freshStore();
    await seedAvailable(table, 1);
    await store.lease('s-a', { leaseExpiresAt: HOUR_LATER });
    await assert.rejects(
      store.lease('s-b', { leaseExpiresAt: HOUR_LATER }),
      (err: unknown) =>
        err instanceof PoolExhaustedError && err.code === 'pool_exhausted' && err.headers['retry-after'] !== undefined,
    );
  });

  it('a read of the available set slower than the cache TTL is still used by those who waited for it', async () => {
    // A loaded table (a restarted host, a burst of opens) can answer after the TTL: the rows it
    // returned must be drawn from, not read again until the refresh budget says pool_exhausted.
    const { table } = await freshStore();
    await seedAvailable(table, 3);
    const slow = new NamespaceStore(table, POOL, { availableCacheTtlMs: 0 });
    const leased = await Promise.all(['s-a', 's-b', 's-c'].map((id) => slow.lease(id, { leaseExpiresAt: HOUR_LATER })));
    assert.equal(new Set(leased.map((n) => n.name)).size, 3);
    await assert.rejects(slow.lease('s-d', { leaseExpiresAt: HOUR_LATER }), PoolExhaustedError);
  });

  it('a namespace made available by this store is leasable at once, despite the cached read', async () => {
    const { store, table } = await freshStore();
    await seedAvailable(table, 1);
    await store.lease('s-a', { leaseExpiresAt: HOUR_LATER }); // the cache is now fresh and empty
    await createAvailable(store, 'rbk-late01');
    assert.equal((await store.lease('s-b', { leaseExpiresAt: HOUR_LATER })).name, 'rbk-late01');
  });

  it('200 concurrent leases over 100 namespaces from 4 instances: exactly 100 succeed, 100 pool_exhausted, none leased twice', async () => {
    const { table } = await freshStore();
    await seedAvailable(table, 100);
    // Four store instances stand for four function instances, each with its own cache.
    const stores = Array.from({ length: 4 }, () => new NamespaceStore(table, POOL));
    const results = await Promise.allSettled(
      Array.from({ length: 200 }, (_, i) =>
        stores[i % 4]
          .lease(`s-${i}`, { leaseExpiresAt: HOUR_LATER })
          .then((ns) => ({ session: `s-${i}`, name: ns.name })),
      ),
    );
    const ok = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    const refused = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
    assert.equal(ok.length, 100);
    assert.equal(refused.length, 100);
    assert.ok(refused.every((e) => e instanceof PoolExhaustedError));
    assert.equal(new Set(ok.map((o) => o.name)).size, 100, 'no namespace handed to two callers');
    // Read the table back: every row leased, to the session that was told it got it.
    const rows = await new NamespaceStore(table, POOL).list();
    assert.equal(rows.length, 100);
    assert.ok(rows.every((r) => r.state === 'leased'));
    const holder = new Map(rows.map((r) => [r.name, r.sessionId]));
    for (const o of ok) assert.equal(holder.get(o.name), o.session);
    assert.equal(new Set(rows.map((r) => r.sessionId)).size, 100);
  });
});

describe('NamespaceStore queries', () => {
  it('lists stuck rows, expired leases, counts and the policy snapshot', async () => {
    const { store } = await freshStore();
    await store.insertCreating({
      name: 'rbk-stuck1',
      subscriptionId: 'sub-a',
      resourceGroup: 'rg',
      location: 'local',
      now: T0,
    });
    await store.insertCreating({
      name: 'rbk-fresh1',
      subscriptionId: 'sub-b',
      resourceGroup: 'rg',
      location: 'local',
      now: at(1800),
    });
    await createAvailable(store, 'rbk-lease1');
    await store.lease('s-x', { leaseExpiresAt: at(600), now: at(60) });

    assert.deepEqual(
      (await store.list({ states: ['creating', 'recycling'], stateChangedBefore: at(900) })).map((n) => n.name),
      ['rbk-stuck1'],
    );
    assert.deepEqual(
      (await store.listExpiredLeases(at(601))).map((n) => n.name),
      ['rbk-lease1'],
    );
    assert.deepEqual(await store.listExpiredLeases(at(599)), []);

    const counts = countNamespaces(await store.list());
    assert.equal(counts.total, 3);
    assert.deepEqual([counts.byState.creating, counts.byState.leased, counts.byState.available], [2, 1, 0]);
    assert.deepEqual([counts.bySubscription['sub-a'].total, counts.bySubscription['sub-b'].creating], [2, 1]);

    const snap = await store.snapshot({ now: at(120), leaseWindowMinutes: 5, nameReuseHours: 24 });
    assert.equal(snap.namespaces.length, 3);
    assert.deepEqual(snap.recentLeases, { count: 1, windowMinutes: 5 });
    assert.equal(
      (await store.snapshot({ now: at(3600), leaseWindowMinutes: 5, nameReuseHours: 24 })).recentLeases.count,
      0,
    );
  });

  it('escapes filter values built from input', async () => {
    const { store } = await freshStore();
    await createAvailable(store, 'rbk-inj001');
    await store.lease('s-real', { leaseExpiresAt: HOUR_LATER });
    assert.deepEqual(await store.list({ sessionId: "x' or sessionId ne 'x" }), []);
    assert.equal(await store.leaseFor("x' or 'a' eq 'a"), undefined);
  });
});
