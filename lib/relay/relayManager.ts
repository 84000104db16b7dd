// RelayManager: the only module that calls Azure Resource Manager for Relay (through an injected
// RelayAPI factory): prepare, key lookup, recycle, delete and list namespaces. Every call goes
// through armRetry.ts: our own retry of transient faults, typed errors for everything else.
import { RelayAPI, type AuthorizationRule, type RelayNamespace } from '@azure/arm-relay';
import { DefaultAzureCredential } from '@azure/identity';
import { timingSafeEqual } from 'node:crypto';
import { sleep } from '../backoff';
import { armMetricsPolicy } from '../metrics';
import {
  RelayActivationTimeoutError,
  RelayArmError,
  RelayArmUnavailableError,
  RelayResourceNotFoundError,
} from '../errors';
import { callArm, DEFAULT_RETRY_POLICY, type RetryPolicy } from './armRetry';
import { ArmRateLimits, armRateLimitsPolicy, type SubscriptionRateLimits } from './armRateLimits';
import { createSasToken, relayAudience, type SasKey } from './sas';

export type TokenCredentialLike = ConstructorParameters<typeof RelayAPI>[0];

/**
 * Builds a RelayAPI per subscription. `lroPollIntervalMs`, when set, is how often RelayManager polls
 * LROs; `rateLimits`, when set, is fed by the clients' responses (ARM's rate-limit headers).
 */
export type RelayApiFactory = ((subscriptionId: string) => RelayAPI) & {
  readonly lroPollIntervalMs?: number;
  readonly rateLimits?: ArmRateLimits;
};

export const DEFAULT_HYBRID_CONNECTION = 'tunnel';
export const DEFAULT_LISTEN_RULE = 'device-listen';
export const DEFAULT_SEND_RULE = 'client-send';
const AZURE_ARM_HOST = 'management.azure.com';
/** The namespace-level rule Azure creates with every namespace (Manage+Listen+Send). */
export const ROOT_RULE = 'RootManageSharedAccessKey';

// The relay errors live in lib/errors.ts with every other code; re-exported for existing importers.
export {
  RelayActivationTimeoutError,
  RelayArmError,
  RelayArmUnavailableError,
  RelayConflictError,
  RelayQuotaExceededError,
  RelayResourceNotFoundError,
  RelayThrottledError,
  type RelayArmErrorOptions,
} from '../errors';
export type { RetryPolicy };
export type { SubscriptionRateLimits };

// ---------------------------------------------------------------------------------------------
// Public shapes

export interface NamespaceRef {
  subscriptionId: string;
  resourceGroup: string;
  /** The namespace name. */
  name: string;
  /** Default `tunnel`. */
  hybridConnection?: string;
  /** The namespace's serviceBusEndpoint, if known (saves a GET). */
  endpoint?: string;
}

export interface PrepareNamespaceInput {
  subscriptionId: string;
  resourceGroup: string;
  location: string;
  name: string;
  tags?: Record<string, string>;
  hybridConnection?: string;
}

export interface ArmCallCount {
  /** GET requests sent, retries included. */
  reads: number;
  /** PUT/POST/PATCH/DELETE requests sent, retries included. */
  writes: number;
  /** 429s among them (each retried, or ended the call with RelayThrottledError). */
  throttled?: number;
}

export interface PreparedNamespace {
  subscriptionId: string;
  resourceGroup: string;
  name: string;
  location: string;
  tags: Record<string, string>;
  /** serviceBusEndpoint, e.g. `https://ns.servicebus.windows.net:443/` (or the emulator's). */
  endpoint: string;
  hybridConnection: string;
  listenRule: string;
  sendRule: string;
  arm: ArmCallCount;
  /**
   * Relay's namespace writes left in its window, from this call's own namespace PUT
   * (`x-ms-ratelimit-remaining-subscription-resource-requests`); absent when no PUT was sent or
   * the answer did not say.
   */
  namespaceWritesRemaining?: number;
}

/** What is needed to mint the session's two tokens. Never leaves lib/. */
export interface SessionKeys {
  endpoint: string;
  hybridConnection: string;
  /** The audience both tokens are for (the hybrid connection). */
  audience: string;
  listen: SasKey;
  send: SasKey;
}

