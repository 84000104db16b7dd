// Our Azure Relay Hybrid Connections client on `ws` 8: the listener (control channel with keepalive,
// re-listen with backoff and jitter, token renewal, accept/reject) and the sender connect, each
// connection exposed as a Duplex stream over binary frames. Tokens go in a header, never in logs.
//
// Keepalive is what Microsoft's own clients do: an unsolicited pong every `keepAliveIntervalMs` on
// the control channel and on every relayed connection (the .NET client's WebSocket KeepAliveInterval,
// hyco-https's pong timer), well inside the ~4 min idle cut of Azure's load balancers. Nothing waits
// for a pong: nothing documents that Relay answers pings, and a ping has been seen to drop a control
// channel (Azure/azure-relay-dotnet#103). A dead peer is found by reads failing: TCP keepalive probes
// on the socket (whose ACKs the kernel reads) and the socket's error/close.
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Agent, IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocket, createWebSocketStream, type RawData } from 'ws';
import { delayFor } from '../backoff';
import { RelayHandshakeError } from '../errors';
import { parseSasToken } from './sas';

/** A SAS token, or a function that mints a fresh one (called at each (re)connect and before expiry). */
export type TokenSource = string | (() => string | Promise<string>);
export type CaOption = string | Buffer | Array<string | Buffer>;
/** The http(s) Agent for a WebSocket URL (an HTTP CONNECT proxy tunnel), or undefined to connect directly. */
export type AgentForUrl = (url: string) => Agent | undefined;

/** Close codes of the Hybrid Connections protocol. */
export const RELAY_CLOSE_ENTITY_DELETED = 1001;
export const RELAY_CLOSE_POLICY_VIOLATION = 1008;

// In lib/errors.ts with every other code; re-exported for existing importers.
export { RelayHandshakeError };

/** A relayed connection: a Duplex over the rendezvous WebSocket (binary frames, with backpressure). */
export interface HybridConnectionStream extends Duplex {
  /** The rendezvous id (`sb-hc-id`). */
  readonly connectionId: string;
  /** Set once the WebSocket closed: 1000 normal, 1001 hybrid connection deleted, 1006 dropped. */
  closeCode?: number;
  closeReason?: string;
}

/**
 * The WebSocket URL of a hybrid connection for `action`. `endpoint` is the namespace's
 * serviceBusEndpoint (`https://ns.servicebus.windows.net:443/`, `sb://ns.servicebus.windows.net/`, or the emulator's).
 */
export function hybridConnectionUrl(
  endpoint: string,
  hybridConnection: string,
  action: 'listen' | 'connect',
  id?: string,
): string {
  const url = new URL(endpoint);
  const scheme = url.protocol === 'http:' || url.protocol === 'ws:' ? 'ws:' : 'wss:';
  const base = url.pathname.replace(/\/+$/, '');
  const query = new URLSearchParams({ 'sb-hc-action': action, ...(id ? { 'sb-hc-id': id } : {}) });
  return `${scheme}//${url.host}${base}/$hc/${encodeURIComponent(hybridConnection)}?${query.toString()}`;
}

/**
 * Unsolicited pong period (azbridge sets 30 s on the .NET client; its default is 3.5 min): well
 * inside the ~4 min idle timeout of Azure's load balancers, and 2-6 bytes per period.
 */
export const DEFAULT_KEEPALIVE_INTERVAL_MS = 30_000;

/**
 * Keeps `ws` alive and lets the kernel find a dead peer: unsolicited pongs every `intervalMs` (a
 * pong needs no answer, RFC 6455 5.5.3) and TCP keepalive probes on the socket once it is idle that
 * long. Returns nothing to wait for: liveness is the socket's reads failing (error/close), never a pong.
 */
function keepAlive(ws: WebSocket, intervalMs: number): void {
  if (!Number.isFinite(intervalMs) || intervalMs <= 0) return;
  const timer = setInterval(() => {
    if (ws.readyState === WebSocket.OPEN) ws.pong();
  }, intervalMs);
  // The socket keeps the process alive while it is open; the timer alone must not.
  timer.unref();
  ws.once('close', () => clearInterval(timer));
  const socket = (ws as unknown as { _socket?: { setKeepAlive?: (on: boolean, delayMs: number) => void } })._socket;
  socket?.setKeepAlive?.(true, intervalMs);
}

