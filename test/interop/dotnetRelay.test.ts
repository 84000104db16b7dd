// A second data-plane client in another language: the C# program in test/interop/dotnet (on .NET's
// ClientWebSocket, the way Microsoft's .NET Relay client speaks the protocol) against the relay
// emulator, against our device agent (a .NET sender through a session's hybrid connection) and
// against our client bridge (`connect`: our sender to a .NET listener). Bytes verified both ways by
// SHA-256. It needs `dotnet` on PATH: without it the suite is skipped with the reason, and
// REQUIRE_DOTNET=1 (set by .ci/run) turns that skip into a failure.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { ClientBridge } from '../../agent/clientBridge';
import { DeviceAgent } from '../../agent/deviceAgent';
import type { Enrollment } from '../../lib/devices/deviceRegistry';
import { connectHybridConnection, HybridConnectionListener } from '../../lib/relay/hybridConnection';
import type { PreparedNamespace, SessionKeys } from '../../lib/relay/relayManager';
import { createSasToken } from '../../lib/relay/sas';
import { readBytes, sha256Hex as sha } from '../support/streams';
import {
  createDevice,
  encode,
  prepareSession,
  sendToDevice,
  startAgentTestEnv,
  uniqueName,
  waitFor,
  type AgentTestEnv,
} from '../integration/agent/agentTestEnv';

interface Line {
  event: string;
  [key: string]: unknown;
}

const projectDir = (() => {
  let dir = __dirname;
  for (let i = 0; i < 10; i += 1) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return path.join(dir, 'test', 'interop', 'dotnet');
    dir = path.dirname(dir);
  }
  throw new Error(`no repository root above ${__dirname}`);
})();

function dotnetVersion(): string | undefined {
  const r = spawnSync('dotnet', ['--version'], { encoding: 'utf8', timeout: 60_000 });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

const version = dotnetVersion();
const skipReason = version
  ? false
  : 'dotnet is not on PATH: the .NET interop tests did not run (REQUIRE_DOTNET=1 makes this a failure)';

if (!version) {
  if (process.env.REQUIRE_DOTNET === '1') {
    it('dotnet is on PATH (REQUIRE_DOTNET=1 requires the .NET interop tests)', () => {
      assert.fail('dotnet is not on PATH, and REQUIRE_DOTNET=1 requires the .NET interop tests');
    });
  } else {
    // Counted in the summary as a skipped test, with the reason.
    it('the .NET interop tests', { skip: skipReason }, () => undefined);
  }
}

/** The C# program as a child process, its stdout read as JSON lines. */
class DotnetPeer {
  readonly lines: Line[] = [];
  private readonly waiters = new Set<() => void>();
  readonly exited: Promise<number | null>;
  private readonly child: ChildProcess;

  constructor(dll: string, args: string[], caFile: string) {
    this.child = spawn('dotnet', [dll, ...args], {
      // OpenSSL (which .NET uses on Linux) reads its trust store from SSL_CERT_FILE: the emulator's CA.
      env: { ...process.env, SSL_CERT_FILE: caFile, DOTNET_CLI_TELEMETRY_OPTOUT: '1', DOTNET_NOLOGO: '1' },
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    readline.createInterface({ input: this.child.stdout! }).on('line', (text) => {
      this.lines.push(JSON.parse(text) as Line);
      for (const wake of this.waiters) wake();
    });
    this.exited = new Promise((resolve) => this.child.once('exit', (code) => resolve(code)));
  }

  /** The first line matching `match`, waiting at most `timeoutMs`. */
  async next(what: string, match: (l: Line) => boolean, timeoutMs = 30_000): Promise<Line> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.lines.find(match);
      if (found) return found;
      const error = this.lines.find((l) => l.event === 'error');
      if (error) throw new Error(`the .NET peer failed while waiting for ${what}: ${JSON.stringify(error)}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}; lines: ${JSON.stringify(this.lines)}`);
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(timer);
          this.waiters.delete(wake);
          resolve();
        };
        const timer = setTimeout(wake, Math.min(left, 500));
        this.waiters.add(wake);
      });
    }
  }

  /** Closes stdin (a listener's signal to stop) and waits for the exit, killing it after 10 s. */
  async stop(): Promise<number | null> {
    this.child.stdin?.end();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }
}

