// Benchmark `tunnel`: throughput and added round-trip time of the whole tunnel, each part in its
// own process as in real use: client -> `relay-broker connect` -> relay emulator -> `relay-broker
// agent` -> target, against a direct loopback TCP connection to the same target, in the same run.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { promises as fs } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import {
  generateQueueSASQueryParameters,
  QueueSASPermissions,
  QueueServiceClient,
  StorageSharedKeyCredential,
} from '@azure/storage-queue';
import type { Benchmark, Figure } from '../figures';
import { percentile } from '../figures';
import { encodeDeviceMessage } from '../../lib/devices/deviceNotifier';
import { createRelayApiFactory, RelayManager } from '../../lib/relay/relayManager';
import { DEV_ACCOUNT_KEY, DEV_ACCOUNT_NAME, startAzurite } from '../../local/azurite';

const COMMAND = 'npm run bench -- tunnel';
const BYTES = (Number(process.env.BENCH_TUNNEL_MIB) || 64) * 1024 * 1024;
const CHUNK = 64 * 1024;
const RUNS = 3;
const PINGS = 400;
const DIST = path.resolve(__dirname, '..', '..');
const CLI = path.join(DIST, 'agent', 'cli.js');
const EMULATOR = path.join(DIST, 'local', 'relay-emulator');
const DEVICE_ID = 'bench-tunnel';

type Mode = 'sink' | 'echo' | 'rdp';

/** RDP-like load for the CPU-per-session figure: ≈60 KB/s from the target, in bursts every 50 ms. */
const RDP_BYTES_PER_S = 60 * 1024;
const RDP_SECONDS = Number(process.env.BENCH_TUNNEL_RDP_S) || 10;

/** CPU time (user + system) a process has used, in ms, from /proc (Linux; undefined elsewhere). */
async function cpuMs(pid: number | undefined): Promise<number | undefined> {
  if (!pid) return undefined;
  try {
    const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime and stime are fields 14 and 15 of stat(5), in clock ticks (100 per second on Linux).
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
  } catch {
    return undefined;
  }
}

function serve(socket: net.Socket, mode: () => Mode): void {
  socket.setNoDelay(true);
  socket.on('error', () => undefined);
  if (mode() === 'echo') {
    socket.pipe(socket);
    return;
  }
  if (mode() === 'rdp') {
    // Bursty, mostly one way: every 50 ms a burst of 0-2x the average, the client only reads.
    const timer = setInterval(() => {
      const n = Math.round((RDP_BYTES_PER_S / 20) * 2 * Math.random());
      if (n > 0) socket.write(Buffer.alloc(n, 3));
    }, 50);
    socket.on('close', () => clearInterval(timer));
    return;
  }
  let got = 0;
  socket.on('data', (chunk: Buffer) => {
    got += chunk.length;
    if (got >= BYTES) {
      got = 0;
      socket.write(Buffer.from([1]));
    }
  });
}

async function throughputMBs(socket: net.Socket): Promise<number> {
  const chunk = Buffer.alloc(CHUNK, 7);
  const started = process.hrtime.bigint();
  const done = once(socket, 'data');
  for (let sent = 0; sent < BYTES; sent += CHUNK) {
    if (!socket.write(chunk)) await once(socket, 'drain');
  }
  await done;
  return BYTES / 2 ** 20 / (Number(process.hrtime.bigint() - started) / 1e9);
}

async function roundTripsMs(socket: net.Socket): Promise<number[]> {
  const samples: number[] = [];
  const payload = Buffer.alloc(32, 1);
  for (let i = 0; i < PINGS; i++) {
    const started = process.hrtime.bigint();
    const answered = once(socket, 'data');
    socket.write(payload);
    await answered;
    samples.push(Number(process.hrtime.bigint() - started) / 1e6);
  }
  return samples;
}

async function openSocket(port: number): Promise<net.Socket> {
  const socket = net.connect(port, '127.0.0.1');
  socket.setNoDelay(true);
  await once(socket, 'connect');
  return socket;
}