/**
 * Buffer per direction of a relayed stream. ws's default (16 KiB) pauses the socket after every
 * frame of a bulk transfer; 1 MiB keeps the pipe full and still bounds memory per connection.
 */
const STREAM_HIGH_WATER_MARK = 1024 * 1024;

/**
 * Frame masking for our client frames. RFC 6455 masks client frames so that browser-scripted
 * content cannot poison caching proxies that parse plain-text WebSocket traffic; inside TLS no
 * intermediary sees the frames, so over wss we use the all-zero mask, which ws then skips
 * applying (and the receiver skips removing). It was a third of the sender's CPU in the tunnel
 * benchmark. Plain ws:// keeps ws's random masks.
 */
function maskOptionFor(url: string): { generateMask?: (mask: Buffer) => void } {
  return url.startsWith('wss:') ? { generateMask: zeroMask } : {};
}
function zeroMask(mask: Buffer): void {
  mask.fill(0);
}

/** The parts of a Writable's internals that batching needs (Node's documented `writev` hook). */
interface WritevHook {
  _writev(chunks: Array<{ chunk: Buffer }>, callback: (err?: Error | null) => void): void;
}

/**
 * Writes that queued up while the socket was busy go out as one corked batch: one TLS write and one
 * syscall for many frames instead of one each, and no copy (each chunk stays its own binary frame).
 * The batch's callback is the last frame's, so backpressure is unchanged: the stream's buffer
 * (STREAM_HIGH_WATER_MARK) drains only as fast as the socket takes the frames.
 */
function batchWrites(duplex: Duplex, ws: WebSocket): void {
  (duplex as unknown as WritevHook)._writev = (chunks, callback) => {
    const socket = (ws as unknown as { _socket?: Socket | null })._socket;
    socket?.cork();
    const last = chunks.length - 1;
    for (let i = 0; i < last; i++) ws.send(chunks[i].chunk);
    ws.send(chunks[last].chunk, callback);
    socket?.uncork();
  };
}

function toStream(ws: WebSocket, connectionId: string, keepAliveIntervalMs: number): HybridConnectionStream {
  keepAlive(ws, keepAliveIntervalMs);
  const state: { closeCode?: number; closeReason?: string } = {};
  // Registered before createWebSocketStream's own handler, so the code is known when the stream ends.
  ws.on('close', (code: number, reason: Buffer) => {
    state.closeCode = code;
    state.closeReason = reason.toString();
  });
  const duplex = createWebSocketStream(ws, { highWaterMark: STREAM_HIGH_WATER_MARK });
  batchWrites(duplex, ws);
  // Once the WebSocket is gone nothing can be written either: finish the stream when its data is read.
  ws.once('close', () => {
    if (duplex.readableEnded) duplex.destroy();
    else duplex.once('end', () => duplex.destroy());
  });
  return Object.defineProperties(duplex, {
    connectionId: { value: connectionId, enumerable: true },
    closeCode: { get: () => state.closeCode, enumerable: true },
    closeReason: { get: () => state.closeReason, enumerable: true },
  }) as HybridConnectionStream;
}

/** Opens a WebSocket and settles when it is open, refused (RelayHandshakeError) or failed. */
function openWebSocket(
  url: string,
  options: {
    headers?: Record<string, string>;
    ca?: CaOption;
    handshakeTimeoutMs: number;
    track?: Set<WebSocket>;
    agent?: AgentForUrl;
  },
): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, {
      headers: options.headers,
      ca: options.ca,
      agent: options.agent?.(url),
      handshakeTimeout: options.handshakeTimeoutMs,
      perMessageDeflate: false,
      maxPayload: 64 * 1024 * 1024,
      ...maskOptionFor(url),
    });
    // While it connects, the owner can cut it (listener close); removed once it settles.
    options.track?.add(ws);
    ws.once('close', () => options.track?.delete(ws));
    let settled = false;
    const fail = (err: Error): void => {
      if (settled) return;
      settled = true;
      reject(err);
    };
    ws.on('error', (err: Error) =>
      fail(new RelayHandshakeError(0, `Could not reach the relay: ${err.message}`, { cause: err })),
    );
    ws.once('unexpected-response', (_req, res: IncomingMessage) => {
      fail(
        new RelayHandshakeError(
          res.statusCode ?? 0,
          `The relay answered ${res.statusCode} ${res.statusMessage ?? ''}`.trim(),
        ),
      );
      res.resume();
      ws.terminate();
    });
    ws.once('open', () => {
      options.track?.delete(ws);
      if (settled) return ws.terminate();
      settled = true;
      resolve(ws);
    });
  });
}

