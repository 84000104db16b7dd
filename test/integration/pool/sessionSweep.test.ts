// The sweep that recycles what no orchestration will end any more (lib/sessions/sessionSweep.ts),
// against Azurite and the relay emulator: an orchestration terminated under a live tunnel, and an
// audit record left pending by a host crash with no orchestration behind it. The orchestration
// port is the only stand-in (what Durable would answer about each instance).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { TableClient } from '@azure/data-tables';
import { QueueServiceClient } from '@azure/storage-queue';
import { startAzurite, type Azurite } from '../../../local/azurite';
import { DeviceNotifier } from '../../../lib/devices/deviceNotifier';
import { NamespaceStore } from '../../../lib/pool/namespaceStore';
import { PoolMaintenance } from '../../../lib/pool/poolMaintenance';
import { PoolRunStore } from '../../../lib/pool/poolRunStore';
import { openNamespaceKeys } from '../../../lib/pool/sealedKeys';
import {
  connectHybridConnection,
  HybridConnectionListener,
  RelayHandshakeError,
} from '../../../lib/relay/hybridConnection';
import { createSasToken, relayAudience } from '../../../lib/relay/sas';
import { Sealer } from '../../../lib/sealing';
import type { InstanceState } from '../../../lib/sessions/orchestrations';
import { sessionState } from '../../../lib/sessions/sessionState';
import { SessionRelay } from '../../../lib/sessions/sessionRelay';
import { SessionService } from '../../../lib/sessions/sessionService';
import { SessionStore } from '../../../lib/sessions/sessionStore';
import { SessionSweep } from '../../../lib/sessions/sessionSweep';
import { startRelayTestEnv, type RelayTestEnv } from '../relay/relayTestEnv';

const sealer = new Sealer(randomBytes(32));