/** A child process whose stdout lines can be awaited. */
function child(
  args: string[],
  env: NodeJS.ProcessEnv = process.env,
): {
  proc: ChildProcess;
  line: (test: (l: string) => boolean, what: string) => Promise<string>;
  stop: () => Promise<void>;
} {
  // BENCH_TUNNEL_NODE_ARGS (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof") profiles the children.
  const nodeArgs = process.env.BENCH_TUNNEL_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
  const proc = spawn(process.execPath, [...nodeArgs, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  const waiters: Array<{ test: (l: string) => boolean; resolve: (l: string) => void }> = [];
  let partial = '';
  let stderr = '';
  proc.stderr.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-4000)));
  proc.stdout.on('data', (c: Buffer) => {
    const parts = (partial + c.toString()).split('\n');
    partial = parts.pop() ?? '';
    for (const l of parts) {
      lines.push(l);
      for (const w of [...waiters]) {
        if (!w.test(l)) continue;
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(l);
      }
    }
  });
  const exited = new Promise<void>((resolve) => proc.on('close', () => resolve()));
  return {
    proc,
    line: (test, what) => {
      const seen = lines.find(test);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}: ${stderr}`)), 30_000);
        waiters.push({ test, resolve: (l) => (clearTimeout(timer), resolve(l)) });
        void exited.then(() => reject(new Error(`${what}: the process exited: ${stderr}`)));
      });
    },
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      }
    },
  };
}

export const benchmark: Benchmark = {
  name: 'tunnel',
  description: 'client -> connect -> relay emulator -> agent -> target (each its own process) vs direct loopback TCP',
  async run(log) {
    const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'rb-bench-tunnel-'));
    const cleanups: Array<() => Promise<unknown>> = [async () => fs.rm(tmp, { recursive: true, force: true })];
    try {
      // The relay emulator in its own process.
      const emulatorScript = `const { RelayEmulator } = require(${JSON.stringify(EMULATOR)});
        new RelayEmulator({ createDelayMs: 0 }).start().then((e) => {
          process.stdout.write(JSON.stringify({ arm: e.armEndpoint, ca: e.caCertPem }) + '\\n');
          process.on('SIGTERM', () => e.close().then(() => process.exit(0)));
        });`;
      const emulator = child(['-e', emulatorScript]);
      cleanups.unshift(emulator.stop);
      const info = JSON.parse(await emulator.line((l) => l.startsWith('{'), 'the emulator')) as {
        arm: string;
        ca: string;
      };
      const caFile = path.join(tmp, 'relay-ca.pem');
      await fs.writeFile(caFile, info.ca);
      const manager = new RelayManager({
        apiFactory: createRelayApiFactory({ endpoint: info.arm, caPem: info.ca, lroPollIntervalMs: 20 }),
      });
      const ref = { subscriptionId: 'bench', resourceGroup: 'bench', name: 'bench-tunnel-ns' };
      const prepared = await manager.prepareNamespace({ ...ref, location: 'local' });
      const expiresAt = new Date(Date.now() + 3600_000);
      const tokens = await manager.issueSessionTokens({ ...ref, endpoint: prepared.endpoint }, { expiresAt });

      // The target, shared by the direct and the tunnelled runs.
      let mode: Mode = 'sink';
      const targetSockets = new Set<net.Socket>();
      const target = net.createServer((s) => {
        targetSockets.add(s);
        s.on('close', () => targetSockets.delete(s));
        serve(s, () => mode);
      });
      await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve));
      cleanups.unshift(() => {
        for (const s of targetSockets) s.destroy();
        return new Promise<void>((resolve) => target.close(() => resolve()));
      });
      const targetPort = (target.address() as net.AddressInfo).port;

      // A stand-in control plane: the session API for connect, the ready endpoint for the agent.
      const sessionId = randomUUID();
      const relay = {
        namespace: ref.name,
        endpoint: tokens.endpoint,
        hybridConnection: tokens.hybridConnection,
        sendToken: tokens.sendToken,
        expiresAt: expiresAt.toISOString(),
      };
      let readyPosted!: () => void;
      const ready = new Promise<void>((resolve) => (readyPosted = resolve));
      const api = http.createServer((req, res) => {
        req.resume();
        req.on('end', () => {
          const view = {
            sessionId,
            deviceId: DEVICE_ID,
            status: 'ready',
            port: targetPort,
            createdAt: new Date().toISOString(),
            expiresAt: relay.expiresAt,
            relay,
          };
          if (req.method === 'POST' && req.url === '/api/sessions')
            return void res.writeHead(201, { 'content-type': 'application/json' }).end(JSON.stringify(view));
          if (req.method === 'GET' && req.url === `/api/sessions/${sessionId}`)
            return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(view));
          if (req.method === 'POST' && req.url === `/api/sessions/${sessionId}/ready`) {
            readyPosted();
            return void res.writeHead(204).end();
          }
          res.writeHead(req.method === 'DELETE' ? 202 : 404).end();
        });
      });
      await new Promise<void>((resolve) => api.listen(0, '127.0.0.1', resolve));
      cleanups.unshift(() => new Promise<void>((resolve) => (api.closeAllConnections(), api.close(() => resolve()))));
      const apiUrl = `http://127.0.0.1:${(api.address() as net.AddressInfo).port}/api`;

      // The device's queue (Azurite) and its enrollment.
      const azurite = await startAzurite();
      cleanups.unshift(() => azurite.close());
      const queue = QueueServiceClient.fromConnectionString(azurite.connectionString).getQueueClient(
        `dev-${DEVICE_ID}`,
      );
      await queue.createIfNotExists();
      const queueSas = generateQueueSASQueryParameters(
        { queueName: queue.name, permissions: QueueSASPermissions.parse('rp'), expiresOn: expiresAt },
        new StorageSharedKeyCredential(DEV_ACCOUNT_NAME, DEV_ACCOUNT_KEY),
      ).toString();
      const enrollmentFile = path.join(tmp, 'device.json');
      await fs.writeFile(
        enrollmentFile,
        JSON.stringify({
          deviceId: DEVICE_ID,
          apiUrl,
          queueUrl: queue.url,
          queueSas,
          expiresAt: expiresAt.toISOString(),
        }),
        { mode: 0o600 },
      );

      const cliEnv = { ...process.env, RELAY_BROKER_STATE_DIR: path.join(tmp, 'no-local-state') };
      const agent = child(
        [
          CLI,
          '--json',
          'agent',
          '--enrollment',
          enrollmentFile,
          '--allow',
          String(targetPort),
          '--poll-ms',
          '200',
          '--relay-ca',
          caFile,
        ],
        cliEnv,
      );
      cleanups.unshift(agent.stop);
      await agent.line((l) => l.includes('"agent.started"'), 'the agent');
      await queue.sendMessage(
        encodeDeviceMessage({
          type: 'session.open',
          version: 1,
          sessionId,
          deviceId: DEVICE_ID,
          port: targetPort,
          relay: {
            namespace: ref.name,
            endpoint: tokens.endpoint,
            hybridConnection: tokens.hybridConnection,
            listenToken: tokens.listenToken,
            expiresAt: relay.expiresAt,
          },
          readyUrl: `${apiUrl}/sessions/${sessionId}/ready`,
          readyToken: randomBytes(32).toString('base64url'),
          notAfter: new Date(Date.now() + 60_000).toISOString(),
        }),
      );
      await ready;
      const connect = child(
        [
          CLI,
          '--json',
          '--api-url',
          apiUrl,
          '--token',
          'bench',
          'connect',
          DEVICE_ID,
          '--port',
          String(targetPort),
          '--relay-ca',
          caFile,
          '--status-poll-ms',
          '60000',
        ],
        cliEnv,
      );
      cleanups.unshift(connect.stop);
      const readyLine = JSON.parse(await connect.line((l) => l.includes('"session.ready"'), 'connect')) as {
        listen: { port: number };
      };
      const tunnelPort = readyLine.listen.port;
      log(`tunnel up: client -> 127.0.0.1:${tunnelPort} -> connect -> emulator -> agent -> 127.0.0.1:${targetPort}`);

      const direct: number[] = [];
      const tunnel: number[] = [];
      // CPU ms per MiB carried, per process, summed over the counted tunnel runs.
      const parts = { connect: connect.proc.pid, emulator: emulator.proc.pid, agent: agent.proc.pid };
      const cpuBefore = async (): Promise<Record<string, number | undefined>> =>
        Object.fromEntries(
          await Promise.all(Object.entries(parts).map(async ([k, pid]) => [k, await cpuMs(pid)] as const)),
        );
      const cpuTotal: Record<string, number> = { connect: 0, emulator: 0, agent: 0 };
      mode = 'sink';
      // One warm-up each, not counted.
      for (let run = -1; run < RUNS; run++) {
        const d = await openSocket(targetPort);
        const dm = await throughputMBs(d);
        d.destroy();
        const t = await openSocket(tunnelPort);
        const before = await cpuBefore();
        const tm = await throughputMBs(t);
        const after = await cpuBefore();
        t.destroy();
        if (run < 0) continue;
        for (const k of Object.keys(cpuTotal)) cpuTotal[k] += (after[k] ?? NaN) - (before[k] ?? NaN);
        direct.push(dm);
        tunnel.push(tm);
        log(`run ${run + 1}: direct ${dm.toFixed(0)} MB/s, tunnel ${tm.toFixed(0)} MB/s`);
      }
      mode = 'echo';
      const d = await openSocket(targetPort);
      const directRtt = await roundTripsMs(d);
      d.destroy();
      const t = await openSocket(tunnelPort);
      const tunnelRtt = await roundTripsMs(t);
      t.destroy();
      const mib = (RUNS * BYTES) / 2 ** 20;
      const cpuPerMiB = Object.fromEntries(Object.entries(cpuTotal).map(([k, v]) => [k, v / mib]));
      log(
        `CPU ms per MiB carried: ${Object.entries(cpuPerMiB)
          .map(([k, v]) => `${k} ${v.toFixed(2)}`)
          .join(', ')}`,
      );

      // The agent's own baseline first (queue polls, keepalives, no session traffic), so the
      // session's share can be told apart from it.
      const idleBefore = await cpuBefore();
      const idleStarted = Date.now();
      await new Promise((resolve) => setTimeout(resolve, RDP_SECONDS * 1000));
      const idleAfter = await cpuBefore();
      const idleAgentPct = (((idleAfter.agent ?? NaN) - (idleBefore.agent ?? NaN)) / (Date.now() - idleStarted)) * 100;

      // One RDP-like session (≈60 KB/s, bursty, device -> client): the agent's and connect's CPU.
      mode = 'rdp';
      const r = await openSocket(tunnelPort);
      let rdpBytes = 0;
      r.on('data', (c: Buffer) => (rdpBytes += c.length));
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const rdpBefore = await cpuBefore();
      const rdpBytesBefore = rdpBytes;
      const rdpStarted = Date.now();
      await new Promise((resolve) => setTimeout(resolve, RDP_SECONDS * 1000));
      const rdpAfter = await cpuBefore();
      const rdpElapsedS = (Date.now() - rdpStarted) / 1000;
      const rdpRate = (rdpBytes - rdpBytesBefore) / rdpElapsedS;
      r.destroy();
      const agentCpuPct = (((rdpAfter.agent ?? NaN) - (rdpBefore.agent ?? NaN)) / (rdpElapsedS * 1000)) * 100;
      const connectCpuPct = (((rdpAfter.connect ?? NaN) - (rdpBefore.connect ?? NaN)) / (rdpElapsedS * 1000)) * 100;
      log(
        `RDP-like session at ${(rdpRate / 1024).toFixed(1)} KiB/s for ${rdpElapsedS.toFixed(0)} s: agent ${agentCpuPct.toFixed(2)} % of a core (idle, polling its queue every 200 ms: ${idleAgentPct.toFixed(2)} %), connect ${connectCpuPct.toFixed(2)} % (10 ms clock ticks)`,
      );
      const directMBs = percentile(direct, 50);
      const tunnelMBs = percentile(tunnel, 50);
      const p50 = (v: number[]): number => percentile(v, 50);
      log(`rtt p50: direct ${p50(directRtt).toFixed(3)} ms, tunnel ${p50(tunnelRtt).toFixed(3)} ms`);
      const note = `${BYTES / 2 ** 20} MiB x ${RUNS} runs (median) after a warm-up, ${PINGS} sequential 32-byte pings; connect, emulator and agent each in its own process, wss on both relay hops; ${os.cpus().length} CPUs`;
      const figures: Figure[] = [
        {
          name: 'tunnel_throughput_ratio',
          value: tunnelMBs / directMBs,
          unit: 'ratio',
          goal: '>= 0.5',
          command: COMMAND,
          note,
        },
        { name: 'tunnel_rtt_added_ms_p50', value: p50(tunnelRtt) - p50(directRtt), unit: 'ms', command: COMMAND, note },
        {
          name: 'tunnel_rtt_added_ms_p99',
          value: percentile(tunnelRtt, 99) - percentile(directRtt, 99),
          unit: 'ms',
          command: COMMAND,
          note,
        },
        { name: 'tunnel_throughput_mb_s', value: tunnelMBs, unit: 'MB/s', command: COMMAND, note },
        ...Object.entries(cpuPerMiB).map(([k, v]) => ({
          name: `tunnel_cpu_ms_per_mib_${k}`,
          value: v,
          unit: 'CPU ms/MiB',
          command: COMMAND,
          note: `${k}'s user+system CPU over the counted throughput runs, from /proc`,
        })),
        {
          name: 'tunnel_agent_cpu_pct_at_60kbs',
          value: agentCpuPct,
          unit: '% of a core',
          command: COMMAND,
          note: `one session, target -> client ≈60 KB/s in 50 ms bursts for ${RDP_SECONDS} s; /proc clock ticks (10 ms resolution)`,
        },
        {
          name: 'tunnel_agent_idle_cpu_pct',
          value: idleAgentPct,
          unit: '% of a core',
          command: COMMAND,
          note: `the same agent with no traffic for ${RDP_SECONDS} s (queue polls every 200 ms here, keepalives)`,
        },
        {
          name: 'tunnel_connect_cpu_pct_at_60kbs',
          value: connectCpuPct,
          unit: '% of a core',
          command: COMMAND,
          note: `the client side (relay-broker connect) of the same session`,
        },
        { name: 'tunnel_direct_throughput_mb_s', value: directMBs, unit: 'MB/s', command: COMMAND, note },
      ];
      return figures;
    } finally {
      for (const c of cleanups) {
        if (process.env.BENCH_DEBUG) console.error('cleanup', c.toString().slice(0, 60));
        await c().catch(() => undefined);
      }
    }
  },
};
