// 200 sessions ending in the same minute against the relay emulator under its default (Azure's) ARM
// limits, time-scaled: every hybrid connection deleted (checked in ARM through the SDK), every
// namespace available again one generation on, no lease left, no old token accepted; the time to
// the last delete is logged at real scale. bench/recycleBurst.ts runs the scenario.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { runRecycleBurst } from '../../../bench/recycleBurst';

/** ARM's clock 100× faster: buckets refill at 1,000 writes/s, a write under a namespace takes 3 ms. */
const TIME_SCALE = 0.01;

describe('recycle burst', () => {
  it('200 sessions ending in the same minute: every hybrid connection deleted, nothing leaked', async () => {
    const r = await runRecycleBurst({
      sessions: 200,
      subscriptions: 6,
      timeScale: TIME_SCALE,
      log: (line) => console.log(line),
    });
    console.log(
      `200 ends within a (scaled) minute: last hybrid connection deleted ${(r.lastDeleteMs / 1000).toFixed(2)} s after the first end ` +
        `= ${(r.lastDeleteMs / 1000 / TIME_SCALE).toFixed(0)} s at real scale (an upper bound: this machine's own time is scaled up with it); ` +
        `last namespace available again at ${(r.lastRecycledMs / 1000 / TIME_SCALE).toFixed(0)} s real; ARM answered ${r.throttled} throttling ` +
        `and ${r.conflicts} conflict 429s (all handled), ${r.deleteRetries} delete and ${r.prepareRetries} preparation retries, ${r.writes} writes`,
    );
    assert.equal(r.sessions, 200);
    assert.equal(r.notDeleted, 0, 'every session reached `deleted`');
    assert.deepEqual(r.drifted, [], 'ARM holds exactly each row’s new hybrid connection: every old one is deleted');
    assert.deepEqual(r.notRecycled, [], 'every namespace is available again, one generation on');
    assert.equal(r.leasesLeft, 0, 'no session still holds a lease');
    assert.equal(r.tokensAccepted, 0, 'no old send token opens a connection');
  });

  it('the same burst in one subscription: ARM throttles (429 + Retry-After), every one handled, nothing leaked', async () => {
    // ARM 20× faster: the write bucket refills 200/s, so 200 recycles × 8 writes outrun it for seconds.
    const scale = 0.05;
    const r = await runRecycleBurst({
      sessions: 200,
      subscriptions: 1,
      timeScale: scale,
      createDelayMs: 0,
      spreadSeconds: 10,
      perSubscriptionSetup: { quotaPerSubscription: 200, throttling: { namespaceWriteLimit: 1000 } },
      setupPerSubscription: 200,
      log: (line) => console.log(line),
    });
    console.log(
      `200 ends in one subscription within 10 s (scaled): last delete ${(r.lastDeleteMs / 1000 / scale).toFixed(0)} s, ` +
        `last recycled ${(r.lastRecycledMs / 1000 / scale).toFixed(0)} s at real scale; ${r.throttled} throttling and ${r.conflicts} conflict 429s, ` +
        `${r.deleteRetries} delete and ${r.prepareRetries} preparation retries, ${r.maintenanceRuns} maintenance run(s) for what they left`,
    );
    assert.ok(r.throttled > 0, 'the write bucket ran dry (else this case proves nothing about it)');
    assert.equal(r.notDeleted, 0);
    assert.deepEqual(r.drifted, []);
    assert.deepEqual(r.notRecycled, []);
    assert.equal(r.leasesLeft, 0);
    assert.equal(r.tokensAccepted, 0);
  });
});