export interface ConnectOptions {
  /** CA(s) to trust for the relay's certificate (the emulator's), in addition to nothing else. */
  ca?: CaOption;
  handshakeTimeoutMs?: number;
  /** The rendezvous id to ask for (default a random UUID). */
  id?: string;
  /** Unsolicited pong on the connection every this many ms (default 30000; 0 turns keepalive off). */
  keepAliveIntervalMs?: number;
  agent?: AgentForUrl;
}

/** Sender side: connects to a hybrid connection with a Send token; resolves once a listener accepted. */
export async function connectHybridConnection(
  endpoint: string,
  hybridConnection: string,
  token: string,
  options: ConnectOptions = {},
): Promise<HybridConnectionStream> {
  const id = options.id ?? randomUUID();
  const ws = await openWebSocket(hybridConnectionUrl(endpoint, hybridConnection, 'connect', id), {
    headers: { ServiceBusAuthorization: token },
    ca: options.ca,
    handshakeTimeoutMs: options.handshakeTimeoutMs ?? 30_000,
    agent: options.agent,
  });
  return toStream(ws, id, options.keepAliveIntervalMs ?? DEFAULT_KEEPALIVE_INTERVAL_MS);
}

export interface AcceptRequest {
  /** The rendezvous id. */
  id: string;
  /** The sender's upgrade headers as the relay forwards them. */
  headers: Record<string, string>;
  remoteEndpoint?: { address: string; port: number };
}

export interface RejectDecision {
  statusCode: number;
  statusDescription?: string;
}

export type ListenerStatus = 'idle' | 'connecting' | 'online' | 'offline' | 'ended';
/** Why a listener stopped for good. */
export type ListenerEndReason = 'closed' | 'entity_deleted' | 'unauthorized' | 'not_found' | 'token_expired';

export interface ListenerOfflineEvent {
  /** The WebSocket close code, when the channel had opened. */
  code?: number;
  /** The HTTP status, when the handshake was refused. */
  statusCode?: number;
  reason: string;
  /** The socket error behind it (DNS, TLS, refused, proxy), so the caller can name the fix. */
  cause?: Error;
  /** When the next attempt starts. */
  retryInMs: number;
}

export interface ListenerEndedEvent {
  reason: ListenerEndReason;
  code?: number;
  statusCode?: number;
}

export interface HybridConnectionListenerOptions {
  endpoint: string;
  hybridConnection: string;
  /** A Listen token, or a provider of fresh ones (required for renewal and for surviving expiry). */
  token: TokenSource;
  ca?: CaOption;
  /**
   * Unsolicited pong on the control channel and on every accepted connection every this many ms
   * (default 30000; 0 turns keepalive off). No answer is expected or waited for.
   */
  keepAliveIntervalMs?: number;
  /** Through a proxy: the agent for the control channel and each rendezvous URL. */
  agent?: AgentForUrl;
  /** Re-listen backoff: first delay, cap (defaults 1000 and 30000), doubled per failure, jittered. */
  reconnectInitialDelayMs?: number;
  reconnectMaxDelayMs?: number;
  /** The re-listen jitter's source (default Math.random); injected in tests. */
  random?: () => number;
  /** Renew the token this long before it expires (default 60000, at most half its remaining life). */
  renewBeforeExpiryMs?: number;
  handshakeTimeoutMs?: number;
  /** Decides per incoming connection; return a status to reject it. Default: accept all. */
  acceptFilter?: (request: AcceptRequest) => RejectDecision | undefined | Promise<RejectDecision | undefined>;
}

export interface HybridConnectionListenerEvents {
  online: [];
  offline: [ListenerOfflineEvent];
  connection: [HybridConnectionStream, AcceptRequest];
  rejected: [AcceptRequest, RejectDecision];
  /** Non-fatal problems (an accept that failed, a renewal that failed); emitted only if someone listens. */
  error: [Error];
  ended: [ListenerEndedEvent];
}

