// The device agent: polls its own queue with the enrollment SAS, and for each session.open it may
// serve opens a Hybrid Connections listener, posts ready once it is online, and pipes every accepted
// connection to 127.0.0.1:<port>. One log event per state change; never a token or a SAS.
import net from 'node:net';
import { AnonymousCredential, QueueClient, RestError, type DequeuedMessageItem } from '@azure/storage-queue';
import { Backoff, sleep } from '../lib/backoff';
import type { Enrollment } from '../lib/devices/deviceRegistry';
import type { SessionOpenMessage } from '../lib/devices/deviceNotifier';
import { describeError } from '../lib/errors';
import {
  HybridConnectionListener,
  type HybridConnectionListenerOptions,
  type HybridConnectionStream,
} from '../lib/relay/hybridConnection';
import { decideMessage } from './messageDecision';
import { pipeBothWays } from './pipe';
import { azureProxyOptions, fetchVia, proxyAgentFor, type ProxySettings } from './proxy';

export type AgentLog = (event: string, fields: Record<string, unknown>, human: string) => void;

/** Posts the device's answer to the session's readyUrl; resolves with the HTTP status. */
export type ReadyPoster = (
  url: string,
  body: { readyToken: string; status?: 'ready' | 'refused'; detail?: string },
) => Promise<number>;

export interface DeviceAgentOptions {
  enrollment: Enrollment;
  allowPorts: ReadonlySet<number>;
  /** Queue poll interval when the queue is empty (default 1000). */
  pollIntervalMs?: number;
  /** How long a received message stays invisible to other receivers while it is handled (default 30). */
  visibilityTimeoutSeconds?: number;
  /** CA to trust for the relay (the emulator's PEM); default the system's roots. */
  relayCa?: string;
  /** Where accepted connections go (default 127.0.0.1). */
  targetHost?: string;
  /** The HTTP proxy for all three channels (queue, ready calls, relay WebSockets); default none. */
  proxy?: ProxySettings;
  log: AgentLog;
  /** Injected in tests; default a QueueClient on `queueUrl?queueSas`. */
  queueClient?: QueueClient;
  postReady?: ReadyPoster;
  listenerOptions?: Partial<
    Pick<HybridConnectionListenerOptions, 'reconnectInitialDelayMs' | 'reconnectMaxDelayMs' | 'keepAliveIntervalMs'>
  >;
  now?: () => Date;
  /** The retry jitter's source (default Math.random); injected in tests. */
  random?: () => number;
}

type Status = 'idle' | 'running' | 'closing' | 'closed';
const MAX_TIMER_MS = 2 ** 31 - 1;
const MAX_POLL_BACKOFF_MS = 30_000;
const HANDLED_MEMORY = 1000;
const short = (id: string): string => id.slice(0, 8);

/** The enrollment's queue, with a short retry policy so a poll never hangs for minutes. */
export function queueClientFor(
  enrollment: Pick<Enrollment, 'queueUrl' | 'queueSas'>,
  proxy?: ProxySettings,
): QueueClient {
  const sas = enrollment.queueSas.replace(/^\?/, '');
  const proxyOptions = azureProxyOptions(proxy, enrollment.queueUrl);
  return new QueueClient(`${enrollment.queueUrl}?${sas}`, new AnonymousCredential(), {
    retryOptions: { maxTries: 2, tryTimeoutInMs: 15_000 },
    ...(proxyOptions ? { proxyOptions } : {}),
  });
}

export const postReadyWithFetch: ReadyPoster = (url, body) => postReadyVia(undefined)(url, body);

/** postReadyWithFetch through the proxy that applies to the readyUrl, if any. */
export const postReadyVia =
  (proxy: ProxySettings | undefined): ReadyPoster =>
  async (url, body) => {
    const res = await fetchVia(proxy)(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(10_000),
    });
    await res.arrayBuffer().catch(() => undefined);
    return res.status;
  };

