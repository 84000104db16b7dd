// The composition root: builds lib/ services from the configuration with the right Azure clients
// (a connection string locally, the managed identity in Azure). Everything is created once per
// process, on first use, so a cold start pays only for what the first request needs.
import { DefaultAzureCredential, type TokenCredential } from '@azure/identity';
import { TableClient } from '@azure/data-tables';
import { QueueServiceClient, StorageSharedKeyCredential } from '@azure/storage-queue';
import fs from 'node:fs';
import { AuditLog } from '../../lib/audit/auditLog';
import { CostLedger } from '../../lib/audit/costLedger';
import { auditSessionEnds } from '../../lib/audit/sessionAudit';
import { Authenticator, authenticatorFromConfig } from '../../lib/auth/authenticator';
import { GrantStore } from '../../lib/auth/grantStore';
import { RateLimiter } from '../../lib/auth/rateLimiter';
import { getConfig, type Config } from '../../lib/config';
import { DeviceNotifier } from '../../lib/devices/deviceNotifier';
import { DevicePresence } from '../../lib/devices/devicePresence';
import { DeviceRegistry } from '../../lib/devices/deviceRegistry';
import { DeviceStore } from '../../lib/devices/deviceStore';
import { NamespaceStore } from '../../lib/pool/namespaceStore';
import { PoolMaintenance } from '../../lib/pool/poolMaintenance';
import { PoolRunStore } from '../../lib/pool/poolRunStore';
import { createRelayApiFactory, RelayManager } from '../../lib/relay/relayManager';
import { Sealer } from '../../lib/sealing';
import type { SessionOrchestrations } from '../../lib/sessions/orchestrations';
import { SessionControl } from '../../lib/sessions/sessionControl';
import { OpenAdmission } from '../../lib/sessions/openAdmission';
import { SessionOpener } from '../../lib/sessions/sessionOpener';
import { SessionReadyWatcher } from '../../lib/sessions/sessionReadyWatcher';
import { SessionRelay } from '../../lib/sessions/sessionRelay';
import { SessionService } from '../../lib/sessions/sessionService';
import { SessionStore } from '../../lib/sessions/sessionStore';

export const TABLES = {
  devices: 'devices',
  sessions: 'sessions',
  namespaces: 'namespaces',
  grants: 'grants',
  audit: 'audit',
  costs: 'costs',
} as const;

export interface Services {
  config: Config;
  authenticator: Authenticator;
  table(name: string): TableClient;
  queueService: QueueServiceClient;
  devices: DeviceRegistry;
  devicePresence: DevicePresence;
  deviceStore: DeviceStore;
  grants: GrantStore;
  rateLimiter: RateLimiter;
  sealer: Sealer;
  namespaces: NamespaceStore;
  sessionStore: SessionStore;
  /** The append-only audit table (admin actions, finished sessions). */
  audit: AuditLog;
  /** Finished sessions' costs by month (GET /pool's month-to-date). */
  costs: CostLedger;
  relayManager: RelayManager;
  sessionService: SessionService;
  /** The session requests (open; read, list, end, ready, device removal) over an orchestration port. */
  sessionOpener(orchestrations: SessionOrchestrations): SessionOpener;
  sessionControl(orchestrations: SessionOrchestrations): SessionControl;
  /** The process's one watcher of waiting opens; the device's ready call nudges it. */
  readyWatcher: SessionReadyWatcher;
  /** The pool maintenance steps (timer + orchestration) and GET /pool. */
  poolMaintenance: PoolMaintenance;
  /** Resolves once every table exists (idempotent; runs once per process). */
  ready(): Promise<void>;
}

let services: Services | undefined;

export function getServices(): Services {
  services ??= createServices(getConfig());
  return services;
}

/** For tests that load the app with a different environment in the same process. */
export function resetServices(): void {
  services = undefined;
}

