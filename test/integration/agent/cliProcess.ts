// Runs the BUILT `relay-broker` binary as a child process (dist*/agent/cli.js, found relative to
// this file so it works from any outDir), one-shot or long-running with its output as lines.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';

export const CLI_PATH = path.resolve(__dirname, '..', '..', '..', 'agent', 'cli.js');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  env?: Record<string, string | undefined>;
  cwd?: string;
  timeoutMs?: number;
  /** What runs before the CLI's arguments (default node and dist/agent/cli.js): a packaged executable, `ip netns exec`. */
  command?: string[];
}

function commandOf(options: CliOptions, args: string[]): [string, string[]] {
  const [file, ...rest] = options.command ?? [process.execPath, CLI_PATH];
  return [file, [...rest, ...args]];
}

function childEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  // A clean slate: no ambient broker configuration leaks into the tests.
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    RELAY_BROKER_URL: undefined,
    RELAY_BROKER_TOKEN: undefined,
    RELAY_BROKER_RELAY_CA: undefined,
    NO_COLOR: '1',
  };
  for (const [k, v] of Object.entries(extra)) env[k] = v;
  for (const k of Object.keys(env)) if (env[k] === undefined) delete env[k];
  return env;
}

/** Runs to completion (killed after `timeoutMs`, default 20 s). */
export function runCli(args: string[], options: CliOptions = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(...commandOf(options, args), {
      env: childEnv(options.env),
      cwd: options.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 20_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** A long-running CLI process (agent, connect) whose stdout lines can be awaited. */
export class CliProcess {
  readonly child: ChildProcess;
  stdout = '';
  stderr = '';
  readonly lines: string[] = [];
  private readonly waiters: Array<{ test: (line: string) => boolean; resolve: (line: string) => void }> = [];
  readonly exited: Promise<number | null>;

  constructor(args: string[], options: CliOptions = {}) {
    this.child = spawn(...commandOf(options, args), {
      env: childEnv(options.env),
      cwd: options.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let partial = '';
    this.child.stdout!.on('data', (c: Buffer) => {
      this.stdout += c.toString();
      partial += c.toString();
      const parts = partial.split('\n');
      partial = parts.pop() ?? '';
      for (const line of parts) this.onLine(line);
    });
    this.child.stderr!.on('data', (c: Buffer) => (this.stderr += c.toString()));
    this.exited = new Promise((resolve) => this.child.on('close', (code) => resolve(code)));
  }

  private onLine(line: string): void {
    this.lines.push(line);
    for (const w of [...this.waiters]) {
      if (w.test(line)) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve(line);
      }
    }
  }

  /** The first line (already seen or to come) that passes `test`; rejects after `timeoutMs`. */
  waitForLine(test: (line: string) => boolean, what: string, timeoutMs = 15_000): Promise<string> {
    const seen = this.lines.find(test);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(
          new Error(
            `timed out waiting for ${what}; stdout so far:\n${this.stdout.slice(-2000)}\nstderr:\n${this.stderr.slice(-2000)}`,
          ),
        );
      }, timeoutMs);
      const waiter = {
        test,
        resolve: (line: string) => {
          clearTimeout(timer);
          resolve(line);
        },
      };
      this.waiters.push(waiter);
    });
  }

  /** JSON events (for --json runs) that pass `test`. */
  waitForEvent(
    event: string,
    test: (e: Record<string, unknown>) => boolean = () => true,
    timeoutMs?: number,
  ): Promise<Record<string, unknown>> {
    return this.waitForLine(
      (line) => {
        const e = parseJsonLine(line);
        return e !== undefined && e.event === event && test(e);
      },
      `event ${event}`,
      timeoutMs,
    ).then((line) => parseJsonLine(line)!);
  }

  events(): Array<Record<string, unknown>> {
    return this.lines.map(parseJsonLine).filter((e): e is Record<string, unknown> => e !== undefined);
  }

  /** Sends a signal and waits for the exit code (SIGKILL after `timeoutMs`). */
  async stop(signal: NodeJS.Signals = 'SIGINT', timeoutMs = 10_000): Promise<number | null> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.child.exitCode;
    this.child.kill(signal);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    const code = await this.exited;
    clearTimeout(timer);
    return code;
  }
}

export function parseJsonLine(line: string): Record<string, unknown> | undefined {
  if (!line.startsWith('{')) return undefined;
  try {
    const v = JSON.parse(line) as unknown;
    return v && typeof v === 'object' ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
