// Benchmark `durable`: 500 orchestrations of 4 activities each, started at once through the real
// DurableClient over HTTP on the local host, state in Azurite. Figures: instances per second and
// start-to-complete latency (p50, p99).
import { startAzurite } from '../../local/azurite';
import { startHost } from '../../test/fixtures/durableApp/harness';
import { type Benchmark, type Figure, percentile } from '../figures';

const INSTANCES = Number(process.env.DURABLE_BENCH_INSTANCES ?? 500);
const COMMAND = 'npm run bench -- durable';

export const benchmark: Benchmark = {
  name: 'durable',
  description: `${INSTANCES} orchestrations × 4 activities started at once on the local durable engine (Azurite tables)`,
  async run(log) {
    const azurite = await startAzurite();
    const h = await startHost(azurite.connectionString, 'BenchHub', { crossCheck: false });
    try {
      const engine = h.durable.engine!;
      // Warm up the code paths (JIT, table creation) outside the measurement.
      const warm = await h.api('/api/start/FourSteps', { method: 'POST' });
      await engine.waitForTerminal((warm.body as { id: string }).id, 30_000);
      const latencies: number[] = [];
      let failed = 0;
      const t0 = performance.now();
      await Promise.all(
        Array.from({ length: INSTANCES }, async () => {
          const started = performance.now();
          const r = await h.api('/api/start/FourSteps', { method: 'POST' });
          if (r.status !== 202) {
            failed++;
            return;
          }
          const done = await engine.waitForTerminal((r.body as { id: string }).id, 300_000);
          if (done?.status !== 'Completed') failed++;
          else latencies.push(performance.now() - started);
        }),
      );
      const elapsedS = (performance.now() - t0) / 1000;
      const perS = latencies.length / elapsedS;
      log(
        `${latencies.length}/${INSTANCES} completed in ${elapsedS.toFixed(1)} s, ${failed} failed; episodes ${engine.stats.episodes}, activity runs ${engine.stats.activityRuns}, commit conflicts ${engine.stats.conflicts}`,
      );
      const note = `${INSTANCES} instances × 4 sequential activities started concurrently over HTTP (real DurableClient); in-process host, Azurite in memory`;
      const figures: Figure[] = [
        {
          name: 'durable_instances_per_s',
          value: Number(perS.toFixed(1)),
          unit: 'instances/s',
          command: COMMAND,
          note,
        },
        {
          name: 'durable_p50_start_to_complete_ms',
          value: Math.round(percentile(latencies, 50)),
          unit: 'ms',
          command: COMMAND,
          note,
        },
        {
          name: 'durable_p99_start_to_complete_ms',
          value: Math.round(percentile(latencies, 99)),
          unit: 'ms',
          command: COMMAND,
          note,
        },
      ];
      if (failed)
        figures.push({
          name: 'durable_failed_instances',
          value: failed,
          unit: 'instances',
          goal: '0',
          command: COMMAND,
        });
      return figures;
    } finally {
      await h.close();
      await azurite.close();
    }
  },
};
