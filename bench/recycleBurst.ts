// The recycle burst: N sessions, opened together with the same lifetime, end within one minute.
// Real parts: Azurite, the relay emulator under its default (Azure's) ARM limits — write and delete
// buckets, conflicting-operation 429s — optionally time-scaled, the pool provisioned by the
// maintenance runs' own steps (paced), and each end run as the session orchestrator runs it:
// SessionService.endRelay until `deleted` (the hybrid connection delete, the only ARM write on the
// critical path), then prepareNext. Then what must hold: every old hybrid connection gone in ARM,
// every namespace available again a generation on, no lease left, no old token accepted.
// Used by test/integration/pool/recycleBurst.test.ts and `npm run bench -- recycleburst`.
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { RelayEmulatorOptions } from '../local/relay-emulator';
import { RelayArmUnavailableError, RelayHandshakeError } from '../lib/errors';
import { openNamespaceKeys } from '../lib/pool/sealedKeys';
import { connectHybridConnection } from '../lib/relay/hybridConnection';
import { createSasToken, relayAudience } from '../lib/relay/sas';
import { runMaintenance } from '../test/support/poolMaintenanceDriver';
import { startPoolHarness } from './poolHarness';

export interface BurstOptions {
  sessions: number;
  subscriptions: number;
  /** The emulator's ARM clock (1: real scale); the product's own waits are scaled alike. */
  timeScale: number;
  /** Namespace creation in the set-up (not measured): default 44 s × timeScale. */
  createDelayMs?: number;
  /** The ends are spread evenly over this long (real-scale seconds; default 60). */
  spreadSeconds?: number;
  /** Old send tokens tried against the relay after the burst (default 3). */
  tokenChecks?: number;
  /**
   * More namespaces per subscription than Azure's defaults allow in one set-up (quota 100, ~50
   * namespace writes per window): for the one-subscription worst case. A recycle writes no
   * namespace, so the limit lifted takes no part in what is measured.
   */
  perSubscriptionSetup?: Pick<RelayEmulatorOptions, 'quotaPerSubscription' | 'throttling'>;
  /** Creations in flight per subscription in the set-up (default the product's, 20). */
  setupPerSubscription?: number;
  log: (line: string) => void;
}

export interface BurstResult {
  sessions: number;
  /** First end started → last hybrid connection deleted, wall ms (at the emulator's time scale). */
  lastDeleteMs: number;
  /** First end started → last namespace available again, wall ms. */
  lastRecycledMs: number;
  /** endRelay / prepareNext calls that threw (each retried, as the orchestrator does). */
  deleteRetries: number;
  prepareRetries: number;
  /** Maintenance runs it took to recycle what the sessions' own retries left `recycling`. */
  maintenanceRuns: number;
  /** Sessions whose delete never succeeded within the rounds (must be 0). */
  notDeleted: number;
  /** 429s ARM answered during the burst (every one handled: retried). */
  throttled: number;
  conflicts: number;
  writes: number;
  /** Namespaces whose ARM state differs from their row after the burst (an old hybrid connection left, a rule missing). */
  drifted: string[];
  /** Rows not `available` one generation on, and sessions still holding a lease. */
  notRecycled: string[];
  leasesLeft: number;
  /** Old send tokens the relay still accepted. */
  tokensAccepted: number;
}

const END_ROUNDS = 10;
const PREPARE_ROUNDS = 4;