describe('the .NET Hybrid Connections client (test/interop/dotnet)', { skip: skipReason }, () => {
  let env: AgentTestEnv;
  let dll: string;
  let caFile: string;
  let tmpDir: string;
  let prepared: PreparedNamespace;
  let keys: SessionKeys;
  const peers: DotnetPeer[] = [];
  const cleanups: Array<() => Promise<void> | void> = [];

  const peer = (args: string[]): DotnetPeer => {
    const p = new DotnetPeer(dll, args, caFile);
    peers.push(p);
    return p;
  };
  const auth = (which: 'listen' | 'send', k: SessionKeys = keys): string[] => [
    '--key-name',
    k[which].keyName,
    '--key',
    k[which].key,
  ];
  const target = (endpoint: string, hc: string): string[] => ['--endpoint', endpoint, '--hc', hc];

  before(async () => {
    // Build output goes to bin/ and obj/ beside the project (gitignored).
    const build = spawnSync('dotnet', ['build', '-c', 'Release', '--nologo', '-v', 'quiet'], {
      cwd: projectDir,
      encoding: 'utf8',
      env: { ...process.env, DOTNET_CLI_TELEMETRY_OPTOUT: '1', DOTNET_NOLOGO: '1' },
      timeout: 300_000,
    });
    assert.equal(build.status, 0, `dotnet build failed:\n${build.stdout}\n${build.stderr}`);
    const outDir = path.join(projectDir, 'bin', 'Release');
    const tfm = fs.readdirSync(outDir).find((d) => fs.existsSync(path.join(outDir, d, 'RelayInterop.dll')));
    assert.ok(tfm, `no RelayInterop.dll under ${outDir}`);
    dll = path.join(outDir, tfm, 'RelayInterop.dll');

    env = await startAgentTestEnv();
    tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'relay-interop-'));
    caFile = path.join(tmpDir, 'emulator-ca.pem');
    fs.writeFileSync(caFile, env.emulator.caCertPem);
    const name = uniqueName('dn');
    prepared = await env.manager.prepareNamespace({
      subscriptionId: 'sub-agent',
      resourceGroup: 'rg',
      location: 'local',
      name,
    });
    keys = await env.manager.getSessionKeys({
      subscriptionId: 'sub-agent',
      resourceGroup: 'rg',
      name,
      endpoint: prepared.endpoint,
    });
  });

  after(async () => {
    for (const p of peers) await p.stop();
    for (const c of cleanups.reverse()) await c();
    await env?.close();
    if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
  });

  describe('against the relay emulator', () => {
    it('a .NET listener and a .NET sender exchange 1 MiB both ways (tokens signed by the .NET program)', async () => {
      const listener = peer(['listen', ...target(prepared.endpoint, prepared.hybridConnection), ...auth('listen')]);
      await listener.next('the .NET listener online', (l) => l.event === 'online');
      const size = 1024 * 1024 + 13;
      const sender = peer([
        'send',
        ...target(prepared.endpoint, prepared.hybridConnection),
        ...auth('send'),
        '--bytes',
        String(size),
      ]);
      const sent = await sender.next('the .NET sender done', (l) => l.event === 'sent');
      assert.equal(await sender.exited, 0);
      assert.equal(sent.received, size);
      assert.equal(sent.receivedSha256, sent.sentSha256, 'the echo differs from what was sent');
      const closed = await listener.next('the listener side closed', (l) => l.event === 'closed');
      assert.equal(closed.bytes, size);
      assert.equal(closed.sha256, sent.sentSha256, 'the listener received other bytes than were sent');
      assert.equal(await listener.stop(), 0);
    });

    it('refuses a .NET sender whose token is signed with a wrong key, with 401', async () => {
      const wrong = { ...keys, send: { ...keys.send, key: randomBytes(32).toString('base64') } };
      const sender = peer([
        'send',
        ...target(prepared.endpoint, prepared.hybridConnection),
        ...auth('send', wrong),
        '--bytes',
        '1',
      ]);
      assert.equal(await sender.exited, 1);
      const error = sender.lines.find((l) => l.event === 'error');
      assert.equal(error?.status, 401, JSON.stringify(sender.lines));
    });

    it('verifies the emulator certificate: without its CA in SSL_CERT_FILE the .NET sender fails the TLS handshake', async () => {
      const emptyTrust = path.join(tmpDir, 'no-ca.pem');
      fs.writeFileSync(emptyTrust, '');
      const sender = new DotnetPeer(
        dll,
        ['send', ...target(prepared.endpoint, prepared.hybridConnection), ...auth('send'), '--bytes', '1'],
        emptyTrust,
      );
      peers.push(sender);
      assert.equal(await sender.exited, 1);
      const error = sender.lines.find((l) => l.event === 'error');
      assert.ok(error, JSON.stringify(sender.lines));
      assert.equal(error.status, 0, 'no HTTP status: the connection failed before the handshake');
    });

    it('our sender to a .NET listener, and a .NET sender to our listener: bytes intact both ways', async () => {
      // Ours -> .NET
      const dotnetListener = peer([
        'listen',
        ...target(prepared.endpoint, prepared.hybridConnection),
        ...auth('listen'),
      ]);
      await dotnetListener.next('the .NET listener online', (l) => l.event === 'online');
      const hour = new Date(Date.now() + 3600_000);
      const sendToken = createSasToken({ resourceUri: keys.audience, ...keys.send, expiresAt: hour });
      const stream = await connectHybridConnection(prepared.endpoint, prepared.hybridConnection, sendToken, {
        ca: env.emulator.caCertPem,
      });
      const payload = randomBytes(700 * 1024 + 1);
      const back = readBytes(stream, payload.length);
      stream.write(payload);
      assert.equal(sha(await back), sha(payload));
      stream.end();
      const closed = await dotnetListener.next('the .NET listener saw the close', (l) => l.event === 'closed');
      assert.equal(closed.sha256, sha(payload));
      assert.equal(await dotnetListener.stop(), 0);

      // .NET -> ours
      const listenToken = createSasToken({ resourceUri: keys.audience, ...keys.listen, expiresAt: hour });
      const ours = new HybridConnectionListener({
        endpoint: prepared.endpoint,
        hybridConnection: prepared.hybridConnection,
        token: listenToken,
        ca: env.emulator.caCertPem,
      });
      cleanups.push(() => ours.close());
      ours.on('connection', (s) => {
        s.on('error', () => undefined);
        s.pipe(s);
      });
      await ours.start();
      const size = 300 * 1024 + 5;
      const sender = peer([
        'send',
        ...target(prepared.endpoint, prepared.hybridConnection),
        ...auth('send'),
        '--bytes',
        String(size),
      ]);
      const sent = await sender.next('the .NET sender done', (l) => l.event === 'sent');
      assert.equal(sent.received, size);
      assert.equal(sent.receivedSha256, sent.sentSha256);
      await ours.close();
    });
  });

  describe('against the product', () => {
    let enrollment: Enrollment;
    let agent: DeviceAgent;

    before(async () => {
      enrollment = await createDevice(env);
      agent = new DeviceAgent({
        enrollment,
        allowPorts: new Set([env.echoPort]),
        pollIntervalMs: 100,
        relayCa: env.emulator.caCertPem,
        listenerOptions: { reconnectInitialDelayMs: 50, reconnectMaxDelayMs: 200 },
        log: () => undefined,
      });
      agent.start();
      cleanups.push(() => agent.close());
    });

    it('a .NET sender with the session send token reaches the device through our agent (DeviceAgent listener)', async () => {
      const s = await prepareSession(env, enrollment.deviceId, { port: env.echoPort });
      await sendToDevice(env, enrollment.deviceId, encode(s.message));
      await waitFor('the ready post', () => env.posts.find((p) => p.sessionId === s.message.sessionId));
      const size = 512 * 1024 + 3;
      const sender = peer([
        'send',
        ...target(s.tokens.endpoint, s.tokens.hybridConnection),
        '--token',
        s.tokens.sendToken,
        '--bytes',
        String(size),
      ]);
      const sent = await sender.next('the .NET sender done', (l) => l.event === 'sent');
      assert.equal(await sender.exited, 0);
      assert.equal(sent.received, size);
      assert.equal(sent.receivedSha256, sent.sentSha256, 'the bytes back from the device differ from those sent');
    });

    it('our client bridge (`connect`) carries bytes to a .NET listener holding the session listen token', async () => {
      const s = await prepareSession(env, enrollment.deviceId, { port: env.echoPort });
      const listener = peer([
        'listen',
        ...target(s.tokens.endpoint, s.tokens.hybridConnection),
        '--token',
        s.tokens.listenToken,
      ]);
      await listener.next('the .NET listener online', (l) => l.event === 'online');
      const bridge = new ClientBridge({
        listen: { host: '127.0.0.1', port: 0 },
        relay: {
          endpoint: s.tokens.endpoint,
          hybridConnection: s.tokens.hybridConnection,
          sendToken: s.tokens.sendToken,
        },
        ca: env.emulator.caCertPem,
        log: () => undefined,
      });
      cleanups.push(() => bridge.close());
      const address = await bridge.start();
      const socket = net.connect(address.port, address.host);
      socket.on('error', () => undefined);
      const payload = randomBytes(600 * 1024 + 9);
      const back = readBytes(socket, payload.length);
      socket.write(payload);
      assert.equal(sha(await back), sha(payload), 'the echo through the bridge differs');
      socket.end();
      const closed = await listener.next('the .NET listener saw the close', (l) => l.event === 'closed');
      assert.equal(closed.bytes, payload.length);
      assert.equal(closed.sha256, sha(payload), 'the .NET listener received other bytes');
      socket.destroy();
      await bridge.close();
      assert.equal(await listener.stop(), 0);
    });
  });
});
