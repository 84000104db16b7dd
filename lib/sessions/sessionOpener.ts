// Opening a session, the product's busiest path: the caller's rights, the lifetime rule, the audit
// record, the orchestration started, and a wait for ready (or a failure) within the open budget.
import { randomUUID } from 'node:crypto';
import type { GrantStore } from '../auth/grantStore';
import { authorizeSessionOpen } from '../auth/grantStore';
import { isAdmin, type Principal } from '../auth/principal';
import type { RateLimiter } from '../auth/rateLimiter';
import type { DeviceRegistry } from '../devices/deviceRegistry';
import { refusalDetail } from '../devices/devicePresence';
import {
  DeviceOfflineError,
  isTransientFault,
  TooManySessionsError,
  ValidationError,
  type BrokerError,
} from '../errors';
import type { PoolGrowth } from '../pool/poolGrowth';
import type { Sealer } from '../sealing';
import type { EndReason, OpenSessionRequest, RelayCredentials, SessionInput } from './session';
import type { InstanceState, SessionOrchestrations } from './orchestrations';
import type { AdmissionRelease, OpenAdmission } from './openAdmission';
import { SessionReadyWatcher } from './sessionReadyWatcher';
import { sessionState } from './sessionState';
import type { SessionService } from './sessionService';
import type { SessionRecord, SessionStore } from './sessionStore';
import { credentialsFrom, openFailure } from './sessionView';

export interface SessionOpenerOptions {
  sessions: Pick<SessionStore, 'insert' | 'countOpen'>;
  orchestrations: SessionOrchestrations;
  grants: Pick<GrantStore, 'isGranted'>;
  /** Whether the pool can still grow, for a pool_exhausted answer (lib/pool/poolGrowth.ts); none: not said. */
  poolGrowth?: () => Promise<PoolGrowth>;
  /** `presenceOf` (optional in fakes) makes an open to an offline device fail at once. */
  devices: Pick<DeviceRegistry, 'requireRecord'> & Partial<Pick<DeviceRegistry, 'presenceOf'>>;
  rateLimiter: Pick<RateLimiter, 'enforce'>;
  sealer: Sealer;
  limits: {
    openBudgetMs: number;
    readyTimeoutMs: number;
    defaultLifetimeMinutes: number;
    maxLifetimeMinutes: number;
    /** Open sessions one principal may hold (0: no cap). */
    maxPerPrincipal?: number;
  };
  /**
   * Leases and notifies within the request, the orchestration started with the result (one episode
   * and one activity fewer). Absent (unit fakes): the orchestration's openSession activity does it.
   */
  service?: Pick<SessionService, 'open' | 'recordEnd'>;
  /** The process's one watcher of waiting opens (a private one when absent: tests). */
  watcher?: SessionReadyWatcher;
  /** The process's one gate of opens worked on at once, in arrival order (none: no limit, tests). */
  admission?: OpenAdmission;
  now?: () => number;
  newId?: () => string;
}

export type OpenOutcome =
  /** Ready within the budget: the opener's credentials. */
  | { status: 'ready'; sessionId: string; relay: RelayCredentials }
  /** The budget ran out first: the caller polls GET /sessions/{id}. */
  | { status: 'pending'; sessionId: string };

export class SessionOpener {
  private readonly now: () => number;
  private readonly newId: () => string;
  private readonly watcher: SessionReadyWatcher;

  constructor(private readonly o: SessionOpenerOptions) {
    this.now = o.now ?? Date.now;
    this.newId = o.newId ?? randomUUID;
    this.watcher = o.watcher ?? new SessionReadyWatcher({ now: this.now });
  }

  /**
   * Opens a session for `principal` and waits for it within the open budget. A session that fails
   * or ends before it is ready throws the error its reason maps to (openFailure).
   */
  async open(principal: Principal, request: OpenSessionRequest): Promise<OpenOutcome> {
    // The budget counts from the open's start, the wait for a slot included.
    const deadline = this.now() + this.o.limits.openBudgetMs;
    this.o.rateLimiter.enforce(principal.id);
    const release: AdmissionRelease = (await this.o.admission?.enter(deadline)) ?? (() => undefined);
    let waitFor: { record: SessionRecord; started: number };
    try {
      waitFor = await this.start(principal, request);
    } finally {
      // The device has been told (or the open failed): the slot goes to the next open.
      release();
    }
    return this.waitForReady(waitFor.record, waitFor.started, deadline);
  }

