// Device presence and the agent's lifecycle on the whole local stack, through the built binary: the
// agent heartbeats with its device credential (online/offline in `GET /devices`), an open to an
// offline device fails at once with device_offline, a SIGKILLed agent restarted under a live session
// takes it back (bytes through again), the enrollment is renewed without a file copy, a rotated
// enrollment file is picked up live, and `devices rm` stops the agent with a non-zero exit.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { LocalRuntime } from '../../local/runtime';
import { CliProcess, runCli } from '../integration/agent/cliProcess';
import { assertProblem, call } from '../support/http';
import { echoThrough } from '../support/streams';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` every 250 ms, at most `tries` times; resolves with its first truthy answer. */
async function until<T>(what: string, check: () => Promise<T | undefined>, tries = 120): Promise<T> {
  for (let i = 0; i < tries; i++) {
    const v = await check().catch(() => undefined);
    if (v) return v;
    await sleep(250);
  }
  throw new Error(`timed out waiting for ${what}`);
}

interface DeviceView {
  presence: string;
  lastSeenAt?: string;
  enrollmentExpiresAt: string;
  sessions?: Array<{ sessionId: string; listener: string }>;
}

describe('device presence and the agent lifecycle (local stack, built binary)', () => {
  let stateDir: string;
  let rt: LocalRuntime;
  let env: Record<string, string>;
  let admin: string;
  let echoPort = 0;
  let echo: net.Server;
  const procs: CliProcess[] = [];

  const addDevice = async (id: string): Promise<string> => {
    const file = path.join(stateDir, `${id}.json`);
    const add = await runCli(['devices', 'add', id, '--out', file], { env });
    assert.equal(add.code, 0, add.stderr);
    return file;
  };
  const startAgent = async (file: string, extra: string[] = []): Promise<CliProcess> => {
    const agent = new CliProcess(
      [
        '--json',
        'agent',
        '--enrollment',
        file,
        '--allow',
        String(echoPort),
        '--poll-ms',
        '200',
        '--heartbeat-ms',
        '500',
        ...extra,
      ],
      { env },
    );
    procs.push(agent);
    await agent.waitForEvent('agent.started');
    return agent;
  };
  const device = async (id: string) =>
    (await call<DeviceView>('GET', `${rt.apiUrl}/devices/${id}`, { token: admin })).body;

  before(async () => {
    stateDir = await fs.mkdtemp(path.join(os.tmpdir(), 'rb-presence-e2e-'));
    rt = new LocalRuntime({
      disableTimers: true,
      prefillNamespaces: 4,
      logSink: () => {},
      stateDir,
      relayOptions: { createDelayMs: 0 },
      settings: {
        DEVICE_OFFLINE_AFTER_SECONDS: '3',
        DEVICE_SEEN_WRITE_SECONDS: '1',
        DEVICE_ENROLLMENT_SECONDS: '30',
      },
    });
    await rt.start();
    await fs.writeFile(path.join(stateDir, 'local.json'), JSON.stringify(rt.localState()), { mode: 0o600 });
    env = { RELAY_BROKER_STATE_DIR: stateDir };
    admin = await rt.token('admin');
    echo = net.createServer({ allowHalfOpen: true }, (s) => {
      s.on('error', () => undefined);
      s.pipe(s);
    });
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
    echoPort = (echo.address() as net.AddressInfo).port;
  });

  after(async () => {
    await Promise.all(procs.map((p) => p.stop('SIGKILL').catch(() => null)));
    await new Promise<void>((resolve) => echo.close(() => resolve()));
    await rt?.close();
    await fs.rm(stateDir, { recursive: true, force: true });
  });

  it('shows a device online while its agent heartbeats, offline once it stops, and an open to it fails at once with device_offline', async () => {
    const file = await addDevice('presence-1');
    const enrollment = JSON.parse(await fs.readFile(file, 'utf8')) as { deviceKey?: string };
    assert.match(enrollment.deviceKey ?? '', /^dk_/, 'the enrollment carries the device credential');
    const before = await device('presence-1');
    assert.equal(before.presence, 'never');
    const agent = await startAgent(file);
    const online = await until('online', async () =>
      (await device('presence-1')).presence === 'online' ? true : undefined,
    );
    assert.ok(online);
    const listed = await call<{ devices: DeviceView[] }>('GET', `${rt.apiUrl}/devices`, { token: admin });
    assert.ok(listed.body.devices.some((d) => d.presence === 'online' && d.lastSeenAt));

    assert.equal(await agent.stop('SIGTERM'), 0);
    assert.equal((await device('presence-1')).presence, 'offline', 'a stopping agent says so: offline at once');
    const r = await call('POST', `${rt.apiUrl}/sessions`, {
      token: admin,
      body: { deviceId: 'presence-1', port: echoPort },
    });
    assertProblem(r, 503, 'device_offline');
  });

  it('the heartbeat refuses a wrong credential (401) and names an unknown device (404 device_not_found)', async () => {
    const r = await call('POST', `${rt.apiUrl}/devices/presence-1/heartbeat`, {
      headers: { authorization: `Bearer dk_${randomBytes(32).toString('base64url')}` },
      body: { startedAt: new Date().toISOString(), sessions: [] },
    });
    assertProblem(r, 401, 'unauthenticated');
    const gone = await call('POST', `${rt.apiUrl}/devices/nobody-here/heartbeat`, {
      headers: { authorization: `Bearer dk_${randomBytes(32).toString('base64url')}` },
      body: { startedAt: new Date().toISOString(), sessions: [] },
    });
    assertProblem(gone, 404, 'device_not_found');
  });

  it('an agent SIGKILLed and restarted under a live session takes it back: bytes flow again', async () => {
    const file = await addDevice('presence-2');
    const agent = await startAgent(file);
    const connect = new CliProcess(
      ['--json', 'connect', 'presence-2', '--port', String(echoPort), '--status-poll-ms', '500'],
      { env },
    );
    procs.push(connect);
    const ready = await connect.waitForEvent('session.ready', () => true, 30_000);
    const localPort = (ready.listen as { port: number }).port;
    const payload = randomBytes(4096);
    assert.deepEqual(await echoThrough(localPort, payload), payload);
    const state = await fs.stat(`${file}.state.json`);
    assert.equal(state.mode & 0o777, 0o600, 'the state file holds listen tokens: 0600');

    await agent.stop('SIGKILL');
    await startAgent(file);
    const back = await until('bytes through after the restart', async () => {
      const got = await echoThrough(localPort, payload);
      return got.equals(payload) ? true : undefined;
    });
    assert.ok(back);
    // The next heartbeat reports it held again.
    const view = await until('reported held', async () => {
      const v = await device('presence-2');
      return v.sessions?.length === 1 && v.sessions[0].listener === 'online' ? v : undefined;
    });
    assert.equal(view.presence, 'online');
    await connect.stop('SIGINT');
  });

  it('an agent restarted without its state file: the session ends with device_lost', async () => {
    const file = await addDevice('presence-3');
    const agent = await startAgent(file);
    const open = await call<{ sessionId: string; status: string }>('POST', `${rt.apiUrl}/sessions`, {
      token: admin,
      body: { deviceId: 'presence-3', port: echoPort },
    });
    assert.equal(open.status, 201, open.text);
    await agent.stop('SIGKILL');
    await fs.rm(`${file}.state.json`, { force: true });
    await startAgent(file);
    const lost = await until('device_lost', async () => {
      const s = await call<{ status: string; reason?: string }>('GET', `${rt.apiUrl}/sessions/${open.body.sessionId}`, {
        token: admin,
      });
      return s.body.reason === 'device_lost' ? s.body : undefined;
    });
    assert.notEqual(lost.status, 'ready');
  });

  it('renews the enrollment before it expires without a file copy, and picks up a rotated file live', async () => {
    const file = await addDevice('presence-4');
    const first = JSON.parse(await fs.readFile(file, 'utf8')) as { expiresAt: string; deviceKey: string };
    const agent = await startAgent(file);
    // 30 s enrollments are renewed once less than 10 s are left.
    const renewed = await until(
      'renewal',
      async () => {
        const now = JSON.parse(await fs.readFile(file, 'utf8')) as { expiresAt: string; deviceKey: string };
        return Date.parse(now.expiresAt) > Date.parse(first.expiresAt) ? now : undefined;
      },
      160,
    );
    assert.equal(renewed.deviceKey, first.deviceKey, 'renewal keeps the credential');
    assert.equal((await fs.stat(file)).mode & 0o777, 0o600);
    await agent.waitForEvent('enrollment.renewed');

    const rotate = await runCli(['devices', 'rotate', 'presence-4', '--out', file, '--force'], { env });
    assert.equal(rotate.code, 0, rotate.stderr);
    await agent.waitForEvent('enrollment.reloaded', () => true, 15_000);
    // The new SAS serves: a session opens through the rotated enrollment.
    const open = await call<{ status: string }>('POST', `${rt.apiUrl}/sessions`, {
      token: admin,
      body: { deviceId: 'presence-4', port: echoPort },
    });
    assert.equal(open.status, 201, open.text);
  });

  it('after `devices rm` the agent stops with a clear message and a non-zero exit', async () => {
    const file = await addDevice('presence-5');
    const agent = await startAgent(file);
    await until('online', async () => ((await device('presence-5')).presence === 'online' ? true : undefined));
    const rm = await runCli(['devices', 'rm', 'presence-5'], { env });
    assert.equal(rm.code, 0, rm.stderr);
    const fatal = await agent.waitForEvent('agent.fatal', () => true, 15_000);
    assert.match(String(fatal.detail), /removed/);
    // It exits by itself; the exit code is read once it has.
    await until('the agent exits', () => Promise.resolve(agent.child.exitCode !== null ? true : undefined), 80);
    assert.equal(agent.child.exitCode, 1);
    assert.ok(
      agent.lines.some((l) => /was removed/.test(l)),
      'it says why',
    );
  });

  it("a refused port carries the agent's reason in device_refused (403)", async () => {
    const file = await addDevice('presence-6');
    await startAgent(file);
    const r = await call('POST', `${rt.apiUrl}/sessions`, { token: admin, body: { deviceId: 'presence-6', port: 1 } });
    assertProblem(r, 403, 'device_refused');
    assert.match(String((r.body as { detail?: string }).detail), /port 1 is not allowed/);
  });
});
