// Keepalive against an emulator as strict as Azure's data plane: it answers no pings and cuts any
// WebSocket idle for `idleTimeoutMs` (scaled down here). Our listener and connections stay up by
// sending unsolicited pongs (as Microsoft's clients do); without them they are cut.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { Duplex } from 'node:stream';
import { WebSocket } from 'ws';
import { ClientBridge } from '../../../agent/clientBridge';
import { DEFAULT_IDLE_TIMEOUT_MS } from '../../../local/relay-emulator';
import {
  connectHybridConnection,
  DEFAULT_KEEPALIVE_INTERVAL_MS,
  HybridConnectionListener,
  hybridConnectionUrl,
  type HybridConnectionStream,
} from '../../../lib/relay/hybridConnection';
import type { PreparedNamespace, SessionKeys } from '../../../lib/relay/relayManager';
import { createSasToken } from '../../../lib/relay/sas';
import {
  LOCATION,
  namespaceName,
  RESOURCE_GROUP,
  startRelayTestEnv,
  SUBSCRIPTION,
  type RelayTestEnv,
} from './relayTestEnv';

/** The scaled idle cut; every wait below is a multiple of it. */
const IDLE_MS = 400;
const KEEPALIVE_MS = 100;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The next `n` bytes from `stream`, without ending the stream (unlike a for-await that breaks). */
function nextBytes(stream: Duplex, n: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      got += chunk.length;
      if (got >= n) {
        cleanup();
        resolve(Buffer.concat(chunks));
      }
    };
    const onEnd = (): void => {
      cleanup();
      reject(new Error(`the stream ended after ${got} of ${n} bytes`));
    };
    const cleanup = (): void => {
      stream.off('data', onData);
      stream.off('close', onEnd);
      stream.off('end', onEnd);
    };
    stream.on('data', onData);
    stream.once('close', onEnd);
    stream.once('end', onEnd);
  });
}

async function roundTrip(stream: Duplex, text: string): Promise<string> {
  const reply = nextBytes(stream, Buffer.byteLength(text));
  stream.write(text);
  return (await reply).toString();
}