export class DeviceAgent {
  private status: Status = 'idle';
  private readonly queue: QueueClient;
  private readonly sessions = new Map<string, AgentSession>();
  /** Sessions handled already (bounded, oldest first out), so a redelivered copy is ignored. */
  private readonly handled = new Set<string>();
  private readonly inFlight = new Set<Promise<void>>();
  private loop?: Promise<void>;
  private wake?: () => void;
  private sleepTimer?: NodeJS.Timeout;
  private readonly abort = new AbortController();
  /** Failed polls back off exponentially with equal jitter, so a fleet that lost its queue at once does not retry in step. */
  private readonly pollBackoff: Backoff;
  private readonly now: () => Date;

  constructor(private readonly o: DeviceAgentOptions) {
    this.queue = o.queueClient ?? queueClientFor(o.enrollment, o.proxy);
    this.now = o.now ?? (() => new Date());
    this.pollBackoff = new Backoff({
      baseMs: 2 * this.pollIntervalMs,
      capMs: MAX_POLL_BACKOFF_MS,
      jitter: 'equal',
      random: o.random,
    });
  }

  /** Session ids running now. */
  get runningSessions(): string[] {
    return [...this.sessions.keys()];
  }

  start(): void {
    if (this.status !== 'idle') throw new Error(`Cannot start the agent in status ${this.status}`);
    this.status = 'running';
    const allow = [...this.o.allowPorts].sort((a, b) => a - b);
    this.o.log(
      'agent.started',
      { deviceId: this.o.enrollment.deviceId, allow, pollMs: this.pollIntervalMs },
      `agent for device ${this.o.enrollment.deviceId} started: allowing port(s) ${allow.join(', ')}, polling every ${this.pollIntervalMs} ms`,
    );
    this.loop = this.pollLoop();
  }

  /** Stops polling, closes every session (listeners and connections) and waits for handlers. */
  async close(reason = 'agent stopping'): Promise<void> {
    if (this.status !== 'running') {
      this.status = 'closed';
      return;
    }
    this.status = 'closing';
    this.abort.abort();
    clearTimeout(this.sleepTimer);
    this.wake?.();
    await this.loop;
    await Promise.all([...this.sessions.values()].map((s) => s.close(reason)));
    await Promise.allSettled([...this.inFlight]);
    this.status = 'closed';
    this.o.log('agent.stopped', { deviceId: this.o.enrollment.deviceId }, 'agent stopped');
  }

  private get pollIntervalMs(): number {
    return this.o.pollIntervalMs ?? 1000;
  }