function parseAccept(data: string): (AcceptRequest & { address: string }) | undefined {
  let message: unknown;
  try {
    message = JSON.parse(data);
  } catch {
    return undefined;
  }
  const accept = (message as { accept?: unknown } | null)?.accept;
  if (!accept || typeof accept !== 'object') return undefined;
  const a = accept as Record<string, unknown>;
  if (typeof a.address !== 'string' || typeof a.id !== 'string') return undefined;
  const headers: Record<string, string> = {};
  if (a.connectHeaders && typeof a.connectHeaders === 'object') {
    for (const [k, v] of Object.entries(a.connectHeaders as Record<string, unknown>))
      if (typeof v === 'string') headers[k] = v;
  }
  const re = a.remoteEndpoint as { address?: unknown; port?: unknown } | undefined;
  const remoteEndpoint =
    re && typeof re.address === 'string' && typeof re.port === 'number'
      ? { address: re.address, port: re.port }
      : undefined;
  let address: URL;
  try {
    address = new URL(a.address);
  } catch {
    return undefined;
  }
  if (address.protocol !== 'wss:' && address.protocol !== 'ws:') return undefined;
  return { address: a.address, id: a.id, headers, remoteEndpoint };
}

/**
 * Listener side of a hybrid connection. `start()` resolves when the control channel is online (or
 * rejects if it ends first); afterwards it stays online by itself until `close()` or a fatal end
 * (hybrid connection deleted: 1001; token refused or expired without a provider; entity not found).
 */
export class HybridConnectionListener extends EventEmitter<HybridConnectionListenerEvents> {
  private state: ListenerStatus = 'idle';
  private ws?: WebSocket;
  private attempt = 0;
  private currentToken?: string;
  private reconnectTimer?: NodeJS.Timeout;
  private renewTimer?: NodeJS.Timeout;
  private readonly pendingAccepts = new Set<WebSocket>();
  private readonly streams = new Set<HybridConnectionStream>();
  private startWaiters: Array<{ resolve: () => void; reject: (err: Error) => void }> = [];
  private readonly opts: Required<Omit<HybridConnectionListenerOptions, 'ca' | 'acceptFilter' | 'agent'>> &
    Pick<HybridConnectionListenerOptions, 'ca' | 'acceptFilter' | 'agent'>;

  constructor(options: HybridConnectionListenerOptions) {
    super();
    this.opts = {
      keepAliveIntervalMs: DEFAULT_KEEPALIVE_INTERVAL_MS,
      reconnectInitialDelayMs: 1000,
      reconnectMaxDelayMs: 30_000,
      renewBeforeExpiryMs: 60_000,
      handshakeTimeoutMs: 15_000,
      random: Math.random,
      ...options,
    };
  }

  get status(): ListenerStatus {
    return this.state;
  }

  /** Connections accepted and still open. */
  get openConnections(): number {
    return this.streams.size;
  }

  start(): Promise<void> {
    if (this.state === 'ended') return Promise.reject(new Error('The listener has ended; create a new one'));
    const online = new Promise<void>((resolve, reject) => {
      if (this.state === 'online') return resolve();
      this.startWaiters.push({ resolve, reject });
    });
    if (this.state === 'idle') void this.connect();
    return online;
  }