export interface SessionTokens {
  endpoint: string;
  hybridConnection: string;
  listenToken: string;
  sendToken: string;
  expiresAt: Date;
}

export interface RecycleResult {
  hybridConnection: string;
  arm: ArmCallCount;
}

export interface ManagedNamespace {
  subscriptionId: string;
  resourceGroup: string;
  name: string;
  location: string;
  tags: Record<string, string>;
  provisioningState?: string;
  endpoint?: string;
}

export interface RelayManagerOptions {
  apiFactory: RelayApiFactory;
  /** How often to poll a namespace being created or deleted (default: the factory's, else 2000). */
  lroPollIntervalMs?: number;
  /** How long a namespace may take to activate (default 300000; Azure takes ~20-45 s). */
  activationTimeoutMs?: number;
  /**
   * The first GET of a namespace just created waits this long (default: the poll interval). Azure
   * answers the PUT with `Created` and no Retry-After and takes ~20-45 s: polling from the start
   * spends ARM's read budget for nothing.
   */
  firstActivationPollMs?: number;
  retry?: Partial<RetryPolicy>;
  listenRuleName?: string;
  sendRuleName?: string;
  /** Injected for tests. */
  sleep?: (ms: number) => Promise<void>;
  /** Injected for tests: the retry jitter's source (default Math.random). */
  random?: () => number;
}

// ---------------------------------------------------------------------------------------------

export class RelayManager {
  private readonly retry: RetryPolicy;
  private readonly pollIntervalMs: number;
  private readonly activationTimeoutMs: number;
  private readonly firstActivationPollMs: number;
  private readonly limits: ArmRateLimits;
  private readonly listenRule: string;
  private readonly sendRule: string;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly clients = new Map<string, RelayAPI>();

  constructor(private readonly options: RelayManagerOptions) {
    this.retry = { ...DEFAULT_RETRY_POLICY, ...options.retry };
    this.pollIntervalMs = options.lroPollIntervalMs ?? options.apiFactory.lroPollIntervalMs ?? 2000;
    this.activationTimeoutMs = options.activationTimeoutMs ?? 300_000;
    this.firstActivationPollMs = options.firstActivationPollMs ?? this.pollIntervalMs;
    this.limits = options.apiFactory.rateLimits ?? new ArmRateLimits();
    this.listenRule = options.listenRuleName ?? DEFAULT_LISTEN_RULE;
    this.sendRule = options.sendRuleName ?? DEFAULT_SEND_RULE;
    this.sleep = options.sleep ?? ((ms) => sleep(ms));
  }

  /**
   * Namespace + one hybrid connection + a Listen-only and a Send-only rule on it.
   * Second run: reads what exists and writes only what is missing (a fully prepared namespace costs reads only).
   */
  async prepareNamespace(input: PrepareNamespaceInput): Promise<PreparedNamespace> {
    const api = this.api(input.subscriptionId);
    const count: ArmCallCount = { reads: 0, writes: 0 };
    const { resourceGroup: rg, name } = input;
    const hcName = input.hybridConnection ?? DEFAULT_HYBRID_CONNECTION;
    let ns = await this.getOrUndefined(count, 'namespaces.get', (signal) =>
      api.namespaces.get(rg, name, { abortSignal: signal }),
    );
    let namespaceWritesRemaining: number | undefined;
    if (!ns) {
      await this.call(count, 'namespaces.createOrUpdate', 'write', (signal) =>
        api.namespaces.beginCreateOrUpdate(
          rg,
          name,
          { location: input.location, tags: input.tags },
          {
            abortSignal: signal,
            onResponse: (raw) => {
              const left = raw.headers.get('x-ms-ratelimit-remaining-subscription-resource-requests');
              if (raw.status < 300 && left !== undefined && /^\d+$/.test(left.trim()))
                namespaceWritesRemaining = Number(left);
            },
          },
        ),
      );
    }
    if (ns?.provisioningState !== 'Succeeded') ns = await this.waitUntilActive(api, count, rg, name, !ns);
    if (!ns.serviceBusEndpoint) {
      throw new RelayArmError(`namespace ${name} has no serviceBusEndpoint`, { operation: 'namespaces.get' });
    }
    const hc = await this.getOrUndefined(count, 'hybridConnections.get', (signal) =>
      api.hybridConnections.get(rg, name, hcName, { abortSignal: signal }),
    );
    if (!hc || hc.requiresClientAuthorization === false) {
      await this.putHybridConnection(api, count, rg, name, hcName);
    }
    const rules = hc ? await this.listHybridConnectionRules(api, count, rg, name, hcName) : [];
    for (const [ruleName, right] of this.sessionRules()) {
      const existing = rules.find((r) => r.name?.toLowerCase() === ruleName.toLowerCase());
      if (existing && existing.rights.length === 1 && existing.rights[0] === right) continue;
      await this.putRule(api, count, rg, name, hcName, ruleName, right);
    }
    return {
      subscriptionId: input.subscriptionId,
      resourceGroup: rg,
      name,
      location: ns.location ?? input.location,
      tags: ns.tags ?? input.tags ?? {},
      endpoint: ns.serviceBusEndpoint,
      hybridConnection: hcName,
      listenRule: this.listenRule,
      sendRule: this.sendRule,
      arm: count,
      ...(namespaceWritesRemaining !== undefined ? { namespaceWritesRemaining } : {}),
    };
  }

