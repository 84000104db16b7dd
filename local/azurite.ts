// Starts Azurite (from npm, in a child process) on free loopback ports and hands out its
// connection string. Used by `npm start`, the tests and the benchmarks.
import { ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';

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
}

type Status = 'closed' | 'starting' | 'running' | 'closing';

export class Azurite {
  private status: Status = 'closed';
  private child?: ChildProcess;
  queuePort = 0;
  tablePort = 0;

  constructor(private readonly options: AzuriteOptions = {}) {}

  get queueEndpoint(): string {
    return `http://127.0.0.1:${this.queuePort}/${DEV_ACCOUNT_NAME}`;
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
    if (this.status !== 'closed') throw new Error(`Cannot start Azurite in status ${this.status}`);
    this.status = 'starting';
    const main = path.join(path.dirname(require.resolve('azurite/package.json')), 'dist', 'src', 'azurite.js');
    const args = [
      main,
      '--disableTelemetry',
      '--skipApiVersionCheck',
      '--blobHost', '127.0.0.1', '--blobPort', '0',
      '--queueHost', '127.0.0.1', '--queuePort', '0',
      '--tableHost', '127.0.0.1', '--tablePort', '0',
      ...(this.options.location ? ['--location', this.options.location] : ['--inMemoryPersistence']),
    ];
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    const timeoutMs = this.options.startTimeoutMs ?? 30_000;
    try {
      await new Promise<void>((resolve, reject) => {
        let out = '';
        const timer = setTimeout(() => reject(new Error(`Azurite did not start within ${timeoutMs} ms:\n${out}`)), timeoutMs);
        const onData = (chunk: Buffer) => {
          const text = chunk.toString();
          out += text;
          if (this.options.verbose) process.stderr.write(text);
          for (const m of out.matchAll(/Azurite (Queue|Table) service is successfully listening at http:\/\/127\.0\.0\.1:(\d+)/g)) {
            if (m[1] === 'Queue') this.queuePort = Number(m[2]);
            else this.tablePort = Number(m[2]);
          }
          if (this.queuePort && this.tablePort) {
            clearTimeout(timer);
            resolve();
          }
        };
        child.stdout!.on('data', onData);
        child.stderr!.on('data', onData);
        child.once('exit', (code) => {
          clearTimeout(timer);
          reject(new Error(`Azurite exited with code ${code} while starting:\n${out}`));
        });
      });
    } catch (err) {
      child.kill('SIGKILL');
      this.status = 'closed';
      throw err;
    }
    // Keep draining output so the pipe never fills up.
    child.stdout!.removeAllListeners('data').resume();
    child.stderr!.removeAllListeners('data').resume();
    if (this.options.verbose) {
      child.stdout!.on('data', (c: Buffer) => process.stderr.write(c));
      child.stderr!.on('data', (c: Buffer) => process.stderr.write(c));
    }
    child.removeAllListeners('exit');
    this.status = 'running';
    return this;
  }

  async close(): Promise<void> {
    if (this.status !== 'running' || !this.child) return;
    this.status = 'closing';
    const child = this.child;
    if (child.exitCode === null && child.signalCode === null) {
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    this.child = undefined;
    this.status = 'closed';
  }
}

/** Starts an in-memory Azurite; the caller must `close()` it. */
export async function startAzurite(options: AzuriteOptions = {}): Promise<Azurite> {
  return new Azurite(options).start();
}
