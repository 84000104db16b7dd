// `relay-broker ssh` and `relay-broker rdp` end to end on the local stack with real clients and
// servers: OpenSSH's sshd and ssh, and FreeRDP (a shadow server sharing one Xvfb display, xfreerdp
// on another, the remote desktop's pixels read back from the client's screen). The session ends
// when the client exits. Needs /usr/sbin/sshd and ssh (Debian: openssh-server, openssh-client) and
// Xvfb, freerdp-shadow-cli, xfreerdp, ImageMagick (xvfb, freerdp2-shadow-x11, freerdp2-x11,
// imagemagick); without them the tests say so and skip, unless REQUIRE_LAUNCHER_TESTS=1 (CI).
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { promises as fs, existsSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { freePort } from '../../local/freePort';
import type { LocalRuntime } from '../../local/runtime';
import { CliProcess, runCli } from '../integration/agent/cliProcess';
import { call } from '../support/http';
import { startLocalStack } from '../support/localStack';

const exec = promisify(execFile);
const REQUIRED = process.env.REQUIRE_LAUNCHER_TESTS === '1';
const onPath = (cmd: string): boolean => {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
};
const missing = (tools: string[]): string[] => tools.filter((t) => (t.startsWith('/') ? !existsSync(t) : !onPath(t)));
const SSH_TOOLS = ['/usr/sbin/sshd', 'ssh', 'ssh-keygen'];
const RDP_TOOLS = ['Xvfb', 'xclock', 'freerdp-shadow-cli', 'xfreerdp', 'import', 'convert'];
const skipReason = (tools: string[]): string | false => {
  const m = missing(tools);
  if (m.length === 0) return false;
  if (REQUIRED) throw new Error(`REQUIRE_LAUNCHER_TESTS=1 but missing: ${m.join(', ')}`);
  return `missing ${m.join(', ')} (install openssh-server xvfb x11-apps freerdp2-x11 freerdp2-shadow-x11 imagemagick)`;
};

async function waitForPort(port: number, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${what} did not listen on ${port}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** A free X display number: no lock file and no socket. */
function freeDisplay(from: number): number {
  for (let n = from; n < from + 200; n++)
    if (!existsSync(`/tmp/.X${n}-lock`) && !existsSync(`/tmp/.X11-unix/X${n}`)) return n;
  throw new Error('no free X display');
}

describe('native client launchers (relay-broker ssh|rdp on the local stack)', () => {
  const sshSkip = skipReason(SSH_TOOLS);
  const rdpSkip = skipReason(RDP_TOOLS);
  let stateDir: string;
  let rt: LocalRuntime | undefined;
  let env: Record<string, string>;
  let agent: CliProcess | undefined;
  const children: ChildProcess[] = [];
  let sshPort = 0;
  let rdpPort = 0;
  let deviceDisplay = 0;
  let clientDisplay = 0;
  let clientKey = '';
  let knownHosts = '';

  const background = (cmd: string, args: string[], extraEnv: Record<string, string> = {}): ChildProcess => {
    const child = spawn(cmd, args, { stdio: 'ignore', env: { ...process.env, ...extraEnv } });
    children.push(child);
    return child;
  };

  before(async () => {
    if (sshSkip && rdpSkip) return;
    stateDir = await fs.mkdtemp(path.join(os.tmpdir(), 'rb-launch-e2e-'));
    const allow: number[] = [];
    if (!sshSkip) {
      // A real sshd on a free loopback port, with a host key and one authorized client key of its own.
      sshPort = await freePort();
      const hostKey = path.join(stateDir, 'host_ed25519');
      clientKey = path.join(stateDir, 'client_ed25519');
      knownHosts = path.join(stateDir, 'known_hosts');
      await exec('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', hostKey]);
      await exec('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', clientKey]);
      await fs.copyFile(`${clientKey}.pub`, path.join(stateDir, 'authorized_keys'));
      await fs.chmod(path.join(stateDir, 'authorized_keys'), 0o600);
      const config = path.join(stateDir, 'sshd_config');
      await fs.writeFile(
        config,
        [
          `Port ${sshPort}`,
          'ListenAddress 127.0.0.1',
          `HostKey ${hostKey}`,
          `AuthorizedKeysFile ${path.join(stateDir, 'authorized_keys')}`,
          `PidFile ${path.join(stateDir, 'sshd.pid')}`,
          'StrictModes no',
          'UsePAM no',
          'PasswordAuthentication no',
          'KbdInteractiveAuthentication no',
          'PermitRootLogin prohibit-password',
          '',
        ].join('\n'),
      );
      await fs.mkdir('/run/sshd', { recursive: true }).catch(() => undefined);
      background('/usr/sbin/sshd', ['-D', '-e', '-f', config]);
      await waitForPort(sshPort, 'sshd');
      allow.push(sshPort);
    }
    if (!rdpSkip) {
      // The device's desktop: an Xvfb display with a clock on it, shared by FreeRDP's shadow server.
      deviceDisplay = freeDisplay(140);
      background('Xvfb', [`:${deviceDisplay}`, '-screen', '0', '800x600x24', '-nolisten', 'tcp']);
      clientDisplay = freeDisplay(deviceDisplay + 1);
      background('Xvfb', [`:${clientDisplay}`, '-screen', '0', '1024x768x24', '-nolisten', 'tcp']);
      await new Promise((r) => setTimeout(r, 1000));
      background('xclock', ['-geometry', '400x400+0+0', '-bg', 'white'], { DISPLAY: `:${deviceDisplay}` });
      rdpPort = await freePort();
      background('freerdp-shadow-cli', [`/port:${rdpPort}`, '/bind-address:127.0.0.1', '-auth'], {
        DISPLAY: `:${deviceDisplay}`,
      });
      await waitForPort(rdpPort, 'freerdp-shadow-cli');
      allow.push(rdpPort);
    }

    ({ rt, env } = await startLocalStack(stateDir, { prefillNamespaces: 3 }));
    const enrollment = path.join(stateDir, 'device.json');
    const add = await runCli(['devices', 'add', 'launch-e2e', '--out', enrollment], { env });
    assert.equal(add.code, 0, add.stderr);
    agent = new CliProcess(
      ['--json', 'agent', '--enrollment', enrollment, '--allow', allow.join(','), '--poll-ms', '200'],
      { env },
    );
    await agent.waitForEvent('agent.started');
  });

  after(async () => {
    await agent?.stop('SIGTERM');
    for (const c of children.reverse()) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
    await rt?.close();
    if (stateDir) await fs.rm(stateDir, { recursive: true, force: true });
  });

  const sessionStatus = async (sessionId: string): Promise<string> => {
    const r = await call<{ status: string }>('GET', `${rt!.apiUrl}/sessions/${sessionId}`, {
      token: await rt!.token('admin'),
    });
    return r.body.status;
  };

  it(
    'ssh runs a command on the device through the tunnel, returns its exit code and ends the session',
    { skip: sshSkip },
    async () => {
      const sshArgs = [
        '-i',
        clientKey,
        '-o',
        `UserKnownHostsFile=${knownHosts}`,
        '-o',
        'StrictHostKeyChecking=accept-new',
        '-o',
        'BatchMode=yes',
      ];
      const user = os.userInfo().username;
      const ok = await runCli(
        [
          '--json',
          'ssh',
          'launch-e2e',
          '--port',
          String(sshPort),
          '--user',
          user,
          '--',
          ...sshArgs,
          'echo',
          'hello-through-the-relay',
        ],
        { env, timeoutMs: 60_000 },
      );
      assert.equal(ok.code, 0, ok.stderr);
      assert.match(ok.stdout, /hello-through-the-relay/);
      const events = ok.stdout
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      const ready = events.find((e) => e.event === 'session.ready');
      assert.ok(ready, 'session.ready event');
      assert.ok(events.some((e) => e.event === 'client.exited'));
      assert.ok(events.some((e) => e.event === 'session.ended'));
      // The client's exit ended the session through the API.
      const status = await sessionStatus(String(ready.sessionId));
      assert.ok(['ending', 'ended'].includes(status), `status ${status}`);
      // Host keys are remembered per device, not per random local port.
      const found = await exec('ssh-keygen', ['-F', 'relay-broker-launch-e2e', '-f', knownHosts]);
      assert.match(found.stdout, /ssh-ed25519/);

      const failing = await runCli(
        ['--json', 'ssh', 'launch-e2e', '--port', String(sshPort), '--user', user, '--', ...sshArgs, 'exit', '7'],
        { env, timeoutMs: 60_000 },
      );
      assert.equal(failing.code, 7, 'the remote command exit code is the command exit code');
    },
  );

  it(
    'rdp starts xfreerdp on the tunnel, the device desktop shows on the client screen, and closing it ends the session',
    { skip: rdpSkip },
    async () => {
      const shot = path.join(stateDir, 'rdp-client.png');
      const meanBrightness = async (): Promise<number> => {
        await exec('import', ['-display', `:${clientDisplay}`, '-window', 'root', shot]);
        const { stdout } = await exec('convert', [shot, '-colorspace', 'Gray', '-format', '%[fx:mean]', 'info:']);
        return Number(stdout.trim());
      };
      assert.ok((await meanBrightness()) < 0.01, 'the client screen starts black');
      const rdp = new CliProcess(['--json', 'rdp', 'launch-e2e', '--port', String(rdpPort), '--', '/size:800x600'], {
        env: { ...env, DISPLAY: `:${clientDisplay}`, HOME: stateDir },
      });
      try {
        const ready = await rdp.waitForEvent('session.ready', () => true, 30_000);
        await rdp.waitForEvent('client.started');
        // The clock's white face, drawn on the device's display, arrives on the client's screen.
        let brightness = 0;
        for (let i = 0; i < 40 && brightness < 0.1; i++) {
          await new Promise((r) => setTimeout(r, 500));
          brightness = await meanBrightness();
        }
        assert.ok(brightness >= 0.1, `the remote desktop is drawn on the client screen (mean ${brightness})`);
        if (process.env.RDP_SCREENSHOT_OUT) await fs.copyFile(shot, process.env.RDP_SCREENSHOT_OUT);
        // Closing the client (as a user closing its window) ends the session.
        execFileSync('pkill', ['-TERM', '-f', `xfreerdp /v:127.0.0.1:${(ready.listen as { port: number }).port}`]);
        await rdp.waitForEvent('client.exited', () => true, 15_000);
        await rdp.waitForEvent('session.ended', () => true, 15_000);
        assert.equal(await rdp.exited, 0);
        const status = await sessionStatus(String(ready.sessionId));
        assert.ok(['ending', 'ended'].includes(status), `status ${status}`);
      } finally {
        await rdp.stop('SIGINT');
      }
    },
  );
});
