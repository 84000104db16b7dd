// The whole offline stack in one object: Azurite, the local token issuer, the relay emulator and
// the functions host running this app with the durable engine. `npm start`, the e2e tests and the
// benchmarks all start it the same way.
import { ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './freePort';
import { TableClient } from '@azure/data-tables';
import { LocalIssuer, localIssuerFile } from '../lib/auth/localIssuer';
import { loadConfig, type LocalNetwork } from '../lib/config';
import { NamespaceStore } from '../lib/pool/namespaceStore';
import { PoolMaintenance } from '../lib/pool/poolMaintenance';
import { PoolRunStore } from '../lib/pool/poolRunStore';
import { Sealer } from '../lib/sealing';
import { createRelayApiFactory, RelayManager } from '../lib/relay/relayManager';
import { Azurite } from './azurite';
import { Lifecycle } from './lifecycle';
import { loadOrCreateSealingKey, readSystemKey, SYSTEM_KEY_FILE, writeSystemKey } from './stateKeys';
import { createDurableExtension, type DurableExtension } from './durable';
import { FunctionsHost, type HostExtension, type LogSink } from './host/functionsHost';
import { FileRelayStore, loadOrCreateTlsIdentity, RelayEmulator, type RelayEmulatorOptions } from './relay-emulator';

/** Files of a persistent state folder besides local.json, the keys and the issuer. */
export const AZURITE_DIR = 'azurite';
export const RELAY_STORE_FILE = 'relay-store.json';

export const REPO_ROOT = path.resolve(__dirname, '..', '..');

/** What a host child reports (HOST_STATS_EVERY_MS): totals since it started. */
export interface HostStats {
  storageRequests: number;
  cpuMs: number;
}

/** What `npm start` leaves for the CLI (`relay-broker` reads it in local mode). */
export interface LocalState {
  apiUrl: string;
  issuerDir: string;
  relayCaFile: string;
  /** The file holding the host's system key (required on /admin/* and the durable webhooks). */
  systemKeyFile: string;
  pid: number;
}

export interface LocalRuntimeOptions {
  /** Port of the functions host (0 = free). */
  port?: number;
  logSink?: LogSink;
  /** Settings for the app beyond the defaults (same names as the Azure app settings). */
  settings?: Record<string, string>;
  /** Extra host extensions. */
  extensions?: (ctx: { connectionString: string }) => HostExtension[];
  /** Start the durable engine (default true). */
  durable?: boolean;
  /** Start the relay emulator (default true). */
  relay?: boolean;
  relayOptions?: RelayEmulatorOptions;
  /** Namespaces to prepare before the host starts (tests and benchmarks; maintenance does it otherwise). */
  prefillNamespaces?: number;
  disableTimers?: boolean;
  appDir?: string;
  /** Where the issuer key and the emulator CA go (default: a fresh temp folder). */
  stateDir?: string;
  /**
   * Run the functions host in a child process (`local/hostProcess.js`) instead of in this one,
   * so tests can kill it (restartHost) while Azurite and the emulator keep their state.
   */
  hostProcess?: boolean;
  /** With hostProcess: the child reports its storage requests and CPU time this often (see hostStats). */
  hostStatsEveryMs?: number;
  /** With hostProcess: node flags for the child (e.g. `--cpu-prof` from a benchmark). */
  hostNodeArgs?: string[];
  /**
   * Keep everything in `stateDir` across runs (`npm start`): Azurite's data, the emulator's store and
   * TLS identity, the issuer's keys and the host's system key; a second start on the same folder
   * serves the same devices, enrollments and namespaces. Default false: a fresh stack each run.
   */
  persistent?: boolean;
  /**
   * Where to listen and what to advertise (RELAY_BROKER_BIND, RELAY_BROKER_PUBLIC_HOST, PORT,
   * RELAY_BROKER_RELAY_PORTS). Default: loopback, free ports.
   */
  network?: LocalNetwork;
}

export class LocalRuntime {
  private readonly lifecycle = new Lifecycle('the local runtime');
  azurite?: Azurite;
  issuer?: LocalIssuer;
  relay?: RelayEmulator;
  host?: FunctionsHost;
  durable?: DurableExtension;
  stateDir = '';
  private ownsStateDir = false;
  /** The host's system key for this run: callers of /admin/* and the durable webhooks present it. */
  systemKey = '';
  systemKeyFile = '';

  constructor(private readonly options: LocalRuntimeOptions = {}) {}

  get apiUrl(): string {
    if (this.options.network) return this.settings.PUBLIC_API_URL;
    if (this.child || this.childPort) return `http://127.0.0.1:${this.childPort}/api`;
    if (!this.host) throw new Error('The local runtime is not running');
    return this.host.apiUrl;
  }

  /** The host's origin (http://127.0.0.1:<port>). */
  get baseUrl(): string {
    return this.apiUrl.replace(/\/api$/, '');
  }

  private child?: ChildProcess;
  private childPort = 0;
  private childStats?: HostStats;

  /** The host child's pid (hostProcess), for /proc readings. */
  get hostPid(): number | undefined {
    return this.child?.pid;
  }

  /** The host child's latest report (hostProcess with hostStatsEveryMs), undefined before the first. */
  get hostStats(): HostStats | undefined {
    return this.childStats;
  }

  get relayCaFile(): string {
    return path.join(this.stateDir, 'relay-ca.pem');
  }

  /** A token from the local issuer (admin or operator). */
  token(
    role: 'admin' | 'operator',
    sub = role === 'admin' ? 'local-admin' : 'local-operator',
    ttlSeconds = 8 * 3600,
  ): Promise<string> {
    if (!this.issuer) throw new Error('The local runtime is not running');
    return this.issuer.mint({ sub, roles: [role], name: sub, ttlSeconds });
  }

  /** The settings the app runs with (as app settings would be in Azure). */
  settings: Record<string, string> = {};

  async start(): Promise<this> {
    await this.lifecycle.start(
      () => this.boot(),
      () => this.shutdown(),
    );
    return this;
  }

  private async boot(): Promise<void> {
    this.stateDir = this.options.stateDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'relay-broker-'));
    this.ownsStateDir = !this.options.stateDir;
    fs.mkdirSync(this.stateDir, { recursive: true, mode: 0o700 });
    const persistent = this.options.persistent ?? false;
    const network = this.options.network;
    const keptSystemKey = path.join(this.stateDir, SYSTEM_KEY_FILE);
    const systemKey =
      persistent && fs.existsSync(keptSystemKey)
        ? { key: readSystemKey(keptSystemKey), file: keptSystemKey }
        : writeSystemKey(this.stateDir);
    this.systemKey = systemKey.key;
    this.systemKeyFile = systemKey.file;
    const sealingKey = loadOrCreateSealingKey(this.stateDir);
    this.azurite = await new Azurite({
      ...(persistent ? { location: path.join(this.stateDir, AZURITE_DIR) } : {}),
      ...(network ? { queueBind: network.bind, publicHost: network.publicHost, queuePort: network.queuePort } : {}),
    }).start();
    const issuerDir = path.join(this.stateDir, 'issuer');
    // The same signing key after a restart: tokens minted before it (`local token`) stay valid.
    const issuer =
      persistent && fs.existsSync(localIssuerFile(issuerDir))
        ? await LocalIssuer.load(issuerDir)
        : await LocalIssuer.create();
    this.issuer = await issuer.start();
    await this.issuer.save(issuerDir);
    const settings: Record<string, string> = {
      RELAY_BROKER_MODE: 'local',
      AzureWebJobsStorage: this.azurite.connectionString,
      AUTH_MODE: 'local',
      SEALING_KEY: sealingKey.toString('base64'),
      AUTH_ISSUER: this.issuer.issuer,
      AUTH_AUDIENCE: this.issuer.audience,
      AUTH_JWKS_URL: this.issuer.jwksUrl,
    };
    if (this.options.relay !== false) {
      const kept = persistent
        ? {
            store: new FileRelayStore(path.join(this.stateDir, RELAY_STORE_FILE)),
            tls: await this.keptTlsIdentity(network?.publicHost),
          }
        : {};
      this.relay = await new RelayEmulator({
        ...kept,
        ...(network
          ? { publicHost: network.publicHost, dataPlaneBind: network.bind, dataPlanePorts: network.relayPorts }
          : {}),
        // Azure's behaviour at 1/20 of its durations: a namespace activates in 2.2 s instead of 44 s.
        timeScale: 0.05,
        ...this.options.relayOptions,
      }).start();
      fs.writeFileSync(this.relayCaFile, this.relay.caCertPem, { mode: 0o600 });
      settings.RELAY_ARM_ENDPOINT = this.relay.armEndpoint;
      settings.RELAY_ARM_CA_FILE = this.relayCaFile;
    }
    if (network) settings.PUBLIC_API_URL = `http://${hostForUrl(network.publicHost)}:${network.apiPort}/api`;
    Object.assign(settings, this.options.settings);
    this.settings = settings;
    // The app reads its settings from the environment, like a function app's app settings.
    for (const [k, v] of Object.entries(settings)) process.env[k] = v;
    if (this.options.prefillNamespaces) await this.prefill(this.options.prefillNamespaces);
    if (this.options.hostProcess) {
      this.childPort = this.options.port || (await freePort());
      await this.spawnHost();
      return;
    }
    const extensions: HostExtension[] = [];
    if (this.options.durable !== false) {
      this.durable = createDurableExtension({ connectionString: this.azurite.connectionString });
      extensions.push(this.durable);
    }
    extensions.push(...(this.options.extensions?.({ connectionString: this.azurite.connectionString }) ?? []));
    this.host = new FunctionsHost({
      appDir: this.options.appDir ?? REPO_ROOT,
      port: network?.apiPort ?? this.options.port ?? 0,
      listenHost: network?.bind,
      logSink: this.options.logSink,
      disableTimers: this.options.disableTimers,
      systemKey: this.systemKey,
      extensions,
    });
    // With no PUBLIC_API_URL the app derives it from WEBSITE_HOSTNAME, which the host sets once it listens.
    await this.host.start();
  }

  /** The emulator's kept certificate; says so when it had to be replaced (devices need the new CA). */
  private async keptTlsIdentity(publicHost: string | undefined) {
    const { identity, replaced } = await loadOrCreateTlsIdentity(this.stateDir, publicHost ? [publicHost] : []);
    if (replaced)
      this.options.logSink?.({
        time: new Date(),
        level: 'warning',
        category: 'user',
        message: `the relay emulator's certificate was replaced (${replaced}); give devices the new ${this.relayCaFile}`,
      });
    return identity;
  }

  private async spawnHost(): Promise<void> {
    const entry = path.join(REPO_ROOT, 'dist', 'local', 'hostProcess.js');
    const child = spawn(process.execPath, [...(this.options.hostNodeArgs ?? []), entry], {
      env: {
        ...process.env,
        ...this.settings,
        PORT: String(this.childPort),
        HOST_SYSTEM_KEY_FILE: this.systemKeyFile,
        APP_DIR: this.options.appDir ?? REPO_ROOT,
        WEBSITE_HOSTNAME: `127.0.0.1:${this.childPort}`,
        ...(this.options.disableTimers ? { HOST_DISABLE_TIMERS: '1' } : {}),
        ...(this.options.hostStatsEveryMs ? { HOST_STATS_EVERY_MS: String(this.options.hostStatsEveryMs) } : {}),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    const reap = () => child.kill('SIGKILL');
    process.once('exit', reap);
    child.once('exit', () => process.removeListener('exit', reap));
    const sink = this.options.logSink;
    let errText = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      errText = (errText + chunk).slice(-4000);
      if (sink)
        for (const line of chunk.split('\n').filter(Boolean))
          sink({ time: new Date(), level: 'information', category: 'host', message: line });
    });
    await new Promise<void>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(
        () => reject(new Error(`the host process did not start within 60 s:\n${errText}`)),
        60_000,
      );
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
        out += chunk;
        const lines = out.split('\n');
        out = lines.pop() ?? '';
        for (const line of lines) {
          if (line.includes('"ready":true')) {
            clearTimeout(timer);
            resolve();
          } else if (line.startsWith('{"stats":')) this.childStats = (JSON.parse(line) as { stats: HostStats }).stats;
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`the host process exited with ${code} while starting:\n${errText}`));
      });
    });
    child.removeAllListeners('exit');
  }

  /** Kills the host process (SIGKILL by default) and starts it again on the same port and storage. */
  async restartHost(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (!this.child) throw new Error('restartHost needs hostProcess: true');
    await this.stopChild(signal);
    await this.spawnHost();
  }

  private async stopChild(signal: NodeJS.Signals): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }

  /** What the CLI needs to find this runtime (written by `npm start`). */
  localState(): LocalState {
    return {
      apiUrl: this.apiUrl,
      issuerDir: path.join(this.stateDir, 'issuer'),
      relayCaFile: this.relayCaFile,
      systemKeyFile: this.systemKeyFile,
      pid: process.pid,
    };
  }

  /**
   * Prepares `count` namespaces in the emulator and makes them available through the product's own
   * provisioning path (PoolMaintenance.provision: row `creating` → prepareNamespace tagged with the
   * pool → keys sealed → `available`), with the app's own settings, so tests and benchmarks start
   * with a warm pool that maintenance and reconcile recognise as theirs.
   */
  async prefill(count: number, concurrency = 16): Promise<string[]> {
    if (!this.relay || !this.azurite) throw new Error('prefill needs the relay emulator and Azurite');
    // The settings this runtime gave the app (start() put them in the environment).
    const config = loadConfig(process.env);
    const table = TableClient.fromConnectionString(this.azurite.connectionString, 'namespaces', {
      allowInsecureConnection: true,
    });
    const store = new NamespaceStore(table, config.pool.name);
    await store.ensureTable();
    const maintenance = new PoolMaintenance({
      namespaces: store,
      runs: new PoolRunStore(table, config.pool.name),
      relay: new RelayManager({
        apiFactory: createRelayApiFactory({ endpoint: this.relay.armEndpoint, caPem: this.relay.caCertPem }),
      }),
      sealer: new Sealer(config.sealingKey),
      pool: config.pool,
    });
    const [sub] = config.pool.subscriptions;
    const stamp = Date.now().toString(36);
    const names = Array.from({ length: count }, (_, i) => `rbk-seed-${stamp}-${i}`);
    let next = 0;
    const worker = async () => {
      while (next < names.length) {
        const name = names[next++];
        const outcome = await maintenance.provision({
          name,
          subscriptionId: sub.subscriptionId,
          resourceGroup: sub.resourceGroup,
          location: sub.location,
        });
        if (outcome.result !== 'available')
          throw new Error(`prefill of ${name}: ${outcome.result}${outcome.error ? ` (${outcome.error})` : ''}`);
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
    return names;
  }

  close(): Promise<void> {
    return this.lifecycle.close(() => this.shutdown());
  }

  private async shutdown(): Promise<void> {
    await this.stopChild('SIGTERM');
    await this.host?.close();
    await this.relay?.close();
    await this.issuer?.close();
    await this.azurite?.close();
    if (this.ownsStateDir && this.stateDir) fs.rmSync(this.stateDir, { recursive: true, force: true });
    this.host = undefined;
    this.childPort = 0;
    this.relay = undefined;
    this.issuer = undefined;
    this.azurite = undefined;
  }
}

/** An IPv6 address goes in brackets in a URL. */
export function hostForUrl(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}