  /** Checks, records, leases and notifies: the part of an open that works (and holds a slot). */
  private async start(
    principal: Principal,
    request: OpenSessionRequest,
  ): Promise<{ record: SessionRecord; started: number }> {
    const { limits } = this.o;
    // Grants before existence: an operator cannot probe which device ids exist.
    await authorizeSessionOpen(principal, request.deviceId, this.o.grants);
    const device = await this.o.devices.requireRecord(request.deviceId);
    // Offline only when its agent reported before and then stopped or went quiet; a device never
    // seen (an agent that predates heartbeats) still gets its ready timeout.
    if (this.o.devices.presenceOf?.(device) === 'offline') {
      throw new DeviceOfflineError(
        `Device ${request.deviceId} is offline: its agent ${device.agentState === 'stopped' ? 'stopped' : 'has not reported'} since ${device.lastSeenAt}.`,
        { extensions: { lastSeenAt: device.lastSeenAt } },
      );
    }
    const lifetime = request.maxLifetimeMinutes ?? limits.defaultLifetimeMinutes;
    if (lifetime > limits.maxLifetimeMinutes) {
      const message = `may be at most ${limits.maxLifetimeMinutes} here`;
      throw new ValidationError(`maxLifetimeMinutes ${message}.`, [{ path: 'maxLifetimeMinutes', message }]);
    }
    await this.enforceCap(principal);
    const started = this.now();
    const input: SessionInput = {
      sessionId: this.newId(),
      deviceId: request.deviceId,
      port: request.port,
      openerId: principal.id,
      createdAt: new Date(started).toISOString(),
      expiresAt: new Date(started + lifetime * 60_000).toISOString(),
      readyTimeoutMs: limits.readyTimeoutMs,
    };
    const record: SessionRecord = {
      sessionId: input.sessionId,
      deviceId: input.deviceId,
      openerId: principal.id,
      ...(principal.name ? { openerName: principal.name } : {}),
      port: input.port,
      status: 'pending',
      createdAt: input.createdAt,
      expiresAt: input.expiresAt,
      ...(request.idleMinutes !== undefined ? { idleMinutes: request.idleMinutes } : {}),
    };
    // The record first: a session the orchestration runs is always one the audit knows.
    await this.o.sessions.insert(record);
    if (this.o.service) await this.leaseAndStart(this.o.service, input);
    else await this.o.orchestrations.startNew(input);
    return { record, started };
  }

  /**
   * Lease, mint, start the orchestration with what was leased, then notify the device (the
   * orchestration exists before the device can answer). A crash between the lease and the start
   * leaves a lease and a pending record with no orchestration: the session sweep ends both once
   * its grace has passed. A failure after the start is the orchestration's to end (its ready timer).
   */
  private async leaseAndStart(service: NonNullable<SessionOpenerOptions['service']>, input: SessionInput) {
    let started = false;
    let result: Awaited<ReturnType<typeof service.open>>;
    try {
      result = await service.open(input, {
        beforeNotify: async (opened) => {
          await this.o.orchestrations.startNew({ ...input, opened });
          started = true;
        },
      });
    } catch (err) {
      // The device was not told: its orchestration fails at its ready timeout and recycles.
      if (started && !isTransientFault(err)) throw openFailure('error');
      throw err;
    }
    if (!result.ok) {
      // No orchestration was started: the record is closed here (or by the sweep if this write fails).
      await service
        .recordEnd({
          deviceId: input.deviceId,
          sessionId: input.sessionId,
          reason: 'pool_exhausted',
          endedAt: new Date(this.now()).toISOString(),
        })
        .catch(() => undefined);
      const growth = await this.o.poolGrowth?.().catch(() => undefined);
      throw openFailure('pool_exhausted', result.retryAfterSeconds, undefined, growth);
    }
  }

  /**
   * The per-principal cap, counted from the opener index. Checked before the record is written, so
   * opens racing each other may pass it together: the cap bounds a principal's hold, not exactly.
   */
  private async enforceCap(principal: Principal): Promise<void> {
    const cap = this.o.limits.maxPerPrincipal ?? 0;
    // Admins are not capped: they may raise the cap anyway, and drills and benchmarks open many.
    if (cap <= 0 || isAdmin(principal)) return;
    const open = await this.o.sessions.countOpen(principal.id);
    if (open >= cap) {
      throw new TooManySessionsError(
        `${principal.id} holds ${open} open session(s), the most allowed (${cap}); end one first.`,
        open,
        cap,
      );
    }
  }

  /**
   * Waits, through the process's watcher (no poll of its own), until the session is ready or over,
   * or the budget runs out.
   */
  private async waitForReady(record: SessionRecord, started: number, deadline: number): Promise<OpenOutcome> {
    const { sessionId } = record;
    const settled = (st: InstanceState | undefined) => sessionState(record, st).status !== 'pending';
    const instance = await this.watcher.wait(this.o.orchestrations, sessionId, started, deadline, settled);
    const state = sessionState(record, instance);
    if (state.status === 'ready' && state.relay) {
      return { status: 'ready', sessionId, relay: credentialsFrom(state.relay, sessionId, this.o.sealer) };
    }
    // Ending, ended or failed before it was ever ready: the open failed, for that reason.
    if (state.status !== 'pending' && state.status !== 'ready') {
      throw await this.failure(record, state.reason ?? 'error', state.retryAfterSeconds);
    }
    return { status: 'pending', sessionId };
  }

  /** The open's error; a refusal carries the agent's own reason when the device reported it. */
  private async failure(record: SessionRecord, reason: EndReason, retryAfterSeconds?: number): Promise<BrokerError> {
    if (reason === 'pool_exhausted') {
      // Best effort: without it the problem is still right, only less specific.
      const growth = await this.o.poolGrowth?.().catch(() => undefined);
      return openFailure(reason, retryAfterSeconds, undefined, growth);
    }
    if (reason !== 'device_refused') return openFailure(reason, retryAfterSeconds);
    const device = await this.o.devices.requireRecord(record.deviceId).catch(() => undefined);
    return openFailure(reason, retryAfterSeconds, device && refusalDetail(device, record.sessionId));
  }
}