  /** The keys of the Listen-only and Send-only rules (two listKeys; plus a GET when `ref.endpoint` is unknown). */
  async getSessionKeys(ref: NamespaceRef): Promise<SessionKeys> {
    const api = this.api(ref.subscriptionId);
    const count: ArmCallCount = { reads: 0, writes: 0 };
    const hcName = ref.hybridConnection ?? DEFAULT_HYBRID_CONNECTION;
    const endpointPromise = ref.endpoint
      ? Promise.resolve(ref.endpoint)
      : this.call(count, 'namespaces.get', 'read', (signal) =>
          api.namespaces.get(ref.resourceGroup, ref.name, { abortSignal: signal }),
        ).then((ns) => ns.serviceBusEndpoint ?? '');
    const keysOf = (rule: string): Promise<SasKey> =>
      this.call(count, 'hybridConnections.listKeys', 'write', (signal) =>
        api.hybridConnections.listKeys(ref.resourceGroup, ref.name, hcName, rule, { abortSignal: signal }),
      ).then((k) => {
        if (!k.primaryKey)
          throw new RelayArmError(`rule ${rule} returned no key`, { operation: 'hybridConnections.listKeys' });
        return { keyName: k.keyName ?? rule, key: k.primaryKey };
      });
    const [endpoint, listen, send] = await Promise.all([
      endpointPromise,
      keysOf(this.listenRule),
      keysOf(this.sendRule),
    ]);
    if (!endpoint)
      throw new RelayArmError(`namespace ${ref.name} has no serviceBusEndpoint`, { operation: 'namespaces.get' });
    return { endpoint, hybridConnection: hcName, audience: relayAudience(endpoint, hcName), listen, send };
  }

  /** A Listen token (device) and a Send token (client) for the hybrid connection, both expiring at `expiresAt`. */
  async issueSessionTokens(ref: NamespaceRef, options: { expiresAt: Date }): Promise<SessionTokens> {
    const keys = await this.getSessionKeys(ref);
    return {
      endpoint: keys.endpoint,
      hybridConnection: keys.hybridConnection,
      listenToken: createSasToken({ resourceUri: keys.audience, ...keys.listen, expiresAt: options.expiresAt }),
      sendToken: createSasToken({ resourceUri: keys.audience, ...keys.send, expiresAt: options.expiresAt }),
      expiresAt: options.expiresAt,
    };
  }

