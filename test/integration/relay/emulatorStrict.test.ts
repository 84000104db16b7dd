// The emulator as strict as Azure's ARM, through the real @azure/arm-relay SDK: authorization by
// scope (403 AuthorizationFailed), throttling buckets and their headers (429 + Retry-After), the
// namespace-write limit, conflicting-operation 429s, and real-scale provisioning times.
import assert from 'node:assert/strict';
import https from 'node:https';
import { after, describe, it } from 'node:test';
import type { RelayAPI } from '@azure/arm-relay';
import { LOCAL_APP_PRINCIPAL, RelayEmulator, type RelayEmulatorOptions } from '../../../local/relay-emulator';
import { createRelayApiFactory, RelayManager, RelayThrottledError } from '../../../lib/relay/relayManager';
import { LOCATION, namespaceName, RESOURCE_GROUP, SUBSCRIPTION } from './relayTestEnv';

interface ArmFailure {
  statusCode?: number;
  code?: string;
  message?: string;
  response?: { headers: { get(name: string): string | undefined } };
}

/** Fast activation; everything else strict unless the test says otherwise. */
const base: RelayEmulatorOptions = { createDelayMs: 20, deleteDelayMs: 20, timeScale: 0.01 };

describe('relay emulator strict like ARM (real SDK)', () => {
  const emulators: RelayEmulator[] = [];
  after(async () => {
    await Promise.all(emulators.map((e) => e.close()));
  });

  async function start(options: RelayEmulatorOptions = {}): Promise<RelayEmulator> {
    const e = await new RelayEmulator({ ...base, ...options }).start();
    emulators.push(e);
    return e;
  }
  function sdk(e: RelayEmulator, token = LOCAL_APP_PRINCIPAL, subscription = SUBSCRIPTION): RelayAPI {
    return createRelayApiFactory({
      endpoint: e.armEndpoint,
      caPem: e.caCertPem,
      credential: { getToken: () => Promise.resolve({ token, expiresOnTimestamp: Date.now() + 3_600_000 }) },
    })(subscription);
  }
  const createNamespace = async (api: RelayAPI, name = namespaceName('strict'), rg = RESOURCE_GROUP) => {
    await api.namespaces.beginCreateOrUpdate(rg, name, { location: LOCATION });
    return name;
  };
  const waitActive = async (api: RelayAPI, name: string, rg = RESOURCE_GROUP): Promise<void> => {
    for (let i = 0; i < 200; i++) {
      if ((await api.namespaces.get(rg, name)).provisioningState === 'Succeeded') return;
      await new Promise((r) => setTimeout(r, 10));
    }
    throw new Error(`${name} never activated`);
  };

  it('by default the app may manage namespaces in a resource group but not list the subscription (403 AuthorizationFailed)', async () => {
    const e = await start();
    const api = sdk(e);
    const name = await createNamespace(api);
    const inGroup: string[] = [];
    for await (const ns of api.namespaces.listByResourceGroup(RESOURCE_GROUP)) inGroup.push(ns.name ?? '');
    assert.ok(inGroup.includes(name));
    const failure = await collect(api.namespaces.list()).then(
      () => assert.fail('subscription-scope list was allowed'),
      (err: ArmFailure) => err,
    );
    assert.equal(failure.statusCode, 403);
    assert.equal(failure.code, 'AuthorizationFailed');
    assert.equal(
      failure.message,
      `The client '${LOCAL_APP_PRINCIPAL}' with object id '${LOCAL_APP_PRINCIPAL}' does not have authorization to perform action ` +
        `'Microsoft.Relay/namespaces/read' over scope '/subscriptions/${SUBSCRIPTION}' or the scope is invalid. ` +
        'If access was recently granted, please refresh your credentials.',
    );
    await assert.rejects(
      api.namespaces.checkNameAvailability({ name: namespaceName('x') }),
      (err: ArmFailure) => err.statusCode === 403 && err.code === 'AuthorizationFailed',
    );
    // RelayManager does not retry it: a typed, non-transient error.
    const manager = new RelayManager({
      apiFactory: createRelayApiFactory({ endpoint: e.armEndpoint, caPem: e.caCertPem }),
    });
    await assert.rejects(manager.listNamespaces({ subscriptionId: SUBSCRIPTION }), (err: { armStatus?: number }) => {
      return err.armStatus === 403;
    });
    assert.equal(
      (await manager.listNamespaces({ subscriptionId: SUBSCRIPTION, resourceGroup: RESOURCE_GROUP })).length,
      1,
    );
  });

  it('role assignments are configuration: the app is Azure Relay Owner on its pool group only; another principal has nothing', async () => {
    const appObjectId = '11111111-2222-3333-4444-555555555555';
    const e = await start({
      roleAssignments: [
        {
          principalId: appObjectId,
          role: 'Azure Relay Owner',
          scope: `/subscriptions/${SUBSCRIPTION}/resourceGroups/pool-a`,
        },
        { principalId: 'auditor', role: 'Reader', scope: `/subscriptions/${SUBSCRIPTION}` },
      ],
    });
    // A JWT's oid claim is the principal (the signature is not checked: ARM's job, not ours).
    const jwt = ['{"alg":"none"}', JSON.stringify({ oid: appObjectId }), 'sig']
      .map((p, i) => (i < 2 ? Buffer.from(p).toString('base64url') : p))
      .join('.');
    const app = sdk(e, jwt);
    const name = await createNamespace(app, namespaceName('rbac'), 'pool-a');
    await waitActive(app, name, 'pool-a');
    await app.hybridConnections.createOrUpdate('pool-a', name, 'tunnel', {});
    await app.hybridConnections.createOrUpdateAuthorizationRule('pool-a', name, 'tunnel', 'send', { rights: ['Send'] });
    assert.ok((await app.hybridConnections.listKeys('pool-a', name, 'tunnel', 'send')).primaryKey);
    await assert.rejects(createNamespace(app, namespaceName('rbac'), 'pool-b'), (err: ArmFailure) => {
      return (
        err.statusCode === 403 &&
        err.code === 'AuthorizationFailed' &&
        (err.message ?? '').includes("'Microsoft.Relay/namespaces/write' over scope") &&
        (err.message ?? '').includes('/resourceGroups/pool-b/providers/Microsoft.Relay/namespaces/')
      );
    });
    // A Reader at subscription scope may list and read, not write nor list keys.
    const auditor = sdk(e, 'auditor');
    assert.equal((await collect(auditor.namespaces.list())).length, 1);
    await assert.rejects(
      auditor.hybridConnections.listKeys('pool-a', name, 'tunnel', 'send'),
      (err: ArmFailure) =>
        err.statusCode === 403 &&
        (err.message ?? '').includes(
          "'Microsoft.Relay/namespaces/hybridConnections/authorizationRules/listKeys/action' over scope",
        ),
    );
    await assert.rejects(
      sdk(e, 'nobody').namespaces.get('pool-a', name),
      (err: ArmFailure) => err.statusCode === 403 && err.code === 'AuthorizationFailed',
    );
  });

  it('the lenient subscriptionScopeList setting lets the subscription-scope list through', async () => {
    const e = await start({ lenient: { subscriptionScopeList: true } });
    const api = sdk(e);
    const name = await createNamespace(api);
    assert.ok((await collect(api.namespaces.list())).some((ns) => ns.name === name));
  });

  it('ARM buckets: remaining-* headers count down, an empty bucket answers 429 + Retry-After', async () => {
    const e = await start({
      timeScale: 1,
      createDelayMs: 0,
      conflicts: { writeDurationMs: 0 },
      // No refill worth the name during the test: the counts are exact.
      throttling: { writes: { burst: 3, refillPerSecond: 0.001 } },
    });
    const api = sdk(e);
    const name = await createNamespace(api); // the first write token
    const remaining: string[] = [];
    for (const hc of ['a', 'b']) {
      await api.hybridConnections.createOrUpdate(
        RESOURCE_GROUP,
        name,
        hc,
        {},
        {
          onResponse: (r) => remaining.push(r.headers.get('x-ms-ratelimit-remaining-subscription-writes') ?? ''),
        },
      );
    }
    assert.deepEqual(remaining, ['1', '0']);
    const failure = await api.hybridConnections.createOrUpdate(RESOURCE_GROUP, name, 'c', {}).then(
      () => assert.fail('a write past the bucket was served'),
      (err: ArmFailure) => err,
    );
    assert.equal(failure.statusCode, 429);
    assert.equal(failure.code, 'SubscriptionRequestsThrottled');
    assert.ok(Number(failure.response?.headers.get('retry-after')) >= 900, 'Retry-After: until a token is back');
    assert.equal(e.stats().throttled, 1);
    // Deletes and reads have buckets of their own, with their own headers.
    const other: string[] = [];
    await api.hybridConnections.delete(RESOURCE_GROUP, name, 'a', {
      onResponse: (r) => other.push(r.headers.get('x-ms-ratelimit-remaining-subscription-deletes') ?? ''),
    });
    await api.namespaces.get(RESOURCE_GROUP, name, {
      onResponse: (r) => other.push(r.headers.get('x-ms-ratelimit-remaining-subscription-reads') ?? ''),
    });
    assert.deepEqual(other, ['199', '249']);
  });

  it('RelayManager waits out a throttled burst, honouring Retry-After', async () => {
    const e = await start({
      timeScale: 1,
      createDelayMs: 0,
      conflicts: { writeDurationMs: 0 },
      lenient: { hybridConnectionNameReuse: true },
      throttling: { writes: { burst: 2, refillPerSecond: 2 } },
    });
    const name = await createNamespace(sdk(e));
    const sleeps: number[] = [];
    const manager = new RelayManager({
      apiFactory: createRelayApiFactory({ endpoint: e.armEndpoint, caPem: e.caCertPem }),
      sleep: (ms) => {
        sleeps.push(ms);
        return new Promise((r) => setTimeout(r, ms));
      },
    });
    await manager.recycle({ subscriptionId: SUBSCRIPTION, resourceGroup: RESOURCE_GROUP, name });
    assert.ok(e.stats().throttled > 0, 'three writes against one token left must be throttled');
    assert.ok(
      sleeps.some((ms) => ms >= 1000 && ms <= 1500),
      `Retry-After: 1 honoured as 1000-1500 ms (never sooner, spread): ${sleeps.join(',')}`,
    );
  });

  it('Relay limits namespace writes per subscription per window (x-ms-ratelimit-remaining-subscription-resource-requests)', async () => {
    const e = await start({ throttling: { namespaceWriteLimit: 2, namespaceWriteWindowMs: 60_000 }, timeScale: 1 });
    const api = sdk(e);
    const remaining: string[] = [];
    for (let i = 0; i < 2; i++) {
      await api.namespaces.beginCreateOrUpdate(
        RESOURCE_GROUP,
        namespaceName('nsw'),
        { location: LOCATION },
        {
          onResponse: (r) =>
            remaining.push(r.headers.get('x-ms-ratelimit-remaining-subscription-resource-requests') ?? ''),
        },
      );
    }
    // (the SDK's first poll, a GET, carries no such header: only namespace writes count)
    assert.deepEqual(remaining.filter(Boolean), ['1', '0']);
    const failure = await createNamespace(api).then(
      () => assert.fail('a third namespace write in the window was allowed'),
      (err: ArmFailure) => err,
    );
    assert.equal(failure.statusCode, 429);
    const retryAfter = Number(failure.response?.headers.get('retry-after'));
    assert.ok(retryAfter > 50 && retryAfter <= 60, `Retry-After ${retryAfter}`);
    // Another subscription has its own window; RelayManager does not wait out the window: it fails
    // at once with RelayThrottledError carrying the wait, for maintenance to defer the creation.
    await createNamespace(sdk(e, LOCAL_APP_PRINCIPAL, '00000000-0000-0000-0000-0000000000ff'));
    const manager = new RelayManager({
      apiFactory: createRelayApiFactory({ endpoint: e.armEndpoint, caPem: e.caCertPem }),
      retry: { deadlineMs: 5_000 },
    });
    await assert.rejects(
      manager.prepareNamespace({
        subscriptionId: SUBSCRIPTION,
        resourceGroup: RESOURCE_GROUP,
        location: LOCATION,
        name: namespaceName('nsw'),
      }),
      (err: unknown) => err instanceof RelayThrottledError && err.retryAfterMs > 50_000 && err.retryAfterMs <= 60_000,
    );
    assert.deepEqual(manager.rateLimitsOf(SUBSCRIPTION).namespaceWritesRemaining, 0);
  });

  it('parallel writes under one namespace: one gets 429 SubCode 40901 "conflicting operation"', async () => {
    const e = await start({ conflicts: { writeDurationMs: 200 }, timeScale: 1, createDelayMs: 0 });
    const api = sdk(e);
    const name = await createNamespace(api);
    await api.hybridConnections.createOrUpdate(RESOURCE_GROUP, name, 'tunnel', {});
    const results = await Promise.allSettled(
      ['listen', 'send'].map((rule) =>
        api.hybridConnections.createOrUpdateAuthorizationRule(RESOURCE_GROUP, name, 'tunnel', rule, {
          rights: [rule === 'listen' ? 'Listen' : 'Send'],
        }),
      ),
    );
    const rejected = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    assert.equal(rejected.length, 1);
    const err = rejected[0].reason as ArmFailure;
    assert.equal(err.statusCode, 429);
    assert.equal(err.code, 'MessagingGatewayTooManyRequests');
    assert.match(err.message ?? '', /SubCode=40901\. Another conflicting operation is in progress/);
    // One after the other is fine.
    await api.hybridConnections.createOrUpdateAuthorizationRule(RESOURCE_GROUP, name, 'tunnel', 'send', {
      rights: ['Send'],
    });
  });

  it('a hybrid connection re-created under a just-deleted name gets 429 40901 until the window passes (unless lenient)', async () => {
    const e = await start({
      conflicts: { writeDurationMs: 0, hybridConnectionNameReuseWindowMs: 300 },
      timeScale: 1,
      createDelayMs: 0,
    });
    const api = sdk(e);
    const name = await createNamespace(api);
    await api.hybridConnections.createOrUpdate(RESOURCE_GROUP, name, 'tunnel', {});
    await api.hybridConnections.delete(RESOURCE_GROUP, name, 'tunnel');
    await assert.rejects(
      api.hybridConnections.createOrUpdate(RESOURCE_GROUP, name, 'tunnel', {}),
      (err: ArmFailure) =>
        err.statusCode === 429 && /background cleanup is still pending.*SubCode=40901/.test(err.message ?? ''),
    );
    // Another name is free at once.
    await api.hybridConnections.createOrUpdate(RESOURCE_GROUP, name, 'tunnel-g1', {});
    await new Promise((r) => setTimeout(r, 350));
    await api.hybridConnections.createOrUpdate(RESOURCE_GROUP, name, 'tunnel', {});

    const lenient = await start({ lenient: { hybridConnectionNameReuse: true }, conflicts: { writeDurationMs: 0 } });
    const lapi = sdk(lenient);
    const lname = await createNamespace(lapi);
    await waitActive(lapi, lname);
    await lapi.hybridConnections.createOrUpdate(RESOURCE_GROUP, lname, 'tunnel', {});
    await lapi.hybridConnections.delete(RESOURCE_GROUP, lname, 'tunnel');
    await lapi.hybridConnections.createOrUpdate(RESOURCE_GROUP, lname, 'tunnel', {});
  });

  it('provisioning takes 44 s and deletion 38 s at real scale; timeScale shortens both', async () => {
    const saved = process.env.RELAY_EMULATOR_CREATE_DELAY_MS;
    delete process.env.RELAY_EMULATOR_CREATE_DELAY_MS;
    try {
      assert.deepEqual(new RelayEmulator().timing, { createDelayMs: 44_000, deleteDelayMs: 38_000 });
      assert.deepEqual(new RelayEmulator({ timeScale: 0.01 }).timing, { createDelayMs: 440, deleteDelayMs: 380 });
      const e = await start({ timeScale: 0.01, createDelayMs: undefined, deleteDelayMs: undefined });
      const api = sdk(e);
      const name = await createNamespace(api);
      assert.equal((await api.namespaces.get(RESOURCE_GROUP, name)).provisioningState, 'Created');
      await waitActive(api, name);
      // The delete LRO's polls carry Retry-After like the real ones (37, then 35 at real scale).
      await api.namespaces.beginDelete(RESOURCE_GROUP, name);
      const location = `${e.armEndpoint}/subscriptions/${SUBSCRIPTION}/resourceGroups/${RESOURCE_GROUP}/providers/Microsoft.Relay/namespaces/${name}/operationresults/${name}?api-version=2017-04-01`;
      const poll = await armGet(e, location);
      assert.equal(poll.status, 202);
      // Scaled like the deletion itself: at most 0.38 s left of 380 ms, with ms precision.
      const hint = Number(poll.retryAfter);
      assert.ok(hint > 0 && hint <= 0.38, `Retry-After ${poll.retryAfter}`);
    } finally {
      if (saved !== undefined) process.env.RELAY_EMULATOR_CREATE_DELAY_MS = saved;
    }
  });
});

function armGet(e: RelayEmulator, url: string): Promise<{ status: number; retryAfter?: string }> {
  return new Promise((resolve, reject) => {
    const req = https.get(
      url,
      { ca: e.caCertPem, headers: { authorization: `Bearer ${LOCAL_APP_PRINCIPAL}` } },
      (res) => {
        res.resume();
        resolve({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'] });
      },
    );
    req.on('error', reject);
  });
}

async function collect<T>(pages: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of pages) out.push(item);
  return out;
}
