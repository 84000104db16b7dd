// The composition root: builds lib/ services from the configuration with the right Azure clients
// (a connection string locally, the managed identity in Azure). Everything is created once per
// process, on first use, so a cold start pays only for what the first request needs.
import { DefaultAzureCredential, type TokenCredential } from '@azure/identity';
import { TableClient } from '@azure/data-tables';
import { QueueServiceClient, StorageSharedKeyCredential } from '@azure/storage-queue';
import { Authenticator, authenticatorFromConfig } from '../../lib/auth/authenticator';
import { getConfig, type Config } from '../../lib/config';
import { DeviceRegistry } from '../../lib/devices/deviceRegistry';
import { DeviceStore } from '../../lib/devices/deviceStore';

export const TABLES = { devices: 'devices', sessions: 'sessions', namespaces: 'namespaces', grants: 'grants' } as const;

export interface Services {
  config: Config;
  authenticator: Authenticator;
  table(name: string): TableClient;
  queueService: QueueServiceClient;
  devices: DeviceRegistry;
  deviceStore: DeviceStore;
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
        ? TableClient.fromConnectionString(storage.connectionString, name, { allowInsecureConnection: storage.tableEndpoint.startsWith('http:') })
        : new TableClient(storage.tableEndpoint, name, azureCredential());
      tableClients.set(name, c);
    }
    return c;
  };
  const queueService = storage.connectionString
    ? QueueServiceClient.fromConnectionString(storage.connectionString)
    : new QueueServiceClient(storage.queueEndpoint, azureCredential());
  const signer = new StorageSharedKeyCredential(storage.accountName, storage.accountKey!);
  const deviceStore = new DeviceStore(table(TABLES.devices));
  const devices = new DeviceRegistry({
    store: deviceStore,
    queueService,
    signer,
    apiUrl: config.publicApiUrl,
    sasDays: config.devices.sasDays,
  });
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
    deviceStore,
    ready,
  };
}
