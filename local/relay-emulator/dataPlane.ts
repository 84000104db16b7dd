// The Hybrid Connections data plane of the emulator: one wss host per namespace (its own port, so
// the namespace is its own host) serving the listener control channel, the sender connect and the
// rendezvous that joins them, with SAS checks against the current keys in the store.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import { verifySasToken, type SasKey } from '../../lib/relay/sas';
import type { AccessRight, AuthorizationRuleRecord, IRelayStore, NamespaceRecord } from './store';

/** Close codes of the protocol guide. */
export const CLOSE_ENTITY_DELETED = 1001;
export const CLOSE_POLICY_VIOLATION = 1008;
export const MAX_LISTENERS_PER_HYBRID_CONNECTION = 25;

export interface DataPlaneOptions {
  store: IRelayStore;
  tls: { cert: string; key: string };
  /** The host every namespace is served on and that token audiences must name (the advertised one). */
  host: string;
  /** The address the data plane listens on (default `host`); `0.0.0.0` lets other machines in. */
  bindHost?: string;
  /**
   * The ports namespaces are served on, one each (default: any free port). A fixed range is what a
   * user opens in a firewall or forwards from a VM's NAT; a namespace keeps its port across restarts.
   */
  ports?: { first: number; last: number };
  /** How long an accept address stays valid (the service says about 30 s). */
  rendezvousTimeoutMs: number;
  /**
   * A WebSocket (control channel or either hop of a rendezvous) with no frame either way for this
   * long is cut, as Azure's load balancers cut idle connections after ~4 min.
   */
  idleTimeoutMs: number;
  /** Answer pings with pongs (ws's default). Off by default: nothing documents that Relay answers pings. */
  autoPong: boolean;
  now: () => Date;
}

interface ControlChannel {
  ws: WebSocket;
  hybridConnection: string;
  expiresAt: Date;
  expiryTimer?: NodeJS.Timeout;
}

interface PendingRendezvous {
  id: string;
  hybridConnection: string;
  req: IncomingMessage;
  socket: Duplex;
  head: Buffer;
  timer: NodeJS.Timeout;
}

interface LiveRendezvous {
  hybridConnection: string;
  sender: WebSocket;
  listener: WebSocket;
}

type AuthResult = { ok: true; expiresAt: Date } | { ok: false; status: number; description: string };

const key = (name: string): string => name.toLowerCase();
/** Above this many bytes queued towards one side, the other side is paused (end-to-end backpressure). */
const HIGH_WATER_BYTES = 1024 * 1024;
const MAX_TIMER_MS = 2 ** 31 - 1;

function canSendCloseCode(code: number): boolean {
  return (
    (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999)
  );
}

function rejectHandshake(socket: Duplex, status: number, description: string): void {
  const reason = description.replace(/[^\x20-\x7e]/g, ' ').slice(0, 200);
  if (socket.writable) {
    socket.end(
      `HTTP/1.1 ${status} ${reason}\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(reason)}\r\n` +
        `Connection: close\r\n\r\n${reason}`,
    );
  }
  socket.destroy();
}

/** One namespace's data plane: an https/wss server on its own port. */
export class NamespaceDataPlane {
  private server?: https.Server;
  private readonly wss: WebSocketServer;
  private readonly controlChannels = new Map<string, Set<ControlChannel>>();
  private readonly pending = new Map<string, PendingRendezvous>();
  private readonly live = new Set<LiveRendezvous>();
  /** The subprotocol the listener chose, applied to the sender's handshake. */
  private readonly chosenProtocol = new WeakMap<IncomingMessage, string | false>();
  private closed = false;
  port = 0;

  constructor(
    private readonly namespaceName: string,
    private readonly options: DataPlaneOptions,
  ) {
    this.wss = new WebSocketServer({
      noServer: true,
      perMessageDeflate: false,
      autoPong: options.autoPong,
      maxPayload: 64 * 1024 * 1024,
      handleProtocols: (protocols, req) => {
        const chosen = this.chosenProtocol.get(req);
        if (chosen === undefined) return protocols.values().next().value ?? false; // the listener picks
        return chosen !== false && protocols.has(chosen) ? chosen : false;
      },
    });
  }

