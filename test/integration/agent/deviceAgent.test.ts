// The device agent against Azurite (its queue) and the relay emulator, without the control plane:
// session.open messages are put on the queue by the test, ready posts land on a fake readyUrl.
import assert from 'node:assert/strict';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { DeviceAgent } from '../../../agent/deviceAgent';
import type { Enrollment } from '../../../lib/devices/deviceRegistry';
import {
  connectHybridConnection,
  RelayHandshakeError,
  type HybridConnectionStream,
} from '../../../lib/relay/hybridConnection';
import {
  createDevice,
  encode,
  prepareSession,
  sendToDevice,
  startAgentTestEnv,
  waitFor,
  type AgentTestEnv,
  type PreparedSession,
} from './agentTestEnv';
import { readBytes, sha256Hex as sha } from '../../support/streams';

interface LogLine {
  event: string;
  fields: Record<string, unknown>;
  human: string;
}

describe('relay-broker agent (DeviceAgent) on Azurite and the relay emulator', () => {
  let env: AgentTestEnv;
  let enrollment: Enrollment;
  let agent: DeviceAgent;
  const logs: LogLine[] = [];
  const streams: HybridConnectionStream[] = [];

  const logged = (
    event: string,
    sessionId?: string,
    extra: (l: LogLine) => boolean = () => true,
  ): LogLine | undefined =>
    logs.find((l) => l.event === event && (sessionId === undefined || l.fields.sessionId === sessionId) && extra(l));
  const send = async (s: PreparedSession): Promise<HybridConnectionStream> => {
    const stream = await connectHybridConnection(s.tokens.endpoint, s.tokens.hybridConnection, s.tokens.sendToken, {
      ca: env.emulator.caCertPem,
    });
    stream.on('error', () => undefined);
    streams.push(stream);
    return stream;
  };
  const echoes = async (s: PreparedSession, size: number): Promise<void> => {
    const stream = await send(s);
    const payload = randomBytes(size);
    const back = readBytes(stream, payload.length);
    stream.write(payload);
    assert.equal(sha(await back), sha(payload));
    stream.end();
  };

  /** An allowed port nothing listens on (a target service that is down). */
  let closedPort = 0;

  before(async () => {
    env = await startAgentTestEnv();
    enrollment = await createDevice(env);
    const probe = net.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    closedPort = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    agent = new DeviceAgent({
      enrollment,
      allowPorts: new Set([env.echoPort, 22, closedPort]),
      pollIntervalMs: 100,
      relayCa: env.emulator.caCertPem,
      listenerOptions: { reconnectInitialDelayMs: 50, reconnectMaxDelayMs: 200 },
      log: (event, fields, human) => logs.push({ event, fields, human }),
    });
    agent.start();
  });
  after(async () => {
    for (const s of streams) s.destroy();
    await agent?.close();
    await env?.close();
  });

  it('posts ready only once its listener is online, then carries bytes to the local target', async () => {
    const s = await prepareSession(env, enrollment.deviceId, { port: env.echoPort });
    let connectedAtReady: boolean | undefined;
    env.onReady = async (post) => {
      if (post.sessionId !== s.message.sessionId) return;
      // At the moment ready arrives a sender must get through: the listener is online.
      try {
        const stream = await send(s);
        stream.destroy();
        connectedAtReady = true;
      } catch (err) {
        connectedAtReady = !(err instanceof RelayHandshakeError);
      }
    };
    await sendToDevice(env, enrollment.deviceId, encode(s.message));
    const post = await waitFor('the ready post', () => env.posts.find((p) => p.sessionId === s.message.sessionId));
    assert.deepEqual(post.body, { readyToken: s.message.readyToken });
    await waitFor('the ready handler', () => connectedAtReady !== undefined);
    assert.equal(connectedAtReady, true);
    env.onReady = () => undefined;
    await echoes(s, 512 * 1024 + 3);
    await waitFor('connection logs', () =>
      logged('connection.closed', s.message.sessionId, (l) => l.fields.bytesToTarget === 512 * 1024 + 3),
    );
    assert.ok(logged('listener.online', s.message.sessionId));
    assert.ok(logged('session.ready', s.message.sessionId));
  });

  it('answers a connection to a target that refuses with 502 and the cause, so the client can print it', async () => {
    const s = await prepareSession(env, enrollment.deviceId, { port: closedPort });
    await sendToDevice(env, enrollment.deviceId, encode(s.message));
    await waitFor('the ready post', () => env.posts.find((p) => p.sessionId === s.message.sessionId));
    await assert.rejects(
      send(s),
      (err: unknown) =>
        err instanceof RelayHandshakeError &&
        err.statusCode === 502 &&
        /refused the connection \(ECONNREFUSED\)/.test(err.message),
    );
    assert.ok(logged('connection.failed', s.message.sessionId));
  });

  it('refuses a port not in --allow through readyUrl with status refused, and opens no listener', async () => {
    const s = await prepareSession(env, enrollment.deviceId, { port: 5900 });
    await sendToDevice(env, enrollment.deviceId, encode(s.message));
    const post = await waitFor('the refused post', () => env.posts.find((p) => p.sessionId === s.message.sessionId));
    assert.equal(post.body.status, 'refused');
    assert.equal(post.body.readyToken, s.message.readyToken);
    assert.match(post.body.detail ?? '', /port 5900 is not allowed/);
    assert.ok(logged('session.refused', s.message.sessionId));
    assert.equal(logged('session.opening', s.message.sessionId), undefined);
    await assert.rejects(send(s), (err: unknown) => err instanceof RelayHandshakeError && err.statusCode === 404);
  });

  it('ignores a message past notAfter (logged, deleted, nothing posted)', async () => {
    const stale = await prepareSession(env, enrollment.deviceId, { port: env.echoPort, notAfterMs: -1000 });
    const fresh = await prepareSession(env, enrollment.deviceId, { port: env.echoPort });
    await sendToDevice(env, enrollment.deviceId, encode(stale.message));
    await sendToDevice(env, enrollment.deviceId, encode(fresh.message));
    await waitFor('the fresh session ready', () => env.posts.find((p) => p.sessionId === fresh.message.sessionId));
    const ignored = await waitFor('the stale message ignored', () =>
      logged('message.ignored', stale.message.sessionId),
    );
    assert.equal(ignored.fields.reason, 'expired');
    assert.equal(
      env.posts.find((p) => p.sessionId === stale.message.sessionId),
      undefined,
    );
    assert.equal(logged('session.opening', stale.message.sessionId), undefined);
  });

  it('deletes and logs a message that does not parse, and keeps serving', async () => {
    await sendToDevice(env, enrollment.deviceId, 'bm90IGpzb24=');
    await sendToDevice(
      env,
      enrollment.deviceId,
      Buffer.from(JSON.stringify({ type: 'session.open', version: 2 })).toString('base64'),
    );
    await waitFor('two drops', () => logs.filter((l) => l.event === 'message.dropped').length >= 2);
    const s = await prepareSession(env, enrollment.deviceId, { port: env.echoPort });
    await sendToDevice(env, enrollment.deviceId, encode(s.message));
    await waitFor('ready after the bad messages', () => env.posts.find((p) => p.sessionId === s.message.sessionId));
    await echoes(s, 1024);
    const props = await env.queues.getQueueClient(`dev-${enrollment.deviceId}`).getProperties();
    assert.equal(props.approximateMessagesCount, 0);
  });

  it('ignores a duplicate session.open for a session it already runs', async () => {
    const s = await prepareSession(env, enrollment.deviceId, { port: env.echoPort });
    await sendToDevice(env, enrollment.deviceId, encode(s.message));
    await waitFor('ready', () => env.posts.find((p) => p.sessionId === s.message.sessionId));
    await sendToDevice(env, enrollment.deviceId, encode(s.message));
    const dup = await waitFor('the duplicate ignored', () => logged('message.ignored', s.message.sessionId));
    assert.equal(dup.fields.reason, 'duplicate');
    assert.equal(env.posts.filter((p) => p.sessionId === s.message.sessionId).length, 1);
    await echoes(s, 2048);
  });

  it('session.close closes the listener and its live connections', async () => {
    const s = await prepareSession(env, enrollment.deviceId, { port: env.echoPort });
    await sendToDevice(env, enrollment.deviceId, encode(s.message));
    await waitFor('ready', () => env.posts.find((p) => p.sessionId === s.message.sessionId));
    const live = await send(s);
    live.write(Buffer.from('hello'));
    await readBytes(live, 5);
    const liveClosed = new Promise<void>((resolve) => live.once('close', () => resolve()));
    live.resume();
    await sendToDevice(
      env,
      enrollment.deviceId,
      encode({
        type: 'session.close',
        version: 1,
        sessionId: s.message.sessionId,
        deviceId: enrollment.deviceId,
        reason: 'requested',
      }),
    );
    const closed = await waitFor('session closed', () => logged('session.closed', s.message.sessionId));
    assert.match(String(closed.fields.reason), /requested/);
    await liveClosed;
    assert.ok(!agent.runningSessions.includes(s.message.sessionId));
    await assert.rejects(send(s), (err: unknown) => err instanceof RelayHandshakeError && err.statusCode === 404);
  });

  it('re-listens after the emulator drops its control channel, and serves again', async () => {
    const s = await prepareSession(env, enrollment.deviceId, { port: env.echoPort });
    await sendToDevice(env, enrollment.deviceId, encode(s.message));
    await waitFor('ready', () => env.posts.find((p) => p.sessionId === s.message.sessionId));
    assert.ok(env.emulator.dropControlChannels(s.namespace) >= 1);
    await waitFor('offline logged', () => logged('listener.offline', s.message.sessionId));
    await waitFor('online again', () => logged('listener.online', s.message.sessionId, (l) => l.fields.again === true));
    await echoes(s, 64 * 1024);
  });

  it('closes the session when the relay deletes its hybrid connection (recycle)', async () => {
    const s = await prepareSession(env, enrollment.deviceId, { port: env.echoPort });
    await sendToDevice(env, enrollment.deviceId, encode(s.message));
    await waitFor('ready', () => env.posts.find((p) => p.sessionId === s.message.sessionId));
    await env.manager.recycle(s.ref);
    const closed = await waitFor('session closed', () => logged('session.closed', s.message.sessionId));
    assert.match(String(closed.fields.reason), /deleted the hybrid connection/);
  });

  it('closes the session at the end of its lifetime', async () => {
    const s = await prepareSession(env, enrollment.deviceId, { port: env.echoPort, lifetimeMs: 1500 });
    await sendToDevice(env, enrollment.deviceId, encode(s.message));
    await waitFor('ready', () => env.posts.find((p) => p.sessionId === s.message.sessionId));
    const closed = await waitFor('session closed', () => logged('session.closed', s.message.sessionId), 5000);
    assert.match(String(closed.fields.reason), /lifetime|token expired/);
  });

  it('never logs a token or the queue SAS', () => {
    const text = JSON.stringify(logs);
    assert.ok(!text.includes('SharedAccessSignature'));
    assert.ok(!text.includes('sig='));
    assert.ok(!text.includes(enrollment.queueSas));
    assert.ok(logs.length > 10);
  });
});
