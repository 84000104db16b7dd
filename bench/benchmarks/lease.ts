// `npm run bench -- lease`: 1,000 concurrent leases over 500 available namespaces on Azurite,
// from several NamespaceStore instances (standing for function instances, each with its own
// cache), then the table is read back to count double leases. Two supporting runs: the same
// from one instance, and 400 leases over 500 (no exhaustion) to show cross-instance contention.
import { performance } from 'node:perf_hooks';
import { TableClient } from '@azure/data-tables';
import { startAzurite, type Azurite } from '../../local/azurite';
import { PoolExhaustedError } from '../../lib/errors';
import { namespaceToEntity, type Namespace } from '../../lib/pool/namespace';
import { NamespaceStore } from '../../lib/pool/namespaceStore';
import { percentile, type Benchmark, type Figure } from '../figures';

const POOL = 'bench';
const COMMAND = 'npm run bench -- lease';

interface Outcome {
  calls: number;
  namespaces: number;
  instances: number;
  granted: number;
  refused: number;
  otherErrors: number;
  doubleLeases: number;
  leasedRows: number;
  conflicts: number;
  refreshes: number;
  p50Ms: number;
  p99Ms: number;
  p99GrantedMs: number;
  wallMs: number;
}

function availableRow(name: string, now: Date): Namespace {
  return {
    pool: POOL,
    name,
    state: 'available',
    subscriptionId: `sub-${name.charCodeAt(name.length - 1) % 5}`,
    resourceGroup: 'rg',
    location: 'local',
    endpoint: `https://${name}.servicebus.windows.net:443/`,
    hybridConnection: 'tunnel',
    generation: 1,
    createdAt: now,
    stateChangedAt: now,
    recycleFailures: 0,
  };
}

async function scenario(
  azurite: Azurite,
  tableName: string,
  calls: number,
  namespaces: number,
  instances: number,
): Promise<Outcome> {
  const table = TableClient.fromConnectionString(azurite.connectionString, tableName, {
    allowInsecureConnection: true,
  });
  await table.createTable();
  const now = new Date();
  const names = Array.from({ length: namespaces }, (_, i) => `rbk-bench${i.toString().padStart(5, '0')}`);
  for (let i = 0; i < names.length; i += 100) {
    await table.submitTransaction(
      names.slice(i, i + 100).map((n) => ['create', namespaceToEntity(availableRow(n, now))]),
    );
  }
  const stores = Array.from({ length: instances }, () => new NamespaceStore(table, POOL));
  const leaseExpiresAt = new Date(now.getTime() + 3_600_000);
  const durations: number[] = [];
  const grantedDurations: number[] = [];
  const granted: Array<{ session: string; name: string }> = [];
  let refused = 0;
  let otherErrors = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: calls }, async (_, i) => {
      const session = `bench-session-${i}`;
      const t = performance.now();
      try {
        const ns = await stores[i % instances].lease(session, { leaseExpiresAt });
        grantedDurations.push(performance.now() - t);
        granted.push({ session, name: ns.name });
      } catch (err) {
        if (err instanceof PoolExhaustedError) refused++;
        else otherErrors++;
      } finally {
        durations.push(performance.now() - t);
      }
    }),
  );
  const wallMs = performance.now() - started;
  // Double leases: a name handed to two callers, or a caller told it holds a row that says otherwise.
  const rows = await new NamespaceStore(table, POOL).list();
  const holder = new Map(rows.map((r) => [r.name, r.sessionId]));
  const handedOut = new Map<string, number>();
  for (const g of granted) handedOut.set(g.name, (handedOut.get(g.name) ?? 0) + 1);
  const duplicates = [...handedOut.values()].reduce((s, c) => s + (c - 1), 0);
  const mismatched = granted.filter((g) => holder.get(g.name) !== g.session).length;
  return {
    calls,
    namespaces,
    instances,
    granted: granted.length,
    refused,
    otherErrors,
    doubleLeases: duplicates + mismatched,
    leasedRows: rows.filter((r) => r.state === 'leased').length,
    conflicts: stores.reduce((s, st) => s + st.stats.conflicts, 0),
    refreshes: stores.reduce((s, st) => s + st.stats.refreshes, 0),
    p50Ms: Math.round(percentile(durations, 50)),
    p99Ms: Math.round(percentile(durations, 99)),
    p99GrantedMs: Math.round(percentile(grantedDurations, 99)),
    wallMs: Math.round(wallMs),
  };
}

