// The steps of a session, one method per orchestration activity: open (lease, mint, notify),
// mark ready, tell the device to close, recycle the namespace, record the end. Each is safe to
// run twice; its doc comment says what the second run does.
import { describeError, PoolExhaustedError } from '../errors';
import type { DeviceNotifier } from '../devices/deviceNotifier';
import type { Namespace } from '../pool/namespace';
import { holdsRecycleClaim, type NamespaceStore } from '../pool/namespaceStore';
import { refOf } from '../pool/namespace';
import { deleteHybridConnectionOf, prepareNextGeneration, type RecycleRelayOps } from '../pool/recycleSteps';
import type { RelayManager } from '../relay/relayManager';
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
  /** The ARM steps of a recycle (lib/pool/recycleSteps.ts) and the kill switch when step 1 fails. */
  readonly arm: RecycleRelayOps & Pick<RelayManager, 'regenerateHybridConnectionKeys'>;
}

/** What a session's end did to its namespace's hybrid connection. */
export type EndRelayOutcome =
  /** Deleted now, or before (by this session's earlier try or by maintenance): tokens dead. */
  | 'deleted'
  /** Another recycler (maintenance) holds the ARM work: not deleted yet, ask again. */
  | 'claimed'
  /** Quarantined with its hybrid connection: maintenance deletes the namespace; ask again. */
  | 'quarantined';

export interface SessionServiceOptions {
  namespaces: NamespaceStore;
  sessions: SessionStore;
  notifier: DeviceNotifier;
  relay: SessionRelayOps;
  sealer: Sealer;
  publicApiUrl: string;
  now?: () => Date;
}

/** What an open leased and minted: the orchestration's `opened` input. */
export interface OpenedSession {
  namespace: string;
  endpoint: string;
  hybridConnection: string;
  generation: number;
  /** The client's Send token, sealed with the session id as context. */
  sealedSendToken: string;
  expiresAt: string;
}

export type OpenSessionResult =
  ({ ok: true } & OpenedSession) | { ok: false; reason: 'pool_exhausted'; retryAfterSeconds: number };

export class SessionService {
  private readonly now: () => Date;
  constructor(private readonly o: SessionServiceOptions) {
    this.now = o.now ?? (() => new Date());
  }

  /**
   * Leases a namespace, mints a Listen token (device) and a Send token (client) that both expire
   * at the session's end, and notifies the device with a message that lives as long as the ready
   * timeout. Returns only the sealed send token: no clear token goes into orchestration history.
   * `beforeNotify` runs between the mint and the message (the open request starts the session's
   * orchestration there, so the device's ready call always finds it); if it throws, nothing is sent.
   * Second run: the same namespace (the lease is idempotent per session), the same readyToken
   * (derived), fresh tokens and a second copy of the message.
   */
  async open(
    input: SessionInput,
    options: { beforeNotify?: (opened: OpenedSession) => Promise<void> } = {},
  ): Promise<OpenSessionResult> {
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
    // The audit record learns its namespace when the session becomes ready or ends: one write fewer on the open path.
    const opened: OpenedSession = {
      namespace: ns.name,
      endpoint,
      hybridConnection,
      generation: ns.generation,
      sealedSendToken: this.o.sealer.seal(sendToken, input.sessionId),
      expiresAt: input.expiresAt,
    };
    await options.beforeNotify?.(opened);
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
    return { ok: true, ...opened };
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
   * A recycle's first step, the only one on the session's critical path: ends the lease (leased →
   * recycling, with the session's recycle claim) and deletes the hybrid connection, so live
   * connections drop and every token is dead. Only after `deleted` may the session say `ended`.
   * A failure is counted on the row (never quarantined from here: maintenance owns that) and thrown.
   * Second run: a hybrid connection already deleted (or a namespace recycled past `generation`,
   * leased again, or gone) answers `deleted` without an ARM call.
   */
  async endRelay(input: { sessionId: string; namespace?: string; generation?: number }): Promise<EndRelayOutcome> {
    // Without a name (the open failed half-way), find what the session holds, if anything.
    let ns = input.namespace
      ? await this.o.namespaces.get(input.namespace)
      : await this.o.namespaces.leaseFor(input.sessionId);
    if (!ns) return 'deleted';
    const generation = input.generation ?? ns.generation;
    if (ns.generation > generation) return 'deleted';
    if (ns.state === 'leased' && ns.sessionId !== input.sessionId) return 'deleted';
    if (ns.state === 'quarantined') return ns.hybridConnectionDeletedAt ? 'deleted' : 'quarantined';
    if (ns.state !== 'leased' && ns.state !== 'recycling') return 'deleted';
    if (ns.hybridConnectionDeletedAt) return 'deleted';
    // Ends the lease and claims the ARM work in one write: only one recycler at a time does it
    // (this session's retries share the claim).
    const claimId = `session:${input.sessionId}`;
    ns = await this.o.namespaces.beginRecycle(ns.name, { sessionId: input.sessionId, claimId, now: this.now() });
    if (ns.hybridConnectionDeletedAt || ns.generation > generation) return 'deleted';
    if (!holdsRecycleClaim(ns, claimId)) return ns.state === 'quarantined' ? 'quarantined' : 'claimed';
    try {
      await deleteHybridConnectionOf(this.o.namespaces, this.o.relay.arm, ns, this.now());
    } catch (err) {
      await this.o.namespaces.recordRecycleFailure(ns.name, describeError(err), Number.MAX_SAFE_INTEGER, this.now());
      throw err;
    }
    return 'deleted';
  }

  /**
   * The kill switch when the delete keeps failing: regenerates the keys of the hybrid connection's
   * two rules, so no new connection opens with the session's tokens (live ones stay until the
   * delete succeeds). Second run: new keys again; nothing to do once the hybrid connection is gone.
   */
  async killRelayKeys(input: { sessionId: string; namespace?: string; generation?: number }): Promise<boolean> {
    const ns = input.namespace ? await this.o.namespaces.get(input.namespace) : undefined;
    if (!ns || ns.hybridConnectionDeletedAt || !ns.hybridConnection) return false;
    if (input.generation !== undefined && ns.generation !== input.generation) return false;
    if (ns.state !== 'recycling' && ns.state !== 'quarantined') return false;
    await this.o.relay.arm.regenerateHybridConnectionKeys(refOf(ns));
    return true;
  }

  /**
   * A recycle's second step, off the critical path (after the end is recorded): the next
   * generation under a fresh hybrid connection name, its keys sealed, the row `available`. A
   * failure is counted on the row and thrown; maintenance retries `recycling` rows.
   * Second run: a namespace already recycled past `generation` (or no longer `recycling`) is left as it is.
   */
  async prepareNext(input: {
    sessionId: string;
    namespace?: string;
    generation?: number;
  }): Promise<'recycled' | 'already' | 'claimed'> {
    if (!input.namespace) return 'already';
    let ns = await this.o.namespaces.get(input.namespace);
    if (!ns || ns.state !== 'recycling') return 'already';
    if (input.generation !== undefined && ns.generation !== input.generation) return 'already';
    const claimId = `session:${input.sessionId}`;
    ns = await this.o.namespaces.beginRecycle(ns.name, { claimId, now: this.now() });
    if (!holdsRecycleClaim(ns, claimId)) return ns.state === 'recycling' ? 'claimed' : 'already';
    try {
      await prepareNextGeneration(this.o.namespaces, this.o.relay.arm, this.o.sealer, ns, this.now);
    } catch (err) {
      await this.o.namespaces.recordRecycleFailure(ns.name, describeError(err), Number.MAX_SAFE_INTEGER, this.now());
      throw err;
    }
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
