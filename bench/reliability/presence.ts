// Reliability figures of device presence and agent restarts, on the whole local stack with the
// built CLI in its own processes (as on a device): how long the API says "online" after the agent
// was SIGKILLed (device_offline_detected_s), and how long a live session carries no bytes after its
// agent was SIGKILLed and started again at once (agent_restart_resumed_s). Each is the time until
// the API's status equals the wire's.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { promises as fs } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Figure } from '../figures';
import { percentile } from '../figures';
import { LocalRuntime } from '../../local/runtime';

const COMMAND = 'npm run bench -- reliability';
const DIST = path.resolve(__dirname, '..', '..');
const CLI = path.join(DIST, 'agent', 'cli.js');
const RUNS = Number(process.env.BENCH_PRESENCE_RUNS) || 3;
/** The settings the figures are measured with (the defaults are 40 s and 15 s: see docs/reliability.md). */
const OFFLINE_AFTER_SECONDS = 10;
const SEEN_WRITE_SECONDS = 5;
const HEARTBEAT_MS = 2000;

interface Proc {
  child: ChildProcess;
  lines: string[];
  waitFor(test: (line: string) => boolean, timeoutMs?: number): Promise<string>;
}

function startCli(args: string[], env: Record<string, string>): Proc {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  const waiters: Array<{ test: (l: string) => boolean; resolve: (l: string) => void }> = [];
  let buf = '';
  child.stdout.on('data', (c: Buffer) => {
    buf += c.toString();
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      lines.push(line);
      for (const w of [...waiters]) {
        if (!w.test(line)) continue;
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(line);
      }
    }
  });
  child.stderr.resume();
  return {
    child,
    lines,
    waitFor: (test, timeoutMs = 30_000) => {
      const seen = lines.find(test);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs);
        waiters.push({
          test,
          resolve: (l) => {
            clearTimeout(timer);
            resolve(l);
          },
        });
      });
    },
  };
}

async function kill(p: Proc | undefined, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  if (!p || p.child.exitCode !== null || p.child.signalCode !== null) return;
  const exited = once(p.child, 'close');
  p.child.kill(signal);
  await exited;
}