  private async pollLoop(): Promise<void> {
    while (this.status === 'running') {
      let delayMs = this.pollIntervalMs;
      try {
        const res = await this.queue.receiveMessages({
          numberOfMessages: 32,
          visibilityTimeout: this.o.visibilityTimeoutSeconds ?? 30,
          abortSignal: this.abort.signal,
        });
        if (this.pollBackoff.failures > 0) {
          this.o.log(
            'poll.recovered',
            { failures: this.pollBackoff.failures },
            `queue reachable again after ${this.pollBackoff.failures} failed poll(s)`,
          );
          this.pollBackoff.reset();
        }
        for (const item of res.receivedMessageItems) this.track(this.handleMessage(item));
        // A full batch: there may be more right away.
        if (res.receivedMessageItems.length === 32) delayMs = 0;
      } catch (err) {
        if (this.status !== 'running') break;
        delayMs = this.pollBackoff.next() ?? MAX_POLL_BACKOFF_MS;
        const failures = this.pollBackoff.failures;
        // Say it on the first failure and when it changes nature; not on every retry.
        if (failures === 1 || failures % 10 === 0) {
          const { statusCode, detail } = describeQueueError(err);
          this.o.log(
            'poll.failed',
            { statusCode, detail, retryInMs: delayMs, failures },
            `cannot poll the queue: ${detail}; retrying in ${(delayMs / 1000).toFixed(1)} s`,
          );
        }
      }
      if (this.status !== 'running') break;
      if (delayMs > 0) await this.sleep(delayMs);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.wake = resolve;
      this.sleepTimer = setTimeout(resolve, ms);
    });
  }

  private track(p: Promise<void>): void {
    this.inFlight.add(p);
    void p.finally(() => this.inFlight.delete(p));
  }

  private remember(sessionId: string): void {
    this.handled.add(sessionId);
    if (this.handled.size > HANDLED_MEMORY) this.handled.delete(this.handled.values().next().value as string);
  }

  private async handleMessage(item: DequeuedMessageItem): Promise<void> {
    try {
      const decision = decideMessage(item.messageText, {
        deviceId: this.o.enrollment.deviceId,
        allowPorts: this.o.allowPorts,
        now: this.now(),
        running: new Set(this.sessions.keys()),
        handled: this.handled,
      });
      switch (decision.action) {
        case 'drop':
          this.o.log(
            'message.dropped',
            { messageId: item.messageId, detail: decision.detail },
            `dropped message ${short(item.messageId)}: ${decision.detail}`,
          );
          break;
        case 'ignore':
          this.o.log(
            'message.ignored',
            { sessionId: decision.sessionId, reason: decision.reason, detail: decision.detail },
            `ignored a message for session ${decision.sessionId}: ${decision.detail}`,
          );
          break;
        case 'close': {
          const session = this.sessions.get(decision.message.sessionId);
          await session?.close(`the control plane ended it (${decision.message.reason})`);
          break;
        }
        case 'refuse': {
          const m = decision.message;
          this.remember(m.sessionId);
          this.o.log(
            'session.refused',
            { sessionId: m.sessionId, port: m.port, detail: decision.detail },
            `session ${m.sessionId} refused: ${decision.detail}`,
          );
          await this.answer(m, { status: 'refused', detail: decision.detail });
          break;
        }
        case 'open': {
          const m = decision.message;
          this.remember(m.sessionId);
          const session = new AgentSession(m, this, this.o);
          this.sessions.set(m.sessionId, session);
          session.onClosed = () => {
            if (this.sessions.get(m.sessionId) === session) this.sessions.delete(m.sessionId);
          };
          await session.start();
          break;
        }
      }
    } catch (err) {
      this.o.log(
        'message.failed',
        { messageId: item.messageId, detail: describeError(err) },
        `handling message ${short(item.messageId)} failed: ${describeError(err)}`,
      );
    }
    // Deleted once handled, whatever the outcome: a message that cannot be handled now never will be.
    try {
      await this.queue.deleteMessage(item.messageId, item.popReceipt);
    } catch (err) {
      const { detail } = describeQueueError(err);
      this.o.log(
        'message.delete_failed',
        { messageId: item.messageId, detail },
        `could not delete message ${short(item.messageId)}: ${detail}`,
      );
    }
  }

  /** Posts to the session's readyUrl (retrying transient failures); returns the HTTP status or 0. */
  async answer(m: SessionOpenMessage, extra: { status?: 'refused'; detail?: string } = {}): Promise<number> {
    const post = this.o.postReady ?? postReadyVia(this.o.proxy);
    const body = { readyToken: m.readyToken, ...extra };
    // Four attempts, about 0.5, 1 and 2 s apart (jittered), and none past the message's notAfter.
    const backoff = new Backoff({ baseMs: 500, capMs: 2000, jitter: 'equal', maxAttempts: 4, random: this.o.random });
    let lastDetail: string;
    for (;;) {
      try {
        const status = await post(m.readyUrl, body);
        if (status < 500) return status;
        lastDetail = `HTTP ${status}`;
      } catch (err) {
        lastDetail = describeError(err);
      }
      if (Date.parse(m.notAfter) <= this.now().getTime()) break;
      const delayMs = backoff.next();
      if (delayMs === undefined) break;
      await sleep(delayMs);
    }
    this.o.log(
      'ready.failed',
      { sessionId: m.sessionId, detail: lastDetail },
      `session ${m.sessionId}: could not reach the control plane to answer: ${lastDetail}`,
    );
    return 0;
  }
}

