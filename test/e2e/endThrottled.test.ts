// A session's end while ARM throttles its hybrid connection's delete for longer than the
// orchestration's retries, on the whole local stack with the relay emulator's runtime faults: the
// session reads `ending` (never `ended`) while the delete fails, new connections are refused as
// soon as the first delete has failed (the rules' keys regenerated), and once the throttle lifts
// the session is `ended`, its hybrid connection gone, its tokens dead on the wire and its namespace
// back in the pool. Prints the times it saw (docs/reliability.md "Ending and recycling").
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { TableClient } from '@azure/data-tables';
import { NamespaceStore } from '../../lib/pool/namespaceStore';
import {
  connectHybridConnection,
  HybridConnectionListener,
  RelayHandshakeError,
} from '../../lib/relay/hybridConnection';
import { LocalRuntime } from '../../local/runtime';
import { call } from '../support/http';
import { AgentHarness, startEchoServer, type Enrollment } from '../support/agentHarness';

interface Opened {
  sessionId: string;
  status: string;
  relay: { namespace: string; endpoint: string; hybridConnection: string; sendToken: string; expiresAt: string };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The status of a handshake: 200 when it opened (closed at once), else the relay's HTTP status. */
async function handshakeStatus(p: Promise<{ destroy(): void }>): Promise<number> {
  try {
    (await p).destroy();
    return 200;
  } catch (err) {
    if (err instanceof RelayHandshakeError) return err.statusCode;
    throw err;
  }
}

describe('a session end whose hybrid connection delete is throttled past the retries', () => {
  const rt = new LocalRuntime({ disableTimers: true, prefillNamespaces: 2, logSink: () => {} });
  let admin: string;
  let ca: string;
  let store: NamespaceStore;
  let echo: Awaited<ReturnType<typeof startEchoServer>>;
  let device: AgentHarness | undefined;

  before(async () => {
    echo = await startEchoServer();
    await rt.start();
    admin = await rt.token('admin');
    ca = rt.relay!.caCertPem;
    store = new NamespaceStore(
      TableClient.fromConnectionString(rt.azurite!.connectionString, 'namespaces', { allowInsecureConnection: true }),
      'default',
    );
  });
  after(async () => {
    rt.relay?.faults.clear();
    await device?.stop();
    await rt.close();
    await echo.close();
  });

  it('stays ending with new connections refused, then ends with the wire dead and the namespace back', async (t) => {
    const enrolled = await call<Enrollment>('POST', `${rt.apiUrl}/devices`, {
      token: admin,
      body: { deviceId: 'throttled-end' },
    });
    assert.equal(enrolled.status, 201, enrolled.text);
    device = new AgentHarness(enrolled.body, { allowPorts: [echo.port], pollMs: 200, ca }).start();
    const opened = await call<Opened>('POST', `${rt.apiUrl}/sessions`, {
      token: admin,
      body: { deviceId: 'throttled-end', port: echo.port },
    });
    assert.equal(opened.status, 201, opened.text);
    const { sessionId, relay } = opened.body;
    const leasedRow = await store.get(relay.namespace);
    assert.equal(leasedRow?.state, 'leased');
    const listenToken = device.opened.find((m) => m.sessionId === sessionId)!.relay.listenToken;
    const connect = () => connectHybridConnection(relay.endpoint, relay.hybridConnection, relay.sendToken, { ca });
    /**
     * What the relay answers the old send token. A handshake cut without an HTTP status (0: the
     * agent dropped its listener mid-rendezvous, a loaded machine) says nothing: asked again.
     */
    const wire = async () => {
      let code = 0;
      for (let i = 0; i < 5 && code === 0; i++) {
        if (i) await sleep(200);
        code = await handshakeStatus(connect());
      }
      return code;
    };

    // A live connection through the tunnel, carrying bytes.
    const live = await connect();
    live.on('error', () => undefined);
    live.write(Buffer.from('before the end'));
    const [echoed] = (await once(live, 'data')) as [Buffer];
    assert.equal(echoed.toString(), 'before the end');
    // The live connection drops when the agent stops its listener (its heartbeat is answered "stop")
    // or, at the latest, with the hybrid connection's delete.
    let liveClosedAt = 0;
    live.once('close', () => (liveClosedAt = Date.now()));

    // ARM throttles this namespace's hybrid connection deletes until the test lifts it.
    const fault = rt.relay!.faults.add({
      op: 'hybridConnections.delete',
      kind: '429',
      count: Infinity,
      retryAfterSeconds: 1,
      namePattern: relay.namespace,
    });
    const hits = () => rt.relay!.faults.list().find((f) => f.id === fault)?.hits ?? 0;
    const status = async () =>
      (await call<{ status: string; reason?: string }>('GET', `${rt.apiUrl}/sessions/${sessionId}`, { token: admin }))
        .body;

    const endAt = Date.now();
    const del = await call<{ status: string }>('DELETE', `${rt.apiUrl}/sessions/${sessionId}`, { token: admin });
    assert.equal(del.status, 202, del.text);
    assert.equal(del.body.status, 'ending');

    // Until the keys are regenerated the old send token may still open a connection (until the
    // agent drops its listener on its next heartbeat, answered "stop": 404); from then on the relay
    // itself refuses it (401), whoever listens. The session says `ending` all along.
    let refusedAt = 0;
    let keysDeadAt = 0;
    for (const deadline = Date.now() + 120_000; !keysDeadAt;) {
      assert.equal((await status()).status, 'ending', 'never ended while the delete fails');
      const code = await wire();
      if (code !== 200 && !refusedAt) refusedAt = Date.now();
      if (code === 401) keysDeadAt = Date.now();
      else {
        assert.ok([200, 404].includes(code), `handshake answered ${code}`);
        assert.ok(Date.now() < deadline, 'the old send token is refused while the delete is throttled');
        await sleep(250);
      }
    }
    const rogue = new HybridConnectionListener({
      endpoint: relay.endpoint,
      hybridConnection: relay.hybridConnection,
      token: listenToken,
      ca,
    });
    rogue.on('error', () => undefined);
    await assert.rejects(rogue.start(), /The listener ended: unauthorized/, 'a listener with the old token is refused');
    await rogue.close();
    assert.ok(hits() >= 1, 'the delete was throttled');
    const row = await store.get(relay.namespace);
    assert.equal(row?.state, 'recycling', 'the lease is over, the recycle under way');
    assert.equal(row?.hybridConnectionDeletedAt, undefined);

    // The orchestration keeps asking past its retries: every failed try is counted on the row (the
    // first try, then four with the engine's retries, then one per round after a 15 s timer).
    for (const deadline = Date.now() + 180_000; ((await store.get(relay.namespace))?.recycleFailures ?? 0) < 6;) {
      assert.ok(Date.now() < deadline, 'the delete is asked again after the retries');
      const s = await status();
      assert.equal(s.status, 'ending');
      assert.equal(s.reason, 'requested');
      assert.equal(await wire(), 401);
      await sleep(500);
    }
    const failing = await store.get(relay.namespace);
    assert.equal(failing?.state, 'recycling');
    assert.match(failing?.lastError ?? '', /429|throttl/i, 'the row says why');
    assert.equal(failing?.hybridConnectionDeletedAt, undefined);

    // The throttle lifts: the next try deletes the hybrid connection, and only then is it `ended`.
    const throttled = hits();
    const liftedAt = Date.now();
    rt.relay!.faults.remove(fault);
    // Each round reads the API, then the wire: the API may say `ended` only once the hybrid
    // connection is gone (404 where the regenerated keys answered 401 while it existed).
    let endedAt = 0;
    let hcGoneAt = 0;
    for (const deadline = Date.now() + 90_000; !endedAt;) {
      const s = await status();
      const answer = await wire();
      assert.ok([401, 404].includes(answer), `handshake answered ${answer}`);
      if (answer === 404 && !hcGoneAt) hcGoneAt = Date.now();
      if (s.status === 'ended') {
        endedAt = Date.now();
        assert.equal(s.reason, 'requested');
        assert.equal(answer, 404, 'ended only once the hybrid connection is gone');
      } else {
        assert.equal(s.status, 'ending');
        assert.ok(Date.now() < deadline, 'the session ends once the delete succeeds');
        await sleep(100);
      }
    }
    assert.ok(liveClosedAt > 0, 'the live connection was dropped');

    // Every token of the session is dead on the wire: its hybrid connection is gone.
    assert.equal(await wire(), 404);
    const listener = new HybridConnectionListener({
      endpoint: relay.endpoint,
      hybridConnection: relay.hybridConnection,
      token: listenToken,
      ca,
    });
    listener.on('error', () => undefined);
    await assert.rejects(listener.start(), /The listener ended: (unauthorized|not_found)/);
    await listener.close();

    // No lease leaked: the namespace comes back for the next session under a fresh name.
    let back = await store.get(relay.namespace);
    for (const deadline = Date.now() + 60_000; back?.state !== 'available'; back = await store.get(relay.namespace)) {
      assert.ok(Date.now() < deadline, `namespace ${relay.namespace} back in the pool (is ${back?.state})`);
      await sleep(200);
    }
    assert.equal(back.generation, leasedRow.generation + 1);
    assert.notEqual(back.hybridConnection, relay.hybridConnection);
    assert.deepEqual(
      (await store.list({ states: ['leased', 'recycling'] })).map((n) => n.name),
      [],
      'no namespace is left leased or recycling',
    );

    const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
    t.diagnostic(
      `new connections refused ${s(refusedAt - endAt)} and keys dead ${s(keysDeadAt - endAt)} after DELETE; throttle held ${s(liftedAt - endAt)}; ` +
        `hybrid connection gone ${s(hcGoneAt - liftedAt)} and API ended ${s(endedAt - liftedAt)} after it lifted ` +
        `(API == wire ${s(Math.max(0, endedAt - hcGoneAt))} after the wire died); live connection dropped ` +
        `${s(liveClosedAt - endAt)} after DELETE; ${throttled} throttled delete requests`,
    );
  });
});
