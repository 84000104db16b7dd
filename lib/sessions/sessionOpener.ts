// Opening a session, the product's busiest path: the caller's rights, the lifetime rule, the audit
// record, the orchestration started, and a wait for ready (or a failure) within the open budget.
import { randomUUID } from 'node:crypto';
import type { GrantStore } from '../auth/grantStore';
import { authorizeSessionOpen } from '../auth/grantStore';
import type { Principal } from '../auth/principal';
import type { RateLimiter } from '../auth/rateLimiter';
import type { DeviceRegistry } from '../devices/deviceRegistry';
import { ValidationError } from '../errors';
import type { Sealer } from '../sealing';
import type { OpenSessionRequest, RelayCredentials, SessionInput } from './session';
import type { SessionOrchestrations } from './orchestrations';
import { sessionState } from './sessionState';
import type { SessionRecord, SessionStore } from './sessionStore';
import { credentialsFrom, openFailure } from './sessionView';

export interface SessionOpenerOptions {
  sessions: Pick<SessionStore, 'insert'>;
  orchestrations: SessionOrchestrations;
  grants: Pick<GrantStore, 'isGranted'>;
  devices: Pick<DeviceRegistry, 'requireRecord'>;
  rateLimiter: Pick<RateLimiter, 'enforce'>;
  sealer: Sealer;
  limits: { openBudgetMs: number; readyTimeoutMs: number; defaultLifetimeMinutes: number; maxLifetimeMinutes: number };
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
  newId?: () => string;
}

export type OpenOutcome =
  /** Ready within the budget: the opener's credentials. */
  | { status: 'ready'; sessionId: string; relay: RelayCredentials }
  /** The budget ran out first: the caller polls GET /sessions/{id}. */
  | { status: 'pending'; sessionId: string };

/** Status polls start fast and back off, so 500 waiting opens do not flood the status store. */
const POLL_DELAYS_MS = [20, 40, 60, 100, 150, 200, 250];

export class SessionOpener {
  private readonly now: () => number;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly newId: () => string;

  constructor(private readonly o: SessionOpenerOptions) {
    this.now = o.now ?? Date.now;
    this.sleep = o.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
    this.newId = o.newId ?? randomUUID;
  }

  /**
   * Opens a session for `principal` and waits for it within the open budget. A session that fails
   * or ends before it is ready throws the error its reason maps to (openFailure).
   */
  async open(principal: Principal, request: OpenSessionRequest): Promise<OpenOutcome> {
    const { limits } = this.o;
    this.o.rateLimiter.enforce(principal.id);
    // Grants before existence: an operator cannot probe which device ids exist.
    await authorizeSessionOpen(principal, request.deviceId, this.o.grants);
    await this.o.devices.requireRecord(request.deviceId);
    const lifetime = request.maxLifetimeMinutes ?? limits.defaultLifetimeMinutes;
    if (lifetime > limits.maxLifetimeMinutes) {
      const message = `may be at most ${limits.maxLifetimeMinutes} here`;
      throw new ValidationError(`maxLifetimeMinutes ${message}.`, [{ path: 'maxLifetimeMinutes', message }]);
    }
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
    };
    // The record first: a session the orchestration runs is always one the audit knows.
    await this.o.sessions.insert(record);
    await this.o.orchestrations.startNew(input);
    return this.waitForReady(record, started + limits.openBudgetMs);
  }

  private async waitForReady(record: SessionRecord, deadline: number): Promise<OpenOutcome> {
    const { sessionId } = record;
    for (let poll = 0; this.now() < deadline; poll++) {
      const state = sessionState(record, await this.o.orchestrations.getStatus(sessionId));
      if (state.status === 'ready' && state.relay) {
        return { status: 'ready', sessionId, relay: credentialsFrom(state.relay, sessionId, this.o.sealer) };
      }
      // Ending, ended or failed before it was ever ready: the open failed, for that reason.
      if (state.status !== 'pending' && state.status !== 'ready') {
        throw openFailure(state.reason ?? 'error', state.retryAfterSeconds);
      }
      await this.sleep(
        Math.min(POLL_DELAYS_MS[Math.min(poll, POLL_DELAYS_MS.length - 1)], Math.max(0, deadline - this.now())),
      );
    }
    return { status: 'pending', sessionId };
  }
}
