// `npm start`: the whole system offline on its embedded default: Azurite, the relay emulator, the
// local token issuer and the functions host with the durable engine, in the foreground, all keeping
// their state in the state folder so a restart serves the same devices and enrollments
// (`npm start -- --reset` starts from nothing). Prints one block with the API URL, an admin token and
// what to try next; Ctrl-C stops every child.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadLocalNetwork } from '../lib/config';
import { ConfigError } from '../lib/errors';
import { consoleLogSink } from './host/functionsHost';
import { LocalRuntime, REPO_ROOT } from './runtime';

const STATE_DIR = process.env.RELAY_BROKER_STATE_DIR ?? path.join(REPO_ROOT, '.relay-broker');

/** A path relative to the working directory when it lies under it, else absolute. */
function shown(p: string): string {
  const rel = path.relative(process.cwd(), p);
  return rel && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : p;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const unknown = args.filter((a) => a !== '--reset');
  if (unknown.length > 0) throw new ConfigError(`npm start takes only --reset, not ${unknown.join(' ')}`);
  const network = loadLocalNetwork(process.env, os.hostname());
  if (args.includes('--reset')) {
    fs.rmSync(STATE_DIR, { recursive: true, force: true });
    console.log(`--reset: removed ${STATE_DIR}; devices must be added (enrolled) again`);
  }
  const resumed = fs.existsSync(path.join(STATE_DIR, 'sealing-key'));
  console.log(
    `${resumed ? 'resuming' : 'starting'} Azurite, the relay emulator, the local issuer and the functions host` +
      ` (state in ${STATE_DIR})…`,
  );
  const quiet = process.env.RELAY_BROKER_LOG !== 'verbose';
  const rt = new LocalRuntime({
    network,
    persistent: true,
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
    // The state stays for the next start; only the pointer the CLI follows to a running stack goes.
    fs.rmSync(path.join(STATE_DIR, 'local.json'), { force: true });
    console.log(`stopped. The state stays in ${STATE_DIR} (npm start -- --reset starts afresh).`);
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
  admin token   ${token}
                (local only, valid 8 h; more with: ${cli} local token --role operator --sub alice)
  state         ${shown(STATE_DIR)}/ (kept across restarts; the CLI finds the API and the relay certificate here)
  devices reach ${network.bind === '127.0.0.1' ? 'this machine only (RELAY_BROKER_BIND=0.0.0.0 for others)' : `${network.publicHost}: ports ${network.apiPort} (API), ${network.queuePort} (queue), ${network.relayPorts.first}-${network.relayPorts.last} (relay)`}
  relay CA      ${shown(rt.relayCaFile)} (a device elsewhere needs it: --relay-ca)
  system key    ${shown(rt.systemKeyFile)} (x-functions-key for /admin/* and /runtime/webhooks/durabletask/*)

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
