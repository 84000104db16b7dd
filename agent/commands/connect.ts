// `relay-broker connect <deviceId>`: opens a session (waiting for the device with a progress line),
// bridges local TCP connections to it, ends it on Ctrl-C, and says so when it ends from the other side.
// Exit codes: 0 after Ctrl-C or when the session reached its lifetime; 1 when it failed to open or
// was ended by someone else (sessions end, device removed).
import os from 'node:os';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { z } from 'zod';
import { Backoff, parseRetryAfter, type BackoffPolicy } from '../../lib/backoff';
import { describeError } from '../../lib/errors';
import { END_REASONS, type EndReason } from '../../lib/sessions/session';
import type { ApiClient } from '../apiClient';
import { resolveRelayCa } from '../config';
import { CliError, EXIT_FAILURE, EXIT_OK } from '../errors';
import { parseDeviceId, parseListen, parsePort, parsePositiveInt } from '../options';
import type { Output } from '../output';
import { action, apiFor, relayAgentFor, untilSignal } from './context';
import { sessionViewSchema } from './sessions';

const relaySchema = z
  .object({
    namespace: z.string(),
    endpoint: z.string(),
    hybridConnection: z.string(),
    sendToken: z.string(),
    expiresAt: z.string(),
  })
  .loose();
const openAnswerSchema = z.object({ sessionId: z.string(), status: z.string(), relay: relaySchema.optional() }).loose();
type Relay = z.infer<typeof relaySchema>;

/** How often a pending session is polled, and the backoff after a failed poll. */
const PENDING_POLL_MS = 1000;
const STATUS_RETRY: BackoffPolicy = { baseMs: 1000, capMs: 8000, jitter: 'equal' };

/** Why a session ended or failed, in words. Keyed by the closed set of end reasons: one missing does not compile. */
export const REASON_TEXT: Record<EndReason, string> = {
  requested: 'it was ended through the API (sessions end)',
  lifetime: 'its lifetime is over',
  device_deleted: 'the device was removed',
  client_gone: 'its client stopped reporting (the control plane heard no heartbeat in time)',
  idle: 'no connection went through it for its idle time',
  device_not_ready: 'the device did not report ready in time',
  device_refused: 'the device refused it',
  device_lost: "the device's agent lost it (it restarted and could not take it back)",
  pool_exhausted: 'no relay namespace was available',
  error: 'it failed in the control plane',
  interrupted: 'its control-plane workflow stopped (the host crashed or it was terminated); its relay was closed',
};

function isEndReason(value: string | undefined): value is EndReason {
  return value !== undefined && (END_REASONS as readonly string[]).includes(value);
}

/** What to do about a session that failed to open, by its reason (the others fall back to a generic hint). */
export const OPEN_FAILED_HINTS: Partial<Record<EndReason, string>> = {
  device_not_ready:
    'Check that `relay-broker agent` runs on the device and can reach its queue (its log says why it did not answer).',
  device_refused:
    'The agent refused it, most likely because the port is not in its --allow list: add it there, or pick an allowed --port.',
  pool_exhausted: 'Every relay namespace is in use; retry in a minute.',
};

/** The CliError for a session that failed to open, by its reason. */
export function openFailed(reason: string | undefined, sessionId: string): CliError {
  const why = reason ?? 'error';
  const known = isEndReason(why) ? why : undefined;
  return new CliError({
    title: 'The session could not be opened',
    detail: `Session ${sessionId} failed: ${known ? REASON_TEXT[known] : (reason ?? 'unknown reason')}.`,
    hint:
      (known && OPEN_FAILED_HINTS[known]) ??
      'Retry; if it persists, check `relay-broker sessions show <id>` and the broker logs.',
    code: reason,
  });
}

interface Cancel {
  requested: boolean;
  wake?: () => void;
}

const sleep = (ms: number, cancel: Cancel): Promise<void> =>
  new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      cancel.wake = undefined;
      resolve();
    }
    cancel.wake = done;
  });

