// `npm run bench -- recycleburst`: 200 sessions ending within one minute, at real ARM scale (the
// emulator's default limits and write timing; only the set-up's namespace creation is instant):
// the time from the first end to the last hybrid connection deleted (`recycle_burst_200_last_delete_s`).
import type { Benchmark } from '../figures';
import { runRecycleBurst } from '../recycleBurst';

const COMMAND = 'npm run bench -- recycleburst';

export const benchmark: Benchmark = {
  name: 'recycleburst',
  description: '200 sessions ending in the same minute under ARM limits: time to the last hybrid connection delete',
  async run(log) {
    const r = await runRecycleBurst({ sessions: 200, subscriptions: 6, timeScale: 1, createDelayMs: 0, log });
    log(
      `last delete ${(r.lastDeleteMs / 1000).toFixed(1)} s, last namespace available again ${(r.lastRecycledMs / 1000).toFixed(1)} s ` +
        `after the first end; ${r.throttled} throttling and ${r.conflicts} conflict 429s, ${r.deleteRetries} delete retries, ` +
        `${r.prepareRetries} preparation retries, ${r.writes} writes; not deleted ${r.notDeleted}, drifted ${r.drifted.length}, ` +
        `not recycled ${r.notRecycled.length}, leases left ${r.leasesLeft}, old tokens accepted ${r.tokensAccepted}`,
    );
    // The worst case: every session in one subscription (200 × 8 writes against one write bucket).
    // Only the set-up needs Azure's quota and namespace-write limit raised; a recycle writes no namespace.
    const one = await runRecycleBurst({
      sessions: 200,
      subscriptions: 1,
      timeScale: 1,
      createDelayMs: 0,
      perSubscriptionSetup: { quotaPerSubscription: 200, throttling: { namespaceWriteLimit: 1000 } },
      setupPerSubscription: 200,
      log,
    });
    log(
      `one subscription: last delete ${(one.lastDeleteMs / 1000).toFixed(1)} s, last available again ${(one.lastRecycledMs / 1000).toFixed(1)} s; ` +
        `${one.throttled} throttling 429s (handled), ${one.deleteRetries} delete retries, ${one.prepareRetries} preparation retries, ` +
        `${one.maintenanceRuns} maintenance run(s) for what they left; ` +
        `not deleted ${one.notDeleted}, drifted ${one.drifted.length}, not recycled ${one.notRecycled.length}, leases left ${one.leasesLeft}, old tokens accepted ${one.tokensAccepted}`,
    );
    const leaked = [r, one].reduce(
      (n, x) => n + x.notDeleted + x.drifted.length + x.notRecycled.length + x.leasesLeft + x.tokensAccepted,
      0,
    );
    const note =
      '200 ends spread evenly over 60 s, 6 subscriptions, relay emulator at real ARM scale (write/delete buckets 200 / 10 per s, ' +
      'conflict 429s), each end as the session orchestrator runs it (HC delete, then the next generation)';
    return [
      {
        name: 'recycle_burst_200_last_delete_s',
        value: Number((r.lastDeleteMs / 1000).toFixed(1)),
        unit: 's',
        goal: 'reported',
        command: COMMAND,
        note: `${note}; the ends alone take 60 s`,
      },
      {
        name: 'recycle_burst_200_last_delete_s_one_subscription',
        value: Number((one.lastDeleteMs / 1000).toFixed(1)),
        unit: 's',
        command: COMMAND,
        note: `the same 200 ends in one subscription: ${one.throttled} throttling 429s, all handled; last namespace available again after ${(one.lastRecycledMs / 1000).toFixed(1)} s`,
      },
      {
        name: 'recycle_burst_200_last_recycled_s',
        value: Number((r.lastRecycledMs / 1000).toFixed(1)),
        unit: 's',
        command: COMMAND,
        note,
      },
      {
        name: 'recycle_burst_200_leaked',
        value: leaked,
        unit: 'count',
        goal: '0',
        command: COMMAND,
        note: 'both bursts: sessions never deleted + namespaces drifted in ARM (an old hybrid connection left) + not available again + leases left + old tokens accepted',
      },
    ];
  },
};
