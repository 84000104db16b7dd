// Smoke test of the peak benchmark's harness (bench/benchmarks/peak.ts): a few sessions through the
// product's DeviceAgent and ClientBridge for a few seconds. Speed is the benchmark's business; this
// checks that the harness carries and verifies bytes and counts what it says it counts.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runPeak } from '../../bench/benchmarks/peak';

describe('bench peak harness', () => {
  it('carries verified RDP-like traffic for 3 live sessions while opens and ends continue, losing none', async () => {
    const figures = await runPeak(
      { peak: 3, holdS: 4, devices: 2, downBytesPerS: 60_000, rampConcurrency: 3, opensPerS: 1 },
      () => undefined,
    );
    const value = (name: string): number => {
      const f = figures.find((x) => x.name === `peak3_${name}`);
      assert.ok(f, `figure peak3_${name}`);
      return f.value;
    };
    assert.ok(value('bytes_verified') > 0);
    assert.equal(value('byte_mismatches'), 0);
    assert.equal(value('connections_lost'), 0);
    assert.equal(value('failed_opens'), 0);
    // Ends that would take the count below the peak are skipped: the peak is held, not a random walk.
    assert.ok(value('live_min_in_hold') >= 3, `the hold dipped to ${value('live_min_in_hold')} live`);
    assert.ok(value('storage_requests_per_s') > 0);
    assert.ok(value('host_rss_mb') > 0);
    // The control plane runs in its own process: its CPU is its own, apart from the emulator's.
    assert.ok(value('host_cpu_pct') > 0);
    assert.ok(value('emulator_rss_mb') > 0);
  });
});
