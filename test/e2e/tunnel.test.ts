// The tunnel end to end on the whole local stack, through the built binary: `devices add` ->
// `agent` -> `connect` -> a TCP client on the printed port, with checksums; parallel connections;
// a 100 MB stream; the emulator dropping the agent's control channel; `sessions end`; Ctrl-C.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { promises as fs } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { LocalRuntime } from '../../local/runtime';
import { startLocalStack } from '../support/localStack';
import { CliProcess, runCli } from '../integration/agent/cliProcess';
import { echoThrough } from '../support/streams';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
/** Resolves on 'close' whatever happened before (events.once would reject on 'error'). */
const closed = (s: net.Socket): Promise<void> =>
  new Promise((resolve) => (s.destroyed ? resolve() : s.once('close', () => resolve())));
const STREAM_BLOCK = randomBytes(1024 * 1024);
const STREAM_BLOCKS = 100;

describe('the tunnel end to end (relay-broker agent + connect on the local stack)', () => {
  let stateDir: string;
  let rt: LocalRuntime;
  let env: Record<string, string>;
  let agent: CliProcess;
  const connects: CliProcess[] = [];
  const servers: net.Server[] = [];
  const targetSockets = new Set<net.Socket>();
  let echoPort = 0;
  let streamPort = 0;
  let enrollmentFile = '';

  const serve = async (handler: (s: net.Socket) => void): Promise<number> => {
    const server = net.createServer({ allowHalfOpen: true }, (s) => {
      targetSockets.add(s);
      s.on('close', () => targetSockets.delete(s));
      s.on('error', () => undefined);
      handler(s);
    });
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return (server.address() as net.AddressInfo).port;
  };
  const connect = async (
    port: number,
    extra: string[] = [],
  ): Promise<{ proc: CliProcess; localPort: number; sessionId: string }> => {
    const proc = new CliProcess(
      ['--json', 'connect', 'tunnel-e2e', '--port', String(port), '--status-poll-ms', '500', ...extra],
      { env },
    );
    connects.push(proc);
    const ready = await proc.waitForEvent('session.ready', () => true, 30_000);
    const listen = ready.listen as { host: string; port: number };
    return { proc, localPort: listen.port, sessionId: String(ready.sessionId) };
  };

  before(async () => {
    stateDir = await fs.mkdtemp(path.join(os.tmpdir(), 'rb-tunnel-e2e-'));
    ({ rt, env } = await startLocalStack(stateDir, { prefillNamespaces: 5 }));
    echoPort = await serve((s) => s.pipe(s));
    streamPort = await serve((s) => {
      s.resume();
      let sent = 0;
      const pump = (): void => {
        while (sent < STREAM_BLOCKS) {
          sent++;
          if (!s.write(STREAM_BLOCK)) return void s.once('drain', pump);
        }
        s.end();
      };
      pump();
    });
    enrollmentFile = path.join(stateDir, 'device.json');
    const add = await runCli(['devices', 'add', 'tunnel-e2e', '--out', enrollmentFile], { env });
    assert.equal(add.code, 0, add.stderr);
    assert.equal((await fs.stat(enrollmentFile)).mode & 0o777, 0o600);
    agent = new CliProcess(
      ['--json', 'agent', '--enrollment', enrollmentFile, '--allow', `${echoPort},${streamPort}`, '--poll-ms', '200'],
      { env },
    );
    await agent.waitForEvent('agent.started');
  });

  after(async () => {
    await Promise.all(connects.map((c) => c.stop('SIGINT')));
    const agentCode = await agent?.stop('SIGTERM');
    for (const s of targetSockets) s.destroy();
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    await rt?.close();
    await fs.rm(stateDir, { recursive: true, force: true });
    assert.equal(agentCode, 0, 'the agent exits 0 on SIGTERM');
  });

  it('carries an echo exchange with its checksum, and 10 parallel connections through one session', async () => {
    const { proc, localPort } = await connect(echoPort);
    const payload = randomBytes(1024 * 1024 + 17);
    assert.equal(sha(await echoThrough(localPort, payload)), sha(payload));
    const payloads = Array.from({ length: 10 }, (_, i) => randomBytes(256 * 1024 + i));
    const echoed = await Promise.all(payloads.map((p) => echoThrough(localPort, p)));
    echoed.forEach((e, i) => assert.equal(sha(e), sha(payloads[i]), `connection ${i}`));
    await agent.waitForEvent('connection.closed', (e) => e.bytesToTarget === 256 * 1024 + 9);
    assert.equal(await proc.stop('SIGINT'), 0);
    assert.ok(proc.events().some((e) => e.event === 'session.ended' && e.by === 'local'));
  });

  it('streams 100 MB from the device side intact', async () => {
    const { proc, localPort } = await connect(streamPort);
    const socket = net.connect(localPort, '127.0.0.1');
    const hash = createHash('sha256');
    let bytes = 0;
    socket.on('data', (c: Buffer) => {
      hash.update(c);
      bytes += c.length;
    });
    await once(socket, 'end');
    socket.destroy();
    const expected = createHash('sha256');
    for (let i = 0; i < STREAM_BLOCKS; i++) expected.update(STREAM_BLOCK);
    assert.equal(bytes, STREAM_BLOCKS * STREAM_BLOCK.length);
    assert.equal(hash.digest('hex'), expected.digest('hex'));
    assert.equal(await proc.stop('SIGINT'), 0);
  });

  it('the agent re-listens after the emulator drops its control channel', async () => {
    const { proc, localPort, sessionId } = await connect(echoPort);
    assert.ok(rt.relay!.dropControlChannels() >= 1);
    await agent.waitForEvent('listener.offline', (e) => e.sessionId === sessionId);
    await agent.waitForEvent('listener.online', (e) => e.sessionId === sessionId && e.again === true);
    const payload = randomBytes(64 * 1024);
    assert.equal(sha(await echoThrough(localPort, payload)), sha(payload));
    assert.equal(await proc.stop('SIGINT'), 0);
  });

  it('`sessions end` closes the live client connection within 2 s, refuses a reconnect, and connect exits 1 saying why', async () => {
    const { proc, localPort, sessionId } = await connect(echoPort);
    const live = net.connect(localPort, '127.0.0.1');
    live.on('error', () => undefined);
    await once(live, 'connect');
    live.write('ping');
    await once(live, 'data');
    const liveClosed = closed(live);
    const end = await runCli(['sessions', 'end', sessionId], { env });
    assert.equal(end.code, 0, end.stderr);
    const endedAt = Date.now();
    await liveClosed;
    const closedAfterMs = Date.now() - endedAt;
    assert.ok(closedAfterMs < 2000, `the live connection closed ${closedAfterMs} ms after the session was ended`);
    // A reconnect gets nothing through: refused, or closed without a byte.
    const again = net.connect(localPort, '127.0.0.1');
    const received: Buffer[] = [];
    again.on('data', (c: Buffer) => received.push(c));
    again.on('error', () => undefined);
    again.on('connect', () => again.write('hello?'));
    await closed(again);
    assert.equal(Buffer.concat(received).length, 0);
    assert.equal(await proc.exited, 1);
    const ended = proc.events().find((e) => e.event === 'session.ended');
    assert.equal(ended?.by, 'remote');
    assert.equal(ended?.reason, 'requested');
    await agent.waitForEvent('session.closed', (e) => e.sessionId === sessionId);
  });

  it('a port the agent does not allow fails the session fast, with the reason and what to do', async () => {
    const r = await runCli(['connect', 'tunnel-e2e', '--port', '5900'], { env, timeoutMs: 30_000 });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /waiting for device…/);
    assert.match(r.stderr, /--allow/);
    await agent.waitForEvent('session.refused', (e) => e.port === 5900);
  });

  it('the agent never logs a token or its SAS', async () => {
    const enrollment = JSON.parse(await fs.readFile(enrollmentFile, 'utf8')) as { queueSas: string };
    assert.ok(!agent.stdout.includes('SharedAccessSignature'));
    assert.ok(!agent.stdout.includes(enrollment.queueSas));
    for (const c of connects) assert.ok(!c.stdout.includes('SharedAccessSignature'));
  });
});
