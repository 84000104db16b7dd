// The device agent: polls its own queue with the enrollment SAS, and for each session.open it may
// serve opens a Hybrid Connections listener, posts ready once it is online, and pipes every accepted
// connection to 127.0.0.1:<port>. One log event per state change; never a token or a SAS.
// Every few seconds it heartbeats the control plane with its device credential (what it holds; the
// answer says what to stop and renews the enrollment), keeps the sessions it serves in a 0600 state
// file so a restart takes them back, and picks up a rotated enrollment file without a restart.
import { promises as fs, watchFile, unwatchFile } from 'node:fs';
import net from 'node:net';
import { z } from 'zod';
import { AnonymousCredential, QueueClient, RestError, type DequeuedMessageItem } from '@azure/storage-queue';
import { Backoff, sleep } from '../lib/backoff';
import type { Enrollment, HeldSession } from '../lib/devices/deviceRegistry';
import { sessionOpenMessageSchema, type SessionOpenMessage } from '../lib/devices/deviceNotifier';
import { describeError } from '../lib/errors';
import {
  HybridConnectionListener,
  type HybridConnectionListenerOptions,
  type HybridConnectionStream,
} from '../lib/relay/hybridConnection';
import { enrollmentSchema } from './commands/devices';
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
  /** Heartbeat interval (default 5000; 0 disables heartbeats). */
  heartbeatIntervalMs?: number;
  /** The enrollment file: a rotated file is picked up live (and renewal writes here, unless renewalFile). */
  enrollmentFile?: string;
  /** Where a renewed enrollment is written when the enrollment file is read-only (a service's state directory). */
  renewalFile?: string;
  /** How often the enrollment file is checked for a change (default 2000). */
  enrollmentWatchMs?: number;
  /** Where the sessions it serves are kept (0600), so a restarted agent takes them back. */
  stateFile?: string;
  /** The agent cannot go on (the device was removed): the command stops it and exits non-zero. */
  onFatal?: (detail: string) => void;
}

/** What the control plane answers a heartbeat. */
const heartbeatAnswerSchema = z.object({
  stop: z.array(z.string()),
  renewed: z.object({ expiresAt: z.string() }).optional(),
});

const stateFileSchema = z.object({ version: z.literal(1), sessions: z.array(sessionOpenMessageSchema) });