  /** Stops listening for good. Open connections stay up (as in Azure) unless `dropConnections`. */
  async close(options: { dropConnections?: boolean } = {}): Promise<void> {
    if (options.dropConnections) for (const s of this.streams) s.destroy();
    if (this.state === 'ended') return;
    const ws = this.ws;
    this.end({ reason: 'closed' });
    if (ws && ws.readyState !== WebSocket.CLOSED) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          ws.terminate();
          resolve();
        }, 2000);
        ws.once('close', () => {
          clearTimeout(timer);
          resolve();
        });
        if (ws.readyState === WebSocket.CONNECTING) ws.terminate();
        else ws.close(1000, 'Listener closed');
      });
    }
  }

  private async resolveToken(): Promise<string> {
    const source = this.opts.token;
    return typeof source === 'string' ? source : source();
  }

  private async connect(): Promise<void> {
    if (this.state === 'ended') return;
    this.state = 'connecting';
    let token: string;
    try {
      token = await this.resolveToken();
    } catch (err) {
      this.emitError(new Error(`The token provider failed: ${err instanceof Error ? err.message : String(err)}`));
      return this.scheduleReconnect({ reason: 'token provider failed' });
    }
    if (this.state !== 'connecting') return;
    this.currentToken = token;
    const url = hybridConnectionUrl(this.opts.endpoint, this.opts.hybridConnection, 'listen', randomUUID());
    const ws = new WebSocket(url, {
      headers: { ServiceBusAuthorization: token },
      ca: this.opts.ca,
      agent: this.opts.agent?.(url),
      handshakeTimeout: this.opts.handshakeTimeoutMs,
      perMessageDeflate: false,
      ...maskOptionFor(url),
    });
    this.ws = ws;
    let handshakeStatus: number | undefined;
    let opened = false;
    let socketError: Error | undefined;
    // Every failure is followed by 'close', handled there; the error is kept as the cause.
    ws.on('error', (err: Error) => {
      socketError ??= err;
    });
    ws.once('unexpected-response', (_req, res: IncomingMessage) => {
      handshakeStatus = res.statusCode;
      res.resume();
      ws.terminate();
    });
    ws.once('open', () => {
      opened = true;
      if (this.state !== 'connecting') return ws.close(1000, 'Listener closed');
      this.state = 'online';
      this.attempt = 0;
      keepAlive(ws, this.opts.keepAliveIntervalMs);
      this.scheduleRenewal();
      for (const w of this.startWaiters.splice(0)) w.resolve();
      this.emit('online');
    });
    ws.on('message', (data: RawData, isBinary: boolean) => {
      if (!isBinary) this.onControlMessage(rawText(data));
    });
    ws.once('close', (code: number, reasonBuffer: Buffer) => {
      if (this.ws === ws) this.ws = undefined;
      this.stopTimers();
      if (this.state === 'ended') return;
      const reason = reasonBuffer.toString();
      if (!opened && handshakeStatus !== undefined) return this.onHandshakeRefused(handshakeStatus);
      if (code === RELAY_CLOSE_ENTITY_DELETED) return this.end({ reason: 'entity_deleted', code });
      if (code === RELAY_CLOSE_POLICY_VIOLATION && typeof this.opts.token === 'string') {
        return this.end({ reason: 'token_expired', code });
      }
      // 1008 with a provider: reconnect at once with a fresh token.
      this.scheduleReconnect(
        {
          code,
          reason: reason || socketError?.message || 'control channel closed',
          ...(socketError ? { cause: socketError } : {}),
        },
        code === RELAY_CLOSE_POLICY_VIOLATION ? 0 : undefined,
      );
    });
  }

  private onHandshakeRefused(statusCode: number): void {
    if (statusCode === 401 || statusCode === 403) return this.end({ reason: 'unauthorized', statusCode });
    if (statusCode === 404) return this.end({ reason: 'not_found', statusCode });
    this.scheduleReconnect({ statusCode, reason: `handshake refused with ${statusCode}` });
  }

  private scheduleReconnect(event: Omit<ListenerOfflineEvent, 'retryInMs'>, forcedDelayMs?: number): void {
    if (this.state === 'ended') return;
    // Equal jitter: half fixed, half random, so a fleet of agents does not reconnect in step.
    const retryInMs =
      forcedDelayMs ??
      delayFor(
        this.attempt,
        { baseMs: this.opts.reconnectInitialDelayMs, capMs: this.opts.reconnectMaxDelayMs, jitter: 'equal' },
        this.opts.random,
      );
    this.attempt++;
    this.state = 'offline';
    this.emit('offline', { ...event, retryInMs });
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => void this.connect(), retryInMs);
  }

  private end(event: ListenerEndedEvent): void {
    if (this.state === 'ended') return;
    this.state = 'ended';
    clearTimeout(this.reconnectTimer);
    this.stopTimers();
    for (const ws of this.pendingAccepts) ws.terminate();
    this.pendingAccepts.clear();
    if (this.ws && event.reason !== 'closed') this.ws.terminate();
    const waiters = this.startWaiters.splice(0);
    for (const w of waiters) w.reject(new Error(`The listener ended: ${event.reason}`));
    this.emit('ended', event);
  }

  private stopTimers(): void {
    clearTimeout(this.renewTimer);
    this.renewTimer = undefined;
  }

  private scheduleRenewal(): void {
    clearTimeout(this.renewTimer);
    if (typeof this.opts.token === 'string' || !this.currentToken) return;
    const parsed = parseSasToken(this.currentToken);
    if (!parsed) return;
    const remainingMs = parsed.expiresAtSeconds * 1000 - Date.now();
    const inMs = Math.max(0, remainingMs - Math.min(this.opts.renewBeforeExpiryMs, remainingMs / 2));
    this.renewTimer = setTimeout(() => void this.renewToken(), Math.min(inMs, 2 ** 31 - 1));
  }

  private async renewToken(): Promise<void> {
    const ws = this.ws;
    try {
      const token = await this.resolveToken();
      if (!ws || ws !== this.ws || ws.readyState !== WebSocket.OPEN) return;
      ws.send(JSON.stringify({ renewToken: { token } }));
      this.currentToken = token;
      this.scheduleRenewal();
    } catch (err) {
      this.emitError(new Error(`Token renewal failed: ${err instanceof Error ? err.message : String(err)}`));
      if (ws === this.ws) this.renewTimer = setTimeout(() => void this.renewToken(), 5000);
    }
  }

  private onControlMessage(text: string): void {
    const accept = parseAccept(text);
    if (accept) void this.onAccept(accept);
  }

  private async onAccept(request: AcceptRequest & { address: string }): Promise<void> {
    const { address, ...info } = request;
    let decision: RejectDecision | undefined;
    try {
      decision = this.opts.acceptFilter ? await this.opts.acceptFilter(info) : undefined;
    } catch (err) {
      this.emitError(err instanceof Error ? err : new Error(String(err)));
      decision = { statusCode: 500, statusDescription: 'Listener error' };
    }
    if (this.state === 'ended') return;
    if (decision) return this.reject(address, info, decision);
    try {
      const ws = await this.trackPending(
        openWebSocket(address, {
          ca: this.opts.ca,
          agent: this.opts.agent,
          handshakeTimeoutMs: this.opts.handshakeTimeoutMs,
          track: this.pendingAccepts,
        }),
      );
      const stream = toStream(ws, info.id, this.opts.keepAliveIntervalMs);
      this.streams.add(stream);
      stream.once('close', () => this.streams.delete(stream));
      this.emit('connection', stream, info);
    } catch (err) {
      this.emitError(err instanceof Error ? err : new Error(String(err)));
    }
  }

  private async reject(address: string, info: AcceptRequest, decision: RejectDecision): Promise<void> {
    const url = new URL(address);
    url.searchParams.set('sb-hc-statusCode', String(decision.statusCode));
    url.searchParams.set('sb-hc-statusDescription', decision.statusDescription ?? 'Rejected');
    try {
      const ws = await this.trackPending(
        openWebSocket(url.toString(), {
          ca: this.opts.ca,
          agent: this.opts.agent,
          handshakeTimeoutMs: this.opts.handshakeTimeoutMs,
          track: this.pendingAccepts,
        }),
      );
      ws.terminate(); // the relay answers 410 to a reject; an upgrade here is unexpected
    } catch (err) {
      if (!(err instanceof RelayHandshakeError && err.statusCode === 410)) {
        this.emitError(err instanceof Error ? err : new Error(String(err)));
        return;
      }
    }
    this.emit('rejected', info, decision);
  }

  /** Keeps rendezvous sockets being opened reachable so `close()` can cut them. */
  private async trackPending(opening: Promise<WebSocket>): Promise<WebSocket> {
    const ws = await opening;
    if (this.state === 'ended') {
      ws.terminate();
      throw new Error('The listener ended while accepting');
    }
    return ws;
  }

  private emitError(err: Error): void {
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }
}

/** A WebSocket message as UTF-8 text, whatever shape `ws` delivered it in. */
function rawText(data: RawData): string {
  if (Buffer.isBuffer(data)) return data.toString('utf8');
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  return Buffer.from(data).toString('utf8');
}