  async start(port = 0): Promise<number> {
    const server = https.createServer({ cert: this.options.tls.cert, key: this.options.tls.key }, (req, res) => {
      // HTTP request/response mode is not emulated (see README).
      res.writeHead(501, { 'content-type': 'text/plain' }).end('HTTP relay mode is not emulated');
    });
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.onUpgrade(req, socket, head));
    server.on('clientError', (_err, socket) => socket.destroy());
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, this.options.bindHost ?? this.options.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const address = server.address();
    this.port = typeof address === 'object' && address ? address.port : 0;
    return this.port;
  }

  listenerCount(hybridConnection: string): number {
    return this.controlChannels.get(key(hybridConnection))?.size ?? 0;
  }

  /** Ends everything of one hybrid connection: control channels, pending and live rendezvous. */
  closeHybridConnection(hybridConnection: string, code = CLOSE_ENTITY_DELETED, reason = 'Entity deleted'): void {
    const hc = key(hybridConnection);
    for (const channel of this.controlChannels.get(hc) ?? []) this.closeControlChannel(channel, code, reason);
    this.controlChannels.delete(hc);
    for (const p of [...this.pending.values()]) {
      if (p.hybridConnection !== hc) continue;
      this.pending.delete(p.id);
      clearTimeout(p.timer);
      rejectHandshake(p.socket, 404, 'Entity deleted');
    }
    for (const r of [...this.live]) {
      if (r.hybridConnection !== hc) continue;
      this.live.delete(r);
      closeSocket(r.sender, code, reason);
      closeSocket(r.listener, code, reason);
    }
  }

  /** Test hook: drops control channels abruptly, as a network failure would. Returns how many. */
  dropControlChannels(): number {
    let dropped = 0;
    for (const set of this.controlChannels.values()) {
      for (const channel of set) {
        clearTimeout(channel.expiryTimer);
        channel.ws.terminate();
        dropped++;
      }
      set.clear();
    }
    return dropped;
  }

  async close(code = CLOSE_ENTITY_DELETED, reason = 'Entity deleted'): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const hc of new Set([
      ...this.controlChannels.keys(),
      ...[...this.pending.values()].map((p) => p.hybridConnection),
      ...[...this.live].map((r) => r.hybridConnection),
    ])) {
      this.closeHybridConnection(hc, code, reason);
    }
    const server = this.server;
    if (!server) return;
    await new Promise<void>((resolve) => {
      // Give peers a moment to answer the close frames, then cut what is left.
      const timer = setTimeout(() => {
        for (const client of this.wss.clients) client.terminate();
      }, 1000);
      const finish = (): void => {
        clearTimeout(timer);
        resolve();
      };
      const waitForClients = (): void => {
        if (this.wss.clients.size === 0) return finish();
        let remaining = this.wss.clients.size;
        for (const client of this.wss.clients) {
          client.once('close', () => {
            if (--remaining === 0) finish();
          });
        }
      };
      server.close(() => waitForClients());
      server.closeAllConnections();
    });
    this.wss.close();
  }

  private namespace(): NamespaceRecord | undefined {
    return this.options.store.getNamespace(this.namespaceName);
  }

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => socket.destroy());
    if (this.closed) return rejectHandshake(socket, 404, 'Namespace not found');
    let url: URL;
    try {
      url = new URL(req.url ?? '/', `https://${this.options.host}`);
    } catch {
      return rejectHandshake(socket, 400, 'Bad request');
    }
    const match = /^\/\$hc\/([^/]+)(\/.*)?$/.exec(url.pathname);
    if (!match) return rejectHandshake(socket, 404, 'Endpoint not found');
    let hcName: string;
    try {
      hcName = decodeURIComponent(match[1]);
    } catch {
      return rejectHandshake(socket, 400, 'Bad request');
    }
    const ns = this.namespace();
    if (!ns || ns.deletingSince) return rejectHandshake(socket, 404, 'Namespace not found');
    if (ns.activeAt === null || ns.activeAt > this.options.now())
      return rejectHandshake(socket, 404, 'Namespace is activating');
    const action = url.searchParams.get('sb-hc-action');
    if (action === 'accept') return this.onAccept(url, req, socket, head);
    const hc = this.options.store.getHybridConnection(ns.name, hcName);
    if (!hc) return rejectHandshake(socket, 404, 'Hybrid connection not found');
    const token = url.searchParams.get('sb-hc-token') ?? headerValue(req, 'servicebusauthorization');
    if (action === 'listen') {
      const auth = this.authorize(token, hc.name, 'Listen');
      if (!auth.ok) return rejectHandshake(socket, auth.status, auth.description);
      if (this.listenerCount(hc.name) >= MAX_LISTENERS_PER_HYBRID_CONNECTION) {
        return rejectHandshake(socket, 403, 'Listener limit of 25 reached');
      }
      this.wss.handleUpgrade(req, socket, head, (ws) => {
        watchIdle(ws, this.options.idleTimeoutMs);
        this.onControlChannel(ws, hc.name, auth.expiresAt);
      });
      return;
    }
    if (action === 'connect') {
      if (hc.requiresClientAuthorization) {
        const auth = this.authorize(token, hc.name, 'Send');
        if (!auth.ok) return rejectHandshake(socket, auth.status, auth.description);
      }
      return this.onConnect(url, req, socket, head, hc.name);
    }
    return rejectHandshake(socket, 400, 'Missing or unknown sb-hc-action');
  }

  /** The service's check order: token present, valid for this host and path, signed by a current key, right claim. */
  private authorize(token: string | undefined, hybridConnection: string, right: AccessRight): AuthResult {
    if (!token) return { ok: false, status: 401, description: 'Missing token' };
    const ns = this.namespace();
    if (!ns) return { ok: false, status: 404, description: 'Namespace not found' };
    const rules: AuthorizationRuleRecord[] = [
      ...this.options.store.listRules(ns.name, hybridConnection),
      ...this.options.store.listRules(ns.name, undefined),
    ];
    const keys: SasKey[] = rules.flatMap((r) => [
      { keyName: r.name, key: r.primaryKey },
      { keyName: r.name, key: r.secondaryKey },
    ]);
    const audience = `http://${this.options.host}/${encodeURIComponent(hybridConnection)}`;
    const result = verifySasToken(token, { audience, keys, now: this.options.now() });
    if (!result.ok) {
      switch (result.reason) {
        case 'audience_path_mismatch':
          return { ok: false, status: 403, description: 'Token audience does not cover this entity' };
        case 'expired':
          return { ok: false, status: 401, description: 'Token expired' };
        case 'audience_host_mismatch':
          return { ok: false, status: 401, description: 'Token audience is another host' };
        default:
          return { ok: false, status: 401, description: 'Invalid token' };
      }
    }
    const rule = rules[Math.floor(result.keyIndex / 2)];
    if (!rule.rights.includes(right) && !rule.rights.includes('Manage')) {
      return { ok: false, status: 403, description: `Token lacks the ${right} claim` };
    }
    return { ok: true, expiresAt: result.expiresAt };
  }

  private onControlChannel(ws: WebSocket, hybridConnection: string, expiresAt: Date): void {
    const hc = key(hybridConnection);
    const channel: ControlChannel = { ws, hybridConnection, expiresAt };
    let set = this.controlChannels.get(hc);
    if (!set) this.controlChannels.set(hc, (set = new Set()));
    set.add(channel);
    this.armExpiry(channel);
    ws.on('message', (data: RawData, isBinary: boolean) => {
      if (isBinary) return;
      let message: unknown;
      try {
        const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
        message = JSON.parse(bytes.toString('utf8'));
      } catch {
        return;
      }
      const renew = (message as { renewToken?: { token?: unknown } } | null)?.renewToken;
      if (!renew) return;
      const auth =
        typeof renew.token === 'string' ? this.authorize(renew.token, hybridConnection, 'Listen') : undefined;
      if (!auth || !auth.ok) return this.closeControlChannel(channel, CLOSE_POLICY_VIOLATION, 'Token renewal failed');
      channel.expiresAt = auth.expiresAt;
      this.armExpiry(channel);
    });
    ws.on('error', () => ws.terminate());
    ws.on('close', () => {
      clearTimeout(channel.expiryTimer);
      this.controlChannels.get(hc)?.delete(channel);
    });
  }

  /** Token expiry ends the control channel (1008); rendezvous already open are not affected. */
  private armExpiry(channel: ControlChannel): void {
    clearTimeout(channel.expiryTimer);
    const ms = channel.expiresAt.getTime() - this.options.now().getTime();
    if (ms <= 0) return this.closeControlChannel(channel, CLOSE_POLICY_VIOLATION, 'Token expired');
    channel.expiryTimer = setTimeout(() => this.armExpiry(channel), Math.min(ms, MAX_TIMER_MS));
  }

  private closeControlChannel(channel: ControlChannel, code: number, reason: string): void {
    clearTimeout(channel.expiryTimer);
    this.controlChannels.get(key(channel.hybridConnection))?.delete(channel);
    closeSocket(channel.ws, code, reason);
  }

  private onConnect(url: URL, req: IncomingMessage, socket: Duplex, head: Buffer, hybridConnection: string): void {
    const candidates = [...(this.controlChannels.get(key(hybridConnection)) ?? [])].filter(
      (c) => c.ws.readyState === WebSocket.OPEN,
    );
    if (candidates.length === 0) return rejectHandshake(socket, 404, 'No listener is connected');
    const listener = candidates[Math.floor(Math.random() * candidates.length)];
    const requestedId = url.searchParams.get('sb-hc-id');
    const id = requestedId && !this.pending.has(requestedId) && requestedId.length <= 128 ? requestedId : randomUUID();
    const pending: PendingRendezvous = {
      id,
      hybridConnection: key(hybridConnection),
      req,
      socket,
      head,
      timer: setTimeout(() => {
        if (this.pending.get(id) !== pending) return;
        this.pending.delete(id);
        rejectHandshake(socket, 504, 'The listener did not accept in time');
      }, this.options.rendezvousTimeoutMs),
    };
    this.pending.set(id, pending);
    socket.once('close', () => {
      if (this.pending.get(id) !== pending) return;
      this.pending.delete(id);
      clearTimeout(pending.timer);
    });
    // Forward every upgrade header of the sender except its credential (hyco-ws needs Sec-WebSocket-Key).
    const connectHeaders: Record<string, string> = {};
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
      const name = req.rawHeaders[i];
      if (name.toLowerCase() === 'servicebusauthorization') continue;
      connectHeaders[name] = req.rawHeaders[i + 1];
    }
    const socketInfo = socket as unknown as Partial<Socket>;
    const address = `wss://${this.options.host}:${this.port}/$hc/${encodeURIComponent(hybridConnection)}?sb-hc-action=accept&sb-hc-id=${encodeURIComponent(id)}`;
    touch(listener.ws);
    listener.ws.send(
      JSON.stringify({
        accept: {
          address,
          id,
          connectHeaders,
          remoteEndpoint: { address: socketInfo.remoteAddress ?? '', port: socketInfo.remotePort ?? 0 },
        },
      }),
    );
  }

  private onAccept(url: URL, req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const id = url.searchParams.get('sb-hc-id') ?? '';
    const pending = this.pending.get(id);
    if (!pending) return rejectHandshake(socket, 404, 'Rendezvous not found, expired or already used');
    this.pending.delete(id);
    clearTimeout(pending.timer);
    const ns = this.namespace();
    if (!ns || !this.options.store.getHybridConnection(ns.name, pending.hybridConnection)) {
      rejectHandshake(pending.socket, 404, 'Hybrid connection not found');
      return rejectHandshake(socket, 404, 'Hybrid connection not found');
    }
    // hyco-ws spells the reject parameters without the sb-hc- prefix; accept both.
    const statusText = url.searchParams.get('sb-hc-statusCode') ?? url.searchParams.get('statusCode');
    if (statusText !== null) {
      const status = Number(statusText);
      const description =
        url.searchParams.get('sb-hc-statusDescription') ?? url.searchParams.get('statusDescription') ?? 'Rejected';
      rejectHandshake(
        pending.socket,
        Number.isInteger(status) && status >= 400 && status <= 599 ? status : 400,
        description,
      );
      return rejectHandshake(socket, 410, 'Gone');
    }
    if (pending.socket.destroyed) return rejectHandshake(socket, 410, 'The sender went away');
    this.wss.handleUpgrade(req, socket, head, (listenerWs) => {
      watchIdle(listenerWs, this.options.idleTimeoutMs);
      this.chosenProtocol.set(pending.req, listenerWs.protocol || false);
      if (pending.socket.destroyed) return closeSocket(listenerWs, 1000, 'The sender went away');
      this.wss.handleUpgrade(pending.req, pending.socket, pending.head, (senderWs) => {
        watchIdle(senderWs, this.options.idleTimeoutMs);
        const rendezvous: LiveRendezvous = {
          hybridConnection: pending.hybridConnection,
          sender: senderWs,
          listener: listenerWs,
        };
        this.live.add(rendezvous);
        const done = (): void => {
          this.live.delete(rendezvous);
        };
        pipeFrames(senderWs, listenerWs, done);
        pipeFrames(listenerWs, senderWs, done);
      });
    });
  }
}

