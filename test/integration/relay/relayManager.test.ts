// RelayManager through the real @azure/arm-relay client against the emulator: prepare, keys, list,
// recycle, delete, quota, and every injected fault survived or turned into a clear typed error.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { RelayAPI } from '@azure/arm-relay';
import {
  createRelayApiFactory,
  RelayActivationTimeoutError,
  RelayArmError,
  RelayArmUnavailableError,
  RelayQuotaExceededError,
  RelayResourceNotFoundError,
} from '../../../lib/relay/relayManager';
import {
  LOCATION,
  namespaceName,
  RESOURCE_GROUP,
  startRelayTestEnv,
  SUBSCRIPTION,
  type RelayTestEnv,
} from './relayTestEnv';

describe('RelayManager against the relay emulator', () => {
  let env: RelayTestEnv;
  let api: RelayAPI;
  before(async () => {
    env = await startRelayTestEnv();
    api = createRelayApiFactory({ endpoint: env.emulator.armEndpoint, caPem: env.emulator.caCertPem })(SUBSCRIPTION);
  });
  after(async () => {
    await env.emulator.close();
  });

  const prepare = (name = namespaceName(), tags: Record<string, string> = { pool: 'test' }) =>
    env.manager.prepareNamespace({
      subscriptionId: SUBSCRIPTION,
      resourceGroup: RESOURCE_GROUP,
      location: LOCATION,
      name,
      tags,
    });

  it('prepares a namespace with one hybrid connection and a Listen-only and a Send-only rule, in 4 writes', async () => {
    env.emulator.resetStats();
    const prepared = await prepare();
    assert.equal(prepared.arm.writes, 4);
    assert.equal(env.emulator.stats().writes, 4);
    assert.match(prepared.endpoint, /^https:\/\/127\.0\.0\.1:\d+\/$/);
    assert.notEqual(new URL(prepared.endpoint).port, new URL(env.emulator.armEndpoint).port);
    const ns = await api.namespaces.get(RESOURCE_GROUP, prepared.name);
    assert.equal(ns.provisioningState, 'Succeeded');
    assert.deepEqual(ns.tags, { pool: 'test' });
    const rules: Record<string, string[]> = {};
    for await (const r of api.hybridConnections.listAuthorizationRules(
      RESOURCE_GROUP,
      prepared.name,
      prepared.hybridConnection,
    )) {
      rules[r.name ?? ''] = r.rights;
    }
    assert.deepEqual(rules, { [prepared.listenRule]: ['Listen'], [prepared.sendRule]: ['Send'] });
  });

  it('a second prepare writes nothing, and a half-done namespace is finished', async () => {
    const name = namespaceName();
    await api.namespaces.beginCreateOrUpdateAndWait(
      RESOURCE_GROUP,
      name,
      { location: LOCATION },
      { updateIntervalInMs: 20 },
    );
    const finished = await prepare(name);
    assert.equal(finished.arm.writes, 3, 'the hybrid connection and two rules were missing');
    const again = await prepare(name);
    assert.equal(again.arm.writes, 0);
    const keys = await env.manager.getSessionKeys({
      subscriptionId: SUBSCRIPTION,
      resourceGroup: RESOURCE_GROUP,
      name,
    });
    assert.equal(keys.endpoint, finished.endpoint);
    assert.notEqual(keys.listen.key, keys.send.key);
  });

  it('lists namespaces by tag in a resource group; the subscription-scope list is 403 to a resource-group role, as in Azure', async () => {
    const tagged = await prepare(namespaceName(), { pool: 'list-test', owner: 'relay-broker' });
    await prepare(namespaceName(), { pool: 'other' });
    const inGroup = await env.manager.listNamespaces({
      subscriptionId: SUBSCRIPTION,
      resourceGroup: RESOURCE_GROUP,
      tag: { name: 'pool', value: 'list-test' },
    });
    assert.deepEqual(
      inGroup.map((n) => n.name),
      [tagged.name],
    );
    assert.equal(inGroup[0].resourceGroup, RESOURCE_GROUP);
    assert.equal(inGroup[0].endpoint, tagged.endpoint);
    await assert.rejects(
      env.manager.listNamespaces({ subscriptionId: SUBSCRIPTION, tag: { name: 'owner' } }),
      (err: unknown) => err instanceof RelayArmError && err.armStatus === 403,
    );
  });

  it('recycle deletes the hybrid connection, then writes a fresh one and its rules one after another: 4 writes, no conflict', async () => {
    const prepared = await prepare();
    const ref = {
      subscriptionId: SUBSCRIPTION,
      resourceGroup: RESOURCE_GROUP,
      name: prepared.name,
      endpoint: prepared.endpoint,
      hybridConnection: prepared.hybridConnection,
    };
    const before = await env.manager.getSessionKeys(ref);
    env.emulator.resetStats();
    const result = await env.manager.recycle(ref, { nextHybridConnection: 'tunnel-g1' });
    assert.equal(result.hybridConnection, 'tunnel-g1');
    assert.equal(env.emulator.stats().conflicts, 0, 'no 429 40901: sequential writes, never a just-deleted name');
    assert.equal(result.arm.writes, 4);
    assert.deepEqual(env.emulator.stats().byOperation, {
      'hybridConnections.delete': 1,
      'hybridConnections.createOrUpdate': 1,
      'hybridConnections.createOrUpdateAuthorizationRule': 2,
    });
    await assert.rejects(env.manager.getSessionKeys(ref), RelayResourceNotFoundError, 'the old one is gone');
    const afterKeys = await env.manager.getSessionKeys({ ...ref, hybridConnection: 'tunnel-g1' });
    assert.notEqual(afterKeys.listen.key, before.listen.key);
    assert.notEqual(afterKeys.send.key, before.send.key);
  });

  it('rotateNamespaceKeys deletes foreign namespace rules and hybrid connections and rotates RootManageSharedAccessKey', async () => {
    const prepared = await prepare();
    const ref = { subscriptionId: SUBSCRIPTION, resourceGroup: RESOURCE_GROUP, name: prepared.name };
    await api.namespaces.createOrUpdateAuthorizationRule(RESOURCE_GROUP, prepared.name, 'backdoor', {
      rights: ['Listen', 'Send'],
    });
    await api.hybridConnections.createOrUpdate(RESOURCE_GROUP, prepared.name, 'stray', {});
    const rootBefore = await api.namespaces.listKeys(RESOURCE_GROUP, prepared.name, 'RootManageSharedAccessKey');
    assert.deepEqual(await env.manager.checkDrift({ ...ref, hybridConnection: 'tunnel' }), [
      'foreign namespace rule backdoor',
      'foreign hybrid connection stray',
    ]);
    const rotated = await env.manager.recycle(
      { ...ref, hybridConnection: 'tunnel' },
      { rotateNamespaceKeys: true, nextHybridConnection: 'tunnel-g1' },
    );
    // delete + backdoor delete + 2 root regenerations + stray delete + HC PUT + 2 rule PUTs.
    assert.equal(rotated.arm.writes, 8);
    const rootAfter = await api.namespaces.listKeys(RESOURCE_GROUP, prepared.name, 'RootManageSharedAccessKey');
    assert.notEqual(rootAfter.primaryKey, rootBefore.primaryKey);
    assert.notEqual(rootAfter.secondaryKey, rootBefore.secondaryKey);
    const rules: string[] = [];
    for await (const r of api.namespaces.listAuthorizationRules(RESOURCE_GROUP, prepared.name))
      rules.push(r.name ?? '');
    assert.deepEqual(rules, ['RootManageSharedAccessKey']);
    assert.deepEqual(await env.manager.checkDrift({ ...ref, hybridConnection: 'tunnel-g1' }), []);
  });

  it('deletes a namespace through the delete LRO; a second delete is a no-op', async () => {
    const prepared = await prepare();
    const ref = { subscriptionId: SUBSCRIPTION, resourceGroup: RESOURCE_GROUP, name: prepared.name };
    await env.manager.deleteNamespace(ref);
    await assert.rejects(
      api.namespaces.get(RESOURCE_GROUP, prepared.name),
      (err: { statusCode?: number }) => err.statusCode === 404,
    );
    await env.manager.deleteNamespace(ref);
    await assert.rejects(env.manager.getSessionKeys(ref), RelayResourceNotFoundError);
  });

  it('an invalid namespace name is refused with a typed error, not retried', async () => {
    env.emulator.resetStats();
    await assert.rejects(prepare('bad-name-'), (err: unknown) => err instanceof RelayArmError && err.armStatus === 400);
    assert.equal(env.emulator.stats().byOperation['namespaces.createOrUpdate'], 1);
  });

  it('survives 429 with Retry-After on create, honouring the header', async () => {
    const name = namespaceName();
    env.emulator.faults.add({
      op: 'namespaces.createOrUpdate',
      kind: '429',
      count: 2,
      retryAfterSeconds: 3,
      namePattern: name,
    });
    env.sleeps.length = 0;
    const prepared = await prepare(name);
    assert.equal(prepared.name, name);
    // Retry-After: 3 honoured, never sooner, at most half again later (the spread of armRetry.ts).
    assert.equal(env.sleeps.filter((ms) => ms >= 3000 && ms <= 4500).length, 2, env.sleeps.join(','));
    assert.equal(prepared.arm.writes, 6, 'two throttled PUTs are counted');
  });

  it('survives 500 on hybrid connection create and on a poll of the namespace', async () => {
    const name = namespaceName();
    env.emulator.faults.add({ op: 'hybridConnections.createOrUpdate', kind: '500', count: 2, namePattern: name });
    env.emulator.faults.add({ op: 'namespaces.get', kind: '500', count: 2, namePattern: name });
    const prepared = await prepare(name);
    assert.equal(prepared.arm.writes, 6);
    assert.equal(env.emulator.faults.list().length, 0, 'every injected fault was hit');
  });

  it('survives a slow answer by timing the attempt out and retrying', async () => {
    const prepared = await prepare();
    const manager = env.makeManager({ retry: { attemptTimeoutMs: 200 } });
    env.emulator.faults.add({
      op: 'hybridConnections.listKeys',
      kind: 'slow',
      delayMs: 1500,
      count: 1,
      namePattern: prepared.name,
    });
    env.emulator.resetStats();
    const keys = await manager.getSessionKeys({
      subscriptionId: SUBSCRIPTION,
      resourceGroup: RESOURCE_GROUP,
      name: prepared.name,
      endpoint: prepared.endpoint,
    });
    assert.ok(keys.listen.key && keys.send.key);
    assert.equal(env.emulator.stats().byOperation['hybridConnections.listKeys'], 3, 'two rules, one retried');
  });

  it('gives up on persistent throttling after the bounded attempts', async () => {
    const prepared = await prepare();
    const manager = env.makeManager({ retry: { maxAttempts: 3 } });
    env.emulator.faults.add({
      op: 'hybridConnections.delete',
      kind: '429',
      count: Infinity,
      retryAfterSeconds: 1,
      namePattern: prepared.name,
    });
    env.emulator.resetStats();
    try {
      await assert.rejects(
        manager.recycle({ subscriptionId: SUBSCRIPTION, resourceGroup: RESOURCE_GROUP, name: prepared.name }),
        (err: unknown) => err instanceof RelayArmUnavailableError && err.armStatus === 429 && err.status === 503,
      );
      assert.equal(env.emulator.stats().byOperation['hybridConnections.delete'], 3);
    } finally {
      env.emulator.faults.clear();
    }
  });

  it('a namespace stuck activating ends in a clear timeout error', async () => {
    const name = namespaceName();
    env.emulator.faults.add({ op: 'namespaces.createOrUpdate', kind: 'stuckActivating', namePattern: name });
    const manager = env.makeManager({ activationTimeoutMs: 300 });
    await assert.rejects(
      manager.prepareNamespace({
        subscriptionId: SUBSCRIPTION,
        resourceGroup: RESOURCE_GROUP,
        location: LOCATION,
        name,
      }),
      (err: unknown) =>
        err instanceof RelayActivationTimeoutError && /did not finish activating within 300 ms/.test(err.message),
    );
    const ns = await api.namespaces.get(RESOURCE_GROUP, name);
    assert.equal(ns.provisioningState, 'Created');
  });
});

describe('RelayManager and the namespace quota', () => {
  let env: RelayTestEnv;
  before(async () => {
    env = await startRelayTestEnv({ quotaPerSubscription: 2 });
  });
  after(async () => {
    await env.emulator.close();
  });

  it('the namespace past the subscription quota gets RelayQuotaExceededError', async () => {
    const input = (name: string) => ({
      subscriptionId: SUBSCRIPTION,
      resourceGroup: RESOURCE_GROUP,
      location: LOCATION,
      name,
    });
    await env.manager.prepareNamespace(input(namespaceName()));
    await env.manager.prepareNamespace(input(namespaceName()));
    await assert.rejects(env.manager.prepareNamespace(input(namespaceName())), RelayQuotaExceededError);
    const other = await env.manager.prepareNamespace({
      ...input(namespaceName()),
      subscriptionId: '00000000-0000-0000-0000-000000000002',
    });
    assert.ok(other.endpoint, 'the quota is per subscription');
  });
});