function describeOutcome(o: Outcome): string {
  return (
    `${o.calls} leases over ${o.namespaces} from ${o.instances} instance(s): granted ${o.granted}, pool_exhausted ${o.refused}, ` +
    `other errors ${o.otherErrors}, leased rows ${o.leasedRows}, double leases ${o.doubleLeases}, 412 conflicts ${o.conflicts}, ` +
    `reads ${o.refreshes}, p50 ${o.p50Ms} ms, p99 ${o.p99Ms} ms (granted p99 ${o.p99GrantedMs} ms), wall ${o.wallMs} ms`
  );
}

export const benchmark: Benchmark = {
  name: 'lease',
  description:
    '1,000 concurrent leases over 500 available namespaces (Azurite, 4 store instances), plus supporting runs',
  async run(log) {
    const azurite = await startAzurite();
    try {
      const main = await scenario(azurite, 'leasebenchmain', 1000, 500, 4);
      log(describeOutcome(main));
      const single = await scenario(azurite, 'leasebenchsingle', 1000, 500, 1);
      log(describeOutcome(single));
      const partial = await scenario(azurite, 'leasebenchpartial', 400, 500, 4);
      log(describeOutcome(partial));
      const note = '1000 calls, 500 namespaces, 4 store instances (function instances), Azurite in memory';
      const figures: Figure[] = [
        {
          name: 'lease_p99_ms_c1000',
          value: main.p99Ms,
          unit: 'ms',
          goal: 'reported',
          command: COMMAND,
          note: `${note}; every call, granted or refused`,
        },
        {
          name: 'lease_double_leases_c1000',
          value: main.doubleLeases + single.doubleLeases + partial.doubleLeases,
          unit: 'count',
          goal: '0',
          command: COMMAND,
          note: 'all three runs, table read back',
        },
        { name: 'lease_succeeded_c1000', value: main.granted, unit: 'count', goal: '500', command: COMMAND, note },
        {
          name: 'lease_refused_c1000',
          value: main.refused,
          unit: 'count',
          goal: '500',
          command: COMMAND,
          note: `${note}; pool_exhausted`,
        },
        { name: 'lease_p50_ms_c1000', value: main.p50Ms, unit: 'ms', command: COMMAND, note },
        {
          name: 'lease_p99_ms_c1000_granted',
          value: main.p99GrantedMs,
          unit: 'ms',
          command: COMMAND,
          note: `${note}; granted calls only`,
        },
        {
          name: 'lease_conflicts_c1000',
          value: main.conflicts,
          unit: 'count',
          command: COMMAND,
          note: `${note}; conditional writes that lost a race (412) and drew again`,
        },
        {
          name: 'lease_p99_ms_c1000_1instance',
          value: single.p99Ms,
          unit: 'ms',
          command: COMMAND,
          note: 'same, from one store instance (no 412 possible)',
        },
        {
          name: 'lease_conflicts_c400_of500',
          value: partial.conflicts,
          unit: 'count',
          command: COMMAND,
          note: '400 calls over 500 namespaces from 4 instances: contention when the pool is not exhausted',
        },
      ];
      const errors = main.otherErrors + single.otherErrors + partial.otherErrors;
      if (errors > 0)
        figures.push({ name: 'lease_errors_c1000', value: errors, unit: 'count', goal: '0', command: COMMAND });
      return figures;
    } finally {
      await azurite.close();
    }
  },
};