describe('keepalive against a relay that answers no pings and cuts idle sockets', () => {
  let env: RelayTestEnv;
  let ns: PreparedNamespace;
  let keys: SessionKeys;
  const closers: Array<() => unknown> = [];
  const token = (which: 'listen' | 'send'): string =>
    createSasToken({ resourceUri: keys.audience, ...keys[which], expiresAt: new Date(Date.now() + 3_600_000) });

  function listener(keepAliveIntervalMs: number): HybridConnectionListener {
    const l = new HybridConnectionListener({
      endpoint: ns.endpoint,
      hybridConnection: ns.hybridConnection,
      token: token('listen'),
      ca: env.emulator.caCertPem,
      keepAliveIntervalMs,
      reconnectInitialDelayMs: 50,
      reconnectMaxDelayMs: 100,
    });
    l.on('connection', (s) => {
      s.on('error', () => undefined);
      s.pipe(s);
    });
    closers.push(() => l.close({ dropConnections: true }));
    return l;
  }
  async function sender(keepAliveIntervalMs: number): Promise<HybridConnectionStream> {
    const s = await connectHybridConnection(ns.endpoint, ns.hybridConnection, token('send'), {
      ca: env.emulator.caCertPem,
      keepAliveIntervalMs,
    });
    s.on('error', () => undefined);
    closers.push(() => s.destroy());
    return s;
  }

  before(async () => {
    env = await startRelayTestEnv({ idleTimeoutMs: IDLE_MS });
    ns = await env.manager.prepareNamespace({
      subscriptionId: SUBSCRIPTION,
      resourceGroup: RESOURCE_GROUP,
      location: LOCATION,
      name: namespaceName('ka'),
    });
    keys = await env.manager.getSessionKeys({
      subscriptionId: SUBSCRIPTION,
      resourceGroup: RESOURCE_GROUP,
      name: ns.name,
      endpoint: ns.endpoint,
    });
  });
  after(async () => {
    for (const close of closers.splice(0)) await close();
    await env.emulator.close();
  });

  it('the defaults: keepalive every 30 s, well inside the 4 min idle cut', () => {
    assert.equal(DEFAULT_IDLE_TIMEOUT_MS, 240_000);
    assert.ok(DEFAULT_KEEPALIVE_INTERVAL_MS * 4 <= DEFAULT_IDLE_TIMEOUT_MS);
  });

  it('the emulator answers no ping by default; autoPong turns ws answering back on', async () => {
    const pongWithin = async (emulatorCa: string, url: string, listenToken: string): Promise<boolean> => {
      const ws = new WebSocket(url, { ca: emulatorCa, headers: { ServiceBusAuthorization: listenToken } });
      ws.on('error', () => undefined);
      await once(ws, 'open');
      const pong = once(ws, 'pong').then(() => true);
      ws.ping();
      const answered = await Promise.race([pong, sleep(IDLE_MS / 2).then(() => false)]);
      ws.terminate();
      return answered;
    };
    const url = hybridConnectionUrl(ns.endpoint, ns.hybridConnection, 'listen');
    assert.equal(await pongWithin(env.emulator.caCertPem, url, token('listen')), false);

    const lenient = await startRelayTestEnv({ autoPong: true });
    try {
      const other = await lenient.manager.prepareNamespace({
        subscriptionId: SUBSCRIPTION,
        resourceGroup: RESOURCE_GROUP,
        location: LOCATION,
        name: namespaceName('ka'),
      });
      const otherKeys = await lenient.manager.getSessionKeys({
        subscriptionId: SUBSCRIPTION,
        resourceGroup: RESOURCE_GROUP,
        name: other.name,
        endpoint: other.endpoint,
      });
      const otherToken = createSasToken({
        resourceUri: otherKeys.audience,
        ...otherKeys.listen,
        expiresAt: new Date(Date.now() + 60_000),
      });
      const otherUrl = hybridConnectionUrl(other.endpoint, other.hybridConnection, 'listen');
      assert.equal(await pongWithin(lenient.emulator.caCertPem, otherUrl, otherToken), true);
    } finally {
      await lenient.emulator.close();
    }
  });

  it('a listener stays online for 3× the idle cut although no ping is ever answered, and still accepts', async () => {
    const l = listener(KEEPALIVE_MS);
    const offline: unknown[] = [];
    l.on('offline', (e) => offline.push(e));
    await l.start();
    await sleep(3 * IDLE_MS);
    assert.deepEqual(offline, []);
    assert.equal(l.status, 'online');
    const s = await sender(KEEPALIVE_MS);
    assert.equal(await roundTrip(s, 'still here'), 'still here');
    s.destroy();
    await l.close({ dropConnections: true });
  });

  it('without keepalive the idle control channel is cut (and the listener re-listens)', async () => {
    const l = listener(0);
    await l.start();
    const [event] = (await Promise.race([
      once(l, 'offline'),
      sleep(10 * IDLE_MS).then(() => assert.fail('the idle control channel was not cut')),
    ])) as [{ code?: number }];
    assert.equal(event.code, 1006);
    await l.close({ dropConnections: true });
  });

  it('a relayed connection idle for 3× the idle cut survives when both ends keep it alive', async () => {
    const l = listener(KEEPALIVE_MS);
    await l.start();
    const s = await sender(KEEPALIVE_MS);
    assert.equal(await roundTrip(s, 'before'), 'before');
    await sleep(3 * IDLE_MS);
    assert.equal(await roundTrip(s, 'after three idle cuts'), 'after three idle cuts');
    assert.equal(s.closeCode, undefined);
    s.destroy();
    await l.close({ dropConnections: true });
  });

  it('a raw sender (no keepalive) is cut once idle, even though the listener side keeps its own hop alive', async () => {
    const l = listener(KEEPALIVE_MS);
    await l.start();
    const s = await sender(0);
    assert.equal(await roundTrip(s, 'hello'), 'hello');
    s.resume();
    await Promise.race([
      once(s, 'close'),
      sleep(10 * IDLE_MS).then(() => assert.fail('the idle sender hop was not cut')),
    ]);
    assert.equal(s.closeCode, 1006);
    await l.close({ dropConnections: true });
  });

  it('the client bridge keeps its relayed connections alive: an idle TCP client survives 3× the idle cut', async () => {
    const l = listener(KEEPALIVE_MS);
    await l.start();
    const bridge = new ClientBridge({
      listen: { host: '127.0.0.1', port: 0 },
      relay: { endpoint: ns.endpoint, hybridConnection: ns.hybridConnection, sendToken: token('send') },
      ca: env.emulator.caCertPem,
      log: () => undefined,
      keepAliveIntervalMs: KEEPALIVE_MS,
    });
    const address = await bridge.start();
    closers.push(() => bridge.close());
    const socket = net.connect(address.port, address.host);
    socket.on('error', () => undefined);
    await once(socket, 'connect');
    assert.equal(await roundTrip(socket, 'ssh-ish'), 'ssh-ish');
    await sleep(3 * IDLE_MS);
    assert.equal(await roundTrip(socket, 'typed after a long pause'), 'typed after a long pause');
    socket.destroy();
    await bridge.close();
    await l.close({ dropConnections: true });
  });
});
