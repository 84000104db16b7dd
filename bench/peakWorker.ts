// A child process of the peak benchmark (bench/benchmarks/peak.ts), so the device side, the client
// side and the control plane each get their own event loop (and core), as they would in real use.
//   devices: one product DeviceAgent per device, all piping to one RDP-like target on loopback.
//   clients: one product ClientBridge per session, each with one TCP client that verifies every byte.
// Commands and answers go over the IPC channel as JSON.
import diagnostics from 'node:diagnostics_channel';
import type { ClientRequest } from 'node:http';
import net from 'node:net';
import { ClientBridge } from '../agent/clientBridge';
import { DeviceAgent } from '../agent/deviceAgent';
import type { Enrollment } from '../lib/devices/deviceRegistry';
import { burstBytes, HEADER_BYTES, processFigures, slices, TICK_MS, Verifier } from './peakTraffic';

export type WorkerCommand =
  | { type: 'start'; ca: string; enrollments?: Enrollment[]; downBytesPerS: number; upBytesPerS: number }
  | { type: 'open'; sessionId: string; relay: { endpoint: string; hybridConnection: string; sendToken: string } }
  | { type: 'end'; sessionId: string }
  | { type: 'stats' }
  | { type: 'stop' };

export interface WorkerStats {
  cpuMs: number;
  rssMb: number;
  /** Bytes checked against the pattern and equal (down at the client, up at the target). */
  verified: number;
  mismatches: number;
  /** Client side: connections that closed although the benchmark had not ended their session. */
  lost: number;
  live: number;
  /** HTTP requests this process made to storage (the agents' queue polls). */
  storageRequests: number;
  /** Bursts skipped because the socket was still full (the tunnel lagged behind the load). */
  skippedBursts: number;
}

export type WorkerAnswer =
  | { type: 'started'; port?: number }
  | { type: 'opened'; sessionId: string; ok: boolean; detail?: string }
  | { type: 'ended'; sessionId: string }
  | ({ type: 'stats' } & WorkerStats)
  | { type: 'stopped' };

const send = (a: WorkerAnswer): void => void process.send?.(a);
const stats: WorkerStats = {
  cpuMs: 0,
  rssMb: 0,
  verified: 0,
  mismatches: 0,
  lost: 0,
  live: 0,
  storageRequests: 0,
  skippedBursts: 0,
};
diagnostics.subscribe('http.client.request.start', (msg) => {
  const host = String((msg as { request: ClientRequest }).request.getHeader('host') ?? '');
  if (host.startsWith('127.0.0.1:')) stats.storageRequests++;
});

/** Sends one burst per tick on every stream registered, skipping a burst while the socket is full. */
class Ticker {
  private readonly streams = new Set<{ socket: net.Socket; offset: number; pos: number; perS: number }>();
  private readonly timer = setInterval(() => this.tick(), TICK_MS);

  add(socket: net.Socket, offset: number, perS: number): void {
    const s = { socket, offset, pos: 0, perS };
    this.streams.add(s);
    socket.once('close', () => this.streams.delete(s));
  }

