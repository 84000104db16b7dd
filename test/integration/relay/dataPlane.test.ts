// The Hybrid Connections data plane of the emulator through our own client: bytes both ways, claims,
// namespace isolation, recycle kills tokens and connections, expiry, renewal, reject, re-listen.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import {
  connectHybridConnection,
  HybridConnectionListener,
  RelayHandshakeError,
  type HybridConnectionListenerOptions,
  type HybridConnectionStream,
  type ListenerEndedEvent,
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
import { readBytes, sha256Hex as sha } from '../../support/streams';

const hour = (): Date => new Date(Date.now() + 3600_000);

function closed(stream: HybridConnectionStream): Promise<number | undefined> {
  if (stream.destroyed) return Promise.resolve(stream.closeCode);
  stream.resume();
  return new Promise((resolve) => stream.once('close', () => resolve(stream.closeCode)));
}

describe('Hybrid Connections data plane (our client)', () => {
  let env: RelayTestEnv;
  let a: PreparedNamespace;
  let b: PreparedNamespace;
  const listeners: HybridConnectionListener[] = [];
  const streams: HybridConnectionStream[] = [];

  const refOf = (p: PreparedNamespace) => ({
    subscriptionId: SUBSCRIPTION,
    resourceGroup: RESOURCE_GROUP,
    name: p.name,
    endpoint: p.endpoint,
    hybridConnection: p.hybridConnection,
  });
  const keysOf = (p: PreparedNamespace): Promise<SessionKeys> => env.manager.getSessionKeys(refOf(p));
  const token = (keys: SessionKeys, which: 'listen' | 'send', expiresAt = hour()): string =>
    createSasToken({ resourceUri: keys.audience, ...keys[which], expiresAt });
  const listen = (
    p: PreparedNamespace,
    tokenSource: HybridConnectionListenerOptions['token'],
    extra: Partial<HybridConnectionListenerOptions> = {},
  ) => {
    const l = new HybridConnectionListener({
      endpoint: p.endpoint,
      hybridConnection: p.hybridConnection,
      token: tokenSource,
      ca: env.emulator.caCertPem,
      reconnectInitialDelayMs: 50,
      reconnectMaxDelayMs: 200,
      ...extra,
    });
    listeners.push(l);
    return l;
  };
  const echoOn = (l: HybridConnectionListener): void => {
    l.on('connection', (s) => {
      streams.push(s);
      s.on('error', () => undefined);
      s.pipe(s);
    });
  };
  const connect = async (p: PreparedNamespace, sendToken: string): Promise<HybridConnectionStream> => {
    const s = await connectHybridConnection(p.endpoint, p.hybridConnection, sendToken, { ca: env.emulator.caCertPem });
    s.on('error', () => undefined);
    streams.push(s);
    return s;
  };
  const ended = (l: HybridConnectionListener): Promise<ListenerEndedEvent> =>
    once(l, 'ended').then(([e]) => e as ListenerEndedEvent);

  before(async () => {
    env = await startRelayTestEnv();
    const prepare = () =>
      env.manager.prepareNamespace({
        subscriptionId: SUBSCRIPTION,
        resourceGroup: RESOURCE_GROUP,
        location: LOCATION,
        name: namespaceName('dp'),
      });
    [a, b] = await Promise.all([prepare(), prepare()]);
  });
  after(async () => {
    for (const s of streams) s.destroy();
    await Promise.all(listeners.map((l) => l.close({ dropConnections: true })));
    await env.emulator.close();
  });

  it('carries 1 MiB each way between a sender and a listener', async () => {
    const keys = await keysOf(a);
    const listener = listen(a, token(keys, 'listen'));
    echoOn(listener);
    await listener.start();
    const sender = await connect(a, token(keys, 'send'));
    const payload = randomBytes(1024 * 1024 + 7);
    const echoed = readBytes(sender, payload.length);
    sender.write(payload);
    assert.equal(sha(await echoed), sha(payload));
    sender.end();
    await listener.close({ dropConnections: true });
  });

  it('thousands of small writes queued in one tick arrive intact and in order, then the end', async () => {
    const keys = await keysOf(a);
    const listener = listen(a, token(keys, 'listen'));
    echoOn(listener);
    await listener.start();
    const sender = await connect(a, token(keys, 'send'));
    // Written before the socket can drain, so the stream hands them over in batches (writev).
    const chunks = Array.from({ length: 3000 }, (_, i) => randomBytes(1 + (i % 997)));
    const payload = Buffer.concat(chunks);
    const echoed = readBytes(sender, payload.length);
    for (const c of chunks) sender.write(c);
    assert.equal(sha(await echoed), sha(payload));
    sender.end();
    await listener.close({ dropConnections: true });
  });

  it('a Send token cannot listen and a Listen token cannot send', async () => {
    const keys = await keysOf(a);
    const wrongListener = listen(a, token(keys, 'send'));
    const end = ended(wrongListener);
    await assert.rejects(wrongListener.start());
    assert.deepEqual(await end, { reason: 'unauthorized', statusCode: 403 });

    const listener = listen(a, token(keys, 'listen'));
    echoOn(listener);
    await listener.start();
    await assert.rejects(
      connect(a, token(keys, 'listen')),
      (err: unknown) => err instanceof RelayHandshakeError && err.statusCode === 403,
    );
    await listener.close();
  });

  it('a token of namespace A is refused on namespace B', async () => {
    const keysA = await keysOf(a);
    const keysB = await keysOf(b);
    const listenerB = listen(b, token(keysB, 'listen'));
    echoOn(listenerB);
    await listenerB.start();
    await assert.rejects(
      connect(b, token(keysA, 'send')),
      (err: unknown) => err instanceof RelayHandshakeError && err.statusCode === 401,
    );
    const intruder = listen(b, token(keysA, 'listen'));
    await assert.rejects(intruder.start());
    const ok = await connect(b, token(keysB, 'send'));
    ok.end();
    await listenerB.close();
  });

  it('an expired token is refused', async () => {
    const keys = await keysOf(a);
    const expired = new Date(Date.now() - 1000);
    await assert.rejects(
      connect(a, token(keys, 'send', expired)),
      (err: unknown) => err instanceof RelayHandshakeError && err.statusCode === 401,
    );
    const l = listen(a, token(keys, 'listen', expired));
    const end = ended(l);
    await assert.rejects(l.start());
    assert.deepEqual(await end, { reason: 'unauthorized', statusCode: 401 });
  });

  it('a listener rejects with a status: the sender gets that status', async () => {
    const keys = await keysOf(a);
    const listener = listen(a, token(keys, 'listen'), {
      acceptFilter: () => ({ statusCode: 418, statusDescription: 'Not today' }),
    });
    const rejected = once(listener, 'rejected');
    await listener.start();
    await assert.rejects(
      connect(a, token(keys, 'send')),
      (err: unknown) => err instanceof RelayHandshakeError && err.statusCode === 418,
    );
    const [info, decision] = (await rejected) as [unknown, unknown];
    assert.equal((decision as { statusCode: number }).statusCode, 418);
    assert.ok((info as { headers: Record<string, string> }).headers['Sec-WebSocket-Key']);
    await listener.close();
  });

  it('control channel token expiry closes it with 1008, but an open connection lives on', async () => {
    const keys = await keysOf(a);
    const listener = listen(a, token(keys, 'listen', new Date(Date.now() + 2000)));
    echoOn(listener);
    await listener.start();
    const sender = await connect(a, token(keys, 'send'));
    assert.deepEqual(await ended(listener), { reason: 'token_expired', code: 1008 });
    const echoed = readBytes(sender, 5);
    sender.write('alive');
    assert.equal((await echoed).toString(), 'alive');
    sender.destroy();
  });

  it('a token provider renews the control channel before expiry; a refused renewal closes it with 1008', async () => {
    const keys = await keysOf(a);
    let calls = 0;
    const listener = listen(a, () => token(keys, ++calls <= 2 ? 'listen' : 'send', new Date(Date.now() + 2000)), {
      renewBeforeExpiryMs: 1500,
    });
    const offline: unknown[] = [];
    listener.on('offline', (e) => offline.push(e));
    const end = ended(listener);
    await listener.start();
    // Call 2 is a valid renewal (no drop); call 3 renews with a Send token: 1008, re-listen with call 4 (Send): 403, ended.
    assert.deepEqual(await end, { reason: 'unauthorized', statusCode: 403 });
    assert.equal(offline.length, 1);
    assert.equal((offline[0] as { code: number }).code, 1008);
    assert.ok(calls >= 4);
  });

  it('a listener whose control channel is dropped re-listens by itself', async () => {
    const keys = await keysOf(b);
    const listener = listen(b, token(keys, 'listen'));
    echoOn(listener);
    await listener.start();
    const backOnline = once(listener, 'online');
    assert.equal(env.emulator.dropControlChannels(b.name), 1);
    await backOnline;
    const sender = await connect(b, token(keys, 'send'));
    const echoed = readBytes(sender, 4);
    sender.write('back');
    assert.equal((await echoed).toString(), 'back');
    sender.destroy();
    await listener.close();
  });

  it('allows 25 listeners on a hybrid connection and refuses the 26th', async () => {
    const keys = await keysOf(b);
    const many = Array.from({ length: 25 }, () => listen(b, token(keys, 'listen')));
    await Promise.all(many.map((l) => l.start()));
    const extra = listen(b, token(keys, 'listen'));
    const end = ended(extra);
    await assert.rejects(extra.start());
    assert.deepEqual(await end, { reason: 'unauthorized', statusCode: 403 });
    await Promise.all(many.map((l) => l.close()));
  });

  it('after recycle every earlier token is refused and open connections are closed (1001)', async () => {
    const ref = refOf(a);
    const keys = await keysOf(a);
    const oldListen = token(keys, 'listen');
    const oldSend = token(keys, 'send');
    const listener = listen(a, oldListen);
    let listenerSide: HybridConnectionStream | undefined;
    listener.on('connection', (s) => {
      listenerSide = s;
      streams.push(s);
      s.on('error', () => undefined);
    });
    await listener.start();
    const sender = await connect(a, oldSend);
    const listenerEnded = ended(listener);
    await env.manager.recycle(ref, { nextHybridConnection: 'tunnel-g1' });
    assert.equal(await closed(sender), 1001);
    assert.ok(listenerSide);
    assert.equal(await closed(listenerSide), 1001);
    assert.deepEqual(await listenerEnded, { reason: 'entity_deleted', code: 1001 });

    const l2 = listen(a, oldListen);
    await assert.rejects(l2.start());
    await assert.rejects(
      connect(a, oldSend),
      (err: unknown) => err instanceof RelayHandshakeError && err.statusCode === 404,
      'the old hybrid connection is gone',
    );
    // The fresh keys work on the next generation's hybrid connection (a fresh name).
    const next = { ...a, hybridConnection: 'tunnel-g1' };
    const fresh = await keysOf(next);
    const l3 = listen(next, token(fresh, 'listen'));
    echoOn(l3);
    await l3.start();
    const s3 = await connect(next, token(fresh, 'send'));
    s3.destroy();
    await l3.close();
  });
});