function describeQueueError(err: unknown): { statusCode?: number; detail: string } {
  if (err instanceof RestError) {
    const statusCode = err.statusCode;
    // Some proxies (tinyproxy) answer a plain proxied request with 401 and a Basic challenge, not 407;
    // Azure Storage never asks for Basic credentials.
    const challenge = err.response?.headers.get('proxy-authenticate') ?? err.response?.headers.get('www-authenticate');
    if (statusCode === 407 || (statusCode === 401 && /^basic/i.test(challenge ?? ''))) {
      return {
        statusCode,
        detail: `the proxy refused the credentials (${statusCode}): check the user and password in --proxy or HTTPS_PROXY`,
      };
    }
    if (statusCode === 403) {
      return {
        statusCode,
        detail:
          'the queue refused the enrollment (403): it was rotated, revoked or has expired; get a new one with `relay-broker devices rotate`',
      };
    }
    if (statusCode === 404) return { statusCode, detail: 'the queue does not exist (404): the device was removed' };
    return { statusCode, detail: `${statusCode ?? ''} ${err.code ?? ''} ${describeError(err.message, 200)}`.trim() };
  }
  return { detail: describeError(err) };
}

type SessionStatus = 'starting' | 'online' | 'closing' | 'closed';

/** One session on the device: its listener, its lifetime timer and its piped connections. */
class AgentSession {
  private status: SessionStatus = 'starting';
  private listener?: HybridConnectionListener;
  private lifetimeTimer?: NodeJS.Timeout;
  private readonly sockets = new Set<net.Socket>();
  private readonly streams = new Set<HybridConnectionStream>();
  private readonly pipes = new Set<Promise<unknown>>();
  private everOnline = false;
  private closing?: Promise<void>;
  onClosed?: () => void;
  readonly id: string;

  constructor(
    private readonly m: SessionOpenMessage,
    private readonly agent: DeviceAgent,
    private readonly o: DeviceAgentOptions,
  ) {
    this.id = m.sessionId;
  }

  private log(event: string, fields: Record<string, unknown>, human: string): void {
    this.o.log(event, { sessionId: this.id, ...fields }, `session ${short(this.id)}: ${human}`);
  }

  /** Opens the listener and answers the control plane: ready once online, refused if it cannot be. */
  async start(): Promise<void> {
    const { relay, port } = this.m;
    this.log(
      'session.opening',
      { port, namespace: relay.namespace, hybridConnection: relay.hybridConnection },
      `opening a listener on ${relay.namespace}/${relay.hybridConnection} for port ${port}`,
    );
    const expiresInMs = Date.parse(relay.expiresAt) - Date.now();
    this.lifetimeTimer = setTimeout(
      () => void this.close('its lifetime is over'),
      Math.max(0, Math.min(expiresInMs, MAX_TIMER_MS)),
    );
    const listener = new HybridConnectionListener({
      endpoint: relay.endpoint,
      hybridConnection: relay.hybridConnection,
      token: relay.listenToken,
      ca: this.o.relayCa,
      ...(this.o.proxy ? { agent: (url: string) => proxyAgentFor(this.o.proxy, url) } : {}),
      ...this.o.listenerOptions,
    });
    this.listener = listener;
    listener.on('error', (err) =>
      this.log('listener.error', { detail: describeError(err) }, `listener problem: ${describeError(err)}`),
    );
    listener.on('online', () => {
      if (!this.everOnline) this.log('listener.online', {}, 'listener online');
      else this.log('listener.online', { again: true }, 'listener online again');
      this.everOnline = true;
    });
    listener.on('offline', (e) => {
      const why = e.statusCode
        ? `handshake refused with ${e.statusCode}`
        : `${e.reason}${e.code ? ` (${e.code})` : ''}`;
      this.log(
        'listener.offline',
        { code: e.code, statusCode: e.statusCode, reason: e.reason, retryInMs: e.retryInMs },
        `listener offline: ${why}; re-listening in ${(e.retryInMs / 1000).toFixed(1)} s`,
      );
    });
    listener.on('ended', (e) => {
      const why =
        e.reason === 'entity_deleted'
          ? 'the relay deleted the hybrid connection (the session ended)'
          : e.reason === 'token_expired'
            ? 'the listen token expired'
            : e.reason === 'unauthorized'
              ? `the relay refused the listen token (${e.statusCode ?? e.code})`
              : e.reason === 'not_found'
                ? 'the hybrid connection does not exist'
                : 'listener closed';
      if (e.reason === 'closed') return;
      this.endReason = why;
      // While starting, start() answers the control plane (refused) and closes.
      if (this.status !== 'starting') void this.close(why);
    });
    listener.on('connection', (stream) => this.onConnection(stream));

    const notAfterMs = Date.parse(this.m.notAfter) - Date.now();
    let notAfterTimer: NodeJS.Timeout | undefined;
    const tooLate = new Promise<'late'>((resolve) => {
      notAfterTimer = setTimeout(() => resolve('late'), Math.max(0, Math.min(notAfterMs, MAX_TIMER_MS)));
    });
    let outcome: 'online' | 'late' | Error;
    try {
      outcome = await Promise.race([listener.start().then(() => 'online' as const), tooLate]);
    } catch (err) {
      outcome = err instanceof Error ? err : new Error(String(err));
    } finally {
      clearTimeout(notAfterTimer);
    }
    if (this.status !== 'starting') return; // closed meanwhile (session.close, agent stopping)
    if (outcome === 'late') {
      await this.close('the listener did not come online before the session notAfter');
      return;
    }
    if (outcome instanceof Error) {
      const detail = `the device could not open its relay listener: ${this.endReason ?? outcome.message}`;
      await this.agent.answer(this.m, { status: 'refused', detail });
      await this.close(detail);
      return;
    }
    this.status = 'online';
    const status = await this.agent.answer(this.m);
    if (status === 204) {
      this.log('session.ready', { port: this.m.port }, `ready posted; serving 127.0.0.1:${this.m.port}`);
    } else if (status !== 0) {
      await this.close(
        status === 409
          ? 'the control plane no longer waits for it (409)'
          : `the control plane refused the ready call (${status})`,
      );
    } else {
      await this.close('could not post ready');
    }
  }

