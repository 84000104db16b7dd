// SessionStore against Azurite through the real @azure/data-tables client: the index row that
// finds a session by id alone, listings that never see index rows, and guarded transitions.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { TableClient } from '@azure/data-tables';
import { startAzurite, type Azurite } from '../../../local/azurite';
import { SessionStore, type SessionRecord } from '../../../lib/sessions/sessionStore';

let azurite: Azurite;
let tableSeq = 0;

async function freshStore(): Promise<SessionStore> {
  const table = TableClient.fromConnectionString(
    azurite.connectionString,
    `sessions${Date.now().toString(36)}${tableSeq++}`,
    { allowInsecureConnection: true },
  );
  const store = new SessionStore(table);
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
});