describe('session sweep: every leased namespace is recycled, whatever became of its orchestration', () => {
  let azurite: Azurite;
  let env: RelayTestEnv;
  before(async () => {
    azurite = await startAzurite();
    env = await startRelayTestEnv({ createDelayMs: 50, deleteDelayMs: 20 });
  });
  after(async () => {
    await env?.emulator.close();
    await azurite?.close();
  });

  it(
    'a terminated orchestration: the API says ending, the sweep deletes the hybrid connection, then the record says failed/interrupted',
    { timeout: 60_000 },
    async () => {
      const suffix = Date.now().toString(36);
      const table = (name: string) =>
        TableClient.fromConnectionString(azurite.connectionString, `${name}${suffix}`, {
          allowInsecureConnection: true,
        });
      const namespaces = new NamespaceStore(table('sweepns'), 'p1');
      await namespaces.ensureTable();
      const sessions = new SessionStore(table('sweepsess'));
      await sessions.ensureTable();
      const manager = env.makeManager();
      const clock = { now: new Date() };
      const maintenance = new PoolMaintenance({
        namespaces,
        runs: new PoolRunStore(table('sweepns'), 'p1'),
        relay: manager,
        sealer,
        pool: {
          name: 'p1',
          subscriptions: [
            {
              subscriptionId: '00000000-0000-0000-dddd-000000000001',
              resourceGroup: 'rg',
              location: 'westeurope',
              quota: 10,
            },
          ],
          namespacePrefix: 'rbs',
          floor: 1,
          cap: 5,
          headroom: 1.25,
          createSeconds: 45,
          stuckMinutes: 30,
          maxRecycleFailures: 3,
          shrinkIdleMinutes: 30,
          nameReuseHours: 24,
        },
        nameSalt: `s${suffix}`,
        now: () => clock.now,
      });
      const plan = await maintenance.plan(clock.now);
      for (const item of plan.provision) await maintenance.provision(item);
      const service = new SessionService({
        namespaces,
        sessions,
        notifier: new DeviceNotifier(QueueServiceClient.fromConnectionString(azurite.connectionString)),
        relay: new SessionRelay(manager, sealer),
        sealer,
        publicApiUrl: 'http://localhost',
      });

      // A session that got its namespace and went ready; then its orchestration was terminated.
      const sessionId = randomUUID();
      const leasedAt = new Date(Date.now() - 120_000);
      const ns = await namespaces.lease(sessionId, { leaseExpiresAt: new Date(Date.now() + 3_600_000), now: leasedAt });
      await sessions.insert({
        sessionId,
        deviceId: 'plc-1',
        openerId: 'alice',
        port: 22,
        status: 'ready',
        namespace: ns.name,
        namespaceGeneration: ns.generation,
        createdAt: leasedAt.toISOString(),
        readyAt: leasedAt.toISOString(),
        expiresAt: new Date(Date.now() + 3_600_000).toISOString(),
      });
      // A record the host crash left pending, with no orchestration at all.
      const orphanId = randomUUID();
      await sessions.insert({
        sessionId: orphanId,
        deviceId: 'plc-2',
        openerId: 'alice',
        port: 22,
        status: 'pending',
        createdAt: leasedAt.toISOString(),
        expiresAt: new Date(Date.now() + 3_600_000).toISOString(),
      });
      const instances = new Map<string, InstanceState>([
        [sessionId, { runtimeStatus: 'Terminated', customStatus: { status: 'pending' } }],
      ]);
      const orchestrations = { getStatus: async (id: string) => instances.get(id) };

      // The tunnel is live: a listener with the session's listen token, a sender with its send token.
      const keys = openNamespaceKeys(sealer, ns)!;
      const audience = relayAudience(ns.endpoint!, ns.hybridConnection!);
      const expiresAt = new Date(Date.now() + 600_000);
      const sendToken = createSasToken({ resourceUri: audience, ...keys.send, expiresAt });
      const ca = env.emulator.caCertPem;
      const listener = new HybridConnectionListener({
        endpoint: ns.endpoint!,
        hybridConnection: ns.hybridConnection!,
        token: createSasToken({ resourceUri: audience, ...keys.listen, expiresAt }),
        ca,
      });
      const accepted: Array<{ on(event: 'close', fn: () => void): void }> = [];
      listener.on('connection', (s: { on(event: 'close', fn: () => void): void }) => accepted.push(s));
      await listener.start();
      try {
        const stream = await connectHybridConnection(ns.endpoint!, ns.hybridConnection!, sendToken, { ca });
        let dropped = false;
        const closed = new Promise<void>((resolve) => {
          const done = () => {
            dropped = true;
            resolve();
          };
          stream.on('close', done).on('end', done).on('error', done);
        });
        stream.resume();
        // What the API says while the wire still carries the tunnel: ending, never ended.
        const before = (await sessions.get('plc-1', sessionId))!;
        assert.deepEqual(sessionState(before, instances.get(sessionId)), { status: 'ending', reason: 'interrupted' });

        const outcome = await new SessionSweep({ namespaces, sessions, service, orchestrations }).run();
        assert.deepEqual(outcome, { leasesEnded: 1, recordsClosed: 2, errors: [] });
        // The live connection was dropped with the hybrid connection (bounded: the test's timeout).
        await closed;
        assert.equal(dropped, true);
        const statusOf = async () => {
          try {
            (await connectHybridConnection(ns.endpoint!, ns.hybridConnection!, sendToken, { ca })).destroy();
            return 200;
          } catch (err) {
            if (err instanceof RelayHandshakeError) return err.statusCode;
            throw err;
          }
        };
        assert.equal(await statusOf(), 404, 'the send token is dead: its hybrid connection is gone');
      } finally {
        await listener.close();
      }
      const after = (await sessions.get('plc-1', sessionId))!;
      assert.equal(after.status, 'failed');
      assert.equal(after.reason, 'interrupted');
      assert.deepEqual(sessionState(after, instances.get(sessionId)), {
        status: 'failed',
        reason: 'interrupted',
        readyAt: after.readyAt,
      });
      const orphan = (await sessions.get('plc-2', orphanId))!;
      assert.deepEqual([orphan.status, orphan.reason], ['failed', 'interrupted']);
      const row = (await namespaces.get(ns.name))!;
      assert.equal(row.state, 'available', 'no lease leaked: the next generation is ready');
      assert.equal(row.generation, ns.generation + 1);
      assert.notEqual(row.hybridConnection, ns.hybridConnection);
      assert.deepEqual(await namespaces.list({ states: ['leased'] }), []);
      const again = await new SessionSweep({ namespaces, sessions, service, orchestrations }).run();
      assert.deepEqual(again, { leasesEnded: 0, recordsClosed: 0, errors: [] }, 'a second sweep has nothing to do');
    },
  );
});
