// A device in its own network namespace that can reach nothing but an HTTP proxy (tinyproxy, from
// Debian) listening on the host end of a veth pair. The namespace's 127.0.0.1 is its own: the
// broker's services on the host's loopback are out of reach except through the proxy.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { promises as fs } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/** Why the namespace test cannot run here, or undefined when it can. */
export function netnsUnavailable(): string | undefined {
  if (process.platform !== 'linux') return 'network namespaces are Linux only';
  if (typeof process.getuid === 'function' && process.getuid() !== 0) return 'needs root for `ip netns`';
  if (spawnSync('ip', ['netns', 'list']).status !== 0) return '`ip netns` is not available';
  if (spawnSync('tinyproxy', ['-v']).status !== 0) return 'tinyproxy is not installed (apt-get install tinyproxy)';
  return undefined;
}

function ip(...args: string[]): void {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr.trim()}`);
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export interface DeviceNetns {
  name: string;
  /** The proxy as the device must be told: http://user:password@host:port. */
  proxyUrl: string;
  proxyPassword: string;
  /** What runs a command inside the namespace. */
  exec: string[];
  /** tinyproxy's output (its log), for assertions and failure messages. */
  proxyLog(): string;
  close(): Promise<void>;
}

/** Creates the namespace, the veth pair (a random /30 in 10.200-249.x.x) and a tinyproxy with basic auth. */
export async function startDeviceNetns(): Promise<DeviceNetns> {
  const tag = randomBytes(3).toString('hex');
  const name = `rbdev-${tag}`;
  const hostIf = `rbh${tag}`;
  const devIf = `rbd${tag}`;
  const base = `10.${200 + randomInt(50)}.${randomInt(256)}.${4 * randomInt(64)}`;
  const octets = base.split('.').map(Number);
  const hostAddr = `${octets[0]}.${octets[1]}.${octets[2]}.${octets[3] + 1}`;
  const devAddr = `${octets[0]}.${octets[1]}.${octets[2]}.${octets[3] + 2}`;
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'rb-netns-'));
  let proxy: ChildProcess | undefined;
  let log = '';
  const cleanup = async (): Promise<void> => {
    if (proxy && proxy.exitCode === null) {
      const exited = new Promise((r) => proxy!.once('close', r));
      proxy.kill('SIGTERM');
      await exited;
    }
    spawnSync('ip', ['netns', 'del', name]);
    spawnSync('ip', ['link', 'del', hostIf]);
    await fs.rm(dir, { recursive: true, force: true });
  };
  try {
    ip('netns', 'add', name);
    ip('link', 'add', hostIf, 'type', 'veth', 'peer', 'name', devIf);
    ip('link', 'set', devIf, 'netns', name);
    ip('addr', 'add', `${hostAddr}/30`, 'dev', hostIf);
    ip('link', 'set', hostIf, 'up');
    ip('-n', name, 'addr', 'add', `${devAddr}/30`, 'dev', devIf);
    ip('-n', name, 'link', 'set', devIf, 'up');
    ip('-n', name, 'link', 'set', 'lo', 'up');
    const port = await freePort();
    const password = randomBytes(12).toString('hex');
    // No ConnectPort line: CONNECT to any port (the local stack's ports are random, Azure's are 443).
    const conf = [
      `Port ${port}`,
      `Listen ${hostAddr}`,
      `Allow ${devAddr}`,
      'User nobody',
      'Group nogroup',
      'Timeout 600',
      'MaxClients 100',
      'LogLevel Connect',
      'DisableViaHeader Yes',
      `BasicAuth device ${password}`,
    ].join('\n');
    const confFile = path.join(dir, 'tinyproxy.conf');
    await fs.writeFile(confFile, `${conf}\n`);
    proxy = spawn('tinyproxy', ['-d', '-c', confFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    proxy.stdout!.on('data', (c: Buffer) => (log += c.toString()));
    proxy.stderr!.on('data', (c: Buffer) => (log += c.toString()));
    // Ready when it accepts a TCP connection on the veth address (bounded).
    const deadline = Date.now() + 10_000;
    for (;;) {
      const ok = await new Promise<boolean>((resolve) => {
        const s = net.connect({ host: hostAddr, port }, () => {
          s.destroy();
          resolve(true);
        });
        s.on('error', () => resolve(false));
      });
      if (ok) break;
      if (proxy.exitCode !== null || Date.now() > deadline) throw new Error(`tinyproxy did not start: ${log}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    return {
      name,
      proxyUrl: `http://device:${password}@${hostAddr}:${port}`,
      proxyPassword: password,
      exec: ['ip', 'netns', 'exec', name],
      proxyLog: () => log,
      close: cleanup,
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}