function createServices(config: Config): Services {
  const { storage } = config;
  let credential: TokenCredential | undefined;
  const azureCredential = () => (credential ??= new DefaultAzureCredential());
  const tableClients = new Map<string, TableClient>();
  const table = (name: string): TableClient => {
    let c = tableClients.get(name);
    if (!c) {
      c = storage.connectionString
        ? TableClient.fromConnectionString(storage.connectionString, name, {
            allowInsecureConnection: storage.tableEndpoint.startsWith('http:'),
          })
        : new TableClient(storage.tableEndpoint, name, azureCredential());
      tableClients.set(name, c);
    }
    return c;
  };
  // The device queue account's key: it signs device SAS (DEVICE_QUEUE_ACCOUNT_NAME, its own account in Azure).
  const signer = new StorageSharedKeyCredential(storage.queueAccountName, storage.accountKey!);
  // Queue ACLs (the device SAS policies) are managed with the account key: the key signs the SAS anyway.
  const queueService = storage.connectionString
    ? QueueServiceClient.fromConnectionString(storage.connectionString)
    : new QueueServiceClient(storage.queueEndpoint, signer);
  const deviceStore = new DeviceStore(table(TABLES.devices));
  const devices = new DeviceRegistry({
    store: deviceStore,
    queueService,
    signer,
    apiUrl: config.publicApiUrl,
    enrollmentSeconds: config.devices.enrollmentSeconds,
    offlineAfterMs: config.devices.offlineAfterSeconds * 1000,
  });
  const sealer = new Sealer(config.sealingKey);
  const namespaces = new NamespaceStore(table(TABLES.namespaces), config.pool.name);
  const audit = new AuditLog(table(TABLES.audit));
  const costs = new CostLedger(table(TABLES.costs), config.cost);
  const writeAudit = auditSessionEnds(audit, config.cost);
  const sessionStore = new SessionStore(table(TABLES.sessions), {
    onEnded: async (r) => {
      await writeAudit(r);
      await costs.record(r);
    },
  });
  const devicePresence = new DevicePresence({
    store: deviceStore,
    registry: devices,
    sessions: sessionStore,
    seenWriteMs: config.devices.seenWriteSeconds * 1000,
  });
  const apiFactory = createRelayApiFactory({
    endpoint: config.relay.armEndpoint,
    caPem: config.relay.armCaFile ? fs.readFileSync(config.relay.armCaFile, 'utf8') : undefined,
    ...(config.mode === 'azure' ? { credential: azureCredential() } : {}),
  });
  const relayManager = new RelayManager({ apiFactory });
  const sessionService = new SessionService({
    namespaces,
    sessions: sessionStore,
    notifier: new DeviceNotifier(queueService),
    relay: new SessionRelay(relayManager, sealer),
    sealer,
    publicApiUrl: config.publicApiUrl,
  });
  const poolMaintenance = new PoolMaintenance({
    namespaces,
    runs: new PoolRunStore(table(TABLES.namespaces), config.pool.name),
    // Its own manager: an activation that takes 4× the expected creation time (at most 4 min) is
    // given up (and the namespace deleted) within one activity's time limit.
    relay: new RelayManager({
      apiFactory,
      activationTimeoutMs: Math.min(240_000, Math.max(60_000, config.pool.createSeconds * 4_000)),
      // Azure answers the PUT with no Retry-After and takes ~20-45 s: the first GET waits half the
      // expected time instead of spending ARM's read budget (lib/pool/provisionPacing.ts). The
      // local emulator runs a faster clock: it is polled from the start.
      ...(config.mode === 'azure' ? { firstActivationPollMs: config.pool.createSeconds * 500 } : {}),
    }),
    sealer,
    pool: config.pool,
    // Names are global DNS labels: the storage account tells deployments apart.
    nameSalt: config.storage.accountName.replace(/[^a-z0-9]/g, '').slice(0, 6),
  });
  const grants = new GrantStore(table(TABLES.grants));
  const rateLimiter = new RateLimiter({ perMinute: config.sessions.rateLimitPerMinute });
  // One watcher for every open this process holds: nudged by ready calls that land here, one list
  // read per second for those that land elsewhere; never one poll per open.
  const readyWatcher = new SessionReadyWatcher();
  const openAdmission = new OpenAdmission({ concurrency: config.sessions.openConcurrency });
  let readyPromise: Promise<void> | undefined;
  const ready = () =>
    (readyPromise ??= Promise.all(Object.values(TABLES).map((t) => table(t).createTable())).then(
      () => undefined,
      (err: unknown) => {
        readyPromise = undefined; // let the next request try again
        throw err;
      },
    ));
  return {
    config,
    authenticator: authenticatorFromConfig(config.auth),
    table,
    queueService,
    devices,
    devicePresence,
    deviceStore,
    grants,
    rateLimiter,
    sealer,
    namespaces,
    sessionStore,
    audit,
    costs,
    relayManager,
    sessionService,
    sessionOpener: (orchestrations) =>
      new SessionOpener({
        watcher: readyWatcher,
        admission: openAdmission,
        service: sessionService,
        sessions: sessionStore,
        orchestrations,
        grants,
        devices,
        rateLimiter,
        sealer,
        limits: config.sessions,
        poolGrowth: () => poolMaintenance.growth(),
      }),
    sessionControl: (orchestrations) =>
      new SessionControl({
        sessions: sessionStore,
        orchestrations,
        devices,
        sealer,
        audit,
        liveness: { clientGoneSeconds: config.sessions.clientGoneSeconds, idleMinutes: config.sessions.idleMinutes },
        prices: config.cost,
      }),
    poolMaintenance,
    readyWatcher,
    ready,
  };
}