/** POST /sessions, then (on 202) polls until ready or failed. Returns undefined when cancelled (and ends the session). */
async function openSession(
  api: ApiClient,
  out: Output,
  input: { deviceId: string; port: number; lifetime: number; idleMinutes?: number; waitTimeoutMs: number },
  cancel: Cancel,
): Promise<{ sessionId: string; relay: Relay; elapsedMs: number } | { cancelled: true; sessionId?: string }> {
  const progress = out.progress('waiting for device', { deviceId: input.deviceId });
  let sessionId: string | undefined;
  try {
    const deadline = Date.now() + input.waitTimeoutMs;
    const body = {
      deviceId: input.deviceId,
      port: input.port,
      maxLifetimeMinutes: input.lifetime,
      ...(input.idleMinutes !== undefined ? { idleMinutes: input.idleMinutes } : {}),
    };
    // Not aborted by Ctrl-C: the answer carries the session id, which is needed to end the session.
    const res = await postOpen(api, out, body, deadline, cancel);
    if (!res) {
      progress.stop();
      return { cancelled: true };
    }
    const first = openAnswerSchema.parse(res.body);
    sessionId = first.sessionId;
    if (res.status === 201 && first.relay) {
      progress.stop(`session ${sessionId} ready after ${(progress.elapsedMs / 1000).toFixed(1)} s`);
      return { sessionId, relay: first.relay, elapsedMs: progress.elapsedMs };
    }
    // A blip while waiting (a restart, a 5xx) is not the session failing: up to 5 retries, backing off.
    const blips = new Backoff({ ...STATUS_RETRY, maxAttempts: 6 });
    let retryInMs: number | undefined;
    while (!cancel.requested) {
      if (Date.now() > deadline) {
        throw new CliError({
          title: 'The device did not answer in time',
          detail: `Session ${sessionId} is still pending after ${input.waitTimeoutMs / 1000} s.`,
          hint: 'Check that `relay-broker agent` runs on the device.',
        });
      }
      await sleep(retryInMs ?? PENDING_POLL_MS, cancel);
      if (cancel.requested) break;
      let body: unknown;
      try {
        body = (await api.get(`/sessions/${sessionId}`)).body;
        blips.reset();
        retryInMs = undefined;
      } catch (err) {
        // A blip while waiting (a restart, a 5xx) is not the session failing: try a few more times.
        retryInMs = isTransient(err) ? blips.next(retryAfterOf(err)) : undefined;
        if (retryInMs === undefined) throw err;
        continue;
      }
      const view = sessionViewSchema.parse(body);
      if (view.status === 'ready' && view.relay) {
        progress.stop(`session ${sessionId} ready after ${(progress.elapsedMs / 1000).toFixed(1)} s`);
        return { sessionId, relay: view.relay, elapsedMs: progress.elapsedMs };
      }
      // Ending before it was ever ready is how an open fails (ending: its namespace is being recycled).
      if (view.status === 'ending' || view.status === 'failed' || view.status === 'ended')
        throw openFailed(view.reason, sessionId);
    }
    progress.stop();
    return { cancelled: true, sessionId };
  } catch (err) {
    progress.stop();
    if (sessionId && !(err instanceof CliError && isEndReason(err.problem.code))) {
      // Do not leave a pending session behind us.
      await api.delete(`/sessions/${sessionId}`).catch(() => undefined);
    }
    throw err;
  }
}

/**
 * POST /sessions, asked again while the control plane answers 503 `service_busy` (it was too busy
 * to start the open within its budget, and nothing was created) and the wait has time left, after
 * its Retry-After. Undefined when cancelled while waiting to ask again.
 */
async function postOpen(
  api: ApiClient,
  out: Output,
  body: Record<string, unknown>,
  deadline: number,
  cancel: Cancel,
): Promise<{ status: number; body: unknown } | undefined> {
  const busy = new Backoff({ ...STATUS_RETRY, maxAttempts: 6 });
  for (;;) {
    try {
      return await api.post('/sessions', body);
    } catch (err) {
      const shed = err instanceof CliError && err.problem.status === 503 && err.problem.code === 'service_busy';
      const waitMs = shed ? busy.next(retryAfterOf(err)) : undefined;
      if (waitMs === undefined || Date.now() + waitMs > deadline) throw err;
      out.note(`the control plane is busy opening other sessions; asking again in ${(waitMs / 1000).toFixed(1)} s`);
      await sleep(waitMs, cancel);
      if (cancel.requested) return undefined;
    }
  }
}

