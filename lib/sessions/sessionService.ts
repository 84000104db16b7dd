// The steps of a session, one method per orchestration activity: open (lease, mint, notify),
// mark ready, tell the device to close, recycle the namespace, record the end. Each is safe to
// run twice; its doc comment says what the second run does.
import { describeError, PoolExhaustedError } from '../errors';
import type { DeviceNotifier } from '../devices/deviceNotifier';
import type { Namespace } from '../pool/namespace';
import { holdsRecycleClaim, type NamespaceStore } from '../pool/namespaceStore';
import { sealNamespaceKeys } from '../pool/sealedKeys';
import { createSasToken, relayAudience, type SasKey } from '../relay/sas';
import type { Sealer } from '../sealing';
import { statusForReason, type EndReason, type SessionInput } from './session';
import type { SessionStore } from './sessionStore';

/** The two rules of a pooled namespace's hybrid connection: Listen-only and Send-only. */
export interface SessionKeys {
  listen: SasKey;
  send: SasKey;
}

/** How the service reaches relay keys and recycles a namespace (RelayManager underneath). */
export interface SessionRelayOps {
  /** The current keys of the namespace's rules (from the sealed copy in its row, or ARM). */
  keysFor(ns: Namespace): Promise<SessionKeys>;
  /**
   * Deletes and recreates the hybrid connection with fresh rules; returns the new keys when it
   * read them (they are stored sealed with the new generation, so the next open needs no ARM call).
   */
  recycle(ns: Namespace): Promise<SessionKeys | void>;
}

export interface SessionServiceOptions {
  namespaces: NamespaceStore;
  sessions: SessionStore;
  notifier: DeviceNotifier;
  relay: SessionRelayOps;
  sealer: Sealer;
  publicApiUrl: string;
  now?: () => Date;
}

export type OpenSessionResult =
  | {
      ok: true;
      namespace: string;
      endpoint: string;
      hybridConnection: string;
      generation: number;
      /** The client's Send token, sealed with the session id as context. */
      sealedSendToken: string;
      expiresAt: string;
    }
  | { ok: false; reason: 'pool_exhausted'; retryAfterSeconds: number };

export class SessionService {
  private readonly now: () => Date;
  constructor(private readonly o: SessionServiceOptions) {
    this.now = o.now ?? (() => new Date());
  }

  /**
   * Leases a namespace, mints a Listen token (device) and a Send token (client) that both expire
   * at the session's end, and notifies the device with a message that lives as long as the ready
   * timeout. Returns only the sealed send token: no clear token goes into orchestration history.
   * Second run: the same namespace (the lease is idempotent per session), the same readyToken
   * (derived), fresh tokens and a second copy of the message.
   */
  async open(input: SessionInput): Promise<OpenSessionResult> {
    const expiresAt = new Date(input.expiresAt);
    let ns: Namespace;
    try {
      // The lease outlives the session by a margin so reconcile never reclaims a live one.
      ns = await this.o.namespaces.lease(input.sessionId, {
        leaseExpiresAt: new Date(expiresAt.getTime() + 15 * 60_000),
        now: this.now(),
      });
    } catch (err) {
      if (err instanceof PoolExhaustedError) return { ok: false, reason: 'pool_exhausted', retryAfterSeconds: 30 };
      throw err;
    }
    if (!ns.endpoint || !ns.hybridConnection) throw new Error(`namespace ${ns.name} is available but not prepared`);
    const endpoint = ns.endpoint;
    const hybridConnection = ns.hybridConnection;
    const notify = async () => {
      const keys = await this.o.relay.keysFor(ns);
      const audience = relayAudience(endpoint, hybridConnection);
      const listenToken = createSasToken({
        resourceUri: audience,
        keyName: keys.listen.keyName,
        key: keys.listen.key,
        expiresAt,
      });
      const sendToken = createSasToken({
        resourceUri: audience,
        keyName: keys.send.keyName,
        key: keys.send.key,
        expiresAt,
      });
      const notAfter = new Date(this.now().getTime() + input.readyTimeoutMs);
      await this.o.notifier.send(
        input.deviceId,
        {
          type: 'session.open',
          version: 1,
          sessionId: input.sessionId,
          deviceId: input.deviceId,
          port: input.port,
          relay: { namespace: ns.name, endpoint, hybridConnection, listenToken, expiresAt: input.expiresAt },
          readyUrl: `${this.o.publicApiUrl}/sessions/${input.sessionId}/ready`,
          readyToken: this.o.sealer.readyToken(input.sessionId),
          notAfter: notAfter.toISOString(),
        },
        input.readyTimeoutMs / 1000,
      );
      return sendToken;
    };
    // The audit record learns its namespace when the session becomes ready or ends: one write fewer on the open path.
    const sendToken = await notify();
    return {
      ok: true,
      namespace: ns.name,
      endpoint,
      hybridConnection,
      generation: ns.generation,
      sealedSendToken: this.o.sealer.seal(sendToken, input.sessionId),
      expiresAt: input.expiresAt,
    };
  }

