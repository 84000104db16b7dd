// The recycle path's stack without a host, shared by the benchmarks that drive it directly
// (recycleBurst.ts, reliability/end.ts): Azurite, the relay emulator, the namespace and session
// stores on fresh tables, RelayManager over the emulator's ARM, and PoolMaintenance and
// SessionService built on them as functions/shared/services.ts builds them.
import { randomBytes } from 'node:crypto';
import { TableClient } from '@azure/data-tables';
import { QueueServiceClient } from '@azure/storage-queue';
import { startAzurite, type Azurite } from '../local/azurite';
import { RelayEmulator, type RelayEmulatorOptions } from '../local/relay-emulator';
import type { Config } from '../lib/config';
import { DeviceNotifier } from '../lib/devices/deviceNotifier';
import { NamespaceStore } from '../lib/pool/namespaceStore';
import { PoolMaintenance, type PoolMaintenanceOptions } from '../lib/pool/poolMaintenance';
import { PoolRunStore } from '../lib/pool/poolRunStore';
import { createRelayApiFactory, RelayManager, type RelayManagerOptions } from '../lib/relay/relayManager';
import { Sealer } from '../lib/sealing';
import { SessionRelay } from '../lib/sessions/sessionRelay';
import { SessionService } from '../lib/sessions/sessionService';
import { SessionStore } from '../lib/sessions/sessionStore';

export interface PoolHarnessOptions {
  /** The pool's name and its tables' prefix (letters only). */
  name: string;
  emulator?: RelayEmulatorOptions;
  /** RelayManager's options (its ARM client points at the emulator), lroPollIntervalMs also for the client. */
  manager?: Omit<RelayManagerOptions, 'apiFactory'>;
  /** The pool; what is left out takes the product's defaults. */
  pool: Pick<Config['pool'], 'subscriptions' | 'namespacePrefix' | 'floor' | 'cap'> & Partial<Config['pool']>;
  /** PoolMaintenance's tuning (the stores, relay, sealer and pool are the harness's). */
  maintenance?: Omit<PoolMaintenanceOptions, 'namespaces' | 'runs' | 'relay' | 'sealer' | 'pool'>;
}

export interface PoolHarness {
  azurite: Azurite;
  emulator: RelayEmulator;
  sealer: Sealer;
  namespaces: NamespaceStore;
  sessions: SessionStore;
  manager: RelayManager;
  maintenance: PoolMaintenance;
  service: SessionService;
  close(): Promise<void>;
}

export async function startPoolHarness(o: PoolHarnessOptions): Promise<PoolHarness> {
  const azurite = await startAzurite();
  let emulator: RelayEmulator | undefined;
  try {
    emulator = await new RelayEmulator(o.emulator ?? {}).start();
    const sealer = new Sealer(randomBytes(32));
    const suffix = Date.now().toString(36);
    const table = (n: string) =>
      TableClient.fromConnectionString(azurite.connectionString, `${o.name}${n}${suffix}`, {
        allowInsecureConnection: true,
      });
    const namespaces = new NamespaceStore(table('ns'), o.name);
    await namespaces.ensureTable();
    const sessions = new SessionStore(table('sess'));
    await sessions.ensureTable();
    const manager = new RelayManager({
      ...o.manager,
      apiFactory: createRelayApiFactory({
        endpoint: emulator.armEndpoint,
        caPem: emulator.caCertPem,
        ...(o.manager?.lroPollIntervalMs !== undefined ? { lroPollIntervalMs: o.manager.lroPollIntervalMs } : {}),
      }),
    });
    const maintenance = new PoolMaintenance({
      nameSalt: `${o.name}${suffix}`,
      ...o.maintenance,
      namespaces,
      runs: new PoolRunStore(table('ns'), o.name),
      relay: manager,
      sealer,
      pool: {
        name: o.name,
        headroom: 1,
        createSeconds: 45,
        stuckMinutes: 30,
        maxRecycleFailures: 3,
        shrinkIdleMinutes: 30,
        nameReuseHours: 24,
        ...o.pool,
      },
    });
    const service = new SessionService({
      namespaces,
      sessions,
      notifier: new DeviceNotifier(QueueServiceClient.fromConnectionString(azurite.connectionString)),
      relay: new SessionRelay(manager, sealer),
      sealer,
      publicApiUrl: 'http://localhost',
    });
    const started = emulator;
    return {
      azurite,
      emulator: started,
      sealer,
      namespaces,
      sessions,
      manager,
      maintenance,
      service,
      close: async () => {
        await started.close();
        await azurite.close();
      },
    };
  } catch (err) {
    await emulator?.close();
    await azurite.close();
    throw err;
  }
}
