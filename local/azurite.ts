// Starts Azurite (from npm) on free loopback ports and hands out its connection string. The
// table and queue services run as two child processes (`azurite-table`, `azurite-queue`): they
// are separate endpoints in Azure too, and on a small machine two processes serve the durable
// engine's table writes and the devices' queue polls side by side instead of in turn.
import { ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { freePort } from './freePort';
import { Lifecycle } from './lifecycle';

/** The documented Azurite development account (public, not a secret). */
export const DEV_ACCOUNT_NAME = 'devstoreaccount1';
export const DEV_ACCOUNT_KEY =
  'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

export interface AzuriteOptions {
  /** A folder for persistent data; in memory when absent. */
  location?: string;
  /** Give up starting after this long. */
  startTimeoutMs?: number;
  /** Forward Azurite's output (debugging). */
  verbose?: boolean;
  /** Where the queue service listens (default 127.0.0.1; `0.0.0.0` lets devices on other machines poll). The table service stays on loopback. */
  queueBind?: string;
  /** The host name the queue endpoint names in the connection string, hence in enrollments (default 127.0.0.1). */
  publicHost?: string;
  /** Fixed ports (default: free ones). `npm start` fixes the queue's, which enrollments name. */
  queuePort?: number;
  tablePort?: number;
}

type Service = 'queue' | 'table';

export class Azurite {
  private readonly lifecycle = new Lifecycle('Azurite');
  private readonly children: ChildProcess[] = [];
  queuePort = 0;
  tablePort = 0;

  constructor(private readonly options: AzuriteOptions = {}) {}

  get queueEndpoint(): string {
    return `http://${this.options.publicHost ?? '127.0.0.1'}:${this.queuePort}/${DEV_ACCOUNT_NAME}`;
  }
  get tableEndpoint(): string {
    return `http://127.0.0.1:${this.tablePort}/${DEV_ACCOUNT_NAME}`;
  }
  get connectionString(): string {
    return (
      `DefaultEndpointsProtocol=http;AccountName=${DEV_ACCOUNT_NAME};AccountKey=${DEV_ACCOUNT_KEY};` +
      `QueueEndpoint=${this.queueEndpoint};TableEndpoint=${this.tableEndpoint};`
    );
  }

  async start(): Promise<this> {
    await this.lifecycle.start(
      async () => {
        const [table, queue] = await Promise.all([this.startService('table'), this.startService('queue')]);
        this.tablePort = table;
        this.queuePort = queue;
      },
      () => {
        for (const c of this.children) c.kill('SIGKILL');
        this.children.length = 0;
        return Promise.resolve();
      },
    );
    return this;
  }

  /**
   * Starts one service on a free port. The port is chosen before Azurite binds it (the standalone
   * services do not report a port 0), so another process can take it in between: on EADDRINUSE the
   * start is retried on another port, a few times.
   */
  private async startService(service: Service): Promise<number> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.startServiceOnce(service);
      } catch (err) {
        const fixed = service === 'queue' ? this.options.queuePort : this.options.tablePort;
        const inUse = err instanceof Error && /EADDRINUSE/.test(err.message);
        // A fixed port (npm start's queue, which enrollments name) is not swapped for another one.
        if (inUse && fixed)
          throw new Error(`Azurite ${service}: port ${fixed} is in use (another npm start? choose another PORT)`, {
            cause: err,
          });
        if (attempt >= 4 || !inUse) throw err;
      }
    }
  }

  private async startServiceOnce(service: Service): Promise<number> {
    const root = path.dirname(require.resolve('azurite/package.json'));
    const main = path.join(root, 'dist', 'src', service, 'main.js');
    const Service = service === 'queue' ? 'Queue' : 'Table';
    const args = [
      main,
      '--disableTelemetry',
      '--skipApiVersionCheck',
      // Path-style URLs whatever the host name (else a name like `broker.lan` reads as account `broker`).
      '--disableProductStyleUrl',
      `--${service}Host`,
      service === 'queue' ? (this.options.queueBind ?? '127.0.0.1') : '127.0.0.1',
      `--${service}Port`,
      '0',
      ...(this.options.location
        ? ['--location', path.join(this.options.location, service)]
        : ['--inMemoryPersistence']),
    ];
    // The standalone services do not report the port they got for port 0: choose a free one first.
    const wanted = (service === 'queue' ? this.options.queuePort : this.options.tablePort) || (await freePort());
    args[args.indexOf(`--${service}Port`) + 1] = String(wanted);
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.children.push(child);
    // If this process exits without close() (a crash, process.exit), do not leave Azurite behind.
    const reap = () => child.kill('SIGKILL');
    process.once('exit', reap);
    child.once('exit', () => process.removeListener('exit', reap));
    const timeoutMs = this.options.startTimeoutMs ?? 30_000;
    const port = await new Promise<number>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(
        () => reject(new Error(`Azurite ${service} did not start within ${timeoutMs} ms:\n${out}`)),
        timeoutMs,
      );
      const onData = (chunk: Buffer) => {
        const text = chunk.toString();
        out += text;
        if (this.options.verbose) process.stderr.write(text);
        if (new RegExp(`Azurite ${Service} service (is )?successfully (started|listen)`).test(out)) {
          clearTimeout(timer);
          resolve(wanted);
        }
      };
      child.stdout.on('data', onData);
      child.stderr.on('data', onData);
      child.once('exit', (code) => {
        clearTimeout(timer);
        this.children.splice(this.children.indexOf(child), 1);
        reject(new Error(`Azurite ${service} exited with code ${code} while starting:\n${out}`));
      });
    });
    // Keep draining output so the pipe never fills up.
    child.stdout.removeAllListeners('data').resume();
    child.stderr.removeAllListeners('data').resume();
    if (this.options.verbose) {
      child.stdout.on('data', (c: Buffer) => process.stderr.write(c));
      child.stderr.on('data', (c: Buffer) => process.stderr.write(c));
    }
    child.removeAllListeners('exit');
    return port;
  }

  close(): Promise<void> {
    return this.lifecycle.close(() => this.stopChildren());
  }

  private async stopChildren(): Promise<void> {
    await Promise.all(
      this.children.map(async (child) => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        const exited = once(child, 'exit');
        // SIGINT: the table service saves its database on SIGINT only (SIGTERM kills it unsaved,
        // losing up to 5 s of writes of a persistent `location`); the queue service takes either.
        child.kill('SIGINT');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(timer);
      }),
    );
    this.children.length = 0;
  }
}

/** Starts an in-memory Azurite; the caller must `close()` it. */
export async function startAzurite(options: AzuriteOptions = {}): Promise<Azurite> {
  return new Azurite(options).start();
}
