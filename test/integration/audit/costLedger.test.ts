// The month's cost ledger against Azurite: one row per finished session (a retried end counts
// once), summed with the running sessions' estimates; the idle ones priced by the listener-hour.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { TableClient } from '@azure/data-tables';
import { startAzurite, type Azurite } from '../../../local/azurite';
import { CostLedger } from '../../../lib/audit/costLedger';
import type { SessionRecord } from '../../../lib/sessions/sessionStore';

const prices = { listenerHourUsd: 0.0134, gbUsd: 1, pricesDate: '2026-12-03' };
const base: SessionRecord = {
  sessionId: '6f1c2d1e-8a55-4a55-9d55-000000000001',
  deviceId: 'plc-1',
  openerId: 'alice',
  port: 3389,
  status: 'ended',
  createdAt: '2026-12-02T10:00:00.000Z',
  readyAt: '2026-12-02T10:00:00.000Z',
  endedAt: '2026-12-02T11:00:00.000Z',
  expiresAt: '2026-12-02T11:00:00.000Z',
  bytesFromDevice: 204e6,
};

describe('CostLedger (Azurite)', () => {
  let azurite: Azurite;
  before(async () => {
    azurite = await startAzurite();
  });
  after(async () => {
    await azurite.close();
  });

  it('sums the month’s finished sessions once each, plus the running ones, and prices the idle', async () => {
    const ledger = new CostLedger(
      TableClient.fromConnectionString(azurite.connectionString, `costs${Date.now().toString(36)}`, {
        allowInsecureConnection: true,
      }),
      prices,
    );
    await ledger.ensureTable();
    await ledger.record(base);
    await ledger.record(base); // a retried end
    await ledger.record({ ...base, sessionId: base.sessionId.replace(/1$/, '2'), bytesFromDevice: 0 });
    // Last month's session does not count this month.
    await ledger.record({ ...base, sessionId: base.sessionId.replace(/1$/, '3'), endedAt: '2026-11-30T23:00:00.000Z' });
    const running: SessionRecord[] = [
      {
        ...base,
        status: 'ready',
        endedAt: undefined,
        bytesFromDevice: 0,
        openConnections: 0,
        readyAt: '2026-12-03T09:00:00.000Z',
      },
      {
        ...base,
        status: 'ready',
        endedAt: undefined,
        bytesFromDevice: 0,
        openConnections: 2,
        readyAt: '2026-11-30T09:00:00.000Z',
      },
    ];
    const r = await ledger.report(running, new Date('2026-12-03T10:00:00.000Z'));
    const rdpHour = 0.0134 + 0.204 - 5 / 730;
    // Finished: one RDP-hour + one empty hour; running: 1 h, and 58 h counted from the month's start.
    const expected = rdpHour + 0.0134 + 0.0134 * 1 + 0.0134 * 58;
    assert.equal(r.month, '2026-12');
    assert.equal(r.finishedSessions, 2);
    assert.equal(r.runningSessions, 2);
    assert.ok(Math.abs(r.monthToDateUsd - expected) < 1e-5, `${r.monthToDateUsd} vs ${expected}`);
    assert.deepEqual(r.idle, { sessions: 1, usdPerHour: 0.0134, namespacesUsdPerHour: 0 });
  });
});
