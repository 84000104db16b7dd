// The agent behind an HTTP proxy, end to end: the device runs in a network namespace that reaches
// only tinyproxy (basic auth); queue polling, the ready call and the relay WebSockets all go through
// it, a session opens and carries data. Without the proxy setting the agent fails with a named cause.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connectHybridConnection } from '../../../lib/relay/hybridConnection';
import {
  createDevice,
  encode,
  prepareSession,
  sendToDevice,
  startAgentTestEnv,
  waitFor,
  type AgentTestEnv,
} from './agentTestEnv';
import { CliProcess, runCli } from './cliProcess';
import { netnsUnavailable, startDeviceNetns, type DeviceNetns } from './deviceNetns';

const skip = netnsUnavailable();
if (skip) process.stdout.write(`# proxy test skipped: ${skip}\n`);

/** An echo server inside the namespace (the device's own 127.0.0.1); resolves with its port. */
function startEcho(ns: DeviceNetns): Promise<{ port: number; child: ChildProcess }> {
  const code =
    "const s=require('net').createServer({allowHalfOpen:true},c=>{c.on('error',()=>{});c.pipe(c)});" +
    "s.listen(0,'127.0.0.1',()=>console.log(s.address().port));process.on('SIGTERM',()=>process.exit(0));";
  const child = spawn(ns.exec[0], [...ns.exec.slice(1), process.execPath, '-e', code], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    child.stdout.once('data', (c: Buffer) => resolve({ port: Number(c.toString().trim()), child }));
    child.once('error', reject);
    child.once('close', (code) => reject(new Error(`echo server exited with ${code}`)));
  });
}

