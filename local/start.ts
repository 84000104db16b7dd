// `npm start`: the whole system offline on its embedded default: Azurite (in memory), the relay
// emulator, the local token issuer and the functions host with the durable engine, in the
// foreground. Prints one block with the API URL, an admin token and what to try next; Ctrl-C
// stops every child.
import fs from 'node:fs';
import path from 'node:path';
import { ConfigError } from '../lib/errors';
import { consoleLogSink } from './host/functionsHost';
import { LocalRuntime, REPO_ROOT } from './runtime';

const STATE_DIR = process.env.RELAY_BROKER_STATE_DIR ?? path.join(REPO_ROOT, '.relay-broker');

async function main(): Promise<void> {
  const port = Number(process.env.PORT ?? 7071);
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new ConfigError(`PORT must be a port number, not "${process.env.PORT}"`);
  fs.rmSync(STATE_DIR, { recursive: true, force: true });
  console.log('starting Azurite, the relay emulator, the local issuer and the functions host…');
  const quiet = process.env.RELAY_BROKER_LOG !== 'verbose';
  const rt = new LocalRuntime({
    port,
    stateDir: STATE_DIR,
    logSink: (r) => {
      // Routine information stays out of the way unless asked for; warnings and errors always show.
      if (quiet && r.level !== 'warning' && r.level !== 'error' && r.level !== 'critical' && r.category !== 'user')
        return;
      consoleLogSink(r);
    },
    settings: { POOL_FLOOR: process.env.POOL_FLOOR ?? '5' },
    relayOptions: { createDelayMs: Number(process.env.RELAY_EMULATOR_CREATE_DELAY_MS ?? 2000) },
  });
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`\n${signal}: stopping…`);
    const force = setTimeout(() => process.exit(1), 15_000);
    force.unref();
    await rt.close();
    fs.rmSync(STATE_DIR, { recursive: true, force: true });
    console.log('stopped.');
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));

  await rt.start();
  fs.writeFileSync(path.join(STATE_DIR, 'local.json'), JSON.stringify(rt.localState(), null, 2) + '\n', {
    mode: 0o600,
  });
  const token = await rt.token('admin');
  // Fill the pool now instead of waiting for the first minute of the maintenance timer.
  void fetch(`${rt.host!.baseUrl}/admin/functions/poolMaintenanceTimer`, {
    method: 'POST',
    body: '{}',
    headers: { 'x-functions-key': rt.systemKey },
  }).catch(() => undefined);

  const cli = 'npx relay-broker';
  console.log(`
relay-broker is running offline. Ctrl-C stops everything.

  API           ${rt.apiUrl}
  health        curl ${rt.apiUrl}/health
  console       ${rt.apiUrl}/console/ (sign in with the admin token below)
  metrics       curl -H "authorization: Bearer <admin token>" ${rt.apiUrl}/metrics
  admin token   ${token}
                (local only, valid 8 h; more with: ${cli} local token --role operator --sub alice)
  state         ${path.relative(process.cwd(), STATE_DIR) || STATE_DIR}/ (the CLI finds the API and the relay certificate here)
  system key    ${path.relative(process.cwd(), rt.systemKeyFile) || rt.systemKeyFile} (x-functions-key for /admin/* and /runtime/webhooks/durabletask/*)

Try, in another terminal:
  ${cli} devices add demo-device --out device.json
  ${cli} agent --enrollment device.json --allow 22
  ${cli} connect demo-device --port 22
`);
}

main().catch((err: unknown) => {
  if (err instanceof ConfigError) console.error(err.message);
  else console.error(`failed to start: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
