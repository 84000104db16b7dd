// The emulator's ARM surface on the wire: the LRO shapes the real service uses, ARM error bodies,
// conflicts, key regeneration, and namespace deletion ending the data plane with 1001.
import assert from 'node:assert/strict';
import https from 'node:https';
import { after, before, describe, it } from 'node:test';
import type { RelayAPI } from '@azure/arm-relay';
import { HybridConnectionListener, type ListenerEndedEvent } from '../../../lib/relay/hybridConnection';
import { createRelayApiFactory } from '../../../lib/relay/relayManager';
import { createSasToken, relayAudience } from '../../../lib/relay/sas';
import { RelayEmulator } from '../../../local/relay-emulator';
import { LOCATION, namespaceName, RESOURCE_GROUP, SUBSCRIPTION } from './relayTestEnv';

interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: unknown;
}

describe('relay emulator ARM surface', () => {
  let emulator: RelayEmulator;
  let api: RelayAPI;
  const raw = (method: string, path: string, body?: unknown, auth = true): Promise<RawResponse> =>
    new Promise((resolve, reject) => {
      const payload = body === undefined ? '' : JSON.stringify(body);
      const req = https.request(
        `${emulator.armEndpoint}${path}${path.includes('?') ? '&' : '?'}api-version=2017-04-01`,
        {
          method,
          ca: emulator.caCertPem,
          headers: { 'content-type': 'application/json', ...(auth ? { authorization: 'Bearer test' } : {}) },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString();
            resolve({
              status: res.statusCode ?? 0,
              headers: res.headers,
              body: text ? (JSON.parse(text) as unknown) : undefined,
            });
          });
        },
      );
      req.on('error', reject);
      req.end(payload);
    });
  const nsPath = (name: string, rg = RESOURCE_GROUP) =>
    `/subscriptions/${SUBSCRIPTION}/resourceGroups/${rg}/providers/Microsoft.Relay/namespaces/${name}`;

  before(async () => {
    emulator = await new RelayEmulator({ createDelayMs: 150, deleteDelayMs: 100, timeScale: 0.01 }).start();
    api = createRelayApiFactory({ endpoint: emulator.armEndpoint, caPem: emulator.caCertPem })(SUBSCRIPTION);
  });
  after(async () => {
    await emulator.close();
  });

  it('namespace PUT answers 200 Created/Activating, later GETs say Succeeded; DELETE answers 202 + Location, then 200', async () => {
    const name = namespaceName('arm');
    const put = await raw('PUT', nsPath(name), { location: LOCATION, tags: { pool: 'x' } });
    assert.equal(put.status, 200);
    const props = (put.body as { properties: Record<string, string> }).properties;
    assert.equal(props.provisioningState, 'Created');
    assert.equal(props.status, 'Activating');
    assert.match(props.serviceBusEndpoint, /^https:\/\/127\.0\.0\.1:\d+\/$/);
    assert.equal(put.headers['azure-asyncoperation'], undefined);
    const child = await raw('PUT', `${nsPath(name)}/hybridConnections/tunnel`, { properties: {} });
    assert.equal(child.status, 409, 'no child resources while activating');
    await new Promise((r) => setTimeout(r, 200));
    const got = await raw('GET', nsPath(name));
    assert.equal((got.body as { properties: Record<string, string> }).properties.provisioningState, 'Succeeded');

    const del = await raw('DELETE', nsPath(name));
    assert.equal(del.status, 202);
    const location = String(del.headers.location);
    assert.match(location, new RegExp(`/operationresults/${name}\\?api-version=2017-04-01$`));
    const pollPath = new URL(location).pathname;
    assert.equal((await raw('GET', pollPath)).status, 202);
    await new Promise((r) => setTimeout(r, 150));
    assert.equal((await raw('GET', pollPath)).status, 200);
    const gone = await raw('GET', nsPath(name));
    assert.equal(gone.status, 404);
    assert.equal((gone.body as { error: { code: string } }).error.code, 'ResourceNotFound');
  });

  it('refuses a request without a bearer token, and a name taken in another resource group', async () => {
    const name = namespaceName('arm');
    assert.equal((await raw('GET', nsPath(name), undefined, false)).status, 401);
    await api.namespaces.beginCreateOrUpdateAndWait(
      RESOURCE_GROUP,
      name,
      { location: LOCATION },
      { updateIntervalInMs: 20 },
    );
    const clash = await raw('PUT', nsPath(name, 'other-rg'), { location: LOCATION });
    assert.equal(clash.status, 409);
    assert.equal((clash.body as { error: { code: string } }).error.code, 'Conflict');
  });

  it('every new namespace has RootManageSharedAccessKey; regenerateKeys changes only the key asked for', async () => {
    const name = namespaceName('arm');
    await api.namespaces.beginCreateOrUpdateAndWait(
      RESOURCE_GROUP,
      name,
      { location: LOCATION },
      { updateIntervalInMs: 20 },
    );
    const root = await api.namespaces.getAuthorizationRule(RESOURCE_GROUP, name, 'RootManageSharedAccessKey');
    assert.deepEqual([...root.rights].sort(), ['Listen', 'Manage', 'Send']);
    const before = await api.namespaces.listKeys(RESOURCE_GROUP, name, 'RootManageSharedAccessKey');
    const after = await api.namespaces.regenerateKeys(RESOURCE_GROUP, name, 'RootManageSharedAccessKey', {
      keyType: 'SecondaryKey',
    });
    assert.equal(after.primaryKey, before.primaryKey);
    assert.notEqual(after.secondaryKey, before.secondaryKey);
  });

  it('deleting a namespace closes its listeners with 1001', async () => {
    const name = namespaceName('arm');
    const ns = await api.namespaces.beginCreateOrUpdateAndWait(
      RESOURCE_GROUP,
      name,
      { location: LOCATION },
      { updateIntervalInMs: 20 },
    );
    await api.hybridConnections.createOrUpdate(RESOURCE_GROUP, name, 'tunnel', {});
    const root = await api.namespaces.listKeys(RESOURCE_GROUP, name, 'RootManageSharedAccessKey');
    const endpoint = ns.serviceBusEndpoint ?? '';
    const listener = new HybridConnectionListener({
      endpoint,
      hybridConnection: 'tunnel',
      // A namespace-wide Manage token covers every hybrid connection.
      token: createSasToken({
        resourceUri: endpoint,
        keyName: 'RootManageSharedAccessKey',
        key: root.primaryKey ?? '',
        expiresAt: new Date(Date.now() + 600_000),
      }),
      ca: emulator.caCertPem,
    });
    await listener.start();
    assert.equal((await api.hybridConnections.get(RESOURCE_GROUP, name, 'tunnel')).listenerCount, 1);
    assert.equal(relayAudience(endpoint, 'tunnel'), 'http://127.0.0.1/tunnel/');
    const ended = new Promise<ListenerEndedEvent>((resolve) => listener.once('ended', resolve));
    await api.namespaces.beginDeleteAndWait(RESOURCE_GROUP, name, { updateIntervalInMs: 20 });
    assert.deepEqual(await ended, { reason: 'entity_deleted', code: 1001 });
    await listener.close();
  });
});
