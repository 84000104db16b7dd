// SessionStore against Azurite through the real @azure/data-tables client: the index row that
// finds a session by id alone, listings that never see index rows, and guarded transitions.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { TableClient } from '@azure/data-tables';
import { startAzurite, type Azurite } from '../../../local/azurite';
import { SessionStore, type SessionRecord, type SessionStoreOptions } from '../../../lib/sessions/sessionStore';

let azurite: Azurite;
let tableSeq = 0;

async function freshStore(options: SessionStoreOptions = {}): Promise<SessionStore> {
  const table = TableClient.fromConnectionString(
    azurite.connectionString,
    `sessions${Date.now().toString(36)}${tableSeq++}`,
    { allowInsecureConnection: true },
  );
  const store = new SessionStore(table, options);
  await store.ensureTable();
  return store;
}

const record = (sessionId: string, deviceId = 'plc-1'): SessionRecord => ({
  sessionId,
  deviceId,
  openerId: 'alice',
  port: 22,
  status: 'pending',
  createdAt: '2026-11-25T10:00:00.000Z',
  expiresAt: '2026-11-25T11:00:00.000Z',
});
const A = '6f1c2d1e-8a55-4a55-9d55-0a0b0c0d0e0f';
const B = '7f1c2d1e-8a55-4a55-9d55-0a0b0c0d0e0f';

