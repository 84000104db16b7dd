// The client side of a tunnel: a local TCP listener whose every connection is carried to the
// session's hybrid connection as a sender (Send token), piped both ways with backpressure.
import net from 'node:net';
import { describeError } from '../lib/errors';
import {
  type AgentForUrl,
  connectHybridConnection,
  RELAY_CLOSE_ENTITY_DELETED,
  RelayHandshakeError,
  type HybridConnectionStream,
} from '../lib/relay/hybridConnection';
import type { AgentLog } from './deviceAgent';
import { pipeBothWays } from './pipe';

export interface RelayTarget {
  endpoint: string;
  hybridConnection: string;
  sendToken: string;
}

export interface ClientBridgeOptions {
  listen: { host: string; port: number };
  relay: RelayTarget;
  /** CA to trust for the relay (the emulator's PEM); default the system's roots. */
  ca?: string;
  /** Through a proxy: the agent for each relay WebSocket. */
  agent?: AgentForUrl;
  log: AgentLog;
  /**
   * Unsolicited pong on every relayed connection this often (default 30 s): an idle SSH session must
   * outlive the ~4 min idle cut of Azure's load balancers, as with Microsoft's clients.
   */
  keepAliveIntervalMs?: number;
  /** The relay hinted that the session may be gone (refused a connect, or closed one with 1001). */
  onSessionGone?: (why: string) => void;
}

type Status = 'idle' | 'starting' | 'running' | 'closing' | 'closed';
const short = (id: string): string => id.slice(0, 8);

export class ClientBridge {
  private status: Status = 'idle';
  private server?: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private readonly streams = new Set<HybridConnectionStream>();
  private readonly pipes = new Set<Promise<unknown>>();
  private counter = 0;
  /** For the session heartbeat: connections carried to the relay, those still open, bytes of closed ones. */
  private carried = 0;
  private readonly live = new Set<net.Socket>();
  private closedToRelay = 0;
  private closedFromRelay = 0;
  address?: { host: string; port: number };

  constructor(private readonly o: ClientBridgeOptions) {}

  get openConnections(): number {
    return this.sockets.size;
  }

  /** What the session's heartbeat reports: connections carried and open, bytes each way so far. */
  report(): { openConnections: number; connections: number; bytesToDevice: number; bytesFromDevice: number } {
    let toDevice = this.closedToRelay;
    let fromDevice = this.closedFromRelay;
    for (const s of this.live) {
      toDevice += s.bytesRead;
      fromDevice += s.bytesWritten;
    }
    return {
      openConnections: this.live.size,
      connections: this.carried,
      bytesToDevice: toDevice,
      bytesFromDevice: fromDevice,
    };
  }

  async start(): Promise<{ host: string; port: number }> {
    if (this.status !== 'idle') throw new Error(`Cannot start the bridge in status ${this.status}`);
    this.status = 'starting';
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => this.onSocket(socket));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.o.listen.port, this.o.listen.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const a = server.address() as net.AddressInfo;
    this.address = { host: a.address, port: a.port };
    this.status = 'running';
    return this.address;
  }

  /** Stops accepting and closes every connection. */
  async close(): Promise<void> {
    if (this.status === 'closed' || this.status === 'closing') return;
    this.status = 'closing';
    const server = this.server;
    const closed = server ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve();
    for (const s of this.sockets) s.destroy();
    for (const s of this.streams) s.destroy();
    await Promise.allSettled([...this.pipes]);
    await closed;
    this.status = 'closed';
  }

  private onSocket(socket: net.Socket): void {
    if (this.status !== 'running') {
      socket.destroy();
      return;
    }
    const n = ++this.counter;
    socket.setNoDelay(true);
    socket.on('error', () => undefined);
    this.sockets.add(socket);
    const from = `${socket.remoteAddress}:${socket.remotePort}`;
    const work = this.carry(socket, n, from).finally(() => this.sockets.delete(socket));
    this.pipes.add(work);
    void work.finally(() => this.pipes.delete(work));
  }

  private async carry(socket: net.Socket, n: number, from: string): Promise<void> {
    let stream: HybridConnectionStream;
    try {
      stream = await connectHybridConnection(
        this.o.relay.endpoint,
        this.o.relay.hybridConnection,
        this.o.relay.sendToken,
        {
          ca: this.o.ca,
          handshakeTimeoutMs: 30_000,
          keepAliveIntervalMs: this.o.keepAliveIntervalMs,
          agent: this.o.agent,
        },
      );
    } catch (err) {
      socket.destroy();
      const statusCode = err instanceof RelayHandshakeError ? err.statusCode : undefined;
      const why =
        statusCode === 404
          ? 'no listener on the device side (the agent is offline or re-listening, or the session ended)'
          : statusCode === 401 || statusCode === 403
            ? 'the relay refused the send token (the session ended)'
            : describeError(err);
      this.o.log(
        'connection.refused',
        { connection: n, from, statusCode, detail: why },
        `connection #${n} from ${from} refused: ${why}`,
      );
      if (statusCode === 404 || statusCode === 401 || statusCode === 403) this.o.onSessionGone?.(why);
      return;
    }
    if (this.status !== 'running') {
      stream.destroy();
      socket.destroy();
      return;
    }
    this.streams.add(stream);
    this.carried++;
    this.live.add(socket);
    this.o.log(
      'connection.opened',
      { connection: n, from, connectionId: stream.connectionId },
      `connection #${n} from ${from} -> relay (${short(stream.connectionId)})`,
    );
    socket.resume();
    const r = await pipeBothWays(socket, stream);
    this.streams.delete(stream);
    // In one step, so a report never counts this connection twice.
    this.live.delete(socket);
    this.closedToRelay += r.bytesToRelay;
    this.closedFromRelay += r.bytesFromRelay;
    const code = stream.closeCode;
    this.o.log(
      'connection.closed',
      {
        connection: n,
        bytesSent: r.bytesToRelay,
        bytesReceived: r.bytesFromRelay,
        endedBy: r.endedBy,
        closeCode: code,
        ...(r.error ? { detail: describeError(r.error) } : {}),
      },
      `connection #${n} closed by ${r.endedBy === 'local' ? 'the client' : r.endedBy === 'relay' ? 'the device side' : `an error (${describeError(r.error)})`}: sent ${r.bytesToRelay} B, received ${r.bytesFromRelay} B`,
    );
    if (code === RELAY_CLOSE_ENTITY_DELETED)
      this.o.onSessionGone?.('the relay closed the connection: the hybrid connection was deleted (the session ended)');
  }
}