/** Worth another try: the API unreachable for a moment, or answering 5xx/429. */
function isTransient(err: unknown): boolean {
  if (!(err instanceof CliError)) return false;
  const status = err.problem.status;
  return status === undefined || status === 429 || status >= 500;
}

/** The API's Retry-After on a 429/503, in ms. */
function retryAfterOf(err: unknown): number | undefined {
  return err instanceof CliError ? parseRetryAfter(err.problem.retryAfter) : undefined;
}

const heartbeatAnswerSchema = z
  .object({ status: z.string(), reason: z.string().optional(), heartbeatSeconds: z.number().positive().optional() })
  .loose();

/** The bridge's figures the heartbeat carries. */
type BridgeReport = ReturnType<import('../clientBridge').ClientBridge['report']>;

/**
 * Tells the control plane the client is alive, with the bridge's connections and bytes, as often as
 * its answer asks (a quarter of its client-gone limit): a client that vanishes (killed, network gone)
 * has its session ended within that limit. A failed beat is retried with backoff; an answer saying
 * the session is over wakes the status check at once.
 */
export class SessionHeartbeat {
  private timer?: NodeJS.Timeout;
  private stopped = false;
  private readonly failures = new Backoff({ baseMs: 2000, capMs: 30_000, jitter: 'equal' });
  private warned = false;

  constructor(
    private readonly api: ApiClient,
    private readonly sessionId: string,
    private readonly report: () => BridgeReport,
    private readonly onOver: () => void,
    private readonly warn: (text: string) => void,
  ) {}

  start(): void {
    void this.beat();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  /** One last report (final bytes) before the session is ended locally; errors are ignored. */
  async final(): Promise<void> {
    this.stop();
    await this.api.post(`/sessions/${this.sessionId}/heartbeat`, this.report()).catch(() => undefined);
  }

  private async beat(): Promise<void> {
    if (this.stopped) return;
    let nextMs: number;
    try {
      const res = await this.api.post(`/sessions/${this.sessionId}/heartbeat`, this.report());
      const answer = heartbeatAnswerSchema.parse(res.body);
      this.failures.reset();
      this.warned = false;
      nextMs = (answer.heartbeatSeconds ?? 30) * 1000;
      if (answer.status === 'ending' || answer.status === 'ended' || answer.status === 'failed') this.onOver();
    } catch (err) {
      if (err instanceof CliError && err.problem.status === 404) {
        // session_not_found: the status check says how it ended; not_found: a broker without heartbeats.
        if (err.problem.code === 'session_not_found') this.onOver();
        return;
      }
      if (!this.warned) {
        this.warned = true;
        this.warn(
          `cannot report to the broker: ${err instanceof CliError ? err.problem.detail : describeError(err)}; retrying`,
        );
      }
      nextMs = this.failures.next(retryAfterOf(err)) ?? 30_000;
    }
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.beat(), nextMs);
    this.timer.unref?.();
  }
}

/** `--idle-minutes`: 0 is meaningful (never idle), so parsePositiveInt does not fit. */
function parseNonNegativeInt(name: string, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\d+$/.test(value) || n > max) throw new InvalidArgumentError(`${name} must be an integer from 0 to ${max}`);
    return n;
  };
}

function clientHints(port: number, host: string, localPort: number, user: string): string[] {
  const address = `${host}:${localPort}`;
  const lines = [`connect your client to ${address}`];
  if (port === 3389) lines.push(`  e.g. mstsc /v:${address}`);
  if (port === 22) lines.push(`  e.g. ssh -p ${localPort} ${user}@${host}`);
  return lines;
}

export function registerConnect(program: Command): void {
  tunnelOptions(
    program
      .command('connect')
      .description('open a session to a device and bridge local connections to it (Ctrl-C ends it)')
      .argument('<deviceId>', 'the device to reach', parseDeviceId),
    3389,
  ).action(action(async (cmd, out, deviceId: string) => runTunnel(cmd, out, deviceId, cmd.opts<TunnelOptions>())));
}