  /**
   * Ends every trace of a session and prepares the next one, one write after another (two writes
   * under one namespace at once draw ARM's 409/429 "conflicting operation"): deletes the hybrid
   * connection `ref.hybridConnection` (drops its live connections and its rules with their keys),
   * then creates `nextHybridConnection` (a fresh name: re-creating a just-deleted name is the other
   * conflict case) with a Listen-only and a Send-only rule. `rotateNamespaceKeys` also deletes every
   * foreign namespace-level rule and hybrid connection and regenerates `RootManageSharedAccessKey`
   * (scrubNamespace).
   * Second run: the old hybrid connection is already gone (404 counts as deleted) and the new one is
   * written again, which leaves it as fresh.
   */
  async recycle(
    ref: NamespaceRef,
    options: { rotateNamespaceKeys?: boolean; nextHybridConnection?: string } = {},
  ): Promise<RecycleResult> {
    const count: ArmCallCount = { reads: 0, writes: 0 };
    const next = options.nextHybridConnection ?? ref.hybridConnection ?? DEFAULT_HYBRID_CONNECTION;
    add(count, (await this.deleteHybridConnection(ref)).arm);
    if (options.rotateNamespaceKeys) add(count, (await this.scrubNamespace(ref, next)).arm);
    add(count, (await this.prepareHybridConnection({ ...ref, hybridConnection: next })).arm);
    return { hybridConnection: next, arm: count };
  }

  /**
   * Deletes the hybrid connection `ref.hybridConnection`: its live connections drop and every token
   * for it is dead. The only ARM step on a session's critical path. Second run: 404, counted as done.
   */
  async deleteHybridConnection(ref: NamespaceRef): Promise<{ arm: ArmCallCount }> {
    const api = this.api(ref.subscriptionId);
    const count: ArmCallCount = { reads: 0, writes: 0 };
    const hcName = ref.hybridConnection ?? DEFAULT_HYBRID_CONNECTION;
    try {
      await this.call(count, 'hybridConnections.delete', 'write', (signal) =>
        api.hybridConnections.delete(ref.resourceGroup, ref.name, hcName, { abortSignal: signal }),
      );
    } catch (err) {
      if (!(err instanceof RelayResourceNotFoundError)) throw err;
    }
    return { arm: count };
  }

  /**
   * Creates (or rewrites) the hybrid connection `ref.hybridConnection` with client authorization
   * required and its Listen-only and Send-only rules, sequentially: 3 writes.
   * Second run: the same writes again (PUTs of what exists), same result.
   */
  async prepareHybridConnection(ref: NamespaceRef): Promise<{ arm: ArmCallCount }> {
    const api = this.api(ref.subscriptionId);
    const count: ArmCallCount = { reads: 0, writes: 0 };
    const { resourceGroup: rg, name } = ref;
    const hcName = ref.hybridConnection ?? DEFAULT_HYBRID_CONNECTION;
    await this.putHybridConnection(api, count, rg, name, hcName);
    for (const [ruleName, right] of this.sessionRules())
      await this.putRule(api, count, rg, name, hcName, ruleName, right);
    return { arm: count };
  }

  /**
   * The kill switch when the hybrid connection cannot be deleted: regenerates both keys of its
   * Listen and Send rules, so no new connection opens with an issued token (live ones stay until
   * the delete succeeds). 4 writes. Second run: new keys again, as dead for old tokens.
   */
  async regenerateHybridConnectionKeys(ref: NamespaceRef): Promise<{ arm: ArmCallCount }> {
    const api = this.api(ref.subscriptionId);
    const count: ArmCallCount = { reads: 0, writes: 0 };
    const hcName = ref.hybridConnection ?? DEFAULT_HYBRID_CONNECTION;
    for (const rule of [this.listenRule, this.sendRule])
      for (const keyType of ['PrimaryKey', 'SecondaryKey'] as const)
        await this.call(count, 'hybridConnections.regenerateKeys', 'write', (signal) =>
          api.hybridConnections.regenerateKeys(
            ref.resourceGroup,
            ref.name,
            hcName,
            rule,
            { keyType },
            {
              abortSignal: signal,
            },
          ),
        );
    return { arm: count };
  }