/** A relay that cannot be reached, named by its cause; `definitive` ones are refused at once, not retried to the end. */
export function describeRelayCause(e: { statusCode?: number; reason: string; cause?: Error }): {
  kind: 'tls' | 'dns' | 'proxy' | 'refused' | 'auth' | 'other';
  text: string;
  definitive: boolean;
} {
  const code = (e.cause as { code?: string } | undefined)?.code ?? '';
  const message = e.cause?.message ?? e.reason;
  if (
    /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|ERR_TLS/.test(code) ||
    /certificate|self[- ]signed/i.test(message)
  ) {
    return {
      kind: 'tls',
      text: `TLS: the relay's certificate is not trusted (${code || describeError(message, 120)}); pass --relay-ca <PEM of the CA that signed it> (the local emulator's CA), or fix the system trust store`,
      definitive: true,
    };
  }
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
    return {
      kind: 'dns',
      text: `DNS: cannot resolve the relay's host (${code}); check the device's DNS`,
      definitive: true,
    };
  }
  if (e.statusCode === 407 || /\b407\b|proxy/i.test(message)) {
    return {
      kind: 'proxy',
      text: `proxy: ${describeError(message, 160)}; check --proxy or HTTPS_PROXY and its credentials`,
      definitive: true,
    };
  }
  if (e.statusCode === 401 || e.statusCode === 403) {
    return { kind: 'auth', text: `the relay refused the listen token (${e.statusCode})`, definitive: true };
  }
  if (code === 'ECONNREFUSED' || code === 'ECONNRESET' || code === 'ETIMEDOUT') {
    return {
      kind: 'refused',
      text: `the relay endpoint is unreachable (${code}): a firewall may block outbound 443`,
      definitive: false,
    };
  }
  return { kind: 'other', text: describeError(message, 200), definitive: false };
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
  private queue: QueueClient;
  private enrollment: Enrollment;
  private readonly startedAt: string;
  private readonly refusedToReport: Array<{ sessionId: string; detail: string }> = [];
  private readonly lostToReport = new Set<string>();
  private heartbeatTimer?: NodeJS.Timeout;
  private heartbeatLoop?: Promise<void>;
  private heartbeatFailures = 0;
  private heartbeatInFlight?: Promise<void>;
  private lastEnrollmentText?: string;
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
    this.enrollment = o.enrollment;
    this.now = o.now ?? (() => new Date());
    this.startedAt = this.now().toISOString();
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
    // The first heartbeat goes once the state file is read, so it already reports the sessions taken back.
    const resumed = this.resume();
    if (this.heartbeatIntervalMs > 0 && this.enrollment.deviceKey)
      this.heartbeatLoop = resumed.then(() => this.runHeartbeats());
    else if (this.heartbeatIntervalMs > 0) {
      this.o.log(
        'heartbeat.disabled',
        {},
        'the enrollment has no device credential (it predates them): no heartbeats, no renewal; get a new one with `relay-broker devices rotate`',
      );
    }
    if (this.o.enrollmentFile) {
      watchFile(this.o.enrollmentFile, { interval: this.o.enrollmentWatchMs ?? 2000, persistent: false }, () => {
        void this.reloadEnrollment();
      });
    }
  }

  /** The device id and its current enrollment expiry (renewal moves it). */
  get currentEnrollment(): Readonly<Enrollment> {
    return this.enrollment;
  }

  private get heartbeatIntervalMs(): number {
    return this.o.heartbeatIntervalMs ?? 5000;
  }

  private async runHeartbeats(): Promise<void> {
    while (this.status === 'running') {
      await this.heartbeat();
      if (this.status !== 'running') break;
      await new Promise<void>((resolve) => {
        this.heartbeatTimer = setTimeout(resolve, this.heartbeatIntervalMs);
        this.wakeHeartbeat = resolve;
      });
    }
  }

  private wakeHeartbeat?: () => void;

  /** One heartbeat now (one at a time: a second call waits for the running one, then sends its own). */
  async heartbeat(stopping = false): Promise<void> {
    while (this.heartbeatInFlight) await this.heartbeatInFlight;
    if (!this.enrollment.deviceKey) return;
    this.heartbeatInFlight = this.sendHeartbeat(stopping).finally(() => (this.heartbeatInFlight = undefined));
    await this.heartbeatInFlight;
  }

  private async sendHeartbeat(stopping: boolean): Promise<void> {
    const e = this.enrollment;
    const refused = this.refusedToReport.splice(0);
    const lost = [...this.lostToReport];
    const body = {
      startedAt: this.startedAt,
      ...(stopping ? { stopping: true } : {}),
      sessions: [...this.sessions.values()].map((s) => s.report()),
      ...(refused.length ? { refused } : {}),
      ...(lost.length ? { lost } : {}),
    };
    let status: number;
    let text: string;
    try {
      const res = await fetchVia(this.o.proxy)(`${e.apiUrl}/devices/${encodeURIComponent(e.deviceId)}/heartbeat`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${e.deviceKey ?? ''}` },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(10_000),
      });
      status = res.status;
      text = await res.text();
    } catch (err) {
      this.refusedToReport.unshift(...refused);
      this.heartbeatFailed(`cannot reach the API (${describeError(err, 200)})`);
      return;
    }
    if (status === 200) {
      for (const id of lost) this.lostToReport.delete(id);
      if (this.heartbeatFailures > 0) {
        this.o.log('heartbeat.recovered', { failures: this.heartbeatFailures }, 'the API takes heartbeats again');
        this.heartbeatFailures = 0;
      }
      const answer = heartbeatAnswerSchema.safeParse(safeJson(text));
      if (!answer.success) return;
      for (const id of answer.data.stop) {
        const session = this.sessions.get(id);
        if (session) void session.close('the control plane no longer serves it (reconciled by heartbeat)');
      }
      if (answer.data.renewed) await this.renewed(answer.data.renewed.expiresAt);
      return;
    }
    const code = z.object({ code: z.string() }).safeParse(safeJson(text)).data?.code;
    if (status === 404 && code === 'device_not_found') {
      // Only the API's own answer means "removed": a 404 from anything else (a proxy, a wrong URL) does not.
      this.fatal(
        `the device ${e.deviceId} was removed from the broker (the API answers device_not_found); stopping. Register it again with \`relay-broker devices add\` to serve it.`,
      );
      return;
    }
    if (status === 401) {
      this.heartbeatFailed(
        'the API refused the device credential (401): the enrollment was rotated or has expired; put the new enrollment file in place (it is picked up without a restart)',
      );
      return;
    }
    this.refusedToReport.unshift(...refused);
    this.heartbeatFailed(`the API answered ${status}${code ? ` ${code}` : ''}`);
  }

  private heartbeatFailed(detail: string): void {
    this.heartbeatFailures++;
    if (this.heartbeatFailures === 1 || this.heartbeatFailures % 12 === 0) {
      this.o.log(
        'heartbeat.failed',
        { detail, failures: this.heartbeatFailures },
        `heartbeat failed: ${detail}; the device shows offline until it succeeds`,
      );
    }
  }

  private fatalSent = false;
  private fatal(detail: string): void {
    if (this.fatalSent) return;
    this.fatalSent = true;
    this.o.log('agent.fatal', { detail }, detail);
    // Nothing of a removed device is worth taking back.
    if (this.o.stateFile) void fs.rm(this.o.stateFile, { force: true }).catch(() => undefined);
    this.o.onFatal?.(detail);
  }

  /** The control plane renewed the enrollment: remember it, and write it where the agent reads it. */
  private async renewed(expiresAt: string): Promise<void> {
    this.enrollment = { ...this.enrollment, expiresAt };
    this.o.log('enrollment.renewed', { expiresAt }, `enrollment renewed until ${expiresAt}`);
    const file = this.o.renewalFile ?? this.o.enrollmentFile;
    if (!file) return;
    try {
      if (file === this.o.enrollmentFile) {
        const current = enrollmentSchema.parse(JSON.parse(await fs.readFile(file, 'utf8')));
        if (current.deviceKey !== this.enrollment.deviceKey) return; // rotated meanwhile: that file wins
      }
      const text = `${JSON.stringify({ ...this.enrollment, expiresAt }, null, 2)}\n`;
      await writePrivateFile(file, text);
      if (file === this.o.enrollmentFile) this.lastEnrollmentText = text;
    } catch (err) {
      this.o.log(
        'enrollment.write_failed',
        { detail: describeError(err) },
        `could not write the renewed enrollment to ${file}: ${describeError(err)} (it stays valid in memory until ${expiresAt})`,
      );
    }
  }

  /** The enrollment file changed: a rotated enrollment replaces the queue SAS and the device credential. */
  private async reloadEnrollment(): Promise<void> {
    const file = this.o.enrollmentFile;
    if (!file || this.status !== 'running') return;
    let text: string;
    try {
      text = await fs.readFile(file, 'utf8');
    } catch {
      return; // being replaced; the next change is picked up
    }
    if (text === this.lastEnrollmentText) return;
    const parsed = enrollmentSchema.safeParse(safeJson(text));
    if (!parsed.success) return; // half-written; the complete file triggers another change
    this.lastEnrollmentText = text;
    const next = parsed.data;
    const e = this.enrollment;
    if (next.deviceId !== e.deviceId) {
      this.o.log(
        'enrollment.ignored',
        { deviceId: next.deviceId },
        `${file} now holds the enrollment of ${next.deviceId}, not ${e.deviceId}: ignored (restart the agent to serve another device)`,
      );
      return;
    }
    if (next.queueSas === e.queueSas && next.deviceKey === e.deviceKey && next.queueUrl === e.queueUrl) {
      this.enrollment = { ...e, expiresAt: next.expiresAt };
      return;
    }
    this.enrollment = next;
    if (!this.o.queueClient) this.queue = queueClientFor(next, this.o.proxy);
    this.pollBackoff.reset();
    this.wake?.();
    this.o.log(
      'enrollment.reloaded',
      { expiresAt: next.expiresAt },
      `picked up the new enrollment in ${file} (valid until ${next.expiresAt}); no restart needed`,
    );
    if (!this.heartbeatLoop && next.deviceKey && this.heartbeatIntervalMs > 0)
      this.heartbeatLoop = this.runHeartbeats();
    else this.wakeHeartbeat?.();
  }

  /** Takes back the sessions the state file holds (a restart): their listeners re-listen; none posts ready again. */
  private async resume(): Promise<void> {
    const file = this.o.stateFile;
    if (!file) return;
    let saved: SessionOpenMessage[];
    try {
      const parsed = stateFileSchema.safeParse(safeJson(await fs.readFile(file, 'utf8')));
      saved = parsed.success ? parsed.data.sessions : [];
    } catch {
      return; // no state: nothing to take back
    }
    for (const m of saved) {
      if (this.status !== 'running') return;
      if (m.deviceId !== this.enrollment.deviceId || this.sessions.has(m.sessionId)) continue;
      if (Date.parse(m.relay.expiresAt) <= this.now().getTime()) continue;
      this.remember(m.sessionId);
      const session = this.addSession(m);
      this.track(session.resume());
    }
    await this.saveState();
  }

  private addSession(m: SessionOpenMessage): AgentSession {
    const session = new AgentSession(m, this, this.o);
    this.sessions.set(m.sessionId, session);
    session.onClosed = () => {
      if (this.sessions.get(m.sessionId) === session) this.sessions.delete(m.sessionId);
      void this.saveState();
    };
    return session;
  }

  private saving: Promise<void> = Promise.resolve();
  /** Writes the sessions being served to the state file (0600: it holds their listen tokens). */
  saveState(): Promise<void> {
    const file = this.o.stateFile;
    if (!file) return Promise.resolve();
    this.saving = this.saving.then(async () => {
      const sessions = [...this.sessions.values()].filter((s) => s.served).map((s) => s.message);
      try {
        await writePrivateFile(file, `${JSON.stringify({ version: 1, sessions })}\n`);
      } catch (err) {
        this.o.log(
          'state.write_failed',
          { detail: describeError(err) },
          `could not write ${file}: ${describeError(err)}`,
        );
      }
    });
    return this.saving;
  }

  /** The session could not be taken back after a restart: the control plane ends it (device_lost). */
  reportLost(sessionId: string): void {
    this.lostToReport.add(sessionId);
    this.wakeHeartbeat?.();
  }

  /** Tells the control plane why a session is refused, before the readyUrl answer, so the open's error carries it. */
  async reportRefusal(sessionId: string, detail: string): Promise<void> {
    this.refusedToReport.push({ sessionId, detail: detail.slice(0, 500) });
    if (this.status === 'running' && this.heartbeatIntervalMs > 0) await this.heartbeat();
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
    clearTimeout(this.heartbeatTimer);
    if (this.o.enrollmentFile) unwatchFile(this.o.enrollmentFile);
    this.wake?.();
    this.wakeHeartbeat?.();
    await this.loop;
    await this.heartbeatLoop;
    // A clean stop keeps the state file: the sessions are taken back when the agent starts again.
    const keep = this.o.stateFile ? [...this.sessions.values()].filter((s) => s.served) : [];
    await this.saving;
    await Promise.all([...this.sessions.values()].map((s) => s.close(reason, { keepState: true })));
    await Promise.allSettled([...this.inFlight]);
    if (this.o.stateFile && keep.length > 0 && !this.fatalSent) {
      await writePrivateFile(
        this.o.stateFile,
        `${JSON.stringify({ version: 1, sessions: keep.map((s) => s.message) })}\n`,
      ).catch(() => undefined);
    }
    // Says "stopping" so the device shows offline at once (not after the threshold).
    if (this.heartbeatIntervalMs > 0 && this.enrollment.deviceKey && !this.fatalSent) {
      await this.sendHeartbeat(true).catch(() => undefined);
    }
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
          // No HTTP answer at all: say where the enrollment pointed and what to check (issue 19).
          const unreachable = statusCode === undefined ? unreachableHint(this.o.enrollment) : undefined;
          this.o.log(
            'poll.failed',
            { statusCode, detail, retryInMs: delayMs, failures, ...unreachable?.fields },
            `cannot poll the queue: ${detail}${unreachable?.human ?? ''}; retrying in ${(delayMs / 1000).toFixed(1)} s`,
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
          await this.reportRefusal(m.sessionId, decision.detail);
          await this.answer(m, { status: 'refused', detail: decision.detail });
          break;
        }
        case 'open': {
          const m = decision.message;
          this.remember(m.sessionId);
          const session = this.addSession(m);
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
    let confirmed = false;
    for (;;) {
      // No answer at all (a timeout, a dropped connection): the control plane may have taken it.
      let unanswered = false;
      try {
        const status = await post(m.readyUrl, body);
        if (status < 500) return status;
        lastDetail = `HTTP ${status}`;
      } catch (err) {
        lastDetail = describeError(err);
        unanswered = true;
      }
      if (Date.parse(m.notAfter) <= this.now().getTime()) {
        // Past notAfter nothing new is offered, but a call that got no answer is asked once more:
        // if it was taken, the session is ready and the same call answers 204 (so the session is
        // served, not dropped while the API says ready); if not, 409.
        if (!unanswered || confirmed) break;
        confirmed = true;
        continue;
      }
      const delayMs = backoff.next();
      if (delayMs === undefined) break;
      await sleep(delayMs);
    }
    this.o.log(
      'ready.failed',
      { sessionId: m.sessionId, detail: lastDetail },
      `session ${m.sessionId}: could not reach the control plane at ${safeOrigin(m.readyUrl)} to answer: ${lastDetail}`,
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
    // Not "removed": only the API says that (the heartbeat's device_not_found); a 404 here may be a wrong URL.
    if (statusCode === 404)
      return {
        statusCode,
        detail:
          'the queue does not exist (404): the device may have been removed, or the enrollment names a wrong queue URL',
      };
    return { statusCode, detail: `${statusCode ?? ''} ${err.code ?? ''} ${describeError(err.message, 200)}`.trim() };
  }
  return { detail: describeError(err) };
}

/** The scheme, host and port of a URL: never its path or query, which may carry a SAS. */
function safeOrigin(u: string): string {
  try {
    return new URL(u).origin;
  } catch {
    return '(not a URL)';
  }
}

/** Where the enrollment points (queue and API origins, no SAS) and what to check when neither answers. */
function unreachableHint(e: Pick<Enrollment, 'queueUrl' | 'apiUrl'>): {
  fields: { queue: string; api: string };
  human: string;
} {
  const queue = safeOrigin(e.queueUrl);
  const api = safeOrigin(e.apiUrl);
  return {
    fields: { queue, api },
    human:
      ` (the enrollment points at the queue ${queue} and the API ${api}: is the broker running there, and is that` +
      ` address reachable from this device? A local broker (npm start) serves other machines only with` +
      ` RELAY_BROKER_BIND and RELAY_BROKER_PUBLIC_HOST set before the device was added; see docs/cli.md "Local mode")`,
  };
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
  /** Ready was posted (or it was taken back after a restart): it belongs in the state file. */
  served = false;
  private targetError?: string;
  private lastOffline?: ReturnType<typeof describeRelayCause>;
  private unreachable?: (cause: ReturnType<typeof describeRelayCause>) => void;
  onClosed?: () => void;
  readonly id: string;

  constructor(
    private readonly m: SessionOpenMessage,
    private readonly agent: DeviceAgent,
    private readonly o: DeviceAgentOptions,
  ) {
    this.id = m.sessionId;
  }

  get message(): SessionOpenMessage {
    return this.m;
  }

  /** What the heartbeat says about this session. */
  report(): HeldSession {
    const listener = this.listener?.status;
    return {
      sessionId: this.id,
      listener: listener === 'online' ? 'online' : listener === 'offline' ? 'offline' : 'starting',
      ...(this.targetError ? { targetError: this.targetError } : {}),
    };
  }

  /**
   * After a restart: re-listens with the session's listen token, posts no ready (the session is ready
   * already). A listener the relay refuses for good (hybrid connection gone, token refused) means the
   * session is lost: the control plane is told and ends it (device_lost).
   */
  async resume(): Promise<void> {
    this.served = true;
    this.log(
      'session.resuming',
      { port: this.m.port },
      `taking the session back after a restart (port ${this.m.port})`,
    );
    const listener = this.openListener();
    try {
      await listener.start();
    } catch {
      if (this.status === 'closing' || this.status === 'closed') return;
      const why = this.endReason ?? 'the listener could not come back';
      this.agent.reportLost(this.id);
      await this.close(`could not take it back: ${why}`);
      return;
    }
    if (this.status !== 'starting') return;
    this.status = 'online';
    this.log('session.resumed', { port: this.m.port }, `taken back: serving 127.0.0.1:${this.m.port} again`);
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
    const listener = this.openListener();
    const notAfterMs = Date.parse(this.m.notAfter) - Date.now();
    let notAfterTimer: NodeJS.Timeout | undefined;
    const tooLate = new Promise<'late'>((resolve) => {
      notAfterTimer = setTimeout(() => resolve('late'), Math.max(0, Math.min(notAfterMs, MAX_TIMER_MS)));
    });
    // A relay the device cannot reach is refused with its cause: at once when the cause is
    // definitive (TLS trust, DNS, proxy), otherwise a second before notAfter; never silence.
    let lastCallTimer: NodeJS.Timeout | undefined;
    const unreachable = new Promise<ReturnType<typeof describeRelayCause>>((resolve) => {
      this.unreachable = resolve;
      lastCallTimer = setTimeout(
        () => {
          if (this.lastOffline) resolve(this.lastOffline);
        },
        Math.max(0, Math.min(notAfterMs - 1500, MAX_TIMER_MS)),
      );
    });
    let outcome: 'online' | 'late' | Error | ReturnType<typeof describeRelayCause>;
    try {
      outcome = await Promise.race([listener.start().then(() => 'online' as const), tooLate, unreachable]);
    } catch (err) {
      outcome = err instanceof Error ? err : new Error(String(err));
    } finally {
      clearTimeout(notAfterTimer);
      clearTimeout(lastCallTimer);
      this.unreachable = undefined;
    }
    if (this.status !== 'starting') return; // closed meanwhile (session.close, agent stopping)
    if (outcome === 'late') {
      await this.close('the listener did not come online before the session notAfter');
      return;
    }
    if (outcome !== 'online') {
      const detail =
        outcome instanceof Error
          ? `the device could not open its relay listener: ${this.endReason ?? outcome.message}`
          : `the device cannot reach the relay: ${outcome.text}`;
      this.log('session.unreachable', { detail }, detail);
      await this.agent.reportRefusal(this.id, detail);
      await this.agent.answer(this.m, { status: 'refused', detail });
      await this.close(detail);
      return;
    }
    this.status = 'online';
    const status = await this.agent.answer(this.m);
    if (status === 204) {
      this.served = true;
      void this.agent.saveState();
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

  /** The session's listener with its lifetime timer and its log events. */
  private openListener(): HybridConnectionListener {
    const { relay } = this.m;
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
      // The target first: a target that refuses is answered to the client's handshake (502 with the
      // cause), so `connect` prints why instead of a connection that closes without a word.
      acceptFilter: (request) => this.connectTarget(request.id),
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
      const cause = describeRelayCause(e);
      this.lastOffline = cause;
      this.log(
        'listener.offline',
        { code: e.code, statusCode: e.statusCode, reason: e.reason, cause: cause.kind, retryInMs: e.retryInMs },
        `listener offline: ${cause.kind === 'other' ? why : cause.text}; re-listening in ${(e.retryInMs / 1000).toFixed(1)} s`,
      );
      if (cause.definitive) this.unreachable?.(cause);
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
      if (this.status === 'starting') return;
      // A session that was served and whose listener the relay refuses for good (not deleted: that is the end) is lost.
      if (this.served && (e.reason === 'unauthorized' || e.reason === 'not_found')) this.agent.reportLost(this.id);
      void this.close(why);
    });
    listener.on('connection', (stream, request) => {
      const socket = this.connected.get(request.id);
      this.connected.delete(request.id);
      this.onConnection(stream, socket);
    });
    return listener;
  }

  private endReason?: string;
  /** Target sockets connected for a rendezvous being accepted, by its id. */
  private readonly connected = new Map<string, net.Socket>();

  private async connectTarget(id: string): Promise<{ statusCode: number; statusDescription: string } | undefined> {
    const host = this.o.targetHost ?? '127.0.0.1';
    const socket = net.connect({ host, port: this.m.port, allowHalfOpen: true });
    socket.setNoDelay(true);
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })), 10_000);
        socket.once('connect', () => {
          clearTimeout(timer);
          resolve();
        });
        socket.once('error', (err) => {
          clearTimeout(timer);
          reject(err);
        });
      });
    } catch (err) {
      socket.destroy();
      const code = (err as { code?: string }).code ?? describeError(err, 80);
      this.targetError = `${code} ${host}:${this.m.port}`;
      this.log(
        'connection.failed',
        { detail: this.targetError },
        `a connection was refused: cannot reach ${host}:${this.m.port} (${code}); is the service running on the device?`,
      );
      return {
        statusCode: 502,
        statusDescription: `the device's target ${host}:${this.m.port} refused the connection (${code}): is the service running on the device?`,
      };
    }
    this.targetError = undefined;
    socket.on('error', () => undefined); // until the pipe takes it (it listens for errors itself)
    // The socket waits for its stream; one whose accept never completes is dropped after a while.
    this.connected.set(id, socket);
    setTimeout(() => {
      if (this.connected.get(id) === socket) {
        this.connected.delete(id);
        socket.destroy();
      }
    }, 60_000).unref();
    return undefined;
  }

  private onConnection(stream: HybridConnectionStream, connectedSocket?: net.Socket): void {
    if (this.status === 'closing' || this.status === 'closed') {
      stream.destroy();
      connectedSocket?.destroy();
      return;
    }
    const host = this.o.targetHost ?? '127.0.0.1';
    const cid = short(stream.connectionId);
    this.streams.add(stream);
    const socket = connectedSocket ?? net.connect({ host, port: this.m.port, allowHalfOpen: true });
    socket.setNoDelay(true);
    this.sockets.add(socket);
    this.log(
      'connection.accepted',
      { connectionId: stream.connectionId },
      `connection ${cid} accepted -> ${host}:${this.m.port}`,
    );
    let connected = connectedSocket !== undefined;
    socket.once('connect', () => {
      connected = true;
    });
    const piped = pipeBothWays(socket, stream).then((r) => {
      this.sockets.delete(socket);
      this.streams.delete(stream);
      if (!connected && r.error) {
        this.targetError = `${(r.error as { code?: string }).code ?? describeError(r.error, 100)} ${host}:${this.m.port}`;
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
  close(reason: string, options: { keepState?: boolean } = {}): Promise<void> {
    if (options.keepState) this.onClosed = undefined;
    this.closing ??= (async () => {
      this.status = 'closing';
      clearTimeout(this.lifetimeTimer);
      await this.listener?.close({ dropConnections: true });
      for (const s of this.streams) s.destroy();
      for (const s of this.sockets) s.destroy();
      for (const s of this.connected.values()) s.destroy();
      this.connected.clear();
      await Promise.allSettled([...this.pipes]);
      this.status = 'closed';
      this.onClosed?.();
      this.log('session.closed', { reason }, `closed: ${reason}`);
    })();
    return this.closing;
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/** Writes `text` to `file` readable by its owner only, atomically (a reader never sees half of it). */
async function writePrivateFile(file: string, text: string): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  await fs.writeFile(tmp, text, { mode: 0o600 });
  await fs.chmod(tmp, 0o600);
  await fs.rename(tmp, file);
}
