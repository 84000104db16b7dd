// What the sessions cost this month: one row per finished session in the `costs` table (PK the
// UTC month of its end, RK its id, so a retried end writes the same row), summed on read with the
// running sessions' estimates so far; and what sits idle now. Relay bills listeners and bytes, not
// namespaces: an idle namespace costs nothing, a ready session nothing goes through costs its listener.
import { odata, TableClient } from '@azure/data-tables';
import type { SessionRecord } from '../sessions/sessionStore';
import { estimateSessionCost, type RelayPrices } from './cost';

export interface CostReport {
  month: string;
  /** Finished sessions this month plus what the running ones cost since the month (or they) began. */
  monthToDateUsd: number;
  finishedSessions: number;
  runningSessions: number;
  /** Ready sessions with no connection open at their client's last report. */
  idle: { sessions: number; usdPerHour: number; namespacesUsdPerHour: 0 };
  prices: RelayPrices;
}

const monthOf = (iso: string) => iso.slice(0, 7);
const round = (v: number) => Math.round(v * 1e6) / 1e6;

export class CostLedger {
  constructor(
    private readonly table: TableClient,
    private readonly prices: RelayPrices,
  ) {}

  async ensureTable(): Promise<void> {
    await this.table.createTable();
  }

  /** Records a finished session's cost. Second run: the same row again. */
  async record(r: SessionRecord): Promise<void> {
    const at = r.endedAt ?? r.readyAt ?? r.createdAt;
    const cost = estimateSessionCost(r, this.prices, new Date(at));
    await this.table.upsertEntity(
      { partitionKey: monthOf(at), rowKey: r.sessionId, usd: cost.usd, listenerHours: cost.listenerHours },
      'Replace',
    );
  }

  /**
   * The month's cost so far: the finished sessions' rows (one partition, only `usd` read) plus the
   * `running` sessions' estimates since the month began; and the idle part of them.
   */
  async report(running: SessionRecord[], now: Date): Promise<CostReport> {
    const month = monthOf(now.toISOString());
    let finishedUsd = 0;
    let finished = 0;
    const iter = this.table.listEntities<{ usd?: number }>({
      queryOptions: { filter: odata`PartitionKey eq ${month}`, select: ['usd'] },
    });
    for await (const e of iter) {
      finishedUsd += typeof e.usd === 'number' ? e.usd : 0;
      finished++;
    }
    const monthStart = `${month}-01T00:00:00.000Z`;
    let runningUsd = 0;
    let idleSessions = 0;
    for (const r of running) {
      const readyAt = r.readyAt && r.readyAt > monthStart ? r.readyAt : monthStart;
      runningUsd += estimateSessionCost({ ...r, readyAt, endedAt: undefined }, this.prices, now).usd;
      if (!r.openConnections) idleSessions++;
    }
    return {
      month,
      monthToDateUsd: round(finishedUsd + runningUsd),
      finishedSessions: finished,
      runningSessions: running.length,
      idle: {
        sessions: idleSessions,
        usdPerHour: round(idleSessions * this.prices.listenerHourUsd),
        namespacesUsdPerHour: 0,
      },
      prices: this.prices,
    };
  }
}