  /**
   * The namespace as the pool wants it besides its session's hybrid connection: every namespace-level
   * rule other than `RootManageSharedAccessKey` deleted (a foreign Listen+Send rule would carry any
   * later session's traffic), both keys of `RootManageSharedAccessKey` regenerated (never handed
   * out, but an adopted namespace's may have been), and every hybrid connection other than `keep`
   * deleted. 2 reads + 1 write per foreign rule or hybrid connection + 2 writes, one after another.
   * Second run: finds nothing foreign and rotates the root keys again.
   */
  async scrubNamespace(ref: NamespaceRef, keep?: string): Promise<{ arm: ArmCallCount; deleted: string[] }> {
    const api = this.api(ref.subscriptionId);
    const count: ArmCallCount = { reads: 0, writes: 0 };
    const { resourceGroup: rg, name } = ref;
    const deleted: string[] = [];
    const gone = async (what: string, fn: (signal: AbortSignal) => Promise<unknown>, op: string) => {
      try {
        await this.call(count, op, 'write', fn);
      } catch (err) {
        if (!(err instanceof RelayResourceNotFoundError)) throw err;
      }
      deleted.push(what);
    };
    const rules = await this.listNamespaceRules(api, count, rg, name);
    for (const rule of rules) {
      const ruleName = rule.name ?? '';
      if (ruleName === ROOT_RULE) continue;
      await gone(
        `namespace rule ${ruleName}`,
        (signal) => api.namespaces.deleteAuthorizationRule(rg, name, ruleName, { abortSignal: signal }),
        'namespaces.deleteAuthorizationRule',
      );
    }
    if (rules.some((r) => r.name === ROOT_RULE))
      for (const keyType of ['PrimaryKey', 'SecondaryKey'] as const)
        await this.call(count, 'namespaces.regenerateKeys', 'write', (signal) =>
          api.namespaces.regenerateKeys(rg, name, ROOT_RULE, { keyType }, { abortSignal: signal }),
        );
    for (const hc of await this.listHybridConnections(api, count, rg, name)) {
      if (keep !== undefined && hc.toLowerCase() === keep.toLowerCase()) continue;
      await gone(
        `hybrid connection ${hc}`,
        (signal) => api.hybridConnections.delete(rg, name, hc, { abortSignal: signal }),
        'hybridConnections.delete',
      );
    }
    return { arm: count, deleted };
  }

  /**
   * What differs from a namespace holding exactly the hybrid connection `ref.hybridConnection`
   * with the pool's two rules, no foreign namespace-level rule, and (when `expected` keys are
   * given) those keys: one line per difference, empty when it matches. 3 list reads, +2 listKeys
   * with `expected`. Off the open path (maintenance). Read-only: a second run answers the same.
   */
  async checkDrift(ref: NamespaceRef, expected?: { listen: SasKey; send: SasKey }): Promise<string[]> {
    const api = this.api(ref.subscriptionId);
    const count: ArmCallCount = { reads: 0, writes: 0 };
    const { resourceGroup: rg, name } = ref;
    const hcName = ref.hybridConnection ?? DEFAULT_HYBRID_CONNECTION;
    const drift: string[] = [];
    for (const r of await this.listNamespaceRules(api, count, rg, name))
      if (r.name !== ROOT_RULE) drift.push(`foreign namespace rule ${r.name ?? '?'}`);
    const hcs = await this.listHybridConnections(api, count, rg, name);
    for (const hc of hcs) if (hc.toLowerCase() !== hcName.toLowerCase()) drift.push(`foreign hybrid connection ${hc}`);
    if (!hcs.some((hc) => hc.toLowerCase() === hcName.toLowerCase())) {
      drift.push(`hybrid connection ${hcName} missing`);
      return drift;
    }
    const rules = await this.listHybridConnectionRules(api, count, rg, name, hcName);
    for (const r of rules) {
      const want = r.name === this.listenRule ? 'Listen' : r.name === this.sendRule ? 'Send' : undefined;
      if (!want) drift.push(`foreign rule ${r.name ?? '?'} on ${hcName}`);
      else if (r.rights.length !== 1 || r.rights[0] !== want)
        drift.push(`rule ${r.name} has rights ${r.rights.join('+')}`);
    }
    for (const rule of [this.listenRule, this.sendRule])
      if (!rules.some((r) => r.name === rule)) drift.push(`rule ${rule} missing on ${hcName}`);
    if (expected && drift.length === 0) {
      const keys = await this.getSessionKeys({ ...ref, endpoint: ref.endpoint ?? 'unused' });
      if (!constantTimeEqual(keys.listen.key, expected.listen.key)) drift.push(`listen key of ${hcName} rotated`);
      if (!constantTimeEqual(keys.send.key, expected.send.key)) drift.push(`send key of ${hcName} rotated`);
    }
    return drift;
  }