/** What `connect` and the native-client launchers share. */
export interface TunnelOptions {
  port: number;
  listen: { host: string; port: number };
  lifetime: number;
  /** Minutes without a connection before the broker ends the session (0: never; default the broker's). */
  idleMinutes?: number;
  relayCa?: string;
  user: string;
  statusPollMs: number;
  waitTimeout: number;
}

/**
 * Hooks of a launcher (`relay-broker rdp|ssh`): started once the local port listens; calling `stop`
 * ends the session as Ctrl-C does (the launcher calls it when the native client exits).
 */
export interface TunnelLauncher {
  onReady(address: { host: string; port: number }, stop: (why: string) => void): void;
  /** The session ended, whoever ended it: close what the launcher started. */
  onEnded?(): void;
  /** Exit code of the command after a local end (default 0). */
  exitCode?(): number;
}

/** Registers the options every tunnel command takes (port default per command). */
export function tunnelOptions(command: Command, defaultPort: number): Command {
  return command
    .option('--port <port>', 'the port on the device', parsePort, defaultPort)
    .addOption(
      new Option('--listen <host:port>', 'local address to listen on (port 0: a free one)')
        .argParser(parseListen)
        .default({ host: '127.0.0.1', port: 0 }, '127.0.0.1:0'),
    )
    .option('--lifetime <minutes>', 'session lifetime in minutes', parsePositiveInt('--lifetime', 720), 60)
    .option(
      '--idle-minutes <minutes>',
      "end the session after this many minutes without a connection (0: never; default the broker's, 15)",
      parseNonNegativeInt('--idle-minutes', 720),
    )
    .option('--relay-ca <file>', 'PEM of a CA to trust for the relay (the local emulator)')
    .option('--user <name>', 'user name for ssh', os.userInfo().username || 'user')
    .option(
      '--status-poll-ms <ms>',
      'how often to check the session is still up',
      parsePositiveInt('--status-poll-ms', 600_000),
      3000,
    )
    .option(
      '--wait-timeout <seconds>',
      'give up waiting for the device after this long',
      parsePositiveInt('--wait-timeout', 3600),
      120,
    );
}

/**
 * Opens a session to `deviceId`, bridges local connections to it until Ctrl-C, the launcher's stop,
 * the session's end or its lifetime, and ends it. Returns the exit code.
 */