function headerValue(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function closeSocket(ws: WebSocket, code: number, reason: string): void {
  if (ws.readyState === WebSocket.CLOSED || ws.readyState === WebSocket.CLOSING) return;
  ws.close(canSendCloseCode(code) ? code : 1000, reason.slice(0, 120));
}

/** The activity mark of each watched socket: calling it restarts the socket's idle clock. */
const idleMarks = new WeakMap<WebSocket, () => void>();

function touch(ws: WebSocket): void {
  idleMarks.get(ws)?.();
}

/**
 * Cuts `ws` (no close frame, as a load balancer drops a flow) once no frame went either way for
 * `idleMs`. Frames received (data, ping, pong) and data sent count; one timer per socket, re-armed
 * lazily so a bulk transfer does not reset a timer per frame.
 */
function watchIdle(ws: WebSocket, idleMs: number): void {
  if (!Number.isFinite(idleMs) || idleMs <= 0) return;
  let last = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const check = (): void => {
    const idle = Date.now() - last;
    if (idle >= idleMs) {
      timer = undefined;
      ws.terminate();
      return;
    }
    timer = setTimeout(check, Math.min(idleMs - idle, MAX_TIMER_MS));
  };
  const mark = (): void => {
    last = Date.now();
  };
  idleMarks.set(ws, mark);
  ws.on('message', mark);
  ws.on('ping', mark);
  ws.on('pong', mark);
  ws.once('close', () => clearTimeout(timer));
  timer = setTimeout(check, Math.min(idleMs, MAX_TIMER_MS));
}

/** Relays frames from `from` to `to`, keeping the binary/text flag, with backpressure and close propagation. */
function pipeFrames(from: WebSocket, to: WebSocket, onClosed: () => void): void {
  from.on('message', (data: RawData, isBinary: boolean) => {
    if (to.readyState !== WebSocket.OPEN) return;
    touch(to);
    to.send(data as Buffer, { binary: isBinary }, () => {
      if (from.isPaused && to.bufferedAmount < HIGH_WATER_BYTES / 2) from.resume();
    });
    if (to.bufferedAmount > HIGH_WATER_BYTES && !from.isPaused) from.pause();
  });
  from.on('close', (code: number, reason: Buffer) => {
    onClosed();
    closeSocket(to, code, reason.toString());
  });
  from.on('error', () => {
    from.terminate();
    to.terminate();
  });
}

/** Every namespace's data plane, by namespace name. */
export class DataPlaneRegistry {
  private readonly hosts = new Map<string, { plane: NamespaceDataPlane; ready: Promise<number> }>();

  constructor(private readonly options: DataPlaneOptions) {}

  /**
   * Opens the namespace's host if needed, on `preferredPort` when given (a restart re-opens each
   * namespace where its endpoint said it was), else on a free port (of `ports` when set); resolves to
   * its port. Concurrent callers share one start.
   */
  ensure(namespaceName: string, preferredPort?: number): Promise<number> {
    const existing = this.hosts.get(key(namespaceName));
    if (existing) return existing.ready;
    const plane = new NamespaceDataPlane(namespaceName, this.options);
    const ready = preferredPort ? plane.start(preferredPort) : this.startInRange(namespaceName, plane);
    const entry = { plane, ready };
    this.hosts.set(key(namespaceName), entry);
    ready.catch(() => {
      if (this.hosts.get(key(namespaceName)) === entry) this.hosts.delete(key(namespaceName));
    });
    return ready;
  }

  private async startInRange(namespaceName: string, plane: NamespaceDataPlane): Promise<number> {
    const range = this.options.ports;
    if (!range) return plane.start(0);
    // Ports other namespaces hold or were given (a namespace being re-opened keeps its own).
    const taken = new Set<number>();
    for (const [name, entry] of this.hosts) if (name !== key(namespaceName)) taken.add(entry.plane.port);
    for (const ns of this.options.store.listAllNamespaces?.() ?? [])
      if (key(ns.name) !== key(namespaceName) && ns.dataPlanePort) taken.add(ns.dataPlanePort);
    for (let port = range.first; port <= range.last; port++) {
      if (taken.has(port)) continue;
      try {
        return await plane.start(port);
      } catch (err) {
        if ((err as { code?: unknown }).code !== 'EADDRINUSE') throw err;
      }
    }
    throw new Error(`no free port left in ${range.first}-${range.last} for namespace ${namespaceName}`);
  }

  listenerCount(namespaceName: string, hybridConnection: string): number {
    return this.hosts.get(key(namespaceName))?.plane.listenerCount(hybridConnection) ?? 0;
  }

  closeHybridConnection(namespaceName: string, hybridConnection: string): void {
    this.hosts.get(key(namespaceName))?.plane.closeHybridConnection(hybridConnection);
  }

  async closeNamespace(namespaceName: string): Promise<void> {
    const entry = this.hosts.get(key(namespaceName));
    if (!entry) return;
    this.hosts.delete(key(namespaceName));
    await entry.ready.catch(() => undefined);
    await entry.plane.close();
  }

  dropControlChannels(namespaceName?: string): number {
    let dropped = 0;
    for (const [name, entry] of this.hosts) {
      if (namespaceName === undefined || name === key(namespaceName)) dropped += entry.plane.dropControlChannels();
    }
    return dropped;
  }

  async closeAll(): Promise<void> {
    const names = [...this.hosts.keys()];
    await Promise.all(names.map((n) => this.closeNamespace(n)));
  }
}