  /**
   * What ARM's responses said of `subscriptionId`'s limits so far (its rate-limit headers and 429s),
   * across every manager sharing this manager's API factory. Read-only.
   */
  rateLimitsOf(subscriptionId: string): SubscriptionRateLimits {
    return this.limits.of(subscriptionId);
  }

  /**
   * Deletes the namespace and waits for the operation to finish, polling as the operation's
   * Retry-After says (Azure: 35-37 s), else every poll interval. Second run: nothing left, returns.
   */
  async deleteNamespace(ref: NamespaceRef): Promise<{ arm: ArmCallCount }> {
    const api = this.api(ref.subscriptionId);
    const count: ArmCallCount = { reads: 0, writes: 0 };
    const deadline = Date.now() + this.retry.deadlineMs;
    const poller = await this.call(count, 'namespaces.delete', 'write', () =>
      // The signal is kept by the poller for every poll, so it bounds the whole operation.
      api.namespaces.beginDelete(ref.resourceGroup, ref.name, {
        abortSignal: AbortSignal.timeout(this.retry.deadlineMs),
      }),
    );
    while (!poller.isDone()) {
      if (Date.now() > deadline) {
        throw new RelayArmUnavailableError(
          `namespaces.delete of ${ref.name} did not finish in ${this.retry.deadlineMs} ms`,
          {
            operation: 'namespaces.delete',
          },
        );
      }
      const hint = this.limits.pollHint(ref.name);
      await this.sleep(Math.max(this.pollIntervalMs, Math.min(hint ?? 0, deadline - Date.now())));
      await this.call(count, 'namespaces.deleteOperationResult', 'read', () => poller.poll());
    }
    this.limits.forgetPoll(ref.name);
    return { arm: count };
  }

  /** Namespaces of a subscription (optionally one resource group) carrying `tag` (name, and value if given). */
  async listNamespaces(filter: {
    subscriptionId: string;
    resourceGroup?: string;
    tag?: { name: string; value?: string };
  }): Promise<ManagedNamespace[]> {
    const api = this.api(filter.subscriptionId);
    const count: ArmCallCount = { reads: 0, writes: 0 };
    const all = await this.call(
      count,
      filter.resourceGroup ? 'namespaces.listByResourceGroup' : 'namespaces.list',
      'read',
      async (signal) => {
        const out: RelayNamespace[] = [];
        const pages = filter.resourceGroup
          ? api.namespaces.listByResourceGroup(filter.resourceGroup, { abortSignal: signal })
          : api.namespaces.list({ abortSignal: signal });
        for await (const ns of pages) out.push(ns);
        return out;
      },
    );
    const tag = filter.tag;
    return all
      .filter(
        (ns) =>
          !tag ||
          (ns.tags !== undefined &&
            tag.name in ns.tags &&
            (tag.value === undefined || ns.tags[tag.name] === tag.value)),
      )
      .map((ns) => ({
        subscriptionId: filter.subscriptionId,
        resourceGroup: resourceGroupOf(ns.id) ?? filter.resourceGroup ?? '',
        name: ns.name ?? '',
        location: ns.location ?? '',
        tags: ns.tags ?? {},
        provisioningState: ns.provisioningState,
        endpoint: ns.serviceBusEndpoint,
      }));
  }

  // -------------------------------------------------------------------------------------------

  private api(subscriptionId: string): RelayAPI {
    let client = this.clients.get(subscriptionId);
    if (!client) this.clients.set(subscriptionId, (client = this.options.apiFactory(subscriptionId)));
    return client;
  }

  private async listHybridConnections(api: RelayAPI, count: ArmCallCount, rg: string, name: string): Promise<string[]> {
    return this.call(count, 'hybridConnections.listByNamespace', 'read', async (signal) => {
      const out: string[] = [];
      for await (const hc of api.hybridConnections.listByNamespace(rg, name, { abortSignal: signal }))
        out.push(hc.name ?? '');
      return out;
    });
  }