  private tick(): void {
    for (const s of this.streams) {
      if (s.socket.destroyed || !s.socket.writable) continue;
      if (s.socket.writableNeedDrain) {
        stats.skippedBursts++;
        continue;
      }
      const n = burstBytes(s.perS);
      if (n === 0) continue;
      for (const part of slices(s.offset, s.pos, n)) s.socket.write(part);
      s.pos += n;
    }
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

const role = process.argv[2];
let ticker: Ticker | undefined;

// --- devices --------------------------------------------------------------------------------
const agents: DeviceAgent[] = [];
let target: net.Server | undefined;
const targetSockets = new Set<net.Socket>();

async function startDevices(cmd: Extract<WorkerCommand, { type: 'start' }>): Promise<number> {
  ticker = new Ticker();
  target = net.createServer((socket) => {
    targetSockets.add(socket);
    socket.setNoDelay(true);
    socket.on('error', () => undefined);
    socket.once('close', () => targetSockets.delete(socket));
    let header = Buffer.alloc(0);
    let up: Verifier | undefined;
    socket.on('data', (chunk: Buffer) => {
      if (!up) {
        header = Buffer.concat([header, chunk]);
        if (header.length < HEADER_BYTES) return;
        const down = header.readUInt32BE(0);
        up = new Verifier(header.readUInt32BE(4));
        ticker!.add(socket, down, cmd.downBytesPerS);
        chunk = header.subarray(HEADER_BYTES);
        if (chunk.length === 0) return;
      }
      const before = up.verified;
      if (!up.check(chunk)) {
        stats.mismatches++;
        socket.destroy();
        return;
      }
      stats.verified += up.verified - before;
    });
  });
  await new Promise<void>((resolve) => target!.listen(0, '127.0.0.1', resolve));
  const port = (target.address() as net.AddressInfo).port;
  for (const enrollment of cmd.enrollments ?? []) {
    const agent = new DeviceAgent({
      enrollment,
      allowPorts: new Set([port]),
      relayCa: cmd.ca,
      log: () => undefined,
    });
    agent.start();
    agents.push(agent);
  }
  return port;
}

// --- clients --------------------------------------------------------------------------------
interface ClientSession {
  bridge: ClientBridge;
  socket?: net.Socket;
  ending: boolean;
}
const sessions = new Map<string, ClientSession>();
let ca = '';
let upBytesPerS = 0;

async function openClient(cmd: Extract<WorkerCommand, { type: 'open' }>): Promise<void> {
  const bridge = new ClientBridge({
    listen: { host: '127.0.0.1', port: 0 },
    relay: cmd.relay,
    ca,
    log: () => undefined,
  });
  const session: ClientSession = { bridge, ending: false };
  sessions.set(cmd.sessionId, session);
  const answer = (ok: boolean, detail?: string): void => send({ type: 'opened', sessionId: cmd.sessionId, ok, detail });
  try {
    const address = await bridge.start();
    const socket = net.connect(address.port, address.host);
    session.socket = socket;
    socket.setNoDelay(true);
    socket.on('error', () => undefined);
    const downOffset = Math.floor(Math.random() * 2 ** 32);
    const upOffset = Math.floor(Math.random() * 2 ** 32);
    const down = new Verifier(downOffset);
    let first = true;
    socket.on('data', (chunk: Buffer) => {
      const before = down.verified;
      if (!down.check(chunk)) {
        stats.mismatches++;
        socket.destroy();
        return;
      }
      stats.verified += down.verified - before;
      if (first) {
        first = false;
        stats.live++;
        answer(true);
      }
    });
    socket.once('close', () => {
      if (first) answer(false, 'closed before any data');
      else stats.live--;
      if (!first && !session.ending) stats.lost++;
    });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const header = Buffer.alloc(HEADER_BYTES);
    header.writeUInt32BE(downOffset, 0);
    header.writeUInt32BE(upOffset, 4);
    socket.write(header);
    ticker!.add(socket, upOffset, upBytesPerS);
  } catch (err) {
    answer(false, err instanceof Error ? err.message : String(err));
  }
}

async function endClient(sessionId: string): Promise<void> {
  const session = sessions.get(sessionId);
  if (!session) return;
  session.ending = true;
  sessions.delete(sessionId);
  await session.bridge.close();
}

// --- both ------------------------------------------------------------------------------------
async function handle(cmd: WorkerCommand): Promise<void> {
  switch (cmd.type) {
    case 'start':
      ca = cmd.ca;
      upBytesPerS = cmd.upBytesPerS;
      if (role === 'devices') return send({ type: 'started', port: await startDevices(cmd) });
      ticker = new Ticker();
      return send({ type: 'started' });
    case 'open':
      return openClient(cmd);
    case 'end':
      // Marked before the control plane ends the session, so its close is not counted as lost.
      await endClient(cmd.sessionId);
      return send({ type: 'ended', sessionId: cmd.sessionId });
    case 'stats':
      return send({ type: 'stats', ...stats, ...processFigures() });
    case 'stop': {
      ticker?.stop();
      for (const s of sessions.values()) s.ending = true;
      await Promise.allSettled([...sessions.values()].map((s) => s.bridge.close()));
      for (const s of targetSockets) s.destroy();
      await Promise.allSettled(agents.map((a) => a.close()));
      await new Promise<void>((resolve) => (target ? target.close(() => resolve()) : resolve()));
      send({ type: 'stopped' });
      process.disconnect?.();
      return;
    }
  }
}

// The benchmark went away without a stop (killed, crashed): do not linger with timers and sockets.
process.on('disconnect', () => process.exit(process.exitCode ?? 0));

process.on('message', (cmd: WorkerCommand) => {
  handle(cmd).catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
});
