// Entry point `node dist/local/hostProcess.js`: a functions host for the app in APP_DIR (default:
// the repo root) on PORT (0 = free) with the durable engine on AzureWebJobsStorage. Prints one line
// `{"ready":true,"port":<n>}` when ready; closes cleanly on SIGTERM/SIGINT. HOST_DISABLE_TIMERS=1
// leaves timer triggers unarmed (they still run through POST /admin/functions/<name>).
// HOST_SYSTEM_KEY_FILE names the file holding the system key /admin and the webhooks require
// (the parent's, so a restarted host keeps it); without it the host makes a random one.
// HOST_STATS_EVERY_MS=<n> adds a line `{"stats":{"storageRequests":…,"cpuMs":…}}` on stdout every n ms:
// the requests this process made to the storage account and its CPU time, for benchmarks that
// need the control plane's share apart from the emulators'.
import diagnostics from 'node:diagnostics_channel';
import type { ClientRequest } from 'node:http';
import path from 'node:path';
import { createDurableExtension } from './durable';
import { FunctionsHost, type LogRecord } from './host/functionsHost';
import { readSystemKey } from './stateKeys';

async function main(): Promise<void> {
  const appDir = path.resolve(process.env.APP_DIR ?? path.resolve(__dirname, '..', '..'));
  const port = Number(process.env.PORT ?? '0');
  const connectionString = process.env.AzureWebJobsStorage;
  if (!connectionString) throw new Error('Set AzureWebJobsStorage to the storage connection string (Azurite locally)');
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new Error(`PORT must be an integer port number, got "${process.env.PORT}"`);
  const durable = createDurableExtension({ connectionString, hubName: process.env.DURABLE_HUB_NAME || undefined });
  // Logs go to stderr: stdout carries only the ready line.
  const logSink = (r: LogRecord): void => {
    if (r.level === 'debug' || r.level === 'trace') return;
    process.stderr.write(`${r.time.toISOString()} ${r.level} ${r.functionName ?? r.category}: ${r.message}\n`);
  };
  const disableTimers = process.env.HOST_DISABLE_TIMERS === '1';
  const keyFile = process.env.HOST_SYSTEM_KEY_FILE;
  const systemKey = keyFile ? readSystemKey(keyFile) : undefined;
  const host = await new FunctionsHost({
    appDir,
    port,
    extensions: [durable],
    logSink,
    disableTimers,
    systemKey,
  }).start();
  let closing = false;
  const shutdown = (signal: string): void => {
    if (closing) return;
    closing = true;
    process.stderr.write(`${signal}: closing\n`);
    host
      .close()
      .then(() => process.exit(0))
      .catch((err: unknown) => {
        process.stderr.write(`close failed: ${String(err)}\n`);
        process.exit(1);
      });
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.stdout.write(`${JSON.stringify({ ready: true, port: host.port })}\n`);
  const statsEveryMs = Number(process.env.HOST_STATS_EVERY_MS ?? '0');
  if (statsEveryMs > 0) reportStats(connectionString, statsEveryMs);
}

/** Counts this process's requests to the storage endpoints and prints them with its CPU time. */
function reportStats(connectionString: string, everyMs: number): void {
  const storageHosts = new Set(
    [...connectionString.matchAll(/(?:Table|Queue|Blob)Endpoint=([^;]+)/g)].map((m) => new URL(m[1]).host),
  );
  let storageRequests = 0;
  diagnostics.subscribe('http.client.request.start', (msg) => {
    const host = String((msg as { request: ClientRequest }).request.getHeader('host') ?? '');
    if (storageHosts.has(host)) storageRequests++;
  });
  setInterval(() => {
    const cpu = process.cpuUsage();
    process.stdout.write(`${JSON.stringify({ stats: { storageRequests, cpuMs: (cpu.user + cpu.system) / 1000 } })}\n`);
  }, everyMs).unref();
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