  private async listNamespaceRules(
    api: RelayAPI,
    count: ArmCallCount,
    rg: string,
    name: string,
  ): Promise<AuthorizationRule[]> {
    return this.call(count, 'namespaces.listAuthorizationRules', 'read', async (signal) => {
      const out: AuthorizationRule[] = [];
      for await (const r of api.namespaces.listAuthorizationRules(rg, name, { abortSignal: signal })) out.push(r);
      return out;
    });
  }

  /** The session's two rules: Listen-only for the device, Send-only for the client. */
  private sessionRules(): ReadonlyArray<readonly [string, 'Listen' | 'Send']> {
    return [
      [this.listenRule, 'Listen'],
      [this.sendRule, 'Send'],
    ];
  }

  /** PUT of the hybrid connection with client authorization required: 1 write. */
  private async putHybridConnection(
    api: RelayAPI,
    count: ArmCallCount,
    rg: string,
    name: string,
    hcName: string,
  ): Promise<void> {
    await this.call(count, 'hybridConnections.createOrUpdate', 'write', (signal) =>
      api.hybridConnections.createOrUpdate(
        rg,
        name,
        hcName,
        { requiresClientAuthorization: true },
        { abortSignal: signal },
      ),
    );
  }

  /** PUT of one of the hybrid connection's rules with one right: 1 write. */
  private async putRule(
    api: RelayAPI,
    count: ArmCallCount,
    rg: string,
    name: string,
    hcName: string,
    ruleName: string,
    right: 'Listen' | 'Send',
  ): Promise<void> {
    await this.call(count, 'hybridConnections.createOrUpdateAuthorizationRule', 'write', (signal) =>
      api.hybridConnections.createOrUpdateAuthorizationRule(
        rg,
        name,
        hcName,
        ruleName,
        { rights: [right] },
        { abortSignal: signal },
      ),
    );
  }

  private async listHybridConnectionRules(
    api: RelayAPI,
    count: ArmCallCount,
    rg: string,
    name: string,
    hc: string,
  ): Promise<AuthorizationRule[]> {
    return this.call(count, 'hybridConnections.listAuthorizationRules', 'read', async (signal) => {
      const out: AuthorizationRule[] = [];
      for await (const r of api.hybridConnections.listAuthorizationRules(rg, name, hc, { abortSignal: signal }))
        out.push(r);
      return out;
    });
  }

  /** GETs the namespace until `Succeeded`; `Failed` or the activation deadline is a RelayActivationTimeoutError. */
  private async waitUntilActive(
    api: RelayAPI,
    count: ArmCallCount,
    rg: string,
    name: string,
    justCreated: boolean,
  ): Promise<RelayNamespace> {
    const deadline = Date.now() + this.activationTimeoutMs;
    for (let first = true; ; first = false) {
      if (!first || justCreated) {
        if (Date.now() + this.pollIntervalMs > deadline) {
          throw new RelayActivationTimeoutError(
            `namespace ${name} did not finish activating within ${this.activationTimeoutMs} ms; it may be stuck: delete it and use another name`,
            { operation: 'namespaces.createOrUpdate' },
          );
        }
        await this.sleep(first ? Math.max(this.pollIntervalMs, this.firstActivationPollMs) : this.pollIntervalMs);
      }
      const ns = await this.call(count, 'namespaces.get', 'read', (signal) =>
        api.namespaces.get(rg, name, { abortSignal: signal }),
      );
      if (ns.provisioningState === 'Succeeded') return ns;
      if (ns.provisioningState === 'Failed') {
        throw new RelayActivationTimeoutError(`namespace ${name} failed to provision; delete it and use another name`, {
          operation: 'namespaces.createOrUpdate',
        });
      }
    }
  }

  private async getOrUndefined<T>(
    count: ArmCallCount,
    operation: string,
    fn: (signal: AbortSignal) => Promise<T>,
  ): Promise<T | undefined> {
    try {
      return await this.call(count, operation, 'read', fn);
    } catch (err) {
      if (err instanceof RelayResourceNotFoundError) return undefined;
      throw err;
    }
  }