export async function runRecycleBurst(o: BurstOptions): Promise<BurstResult> {
  const scale = o.timeScale;
  const h = await startPoolHarness({
    name: 'burst',
    emulator: {
      timeScale: scale,
      ...(o.createDelayMs !== undefined ? { createDelayMs: o.createDelayMs } : {}),
      ...(o.perSubscriptionSetup ?? {}),
    },
    manager: {
      lroPollIntervalMs: 2000 * scale,
      firstActivationPollMs: 22_000 * scale,
      retry: { initialDelayMs: 500 * scale, maxDelayMs: 20_000 * scale, maxRetryAfterMs: 60_000 * scale },
    },
    pool: {
      subscriptions: Array.from({ length: o.subscriptions }, (_, i) => ({
        subscriptionId: `00000000-0000-0000-bbbb-${String(i + 1).padStart(12, '0')}`,
        resourceGroup: 'relay-pool',
        location: 'westeurope',
        quota: o.perSubscriptionSetup?.quotaPerSubscription ?? 100,
      })),
      namespacePrefix: 'rbb',
      floor: o.sessions,
      cap: o.sessions,
    },
    maintenance: {
      maxDriftChecks: 0,
      // The product's 60 s before a failed recycle is retried, on the emulator's clock.
      retryBackoffSeconds: 60 * scale,
      ...(o.setupPerSubscription ? { provisionPerSubscription: o.setupPerSubscription } : {}),
    },
  });
  const { emulator, sealer, namespaces, manager, maintenance, service } = h;
  try {
    let t = performance.now();
    for (let run = 0; run < 50; run++) {
      await runMaintenance(maintenance, () => new Date(), { reconcile: false });
      if ((await namespaces.list({ states: ['available'] })).length >= o.sessions) break;
      await new Promise((r) => setTimeout(r, 60_000 * scale));
    }
    const ready = await namespaces.list({ states: ['available'] });
    if (ready.length < o.sessions)
      throw new Error(`set-up: only ${ready.length} of ${o.sessions} namespaces available`);
    o.log(
      `set-up: ${o.sessions} namespaces over ${o.subscriptions} subscriptions in ${((performance.now() - t) / 1000).toFixed(1)} s`,
    );

    const leased: Array<{
      sessionId: string;
      namespace: string;
      generation: number;
      sendToken: string;
      endpoint: string;
      hc: string;
    }> = [];
    const expiresAt = new Date(Date.now() + 3_600_000);
    for (let i = 0; i < o.sessions; i += 20) {
      await Promise.all(
        Array.from({ length: Math.min(20, o.sessions - i) }, async () => {
          const sessionId = randomUUID();
          const ns = await namespaces.lease(sessionId, { leaseExpiresAt: expiresAt });
          const keys = openNamespaceKeys(sealer, ns)!;
          const sendToken = createSasToken({
            resourceUri: relayAudience(ns.endpoint!, ns.hybridConnection!),
            ...keys.send,
            expiresAt,
          });
          leased.push({
            sessionId,
            namespace: ns.name,
            generation: ns.generation,
            sendToken,
            endpoint: ns.endpoint!,
            hc: ns.hybridConnection!,
          });
        }),
      );
    }

    emulator.resetStats();
    const spreadMs = (o.spreadSeconds ?? 60) * 1000 * scale;
    let deleteRetries = 0;
    let prepareRetries = 0;
    let notDeleted = 0;
    let lastDelete = 0;
    let lastRecycled = 0;
    t = performance.now();
    await Promise.all(
      leased.map(async (s, i) => {
        await new Promise((r) => setTimeout(r, (i / leased.length) * spreadMs));
        const ref = { sessionId: s.sessionId, namespace: s.namespace, generation: s.generation };
        let deleted = false;
        for (let round = 0; round < END_ROUNDS && !deleted; round++) {
          try {
            deleted = (await service.endRelay(ref)) === 'deleted';
          } catch {
            deleteRetries++;
            await new Promise((r) => setTimeout(r, 2000 * scale * 2 ** round));
          }
        }
        if (!deleted) {
          notDeleted++;
          return;
        }
        lastDelete = Math.max(lastDelete, performance.now() - t);
        for (let round = 0; round < PREPARE_ROUNDS; round++) {
          try {
            await service.prepareNext(ref);
            lastRecycled = Math.max(lastRecycled, performance.now() - t);
            return;
          } catch {
            prepareRetries++;
            await new Promise((r) => setTimeout(r, 2000 * scale * 2 ** round));
          }
        }
      }),
    );
    // What the sessions' own retries left `recycling` (ARM throttled their writes past the retries)
    // maintenance recycles, run after run, as the timer would.
    let maintenanceRuns = 0;
    for (; maintenanceRuns < 30; maintenanceRuns++) {
      const waiting = await namespaces.list({ states: ['recycling', 'leased'] });
      if (waiting.length === 0) break;
      await new Promise((r) => setTimeout(r, 60_000 * scale));
      await runMaintenance(maintenance, () => new Date(), { reconcile: false });
    }
    if (maintenanceRuns > 0) lastRecycled = performance.now() - t;
    const stats = emulator.stats();

    // What must hold after the burst.
    const rows = new Map((await namespaces.list()).map((r) => [r.name, r]));
    const notRecycled: string[] = [];
    const drifted: string[] = [];
    let leasesLeft = 0;
    for (let i = 0; i < leased.length; i += 5) {
      await Promise.all(
        leased.slice(i, i + 5).map(async (s) => {
          const row = rows.get(s.namespace);
          if (!row || row.state !== 'available' || row.generation !== s.generation + 1)
            notRecycled.push(`${s.namespace}: ${row?.state ?? 'gone'} generation ${row?.generation ?? '-'}`);
          if (await namespaces.leaseFor(s.sessionId)) leasesLeft++;
          if (row) {
            // The check's own reads and listKeys draw 429s too when the bucket is dry: asked again.
            const check = async (tries: number): Promise<string[]> => {
              try {
                return await manager.checkDrift(
                  {
                    subscriptionId: row.subscriptionId,
                    resourceGroup: row.resourceGroup,
                    name: row.name,
                    hybridConnection: row.hybridConnection,
                    endpoint: row.endpoint,
                  },
                  openNamespaceKeys(sealer, row),
                );
              } catch (err) {
                if (!(err instanceof RelayArmUnavailableError) || tries <= 1) throw err;
                await new Promise((r) => setTimeout(r, 2000 * scale));
                return check(tries - 1);
              }
            };
            const drift = await check(5);
            if (drift.length > 0) drifted.push(`${row.name}: ${drift.join('; ')}`);
          }
        }),
      );
    }
    let tokensAccepted = 0;
    for (const s of leased.slice(0, o.tokenChecks ?? 3)) {
      try {
        const stream = await connectHybridConnection(s.endpoint, s.hc, s.sendToken, { ca: emulator.caCertPem });
        stream.destroy();
        tokensAccepted++;
      } catch (err) {
        if (!(err instanceof RelayHandshakeError)) throw err;
      }
    }
    return {
      sessions: leased.length,
      lastDeleteMs: lastDelete,
      lastRecycledMs: lastRecycled,
      deleteRetries,
      prepareRetries,
      maintenanceRuns,
      notDeleted,
      throttled: stats.throttled,
      conflicts: stats.conflicts,
      writes: stats.writes,
      drifted,
      notRecycled,
      leasesLeft,
      tokensAccepted,
    };
  } finally {
    await h.close();
  }
}
