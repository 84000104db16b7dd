// The audit table against Azurite through the real @azure/data-tables client: newest first across
// days, filters, keyset paging with the continuation token, idempotent session rows, retention.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { TableClient } from '@azure/data-tables';
import { startAzurite, type Azurite } from '../../../local/azurite';
import { AuditLog, type AuditEntry } from '../../../lib/audit/auditLog';
import { sessionAuditEntry } from '../../../lib/audit/sessionAudit';

let azurite: Azurite;
let seq = 0;

async function freshLog(): Promise<AuditLog> {
  const table = TableClient.fromConnectionString(azurite.connectionString, `audit${Date.now().toString(36)}${seq++}`, {
    allowInsecureConnection: true,
  });
  const log = new AuditLog(table);
  await log.ensureTable();
  return log;
}

const T0 = Date.parse('2026-12-01T22:00:00.000Z');
/** An entry every 30 minutes from T0 (crosses midnight twice over 60 entries). */
const entry = (i: number): AuditEntry => ({
  at: new Date(T0 + i * 30 * 60_000).toISOString(),
  action: i % 3 === 0 ? 'session' : 'grant.add',
  principal: i % 2 ? 'alice' : 'root',
  deviceId: `plc-${i % 4}`,
  outcome: i % 3 === 0 ? (i % 2 ? 'failed' : 'ended') : 'ok',
  details: { i },
});

describe('AuditLog (Azurite)', () => {
  let log: AuditLog;
  before(async () => {
    azurite = await startAzurite();
    log = await freshLog();
    for (let i = 0; i < 60; i++) await log.append(entry(i));
  });
  after(async () => {
    await azurite.close();
  });

  const all = { since: new Date(T0 - 1), until: new Date(T0 + 60 * 30 * 60_000) };

  it('answers newest first across day partitions, within the time range', async () => {
    const page = await log.query({ ...all, limit: 1000 });
    assert.equal(page.entries.length, 60);
    assert.equal(page.continuation, undefined);
    const times = page.entries.map((e) => e.at);
    assert.deepEqual(times, [...times].sort().reverse());
    const window = await log.query({
      since: new Date(entry(10).at),
      until: new Date(entry(20).at),
      limit: 1000,
    });
    assert.deepEqual(
      window.entries.map((e) => e.details.i),
      [20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10],
    );
  });

  it('filters by device, principal, outcome and action', async () => {
    const r = await log.query({ ...all, deviceId: 'plc-1', principal: 'alice', limit: 1000 });
    assert.ok(r.entries.length > 0);
    assert.ok(r.entries.every((e) => e.deviceId === 'plc-1' && e.principal === 'alice'));
    const failed = await log.query({ ...all, outcome: 'failed', limit: 1000 });
    assert.deepEqual(
      failed.entries.map((e) => e.details.i),
      [57, 51, 45, 39, 33, 27, 21, 15, 9, 3],
    );
    const grants = await log.query({ ...all, action: 'grant.add', limit: 1000 });
    assert.equal(grants.entries.length, 40);
  });

  it('pages with a continuation token: every entry once, in order, across days', async () => {
    const seen: AuditEntry[] = [];
    let continuation: string | undefined;
    let pages = 0;
    do {
      const page = await log.query({ ...all, limit: 7, ...(continuation ? { continuation } : {}) });
      seen.push(...page.entries);
      continuation = page.continuation;
      pages++;
    } while (continuation && pages < 50);
    assert.equal(seen.length, 60);
    assert.deepEqual(
      seen.map((e) => e.details.i),
      Array.from({ length: 60 }, (_, k) => 59 - k),
    );
    await assert.rejects(log.query({ ...all, limit: 5, continuation: 'not-a-token' }), {
      status: 400,
      code: 'validation_failed',
    });
  });

  it('writes a finished session once, however often its end is retried', async () => {
    const fresh = await freshLog();
    const record = {
      sessionId: '6f1c2d1e-8a55-4a55-9d55-0a0b0c0d0e0f',
      deviceId: 'plc-1',
      openerId: 'alice',
      port: 3389,
      status: 'ended' as const,
      reason: 'client_gone' as const,
      endedBy: 'system',
      createdAt: '2026-12-01T10:00:00.000Z',
      readyAt: '2026-12-01T10:00:02.000Z',
      endedAt: '2026-12-01T11:00:02.000Z',
      expiresAt: '2026-12-01T11:00:00.000Z',
      bytesToDevice: 4_000_000,
      bytesFromDevice: 200_000_000,
      clientAddress: '203.0.113.9',
    };
    const prices = { listenerHourUsd: 0.0134, gbUsd: 1, pricesDate: '2026-12-03' };
    await fresh.append(sessionAuditEntry(record, prices), record.sessionId);
    await fresh.append(sessionAuditEntry(record, prices), record.sessionId);
    const { entries } = await fresh.query({
      since: new Date('2026-12-01T00:00:00Z'),
      until: new Date('2026-12-02T00:00:00Z'),
      limit: 10,
    });
    assert.equal(entries.length, 1);
    const [e] = entries;
    assert.equal(e.action, 'session');
    assert.equal(e.outcome, 'ended');
    assert.equal(e.details.reason, 'client_gone');
    assert.equal(e.details.endedBy, 'system');
    assert.equal(e.details.clientAddress, '203.0.113.9');
    assert.equal(e.details.bytesFromDevice, 200_000_000);
    assert.ok(Math.abs(Number(e.details.costUsd) - (0.0134 + 0.204 - 5 / 730)) < 1e-5);
  });

  it('deletes the days before the retention cutoff and keeps the rest', async () => {
    const fresh = await freshLog();
    for (let i = 0; i < 60; i++) await fresh.append(entry(i));
    // Entries 0-3 are on 2026-12-01; the cutoff day 2026-12-02 keeps that day and later.
    assert.equal(await fresh.deleteOlderThan(new Date('2026-12-02T12:00:00Z')), 4);
    const left = await fresh.query({ ...all, limit: 1000 });
    assert.equal(left.entries.length, 56);
    assert.equal(await fresh.deleteOlderThan(new Date('2026-12-02T12:00:00Z')), 0);
  });
});