  /** pending → ready in the audit record, with the namespace it runs on. Second run: unchanged. */
  async markReady(input: {
    deviceId: string;
    sessionId: string;
    readyAt: string;
    namespace: string;
    generation: number;
  }): Promise<void> {
    await this.o.sessions.transition(input.deviceId, input.sessionId, 'ready', {
      readyAt: input.readyAt,
      namespace: input.namespace,
      namespaceGeneration: input.generation,
    });
  }

  /** Tells the agent to close its listener (best effort: the HC delete drops it anyway). Second run: a second message. */
  async closeOnDevice(input: { deviceId: string; sessionId: string; reason: EndReason }): Promise<void> {
    await this.o.notifier.send(
      input.deviceId,
      { type: 'session.close', version: 1, sessionId: input.sessionId, deviceId: input.deviceId, reason: input.reason },
      300,
    );
  }

  /**
   * Ends the session's hold on its namespace: leased → recycling, then the hybrid connection is
   * deleted (live connections drop) and recreated with fresh rules, then recycling → available
   * with a new generation and the new keys sealed in the row. A failure is counted (quarantine after N) and rethrown; maintenance
   * retries namespaces left in `recycling`.
   * Second run: a namespace already recycled past `generation` is left as it is; without a
   * namespace name, a session that holds none is a no-op.
   */
  async recycle(input: {
    sessionId: string;
    namespace?: string;
    generation?: number;
  }): Promise<'recycled' | 'already' | 'quarantined' | 'claimed'> {
    // Without a name (the open failed half-way), find what the session holds, if anything.
    let ns = input.namespace
      ? await this.o.namespaces.get(input.namespace)
      : await this.o.namespaces.leaseFor(input.sessionId);
    if (!ns) return 'already';
    const generation = input.generation ?? ns.generation;
    if (ns.generation > generation) return 'already';
    if (ns.state === 'leased' && ns.sessionId !== input.sessionId) return 'already';
    if (ns.state === 'quarantined') return 'quarantined';
    if (ns.state !== 'leased' && ns.state !== 'recycling') return 'already';
    // Ends the lease and claims the ARM work in one write: only one recycler at a time does it
    // (this session's retries share the claim).
    const claimId = `session:${input.sessionId}`;
    ns = await this.o.namespaces.beginRecycle(ns.name, { sessionId: input.sessionId, claimId, now: this.now() });
    if (!holdsRecycleClaim(ns, claimId)) {
      if (ns.state === 'recycling') return 'claimed';
      return ns.state === 'quarantined' ? 'quarantined' : 'already';
    }
    let keys: SessionKeys | void;
    try {
      keys = await this.o.relay.recycle(ns);
    } catch (err) {
      // Counted, but never quarantined from here: the orchestration's own retries would use up the
      // budget in seconds. Pool maintenance retries rows left in `recycling` and owns quarantine.
      await this.o.namespaces.recordRecycleFailure(ns.name, errorSummary(err), Number.MAX_SAFE_INTEGER, this.now());
      throw err;
    }
    // Sealed for the generation markRecycled is about to write; if the row moved on meanwhile,
    // they do not open for it and the next open reads the keys from ARM.
    const sealedKeys = keys ? sealNamespaceKeys(this.o.sealer, ns.name, ns.generation + 1, keys) : undefined;
    await this.o.namespaces.markRecycled(ns.name, {
      now: this.now(),
      fromGeneration: generation,
      ...(sealedKeys ? { sealedKeys } : {}),
    });
    return 'recycled';
  }

  /** Records how the session ended (and on which namespace, if it got one). Second run: the first recorded end stays. */
  async recordEnd(input: {
    deviceId: string;
    sessionId: string;
    reason: EndReason;
    endedAt: string;
    namespace?: string;
    generation?: number;
  }): Promise<void> {
    await this.o.sessions.transition(input.deviceId, input.sessionId, statusForReason(input.reason), {
      reason: input.reason,
      endedAt: input.endedAt,
      ...(input.namespace ? { namespace: input.namespace, namespaceGeneration: input.generation } : {}),
    });
  }
}

/** An error's text for a stored `lastError`: lib/errors.ts describeError (redacted, short). */
export function errorSummary(err: unknown): string {
  return describeError(err, 500);
}