  private endReason?: string;

  private onConnection(stream: HybridConnectionStream): void {
    if (this.status === 'closing' || this.status === 'closed') {
      stream.destroy();
      return;
    }
    const host = this.o.targetHost ?? '127.0.0.1';
    const cid = short(stream.connectionId);
    this.streams.add(stream);
    const socket = net.connect({ host, port: this.m.port, allowHalfOpen: true });
    socket.setNoDelay(true);
    this.sockets.add(socket);
    this.log(
      'connection.accepted',
      { connectionId: stream.connectionId },
      `connection ${cid} accepted -> ${host}:${this.m.port}`,
    );
    let connected = false;
    socket.once('connect', () => {
      connected = true;
    });
    const piped = pipeBothWays(socket, stream).then((r) => {
      this.sockets.delete(socket);
      this.streams.delete(stream);
      if (!connected && r.error) {
        this.log(
          'connection.failed',
          { connectionId: stream.connectionId, detail: describeError(r.error) },
          `connection ${cid}: cannot reach ${host}:${this.m.port}: ${(r.error as { code?: string }).code ?? describeError(r.error)}`,
        );
        return;
      }
      this.log(
        'connection.closed',
        {
          connectionId: stream.connectionId,
          bytesToTarget: r.bytesFromRelay,
          bytesFromTarget: r.bytesToRelay,
          endedBy: r.endedBy,
          ...(r.error ? { detail: describeError(r.error) } : {}),
        },
        `connection ${cid} closed by ${r.endedBy === 'local' ? 'the target' : r.endedBy === 'relay' ? 'the client' : `an error (${describeError(r.error)})`}: ${r.bytesFromRelay} B to the target, ${r.bytesToRelay} B back`,
      );
    });
    this.pipes.add(piped);
    void piped.finally(() => this.pipes.delete(piped));
  }

  /** Closes the listener and every connection of the session. Idempotent. */
  close(reason: string): Promise<void> {
    this.closing ??= (async () => {
      this.status = 'closing';
      clearTimeout(this.lifetimeTimer);
      await this.listener?.close({ dropConnections: true });
      for (const s of this.streams) s.destroy();
      for (const s of this.sockets) s.destroy();
      await Promise.allSettled([...this.pipes]);
      this.status = 'closed';
      this.onClosed?.();
      this.log('session.closed', { reason }, `closed: ${reason}`);
    })();
    return this.closing;
  }
}
