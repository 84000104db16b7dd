// Reliability part `end`: how long after the API says a session ended its tunnel is still alive
// (`ended_to_wire_dead_s`; negative: the wire was dead first, as it must be), and (logged) how many
// ARM writes one session's recycle costs (the figure `arm_writes_per_session` is `open`'s). Real parts: Azurite, the relay
// emulator at Azure's write timing, the session service's two recycle steps as the orchestrator
// runs them (delete the hybrid connection → record ended → prepare the next generation).
import { randomUUID } from 'node:crypto';
import { openNamespaceKeys } from '../../lib/pool/sealedKeys';
import { connectHybridConnection, HybridConnectionListener } from '../../lib/relay/hybridConnection';
import { createSasToken, relayAudience } from '../../lib/relay/sas';
import type { Figure } from '../figures';
import { startPoolHarness } from '../poolHarness';

const COMMAND = 'npm run bench -- reliability';
const SESSIONS = 5;

export async function measureEndedToWireDead(log: (line: string) => void): Promise<Figure[]> {
  // Writes, conflicts and throttling at Azure's scale; namespace creation instant (not measured here).
  const h = await startPoolHarness({
    name: 'benchend',
    emulator: { createDelayMs: 0, deleteDelayMs: 0 },
    pool: {
      subscriptions: [
        {
          subscriptionId: '00000000-0000-0000-eeee-000000000001',
          resourceGroup: 'rg',
          location: 'westeurope',
          quota: 5,
        },
      ],
      namespacePrefix: 'rbe',
      floor: 1,
      cap: 1,
    },
  });
  const { emulator, sealer, namespaces, sessions, maintenance, service } = h;
  try {
    for (const item of (await maintenance.plan(new Date())).provision) await maintenance.provision(item);
    const ca = emulator.caCertPem;
    const gaps: number[] = [];
    const writes: number[] = [];
    for (let i = 0; i < SESSIONS; i++) {
      const sessionId = randomUUID();
      const ns = await namespaces.lease(sessionId, { leaseExpiresAt: new Date(Date.now() + 3_600_000) });
      await sessions.insert({
        sessionId,
        deviceId: 'bench-1',
        openerId: 'bench',
        port: 22,
        status: 'ready',
        namespace: ns.name,
        namespaceGeneration: ns.generation,
        createdAt: new Date().toISOString(),
        expiresAt: new Date(Date.now() + 3_600_000).toISOString(),
      });
      const keys = openNamespaceKeys(sealer, ns)!;
      const audience = relayAudience(ns.endpoint!, ns.hybridConnection!);
      const expiresAt = new Date(Date.now() + 600_000);
      const listener = new HybridConnectionListener({
        endpoint: ns.endpoint!,
        hybridConnection: ns.hybridConnection!,
        token: createSasToken({ resourceUri: audience, ...keys.listen, expiresAt }),
        ca,
      });
      await listener.start();
      const stream = await connectHybridConnection(
        ns.endpoint!,
        ns.hybridConnection!,
        createSasToken({ resourceUri: audience, ...keys.send, expiresAt }),
        { ca },
      );
      let wireDeadAt = 0;
      const dead = new Promise<void>((resolve) => {
        const done = () => {
          wireDeadAt ||= performance.now();
          resolve();
        };
        stream.on('close', done).on('end', done).on('error', done);
      });
      stream.resume();
      emulator.resetStats();
      const ref = { sessionId, namespace: ns.name, generation: ns.generation };
      // As the orchestrator: step 1 until `deleted`, then the record says ended, then step 2.
      while ((await service.endRelay(ref)) !== 'deleted');
      await service.recordEnd({
        deviceId: 'bench-1',
        reason: 'requested',
        endedAt: new Date().toISOString(),
        ...ref,
      });
      const endedAt = performance.now();
      await Promise.race([dead, new Promise((r) => setTimeout(r, 30_000))]);
      await service.prepareNext(ref);
      writes.push(emulator.stats().writes);
      await listener.close();
      if (!wireDeadAt) throw new Error('the tunnel was still alive 30 s after the session ended');
      gaps.push((wireDeadAt - endedAt) / 1000);
      log(
        `session ${i + 1}: wire dead ${((endedAt - wireDeadAt) / 1000).toFixed(3)} s before ended; ${writes[i]} ARM writes`,
      );
    }
    return [
      {
        name: 'ended_to_wire_dead_s',
        value: Number(Math.max(...gaps).toFixed(3)),
        unit: 's',
        goal: '<= 0 (the wire is dead before the API says ended)',
        command: COMMAND,
        note: `worst of ${SESSIONS} sessions; negative: the tunnel dropped before the record said ended (relay emulator, Azure write timing)`,
      },
    ];
  } finally {
    await h.close();
  }
}
