// The whole offline stack in one object: Azurite, the local token issuer and the functions host
// running this app (plus the relay emulator and the durable engine where present). `npm start`,
// the e2e tests and the benchmarks all start it the same way.
import path from 'node:path';
import { LocalIssuer } from '../lib/auth/localIssuer';
import { Azurite } from './azurite';
import { FunctionsHost, type HostExtension, type LogSink } from './host/functionsHost';

export const REPO_ROOT = path.resolve(__dirname, '..', '..');

export interface LocalRuntimeOptions {
  /** Port of the functions host (0 = free). */
  port?: number;
  logSink?: LogSink;
  /** Settings for the app beyond the defaults (same names as the Azure app settings). */
  settings?: Record<string, string>;
  /** Extensions for the host (the durable engine), built once the storage is known. */
  extensions?: (ctx: { connectionString: string }) => HostExtension[];
  disableTimers?: boolean;
  appDir?: string;
}

type Status = 'closed' | 'starting' | 'running' | 'closing';

export class LocalRuntime {
  private status: Status = 'closed';
  azurite?: Azurite;
  issuer?: LocalIssuer;
  host?: FunctionsHost;

  constructor(private readonly options: LocalRuntimeOptions = {}) {}

  get apiUrl(): string {
    if (!this.host) throw new Error('The local runtime is not running');
    return this.host.apiUrl;
  }

  /** A token from the local issuer (admin or operator). */
  token(role: 'admin' | 'operator', sub = role === 'admin' ? 'local-admin' : 'local-operator', ttlSeconds = 8 * 3600): Promise<string> {
    if (!this.issuer) throw new Error('The local runtime is not running');
    return this.issuer.mint({ sub, roles: [role], name: sub, ttlSeconds });
  }

  async start(): Promise<this> {
    if (this.status !== 'closed') throw new Error(`Cannot start the local runtime in status ${this.status}`);
    this.status = 'starting';
    try {
      this.azurite = await new Azurite().start();
      this.issuer = await (await LocalIssuer.create()).start();
      const port = this.options.port ?? 0;
      const settings: Record<string, string> = {
        RELAY_BROKER_MODE: 'local',
        AzureWebJobsStorage: this.azurite.connectionString,
        AUTH_MODE: 'local',
        AUTH_ISSUER: this.issuer.issuer,
        AUTH_AUDIENCE: this.issuer.audience,
        AUTH_JWKS_URL: this.issuer.jwksUrl,
        ...this.options.settings,
      };
      // The app reads its settings from the environment, like a function app's app settings.
      for (const [k, v] of Object.entries(settings)) process.env[k] = v;
      this.host = new FunctionsHost({
        appDir: this.options.appDir ?? REPO_ROOT,
        port,
        logSink: this.options.logSink,
        disableTimers: this.options.disableTimers,
        extensions: this.options.extensions?.({ connectionString: this.azurite.connectionString }) ?? [],
      });
      // With no PUBLIC_API_URL the app derives it from WEBSITE_HOSTNAME, which the host sets once it listens.
      await this.host.start();
      this.status = 'running';
      return this;
    } catch (err) {
      this.status = 'running';
      await this.close();
      throw err;
    }
  }

  async close(): Promise<void> {
    if (this.status !== 'running') return;
    this.status = 'closing';
    await this.host?.close();
    await this.issuer?.close();
    await this.azurite?.close();
    this.host = undefined;
    this.issuer = undefined;
    this.azurite = undefined;
    this.status = 'closed';
  }
}