  /** One ARM call with bounded retries of transient faults, honouring Retry-After, within a total deadline. */
  private call<T>(
    count: ArmCallCount,
    operation: string,
    kind: 'read' | 'write',
    fn: (signal: AbortSignal) => Promise<T>,
  ): Promise<T> {
    return callArm(operation, fn, {
      policy: this.retry,
      sleep: this.sleep,
      random: this.options.random,
      onAttempt: () => (kind === 'read' ? count.reads++ : count.writes++),
      onThrottled: () => (count.throttled = (count.throttled ?? 0) + 1),
    });
  }
}

function add(into: ArmCallCount, more: ArmCallCount): void {
  into.reads += more.reads;
  into.writes += more.writes;
  if (more.throttled) into.throttled = (into.throttled ?? 0) + more.throttled;
}

function constantTimeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/**
 * The hybrid connection a namespace holds at `generation`: a fresh name per generation, so a
 * recycle never re-creates a name it just deleted (Azure answers that with 429 40901 for a while).
 */
export function hybridConnectionFor(generation: number): string {
  return generation === 0 ? DEFAULT_HYBRID_CONNECTION : `${DEFAULT_HYBRID_CONNECTION}-g${generation}`;
}

/**
 * The name the next generation's hybrid connection gets: `hybridConnectionFor(generation + 1)`,
 * or the one after when the current one already bears it (an adopted namespace starts one ahead).
 * Deterministic, so a retried preparation rewrites the same hybrid connection instead of leaking one.
 */
export function nextHybridConnection(current: string | undefined, generation: number): string {
  const next = hybridConnectionFor(generation + 1);
  return current !== undefined && current.toLowerCase() === next.toLowerCase()
    ? hybridConnectionFor(generation + 2)
    : next;
}

function resourceGroupOf(id: string | undefined): string | undefined {
  return id ? /\/resourceGroups\/([^/]+)\//i.exec(id)?.[1] : undefined;
}

// ---------------------------------------------------------------------------------------------

export interface RelayApiFactoryOptions {
  /** ARM endpoint; default https://management.azure.com. The emulator's `armEndpoint` locally. */
  endpoint?: string;
  /** A CA to trust for `endpoint` (the emulator's certificate). */
  caPem?: string;
  /** Default: DefaultAzureCredential for Azure, a static dummy token for any other endpoint (the emulator). */
  credential?: TokenCredentialLike;
  /** Default: 50 for a non-Azure endpoint, else unset (RelayManager then polls every 2000 ms). */
  lroPollIntervalMs?: number;
}

/** Builds RelayAPI clients with the SDK's own retries off (RelayManager retries, honouring Retry-After). */
export function createRelayApiFactory(options: RelayApiFactoryOptions = {}): RelayApiFactory {
  const isAzure = !options.endpoint || new URL(options.endpoint).hostname.toLowerCase() === AZURE_ARM_HOST;
  const credential: TokenCredentialLike =
    options.credential ??
    (isAzure
      ? new DefaultAzureCredential()
      : { getToken: async () => ({ token: 'relay-emulator', expiresOnTimestamp: Date.now() + 3_600_000 }) });
  const rateLimits = new ArmRateLimits();
  const factory = (subscriptionId: string): RelayAPI =>
    new RelayAPI(credential, subscriptionId, {
      ...(options.endpoint ? { endpoint: options.endpoint.replace(/\/+$/, '') } : {}),
      ...(options.caPem ? { tlsOptions: { ca: options.caPem } } : {}),
      retryOptions: { maxRetries: 0 },
      additionalPolicies: [
        { policy: armMetricsPolicy, position: 'perRetry' },
        { policy: armRateLimitsPolicy(rateLimits), position: 'perRetry' },
      ],
      userAgentOptions: { userAgentPrefix: 'relay-broker' },
    });
  return Object.assign(factory, {
    lroPollIntervalMs: options.lroPollIntervalMs ?? (isAzure ? undefined : 50),
    rateLimits,
  });
}
