// client_gone_session_ended_s: how long after a client bridge (`relay-broker connect`) is SIGKILLed
// its session reads `ended` (client_gone), on the local stack with the real timers (the liveness
// sweep every 15 s) and SESSION_CLIENT_GONE_SECONDS at 10 s (production default: 120 s; the bound
// is that setting + 15 s + the recycle). Wired by the integrator into `npm run bench -- reliability`.
import { promises as fs } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { percentile, type Figure } from '../figures';
import { LocalRuntime } from '../../local/runtime';
import { CliProcess, runCli } from '../../test/integration/agent/cliProcess';

const CLIENT_GONE_SECONDS = 10;
const SAMPLES = 3;
const COMMAND = 'npm run bench -- reliability';

export async function measureClientGone(log: (line: string) => void): Promise<Figure[]> {
  const stateDir = await fs.mkdtemp(path.join(os.tmpdir(), 'rb-bench-client-'));
  const rt = new LocalRuntime({
    prefillNamespaces: 3,
    logSink: () => {},
    stateDir,
    relayOptions: { createDelayMs: 0 },
    settings: { SESSION_CLIENT_GONE_SECONDS: String(CLIENT_GONE_SECONDS), POOL_FLOOR: '3' },
  });
  const echo = net.createServer((s) => {
    s.on('error', () => undefined);
    s.pipe(s);
  });
  const procs: CliProcess[] = [];
  let agent: CliProcess | undefined;
  try {
    await rt.start();
    const admin = await rt.token('admin');
    await fs.writeFile(path.join(stateDir, 'local.json'), JSON.stringify(rt.localState()), { mode: 0o600 });
    const env = { RELAY_BROKER_STATE_DIR: stateDir };
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
    const echoPort = (echo.address() as net.AddressInfo).port;
    const enrollment = path.join(stateDir, 'device.json');
    const add = await runCli(['devices', 'add', 'bench-client', '--out', enrollment], { env });
    if (add.code !== 0) throw new Error(`devices add failed: ${add.stderr}`);
    agent = new CliProcess(['--json', 'agent', '--enrollment', enrollment, '--allow', String(echoPort)], { env });
    await agent.waitForEvent('agent.started');
    const seconds: number[] = [];
    for (let i = 0; i < SAMPLES; i++) {
      const proc = new CliProcess(['--json', 'connect', 'bench-client', '--port', String(echoPort)], { env });
      procs.push(proc);
      const ready = await proc.waitForEvent('session.ready', () => true, 60_000);
      const id = String(ready.sessionId);
      const read = async () =>
        (await (
          await fetch(`${rt.apiUrl}/sessions/${id}`, { headers: { authorization: `Bearer ${admin}` } })
        ).json()) as { status: string; reason?: string; clientSeenAt?: string };
      // Killed right after its first heartbeat landed: the worst case is a kill just after a beat.
      for (let n = 0; !(await read()).clientSeenAt && n < 200; n++) await new Promise((r) => setTimeout(r, 100));
      const killedAt = Date.now();
      await proc.stop('SIGKILL');
      let v = await read();
      const deadline = killedAt + (CLIENT_GONE_SECONDS + 120) * 1000;
      while (v.status !== 'ended' && v.status !== 'failed' && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 250));
        v = await read();
      }
      if (v.status !== 'ended' || v.reason !== 'client_gone')
        throw new Error(`session ${id} is ${v.status}/${v.reason}`);
      const s = (Date.now() - killedAt) / 1000;
      seconds.push(s);
      log(`client_gone sample ${i + 1}: ended ${s.toFixed(1)} s after the SIGKILL`);
    }
    const note = `${SAMPLES} samples, SESSION_CLIENT_GONE_SECONDS=${CLIENT_GONE_SECONDS}, liveness sweep every 15 s, local stack (emulator); bound = setting + 15 s + recycle`;
    return [
      {
        name: 'client_gone_session_ended_s',
        value: Math.round(percentile(seconds, 50) * 10) / 10,
        unit: 's',
        goal: `≤ ${CLIENT_GONE_SECONDS + 15 + 10} (setting + sweep + recycle)`,
        command: COMMAND,
        note: `median; ${note}`,
      },
      {
        name: 'client_gone_session_ended_max_s',
        value: Math.round(Math.max(...seconds) * 10) / 10,
        unit: 's',
        command: COMMAND,
        note,
      },
    ];
  } finally {
    await Promise.all(procs.map((p) => p.stop('SIGINT').catch(() => undefined)));
    await agent?.stop('SIGTERM').catch(() => undefined);
    await new Promise<void>((resolve) => echo.close(() => resolve()));
    await rt.close();
    await fs.rm(stateDir, { recursive: true, force: true });
  }
}