export async function runTunnel(
  cmd: Command,
  out: Output,
  deviceId: string,
  o: TunnelOptions,
  launcher?: TunnelLauncher,
): Promise<number> {
  const { api, config } = await apiFor(cmd, out);
  const relayCa = await resolveRelayCa(o.relayCa, config.apiUrl);

  const cancel: Cancel = { requested: false };
  let signalName: string | undefined;
  const signalled = untilSignal().then((s) => {
    signalName = s;
    cancel.requested = true;
    cancel.wake?.();
  });
  void signalled;

  const opened = await openSession(
    api,
    out,
    {
      deviceId,
      port: o.port,
      lifetime: o.lifetime,
      ...(o.idleMinutes !== undefined ? { idleMinutes: o.idleMinutes } : {}),
      waitTimeoutMs: o.waitTimeout * 1000,
    },
    cancel,
  );
  if ('cancelled' in opened) {
    if (opened.sessionId) await api.delete(`/sessions/${opened.sessionId}`).catch(() => undefined);
    out.event(
      'session.cancelled',
      { sessionId: opened.sessionId },
      `${signalName ?? 'cancelled'}: session ${opened.sessionId ?? ''} ended before it was ready`,
    );
    return EXIT_OK;
  }
  const { sessionId, relay } = opened;
  if (cancel.requested) {
    await api.delete(`/sessions/${sessionId}`).catch(() => undefined);
    out.event(
      'session.cancelled',
      { sessionId },
      `${signalName ?? 'cancelled'}: session ${sessionId} is ending (its relay connections are being dropped)`,
    );
    return EXIT_OK;
  }

  let ended: { reason: string; by: 'local' | 'remote' } | undefined;
  let checkNow: () => void = () => undefined;
  const { ClientBridge } = await import('../clientBridge');
  const bridge = new ClientBridge({
    listen: o.listen,
    relay,
    ca: relayCa,
    agent: relayAgentFor(cmd),
    log: (event, fields, human) => out.event(event, { sessionId, ...fields }, human),
    onSessionGone: () => checkNow(),
  });
  let address: { host: string; port: number };
  try {
    address = await bridge.start();
  } catch (err) {
    await api.delete(`/sessions/${sessionId}`).catch(() => undefined);
    throw new CliError({
      title: 'Cannot listen locally',
      detail: `${o.listen.host}:${o.listen.port}: ${describeError(err)}`,
      hint: 'Pick another --listen address (port 0 picks a free one).',
    });
  }
  const heartbeat = new SessionHeartbeat(
    api,
    sessionId,
    () => bridge.report(),
    () => checkNow(),
    (text) => out.warn(text),
  );
  heartbeat.start();
  const host = address.host === '0.0.0.0' || address.host === '::' ? '127.0.0.1' : address.host;
  out.event(
    'session.ready',
    {
      sessionId,
      deviceId,
      port: o.port,
      listen: { host, port: address.port },
      namespace: relay.namespace,
      expiresAt: relay.expiresAt,
    },
    `session ${sessionId} to ${deviceId}:${o.port} is ready (until ${relay.expiresAt})`,
  );
  if (launcher) {
    launcher.onReady({ host, port: address.port }, (why) => {
      signalName = why;
      cancel.requested = true;
      cancel.wake?.();
    });
  } else {
    for (const l of clientHints(o.port, host, address.port, o.user)) out.line(l);
    out.line('press Ctrl-C to end the session');
  }

  // Watch the session: on a timer, at its expiry, and at once when the relay hints it is gone.
  const expiresInMs = Date.parse(relay.expiresAt) - Date.now();
  const expiryTimer = setTimeout(() => checkNow(), Math.max(0, Math.min(expiresInMs + 500, 2 ** 31 - 1)));
  let warnedPoll = false;
  while (!cancel.requested && !ended) {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, o.statusPollMs);
      function done(): void {
        clearTimeout(timer);
        checkNow = () => undefined;
        cancel.wake = undefined;
        resolve();
      }
      checkNow = done;
      cancel.wake = done;
    });
    if (cancel.requested) break;
    try {
      const view = sessionViewSchema.parse((await api.get(`/sessions/${sessionId}`)).body);
      if (view.status === 'ending' || view.status === 'ended' || view.status === 'failed')
        ended = { reason: view.reason ?? view.status, by: 'remote' };
      warnedPoll = false;
    } catch (err) {
      if (err instanceof CliError && err.problem.status === 404) {
        ended = { reason: 'not_found', by: 'remote' };
      } else if (!warnedPoll) {
        warnedPoll = true;
        out.warn(
          `cannot check the session: ${err instanceof CliError ? err.problem.detail : describeError(err)}; the tunnel stays up`,
        );
      }
    }
  }
  clearTimeout(expiryTimer);

  if (!ended) {
    out.event(
      'session.ending',
      { sessionId, signal: signalName },
      `${signalName ?? 'stop'}: ending session ${sessionId}`,
    );
    await bridge.close();
    await heartbeat.final();
    try {
      await api.delete(`/sessions/${sessionId}`);
    } catch (err) {
      out.warn(
        `could not end the session through the API: ${err instanceof CliError ? err.problem.detail : describeError(err)}; it ends at ${relay.expiresAt} anyway`,
      );
    }
    out.event('session.ended', { sessionId, reason: 'requested', by: 'local' }, `session ${sessionId} ended`);
    launcher?.onEnded?.();
    return launcher?.exitCode?.() ?? EXIT_OK;
  }
  heartbeat.stop();
  await bridge.close();
  launcher?.onEnded?.();
  const text = isEndReason(ended.reason)
    ? REASON_TEXT[ended.reason]
    : ended.reason === 'not_found'
      ? 'it no longer exists'
      : ended.reason;
  out.event(
    'session.ended',
    { sessionId, reason: ended.reason, by: 'remote' },
    `the session ended from the other side: ${text}`,
  );
  return ended.reason === 'lifetime' ? EXIT_OK : EXIT_FAILURE;
}
