// A real device on another machine in local mode (issue 19 item 6): the device (the product's agent,
// and the service it exposes) runs in a network namespace of its own, joined to this host by a veth
// pair with two addresses of 10.231.x.0/30 and nothing else, so it reaches the broker only through
// RELAY_BROKER_BIND / RELAY_BROKER_PUBLIC_HOST and the relay's port range, never through loopback.
// Needs root and `ip netns`; skipped (saying why) when unavailable unless REQUIRE_NETNS_TESTS=1.
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { LocalNetwork } from '../../lib/config';
import { LocalRuntime } from '../../local/runtime';
import { CLI_PATH, CliProcess, runCli } from '../integration/agent/cliProcess';
import { echoThrough, freePortRange } from './localModeSupport';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const tag = `${process.pid % 10_000}`;
const NS = `rb-dev-${tag}`;
const VETH_HOST = `rbh${tag}`;
const VETH_DEVICE = `rbd${tag}`;
const SUBNET = (process.pid % 250) + 1;
const HOST_IP = `10.231.${SUBNET}.1`;
const DEVICE_IP = `10.231.${SUBNET}.2`;
const DEVICE_ID = 'netns-device';

const ip = (...args: string[]): void => {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
};

/** Creates the namespace and the veth pair; the reason it cannot, or undefined. */
function setUpNamespace(): string | undefined {
  try {
    ip('netns', 'add', NS);
  } catch (err) {
    return `ip netns add failed (${String((err as { stderr?: Buffer }).stderr ?? err).trim()}); needs root and iproute2`;
  }
  ip('link', 'add', VETH_HOST, 'type', 'veth', 'peer', 'name', VETH_DEVICE);
  ip('link', 'set', VETH_DEVICE, 'netns', NS);
  ip('addr', 'add', `${HOST_IP}/30`, 'dev', VETH_HOST);
  ip('link', 'set', VETH_HOST, 'up');
  ip('netns', 'exec', NS, 'ip', 'addr', 'add', `${DEVICE_IP}/30`, 'dev', VETH_DEVICE);
  ip('netns', 'exec', NS, 'ip', 'link', 'set', VETH_DEVICE, 'up');
  ip('netns', 'exec', NS, 'ip', 'link', 'set', 'lo', 'up');
  return undefined;
}

function tearDownNamespace(): void {
  // Deleting the namespace destroys its veth end, which takes the host end with it.
  for (const args of [
    ['netns', 'del', NS],
    ['link', 'del', VETH_HOST],
  ]) {
    try {
      ip(...args);
    } catch {
      // already gone
    }
  }
}

const unavailable = setUpNamespace();
if (unavailable && process.env.REQUIRE_NETNS_TESTS === '1')
  throw new Error(`REQUIRE_NETNS_TESTS=1 but the network namespace test cannot run: ${unavailable}`);

describe(
  'local mode with the device on another network (a network namespace over a veth pair)',
  { skip: unavailable },
  () => {
    let stateDir = '';
    let deviceDir = '';
    let rt: LocalRuntime | undefined;
    let service: ChildProcess | undefined;
    let servicePort = 0;
    const procs: CliProcess[] = [];
    let env: Record<string, string>;

    before(async () => {
      stateDir = await fs.mkdtemp(path.join(os.tmpdir(), 'rb-netns-broker-'));
      deviceDir = await fs.mkdtemp(path.join(os.tmpdir(), 'rb-netns-device-'));
      const base = await freePortRange(10, HOST_IP);
      const network: LocalNetwork = {
        apiPort: base,
        queuePort: base + 1,
        relayPorts: { first: base + 2, last: base + 9 },
        bind: HOST_IP,
        publicHost: HOST_IP,
      };
      rt = new LocalRuntime({
        stateDir,
        persistent: true,
        network,
        disableTimers: true,
        prefillNamespaces: 1,
        logSink: () => {},
        relayOptions: { createDelayMs: 0 },
      });
      await rt.start();
      await fs.writeFile(path.join(stateDir, 'local.json'), JSON.stringify(rt.localState()), { mode: 0o600 });
      env = { RELAY_BROKER_STATE_DIR: stateDir };
      // The device's own service: an echo server on the namespace's loopback, which the host cannot reach.
      service = spawn(
        'ip',
        [
          'netns',
          'exec',
          NS,
          process.execPath,
          '-e',
          "const s=require('net').createServer(c=>{c.on('error',()=>{});c.pipe(c)});" +
            "s.listen(0,'127.0.0.1',()=>console.log(s.address().port))",
        ],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
      const [first] = (await once(service.stdout!, 'data')) as [Buffer];
      servicePort = Number(first.toString().trim());
      assert.ok(servicePort > 0);
    });

    after(async () => {
      await Promise.all(procs.map((p) => p.stop('SIGTERM')));
      if (service && service.exitCode === null) {
        service.kill('SIGTERM');
        await once(service, 'exit');
      }
      await rt?.close();
      tearDownNamespace();
      await fs.rm(stateDir, { recursive: true, force: true });
      await fs.rm(deviceDir, { recursive: true, force: true });
    });

    it('the agent in the namespace, given only its enrollment and the relay CA, serves a session that carries bytes', async () => {
      assert.ok(rt);
      assert.equal(rt.apiUrl, `http://${HOST_IP}:${new URL(rt.apiUrl).port}/api`);
      const enrollment = path.join(deviceDir, 'device.json');
      const add = await runCli(['devices', 'add', DEVICE_ID, '--out', enrollment], { env });
      assert.equal(add.code, 0, add.stderr);
      const doc = JSON.parse(await fs.readFile(enrollment, 'utf8')) as { apiUrl: string; queueUrl: string };
      assert.equal(new URL(doc.apiUrl).hostname, HOST_IP, 'the enrollment names the advertised host');
      assert.equal(new URL(doc.queueUrl).hostname, HOST_IP);
      // What a user copies to the device: the enrollment and the emulator's CA; no local state.
      const ca = path.join(deviceDir, 'relay-ca.pem');
      await fs.copyFile(rt.relayCaFile, ca);
      const agent = new CliProcess(
        [
          '--json',
          'agent',
          '--enrollment',
          enrollment,
          '--relay-ca',
          ca,
          '--allow',
          String(servicePort),
          '--poll-ms',
          '200',
        ],
        {
          env: { RELAY_BROKER_STATE_DIR: path.join(deviceDir, 'none') },
          command: ['ip', 'netns', 'exec', NS, process.execPath, CLI_PATH],
        },
      );
      procs.push(agent);
      await agent.waitForEvent('agent.started');
      const connect = new CliProcess(
        ['--json', 'connect', DEVICE_ID, '--port', String(servicePort), '--status-poll-ms', '500'],
        { env },
      );
      procs.push(connect);
      const ready = await connect.waitForEvent('session.ready', () => true, 30_000);
      const payload = randomBytes(512 * 1024 + 5);
      const back = await echoThrough((ready.listen as { port: number }).port, payload);
      assert.equal(sha(back), sha(payload));
      await agent.waitForEvent('listener.online');
      assert.equal(await connect.stop('SIGINT'), 0);
    });
  },
);