async function echoOnce(port: number, payload: Buffer): Promise<boolean> {
  const socket = net.connect(port, '127.0.0.1');
  socket.on('error', () => undefined);
  try {
    await once(socket, 'connect');
    const chunks: Buffer[] = [];
    let got = 0;
    const ok = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 3000);
      socket.on('data', (c: Buffer) => {
        chunks.push(c);
        got += c.length;
        if (got >= payload.length) {
          clearTimeout(timer);
          resolve(Buffer.concat(chunks).equals(payload));
        }
      });
      socket.once('close', () => {
        clearTimeout(timer);
        resolve(got >= payload.length);
      });
      socket.write(payload);
    });
    return ok;
  } catch {
    return false;
  } finally {
    socket.destroy();
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Measures the presence figures; `log` gets one line per step. */
export async function measurePresence(log: (line: string) => void): Promise<Figure[]> {
  const stateDir = await fs.mkdtemp(path.join(os.tmpdir(), 'rb-bench-presence-'));
  const rt = new LocalRuntime({
    disableTimers: true,
    prefillNamespaces: RUNS + 2,
    logSink: () => {},
    stateDir,
    relayOptions: { createDelayMs: 0 },
    settings: {
      DEVICE_OFFLINE_AFTER_SECONDS: String(OFFLINE_AFTER_SECONDS),
      DEVICE_SEEN_WRITE_SECONDS: String(SEEN_WRITE_SECONDS),
    },
  });
  const echo = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => undefined);
    s.pipe(s);
  });
  const procs: Proc[] = [];
  try {
    await rt.start();
    await fs.writeFile(path.join(stateDir, 'local.json'), JSON.stringify(rt.localState()), { mode: 0o600 });
    const env = { RELAY_BROKER_STATE_DIR: stateDir };
    const admin = await rt.token('admin');
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
    const echoPort = (echo.address() as net.AddressInfo).port;
    const file = path.join(stateDir, 'bench-presence.json');
    const add = startCli(['devices', 'add', 'bench-presence', '--out', file], env);
    await once(add.child, 'close');
    const agentArgs = ['--json', 'agent', '--enrollment', file, '--allow', String(echoPort), '--poll-ms', '200'];
    const startAgent = async (): Promise<Proc> => {
      const p = startCli([...agentArgs, '--heartbeat-ms', String(HEARTBEAT_MS)], env);
      procs.push(p);
      await p.waitFor((l) => l.includes('"agent.started"'));
      return p;
    };
    const presence = async (): Promise<string> => {
      const res = await fetch(`${rt.apiUrl}/devices/bench-presence`, { headers: { authorization: `Bearer ${admin}` } });
      return ((await res.json()) as { presence: string }).presence;
    };

    const offline: number[] = [];
    const resumed: number[] = [];
    for (let run = 0; run < RUNS; run++) {
      // Offline detection after a SIGKILL: no goodbye, only the silence.
      let agent = await startAgent();
      for (let i = 0; i < 200 && (await presence()) !== 'online'; i++) await sleep(100);
      await sleep(SEEN_WRITE_SECONDS * 1000 * Math.random());
      const killedAt = Date.now();
      await kill(agent);
      let i = 0;
      for (; i < 1200 && (await presence()) !== 'offline'; i++) await sleep(100);
      offline.push((Date.now() - killedAt) / 1000);
      log(`run ${run + 1}: offline in the API ${offline.at(-1)!.toFixed(1)} s after the agent's SIGKILL`);

      // Restart under a live session: SIGKILL, start again at once, time until bytes flow.
      agent = await startAgent();
      const connect = startCli(
        ['--json', 'connect', 'bench-presence', '--port', String(echoPort), '--status-poll-ms', '500'],
        env,
      );
      procs.push(connect);
      const ready = JSON.parse(await connect.waitFor((l) => l.includes('"session.ready"'))) as {
        listen: { port: number };
      };
      const payload = randomBytes(1024);
      if (!(await echoOnce(ready.listen.port, payload)))
        throw new Error('the session carries no bytes before the kill');
      const t0 = Date.now();
      await kill(agent);
      agent = await startAgent();
      let ok = false;
      for (let j = 0; j < 300 && !ok; j++) {
        ok = await echoOnce(ready.listen.port, payload);
        if (!ok) await sleep(100);
      }
      resumed.push((Date.now() - t0) / 1000);
      log(
        `run ${run + 1}: bytes through again ${resumed.at(-1)!.toFixed(1)} s after SIGKILL + restart (${ok ? 'resumed' : 'NOT resumed'})`,
      );
      await kill(connect, 'SIGINT');
      await kill(agent, 'SIGTERM');
    }
    const note = `${RUNS} runs on the local stack; agent heartbeat ${HEARTBEAT_MS} ms, DEVICE_SEEN_WRITE_SECONDS=${SEEN_WRITE_SECONDS}, DEVICE_OFFLINE_AFTER_SECONDS=${OFFLINE_AFTER_SECONDS}`;
    return [
      {
        name: 'device_offline_detected_s',
        value: percentile(offline, 50),
        unit: 's',
        goal: `≤ DEVICE_OFFLINE_AFTER_SECONDS (${OFFLINE_AFTER_SECONDS})`,
        command: COMMAND,
        note: `median; max ${Math.max(...offline).toFixed(1)} s. ${note}`,
      },
      {
        name: 'agent_restart_resumed_s',
        value: percentile(resumed, 50),
        unit: 's',
        goal: 'a few seconds (the new agent process start included; a service manager restart delay, RestartSec=5s, excluded)',
        command: COMMAND,
        note: `median; max ${Math.max(...resumed).toFixed(1)} s. ${note}`,
      },
    ];
  } finally {
    await Promise.all(procs.map((p) => kill(p)));
    await new Promise<void>((resolve) => echo.close(() => resolve()));
    await rt.close();
    await fs.rm(stateDir, { recursive: true, force: true });
  }
}
