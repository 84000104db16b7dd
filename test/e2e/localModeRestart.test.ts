// `npm start`'s persistence (issue 19 item 6): a runtime on a state folder, a device added and its
// agent (the built binary) serving a session; everything stopped; while the broker is down the
// agent says where its enrollment points; the runtime started again on the same folder, and the
// same enrollment's agent serves a session that carries bytes, with a token minted before the restart.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { LocalNetwork } from '../../lib/config';
import { freePort } from '../../local/freePort';
import { LocalRuntime, RELAY_STORE_FILE } from '../../local/runtime';
import { CliProcess, runCli } from '../integration/agent/cliProcess';
import { echoServer, echoThrough, freePortRange } from './localModeSupport';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const DEVICE = 'restart-e2e';

describe('local mode keeps its state across a restart (npm start on the same state folder)', () => {
  let stateDir = '';
  let network: LocalNetwork;
  let rt: LocalRuntime | undefined;
  let echo: { port: number; close: () => Promise<void> };
  const procs: CliProcess[] = [];
  let env: Record<string, string>;
  let enrollmentFile = '';

  const startRuntime = async (prefill: number): Promise<LocalRuntime> => {
    const runtime = new LocalRuntime({
      stateDir,
      persistent: true,
      network,
      disableTimers: true,
      prefillNamespaces: prefill,
      logSink: () => {},
      relayOptions: { createDelayMs: 0 },
    });
    await runtime.start();
    await fs.writeFile(path.join(stateDir, 'local.json'), JSON.stringify(runtime.localState()), { mode: 0o600 });
    return runtime;
  };
  const agent = (): CliProcess => {
    const p = new CliProcess(
      ['--json', 'agent', '--enrollment', enrollmentFile, '--allow', String(echo.port), '--poll-ms', '200'],
      { env },
    );
    procs.push(p);
    return p;
  };
  const session = async (): Promise<void> => {
    const c = new CliProcess(['--json', 'connect', DEVICE, '--port', String(echo.port), '--status-poll-ms', '500'], {
      env,
    });
    procs.push(c);
    const ready = await c.waitForEvent('session.ready', () => true, 30_000);
    const payload = randomBytes(256 * 1024 + 3);
    const back = await echoThrough((ready.listen as { port: number }).port, payload);
    assert.equal(sha(back), sha(payload));
    assert.equal(await c.stop('SIGINT'), 0);
  };

  before(async () => {
    stateDir = await fs.mkdtemp(path.join(os.tmpdir(), 'rb-restart-e2e-'));
    const relayFirst = await freePortRange(8);
    network = {
      apiPort: await freePort(),
      queuePort: await freePort(),
      relayPorts: { first: relayFirst, last: relayFirst + 7 },
      bind: '127.0.0.1',
      publicHost: '127.0.0.1',
    };
    env = { RELAY_BROKER_STATE_DIR: stateDir };
    echo = await echoServer();
    enrollmentFile = path.join(stateDir, 'device.json');
  });

  after(async () => {
    await Promise.all(procs.map((p) => p.stop('SIGTERM')));
    await rt?.close();
    await echo?.close();
    await fs.rm(stateDir, { recursive: true, force: true });
  });

  it('the same enrollment serves a session after the whole stack restarts; the agent says where it was pointed while it is down', async () => {
    rt = await startRuntime(2);
    const tokenBefore = await rt.token('admin', 'restart-admin');
    const add = await runCli(['devices', 'add', DEVICE, '--out', enrollmentFile], { env });
    assert.equal(add.code, 0, add.stderr);
    const first = agent();
    await first.waitForEvent('agent.started');
    await session();
    assert.equal(await first.stop('SIGTERM'), 0);
    const storeBefore = JSON.parse(await fs.readFile(path.join(stateDir, RELAY_STORE_FILE), 'utf8')) as {
      namespaces: unknown[];
    };
    assert.equal(storeBefore.namespaces.length, 2, "the emulator's namespaces are on disk");
    const caBefore = await fs.readFile(rt.relayCaFile, 'utf8');
    await rt.close();
    rt = undefined;

    // Down: the agent names the queue and the API its enrollment points at, and what to check.
    const lonely = new CliProcess(['agent', '--enrollment', enrollmentFile, '--allow', String(echo.port)], { env });
    procs.push(lonely);
    const line = await lonely.waitForLine((l) => l.includes('cannot poll the queue'), 'poll failure', 30_000);
    assert.match(line, /ECONNREFUSED/);
    assert.ok(
      line.includes(`the queue http://127.0.0.1:${network.queuePort} and the API http://127.0.0.1:${network.apiPort}`),
      line,
    );
    assert.match(line, /is the broker running there/);
    assert.doesNotMatch(line, /sig=/, 'never the SAS');
    assert.equal(await lonely.stop('SIGTERM'), 0);

    rt = await startRuntime(0);
    assert.equal(await fs.readFile(rt.relayCaFile, 'utf8'), caBefore, "the emulator's CA survives the restart");
    const devices = await fetch(`${rt.apiUrl}/devices/${DEVICE}`, {
      headers: { authorization: `Bearer ${tokenBefore}` },
    });
    assert.equal(devices.status, 200, 'the device, and a token minted before the restart, are still good');
    const again = agent();
    await again.waitForEvent('agent.started');
    await session();
    assert.equal(await again.stop('SIGTERM'), 0);
  });
});
