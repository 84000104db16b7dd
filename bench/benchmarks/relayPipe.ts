// Benchmark `relay`: throughput and added round-trip latency of a sender -> relay emulator ->
// listener pipe (our Hybrid Connections client, wss both hops) against a direct loopback TCP pipe.
import { once } from 'node:events';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { Benchmark, Figure } from '../figures';
import { percentile } from '../figures';
import { connectHybridConnection, HybridConnectionListener } from '../../lib/relay/hybridConnection';
import { createRelayApiFactory, RelayManager } from '../../lib/relay/relayManager';
import { RelayEmulator } from '../../local/relay-emulator';

const COMMAND = 'npm run bench -- relay';
const BYTES = 32 * 1024 * 1024;
const CHUNK = 64 * 1024;
const RUNS = 3;
const PINGS = 400;

type Mode = 'sink' | 'echo';

/** Serves one side: `sink` counts bytes and answers one byte when all arrived; `echo` echoes. */
function serve(stream: Duplex, mode: Mode): void {
  stream.on('error', () => undefined);
  if (mode === 'echo') {
    stream.pipe(stream);
    return;
  }
  let got = 0;
  stream.on('data', (chunk: Buffer) => {
    got += chunk.length;
    if (got >= BYTES) {
      got = 0;
      stream.write(Buffer.from([1]));
    }
  });
}

async function throughputMBs(stream: Duplex): Promise<number> {
  const chunk = Buffer.alloc(CHUNK, 7);
  const started = process.hrtime.bigint();
  const done = once(stream, 'data');
  for (let sent = 0; sent < BYTES; sent += CHUNK) {
    if (!stream.write(chunk)) await once(stream, 'drain');
  }
  await done;
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return BYTES / (1024 * 1024) / seconds;
}

async function roundTripsMs(stream: Duplex): Promise<number[]> {
  const samples: number[] = [];
  const payload = Buffer.alloc(32, 1);
  for (let i = 0; i < PINGS; i++) {
    const started = process.hrtime.bigint();
    const answered = once(stream, 'data');
    stream.write(payload);
    await answered;
    samples.push(Number(process.hrtime.bigint() - started) / 1e6);
  }
  return samples;
}

const median = (values: number[]): number => percentile(values, 50);

export const benchmark: Benchmark = {
  name: 'relay',
  description: 'sender -> relay emulator -> listener vs direct loopback TCP: throughput and added round-trip latency',
  async run(log) {
    const emulator = await new RelayEmulator({ createDelayMs: 0 }).start();
    let mode: Mode = 'sink';
    const tcpServer = net.createServer((socket) => {
      socket.setNoDelay(true);
      serve(socket, mode);
    });
    const listener = await (async () => {
      const manager = new RelayManager({
        apiFactory: createRelayApiFactory({ endpoint: emulator.armEndpoint, caPem: emulator.caCertPem }),
      });
      const prepared = await manager.prepareNamespace({
        subscriptionId: 'bench',
        resourceGroup: 'bench',
        location: 'local',
        name: 'bench-relay-pipe',
      });
      const tokens = await manager.issueSessionTokens(
        { subscriptionId: 'bench', resourceGroup: 'bench', name: prepared.name, endpoint: prepared.endpoint },
        { expiresAt: new Date(Date.now() + 3600_000) },
      );
      const l = new HybridConnectionListener({
        endpoint: tokens.endpoint,
        hybridConnection: tokens.hybridConnection,
        token: tokens.listenToken,
        ca: emulator.caCertPem,
      });
      l.on('connection', (s) => serve(s, mode));
      await l.start();
      return { l, tokens };
    })();
    try {
      await new Promise<void>((resolve) => tcpServer.listen(0, '127.0.0.1', resolve));
      const port = (tcpServer.address() as net.AddressInfo).port;
      const openDirect = async (): Promise<Duplex> => {
        const socket = net.connect(port, '127.0.0.1');
        socket.setNoDelay(true);
        await once(socket, 'connect');
        return socket;
      };
      const openRelay = (): Promise<Duplex> =>
        connectHybridConnection(listener.tokens.endpoint, listener.tokens.hybridConnection, listener.tokens.sendToken, {
          ca: emulator.caCertPem,
        });

      const direct: number[] = [];
      const relayed: number[] = [];
      mode = 'sink';
      for (let run = 0; run < RUNS; run++) {
        const d = await openDirect();
        direct.push(await throughputMBs(d));
        d.destroy();
        const r = await openRelay();
        relayed.push(await throughputMBs(r));
        r.destroy();
        log(`run ${run + 1}: direct ${direct[run].toFixed(0)} MB/s, relay ${relayed[run].toFixed(0)} MB/s`);
      }
      mode = 'echo';
      const d = await openDirect();
      const directRtt = await roundTripsMs(d);
      d.destroy();
      const r = await openRelay();
      const relayRtt = await roundTripsMs(r);
      r.destroy();
      const directMBs = median(direct);
      const relayMBs = median(relayed);
      log(`rtt p50: direct ${median(directRtt).toFixed(3)} ms, relay ${median(relayRtt).toFixed(3)} ms`);
      const note = `${BYTES / 2 ** 20} MiB x ${RUNS} runs (median), ${PINGS} sequential 32-byte pings; wss both hops, same machine`;
      const figures: Figure[] = [
        {
          name: 'relay_pipe_throughput_ratio',
          value: relayMBs / directMBs,
          unit: 'ratio',
          goal: 'informative (emulator, 2 wss hops)',
          command: COMMAND,
          note,
        },
        {
          name: 'relay_pipe_rtt_added_ms_p50',
          value: median(relayRtt) - median(directRtt),
          unit: 'ms',
          command: COMMAND,
          note,
        },
        {
          name: 'relay_pipe_rtt_added_ms_p99',
          value: percentile(relayRtt, 99) - percentile(directRtt, 99),
          unit: 'ms',
          command: COMMAND,
          note,
        },
        { name: 'relay_pipe_throughput_mb_s', value: relayMBs, unit: 'MB/s', command: COMMAND, note },
        { name: 'direct_pipe_throughput_mb_s', value: directMBs, unit: 'MB/s', command: COMMAND, note },
        { name: 'relay_pipe_rtt_ms_p50', value: median(relayRtt), unit: 'ms', command: COMMAND, note },
        { name: 'direct_pipe_rtt_ms_p50', value: median(directRtt), unit: 'ms', command: COMMAND, note },
      ];
      return figures;
    } finally {
      await listener.l.close({ dropConnections: true });
      await new Promise<void>((resolve) => tcpServer.close(() => resolve()));
      await emulator.close();
    }
  },
};
