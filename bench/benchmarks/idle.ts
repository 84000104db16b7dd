// Benchmark `idle`: a relayed connection left idle for 10 minutes, at real scale, against a relay
// emulator that cuts any WebSocket idle for 4 minutes and answers no ping (as Azure's front ends are
// reported to do). Our listener and sender keep it alive with unsolicited pongs; a sender with
// keepalive off is the control and must be cut at ~4 min. Slow on purpose: it measures wall time.
import { once } from 'node:events';
import type { Duplex } from 'node:stream';
import type { Benchmark, Figure } from '../figures';
import {
  connectHybridConnection,
  DEFAULT_KEEPALIVE_INTERVAL_MS,
  HybridConnectionListener,
} from '../../lib/relay/hybridConnection';
import { createRelayApiFactory, RelayManager } from '../../lib/relay/relayManager';
import { DEFAULT_IDLE_TIMEOUT_MS, RelayEmulator } from '../../local/relay-emulator';

const COMMAND = 'npm run bench -- idle';
/** How long the connection stays idle (RELAY_BENCH_IDLE_S shortens it for a smoke run). */
const IDLE_S = Number(process.env.RELAY_BENCH_IDLE_S ?? 600);

async function roundTrip(stream: Duplex, text: string): Promise<string> {
  const reply = once(stream, 'data') as Promise<[Buffer]>;
  stream.write(text);
  return (await reply)[0].toString();
}

export const benchmark: Benchmark = {
  name: 'idle',
  description: `a relayed connection idle ${IDLE_S} s through a relay that cuts idle sockets at ${DEFAULT_IDLE_TIMEOUT_MS / 1000} s`,
  async run(log) {
    // Real-scale data plane (idle cut, no pongs); ARM durations scaled down, they are not measured.
    const emulator = await new RelayEmulator({ createDelayMs: 0, timeScale: 0.01 }).start();
    const closers: Array<() => unknown> = [];
    try {
      const manager = new RelayManager({
        apiFactory: createRelayApiFactory({ endpoint: emulator.armEndpoint, caPem: emulator.caCertPem }),
      });
      const ref = { subscriptionId: 'bench', resourceGroup: 'bench', location: 'local', name: 'bench-idle' };
      const prepared = await manager.prepareNamespace(ref);
      const tokens = await manager.issueSessionTokens(
        { ...ref, endpoint: prepared.endpoint },
        { expiresAt: new Date(Date.now() + (IDLE_S + 600) * 1000) },
      );
      const listener = new HybridConnectionListener({
        endpoint: tokens.endpoint,
        hybridConnection: tokens.hybridConnection,
        token: tokens.listenToken,
        ca: emulator.caCertPem,
      });
      let listenerDrops = 0;
      listener.on('offline', () => listenerDrops++);
      listener.on('connection', (s: Duplex) => {
        s.on('error', () => undefined);
        s.pipe(s);
      });
      await listener.start();
      closers.push(() => listener.close({ dropConnections: true }));

      const open = async (keepAliveIntervalMs?: number): Promise<Duplex> => {
        const s = await connectHybridConnection(tokens.endpoint, tokens.hybridConnection, tokens.sendToken, {
          ca: emulator.caCertPem,
          ...(keepAliveIntervalMs === undefined ? {} : { keepAliveIntervalMs }),
        });
        s.on('error', () => undefined);
        closers.push(() => s.destroy());
        return s;
      };
      const kept = await open();
      const bare = await open(0);
      if ((await roundTrip(kept, 'hello')) !== 'hello') throw new Error('the kept connection does not echo');
      if ((await roundTrip(bare, 'hello')) !== 'hello') throw new Error('the control connection does not echo');
      const started = Date.now();
      let bareCutAtS: number | undefined;
      bare.once('close', () => (bareCutAtS = (Date.now() - started) / 1000));
      log(`idle for ${IDLE_S} s (keepalive every ${DEFAULT_KEEPALIVE_INTERVAL_MS / 1000} s; a bare sender as control)`);
      for (let elapsedS = 0; elapsedS < IDLE_S; elapsedS = (Date.now() - started) / 1000) {
        await new Promise((r) => setTimeout(r, Math.min(60, IDLE_S - elapsedS) * 1000));
        const cut = bareCutAtS === undefined ? 'open' : `cut at ${bareCutAtS.toFixed(1)} s`;
        log(
          `${Math.round((Date.now() - started) / 1000)} s idle: kept ${kept.destroyed ? 'closed' : 'open'}, bare ${cut}`,
        );
      }
      const idleS = (Date.now() - started) / 1000;
      const echoed = kept.destroyed ? undefined : await roundTrip(kept, 'after the idle period');
      const survived = echoed === 'after the idle period';
      log(
        `kept connection ${survived ? 'echoed' : 'did NOT echo'} after ${idleS.toFixed(1)} s idle; listener drops: ${listenerDrops}`,
      );
      const figures: Figure[] = [
        {
          name: 'idle_connection_survived_s',
          value: survived ? Math.round(idleS) : 0,
          unit: 's',
          goal: `> ${DEFAULT_IDLE_TIMEOUT_MS / 1000} (the idle cut)`,
          command: COMMAND,
          note: `relayed connection idle ${Math.round(idleS)} s with the emulator's ${DEFAULT_IDLE_TIMEOUT_MS / 1000} s idle cut and no pongs; 0 = it was cut`,
        },
        {
          name: 'idle_connection_without_keepalive_cut_s',
          value: bareCutAtS ?? -1,
          unit: 's',
          command: COMMAND,
          note: 'control: a sender with keepalive off (-1 = not cut, which would mean the emulator is not strict)',
        },
        {
          name: 'idle_listener_drops',
          value: listenerDrops,
          unit: 'count',
          goal: '0',
          command: COMMAND,
          note: 'control-channel drops of the listener during the idle period',
        },
      ];
      return figures;
    } finally {
      for (const close of closers.reverse()) await close();
      await emulator.close();
    }
  },
};