describe('SessionStore (Azurite)', () => {
  before(async () => {
    azurite = await startAzurite();
  });
  after(async () => {
    await azurite.close();
  });

  it('a burst of 200 concurrent inserts is all found and listed, its index rows carried by far fewer requests', async () => {
    const table = TableClient.fromConnectionString(azurite.connectionString, `sessburst${Date.now().toString(36)}`, {
      allowInsecureConnection: true,
    });
    let requests = 0;
    const store = new SessionStore(table);
    await store.ensureTable();
    const ids = Array.from({ length: 200 }, (_, i) => `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`);
    // Count what goes to storage: single inserts and transactions alike.
    const submit = table.submitTransaction.bind(table);
    const create = table.createEntity.bind(table);
    table.submitTransaction = (actions) => (requests++, submit(actions));
    table.createEntity = (entity, options) => (requests++, create(entity, options));
    await Promise.all(ids.map((id, i) => store.insert(record(id, `plc-${i % 20}`))));
    for (const id of ids) assert.ok(await store.locate(id), id);
    assert.equal((await store.list({ limit: 1000 })).length, 200);
    assert.equal(await store.countOpen('alice'), 200);
    // One at a time: 800 requests (a record and three index rows each). The records' partitions
    // differ (one per device), the index rows share three partitions: grouped.
    assert.ok(requests < 200 + 300, `200 records and 600 index rows took ${requests} requests`);
    // A second run of one of them is still refused.
    await assert.rejects(store.insert(record(ids[7], 'plc-7')), { code: 'session_exists' });
  });

  it('finds a session recorded under the earlier one-partition-per-session index', async () => {
    const table = TableClient.fromConnectionString(azurite.connectionString, `sesslegacy${Date.now().toString(36)}`, {
      allowInsecureConnection: true,
    });
    const store = new SessionStore(table);
    await store.ensureTable();
    await table.createEntity({ partitionKey: `~session~${A}`, rowKey: '~', deviceId: 'plc-3', openerId: 'bob' });
    assert.deepEqual(await store.locate(A), { deviceId: 'plc-3', openerId: 'bob' });
    assert.equal(await store.locate(B), undefined);
  });

  it('finds a session by its id alone through the index row', async () => {
    const store = await freshStore();
    await store.insert(record(A, 'plc-7'));
    assert.deepEqual(await store.locate(A), { deviceId: 'plc-7', openerId: 'alice' });
    assert.equal(await store.locate(B), undefined);
    assert.equal((await store.get('plc-7', A))?.status, 'pending');
  });

  it('refuses a second insert of the same session with session_exists', async () => {
    const store = await freshStore();
    await store.insert(record(A));
    await assert.rejects(store.insert(record(A)), { status: 409, code: 'session_exists' });
  });

  it('lists records only, never the index rows, with or without filters', async () => {
    const store = await freshStore();
    await store.insert(record(A, 'plc-1'));
    await store.insert(record(B, 'plc-2'));
    assert.deepEqual((await store.list()).map((r) => r.sessionId).sort(), [A, B]);
    assert.deepEqual(
      (await store.list({ deviceId: 'plc-2' })).map((r) => r.sessionId),
      [B],
    );
    assert.deepEqual((await store.list({ status: 'pending' })).map((r) => r.sessionId).sort(), [A, B]);
  });

  it('keeps an end requested before the ready write, and the first recorded end', async () => {
    const store = await freshStore();
    await store.insert(record(A));
    assert.equal((await store.transition('plc-1', A, 'ending', { reason: 'requested' })).status, 'ending');
    // The orchestration's ready write lands after the DELETE's: the end wins.
    assert.equal(
      (await store.transition('plc-1', A, 'ready', { readyAt: '2026-11-25T10:00:02.000Z' })).status,
      'ending',
    );
    const ended = await store.transition('plc-1', A, 'ended', {
      reason: 'requested',
      endedAt: '2026-11-25T10:01:00.000Z',
    });
    assert.equal(ended.status, 'ended');
    assert.equal((await store.transition('plc-1', A, 'failed', { reason: 'error' })).status, 'ended');
    assert.equal((await store.get('plc-1', A))?.readyAt, undefined);
  });

  const at = (minute: number) => new Date(Date.parse('2026-11-25T10:00:00.000Z') + minute * 60_000).toISOString();
  const uuid = (n: number) => `6f1c2d1e-8a55-4a55-9d55-${String(n).padStart(12, '0')}`;

  it('lists the newest N, not the first N keys: across devices, and for one opener', async () => {
    const store = await freshStore();
    // Ids and devices in an order unlike creation time, so key order and time order differ.
    const made = [5, 1, 4, 2, 3, 7, 6].map((n) => ({
      ...record(uuid(100 - n), `plc-${n % 3}`),
      openerId: n % 2 ? 'alice@contoso.com' : 'bob/x',
      createdAt: at(n),
    }));
    for (const r of made) await store.insert(r);
    const newest = await store.list({ limit: 3 });
    assert.deepEqual(
      newest.map((r) => r.createdAt),
      [at(7), at(6), at(5)],
    );
    const alice = await store.list({ openerId: 'alice@contoso.com', limit: 2 });
    assert.deepEqual(
      alice.map((r) => r.createdAt),
      [at(7), at(5)],
    );
    assert.deepEqual(
      (await store.list({ openerId: 'bob/x' })).map((r) => r.createdAt),
      [at(6), at(4), at(2)],
    );
    // One device's, newest first after reading its whole partition.
    assert.deepEqual(
      (await store.list({ deviceId: 'plc-1', limit: 2 })).map((r) => r.createdAt),
      [at(7), at(4)],
    );
    await store.transition('plc-1', uuid(93), 'failed', { reason: 'error' });
    assert.deepEqual(
      (await store.list({ status: 'pending', limit: 1 })).map((r) => r.createdAt),
      [at(6)],
    );
  });

  it('counts a principal’s open sessions, and an end closes its place', async () => {
    const ended: SessionRecord[] = [];
    const store = await freshStore({ onEnded: (r) => Promise.resolve(void ended.push(r)) });
    for (const n of [1, 2, 3]) await store.insert({ ...record(uuid(n)), createdAt: at(n) });
    await store.insert({ ...record(uuid(4)), openerId: 'bob', createdAt: at(4) });
    assert.equal(await store.countOpen('alice'), 3);
    await store.transition('plc-1', uuid(1), 'ending', { reason: 'requested', endedBy: 'root' });
    assert.equal(await store.countOpen('alice'), 3, 'ending still holds its namespace');
    await store.transition('plc-1', uuid(1), 'ended', { reason: 'requested', endedAt: at(9) });
    assert.equal(await store.countOpen('alice'), 2);
    assert.equal(ended.length, 1);
    assert.equal(ended[0].endedBy, 'root', 'who ended it survives the final write');
    // A retried end finds the record final, and tells the hook again (it is idempotent).
    await store.transition('plc-1', uuid(1), 'ended', { reason: 'requested', endedAt: at(9) });
    assert.equal(ended.length, 2);
    assert.equal(await store.countOpen('bob'), 1);
  });

  it('lists the ready sessions from the live index: in at ready, out at the end', async () => {
    const store = await freshStore();
    await store.insert(record(A));
    await store.insert(record(B, 'plc-2'));
    assert.deepEqual(await store.listReady(), []);
    await store.transition('plc-1', A, 'ready', { readyAt: at(1) });
    await store.transition('plc-2', B, 'ready', { readyAt: at(1) });
    assert.deepEqual((await store.listReady()).map((r) => r.sessionId).sort(), [A, B]);
    await store.transition('plc-1', A, 'ending', { reason: 'idle', endedBy: 'system' });
    assert.deepEqual(
      (await store.listReady()).map((r) => r.sessionId),
      [B],
      'an ending session is not judged again',
    );
    await store.transition('plc-1', A, 'ended', { reason: 'idle', endedAt: at(2) });
    await store.transition('plc-2', B, 'failed', { reason: 'error', endedAt: at(2) });
    assert.deepEqual(await store.listReady(), []);
  });

  it('stores heartbeats: seen, activity only with a connection, bytes; a final record is left alone', async () => {
    const store = await freshStore();
    await store.insert({ ...record(A), status: 'ready' as const, readyAt: at(0) });
    const report = { openConnections: 0, connections: 0, bytesToDevice: 0, bytesFromDevice: 0 };
    let r = await store.recordHeartbeat('plc-1', A, report, new Date(at(1)), '198.51.100.4');
    assert.equal(r.clientSeenAt, at(1));
    assert.equal(r.lastActivityAt, undefined);
    r = await store.recordHeartbeat('plc-1', A, { ...report, connections: 1, bytesToDevice: 10 }, new Date(at(2)));
    assert.equal(r.lastActivityAt, at(2), 'a connection carried since the last beat is activity');
    r = await store.recordHeartbeat('plc-1', A, { ...report, connections: 1, bytesToDevice: 10 }, new Date(at(3)));
    assert.equal(r.lastActivityAt, at(2), 'none open and none new: no activity');
    const read = await store.get('plc-1', A);
    assert.equal(read?.clientSeenAt, at(3));
    assert.equal(read?.clientAddress, '198.51.100.4');
    assert.equal(read?.bytesToDevice, 10);
    assert.deepEqual(
      (await store.listReady()).map((x) => x.sessionId),
      [A],
    );
    await store.transition('plc-1', A, 'ended', { reason: 'idle', endedAt: at(4) });
    r = await store.recordHeartbeat('plc-1', A, { ...report, connections: 9 }, new Date(at(5)));
    assert.equal(r.status, 'ended');
    assert.equal((await store.get('plc-1', A))?.connections, 1);
    assert.deepEqual(await store.listReady(), []);
  });
});