describe('agent behind an HTTP proxy, in a network namespace', { skip }, () => {
  let env: AgentTestEnv;
  let ns: DeviceNetns;
  let echo: { port: number; child: ChildProcess };
  let dir: string;
  let caFile: string;
  const agents: CliProcess[] = [];

  before(async () => {
    env = await startAgentTestEnv();
    ns = await startDeviceNetns();
    echo = await startEcho(ns);
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'rb-proxy-'));
    caFile = path.join(dir, 'relay-ca.pem');
    await fs.writeFile(caFile, env.emulator.caCertPem);
  });
  after(async () => {
    await Promise.all(agents.map((a) => a.stop()));
    echo?.child.kill('SIGTERM');
    await ns?.close();
    await env?.close();
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  async function enrollmentFile(): Promise<{ file: string; deviceId: string }> {
    const enrollment = await createDevice(env);
    const file = path.join(dir, `${enrollment.deviceId}.json`);
    await fs.writeFile(file, JSON.stringify(enrollment), { mode: 0o600 });
    return { file, deviceId: enrollment.deviceId };
  }

  function agentIn(file: string, extraEnv: Record<string, string | undefined>, args: string[] = []): CliProcess {
    const p = new CliProcess(
      [
        '--json',
        ...args,
        'agent',
        '--enrollment',
        file,
        '--allow',
        String(echo.port),
        '--relay-ca',
        caFile,
        '--poll-ms',
        '200',
      ],
      {
        command: [...ns.exec, process.execPath, path.resolve(__dirname, '..', '..', '..', 'agent', 'cli.js')],
        env: extraEnv,
      },
    );
    agents.push(p);
    return p;
  }

  it('the device reaches nothing directly: the queue is not on its loopback', async () => {
    const { file } = await enrollmentFile();
    const agent = agentIn(file, { HTTPS_PROXY: undefined, HTTP_PROXY: undefined, ALL_PROXY: undefined });
    const failed = await agent.waitForEvent('poll.failed');
    assert.match(String(failed.detail), /ECONNREFUSED|ENETUNREACH|EHOSTUNREACH/, 'a named network cause');
    assert.equal(await agent.stop(), 0);
  });

  it('through the proxy (HTTPS_PROXY with basic auth) a session opens and carries data', async () => {
    const { file, deviceId } = await enrollmentFile();
    const agent = agentIn(file, { HTTPS_PROXY: ns.proxyUrl });
    const proxyEvent = await agent.waitForEvent('agent.proxy');
    assert.equal(proxyEvent.source, 'HTTPS_PROXY');
    await agent.waitForEvent('agent.started');

    const session = await prepareSession(env, deviceId, { port: echo.port });
    await sendToDevice(env, deviceId, encode(session.message));
    await waitFor('the ready post', () => env.posts.find((p) => p.sessionId === session.message.sessionId), 20_000);
    await agent.waitForEvent('session.ready', (e) => e.sessionId === session.message.sessionId);

    const stream = await connectHybridConnection(
      session.tokens.endpoint,
      session.tokens.hybridConnection,
      session.tokens.sendToken,
      { ca: env.emulator.caCertPem },
    );
    const payload = Buffer.from(`hello through the proxy ${deviceId}`);
    const echoed = new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => {
        chunks.push(c);
        if (Buffer.concat(chunks).length >= payload.length) resolve(Buffer.concat(chunks));
      });
      stream.on('error', reject);
    });
    stream.write(payload);
    assert.deepEqual(await echoed, payload);
    stream.destroy();

    // All three channels went through the proxy: plain requests to the queue, CONNECT for the rest.
    const log = ns.proxyLog();
    assert.match(log, /CONNECT/, 'relay and ready calls tunnelled');
    assert.match(log, /GET http:\/\/127\.0\.0\.1/, 'queue polls proxied');
    assert.equal(await agent.stop(), 0);
    const everything = agent.stdout + agent.stderr;
    assert.ok(!everything.includes(ns.proxyPassword), 'the proxy password is never printed');
    assert.match(everything, /device:\*\*\*@/);
  });

  it('doctor in the namespace: the proxy in use, and the queue and relay TLS reached through it', async () => {
    const { file } = await enrollmentFile();
    const args = [
      '--json',
      'agent',
      'doctor',
      '--enrollment',
      file,
      '--allow',
      String(echo.port),
      '--relay-ca',
      caFile,
      '--relay-host',
      new URL(env.emulator.armEndpoint).host,
    ];
    const command = [...ns.exec, process.execPath, path.resolve(__dirname, '..', '..', '..', 'agent', 'cli.js')];
    const r = await runCli(args, { command, env: { HTTPS_PROXY: ns.proxyUrl }, timeoutMs: 30_000 });
    const checks = (JSON.parse(r.stdout) as { checks: Array<{ name: string; status: string; detail: string }> }).checks;
    const by = (name: string) => checks.find((c) => c.name === name);
    assert.equal(by('proxy')?.status, 'pass');
    assert.match(by('proxy')?.detail ?? '', /device:\*\*\*@.*from HTTPS_PROXY/);
    assert.equal(by('queue')?.status, 'pass', by('queue')?.detail);
    assert.equal(by('relay')?.status, 'pass', by('relay')?.detail);
    assert.match(by('relay')?.detail ?? '', /through the proxy/);
    assert.equal(by(`port ${echo.port}`)?.status, 'pass');
    assert.ok(!r.stdout.includes(ns.proxyPassword));
    // And without the proxy, the queue is out of reach, with the proxy named as the likely fix.
    const direct = await runCli(args, { command, timeoutMs: 30_000 });
    const queue = (
      JSON.parse(direct.stdout) as { checks: Array<{ name: string; status: string; fix?: string }> }
    ).checks.find((c) => c.name === 'queue');
    assert.equal(queue?.status, 'fail');
    assert.match(queue?.fix ?? '', /HTTPS_PROXY/);
  });

  it('--proxy with a wrong password fails with the proxy named, and without printing the password', async () => {
    const { file } = await enrollmentFile();
    const wrong = ns.proxyUrl.replace(ns.proxyPassword, 'not-the-password');
    const agent = agentIn(file, {}, ['--proxy', wrong]);
    const failed = await agent.waitForEvent('poll.failed');
    assert.match(String(failed.detail), /the proxy refused the credentials/);
    assert.equal(await agent.stop(), 0);
    assert.ok(!(agent.stdout + agent.stderr).includes('not-the-password'));
  });
});
