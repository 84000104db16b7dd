// Crash recovery: the host runs as a child process (local/hostProcess.js), is SIGKILLed while 50
// orchestrations wait on timers and events, and is started again on the same Azurite.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { type Azurite, startAzurite } from '../../../local/azurite';
import { fixtureDir, prepareFixture } from '../../fixtures/durableApp/harness';

const HOST_SCRIPT = path.resolve(__dirname, '..', '..', '..', 'local', 'hostProcess.js');
const HUB = 'RestartHub';
const N = 50;

interface Child {
  proc: ChildProcess;
  port: number;
}

async function startChild(connectionString: string): Promise<Child> {
  // The child sets WEBSITE_HOSTNAME to its own address; never inherit one.
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    AzureWebJobsStorage: connectionString,
    APP_DIR: fixtureDir,
    PORT: '0',
    DURABLE_HUB_NAME: HUB,
  };
  delete env.WEBSITE_HOSTNAME;
  const proc = spawn(process.execPath, [HOST_SCRIPT], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  proc.stderr.on('data', (c: Buffer) => {
    stderr = (stderr + c.toString()).slice(-4000);
  });
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`host did not get ready in 60 s:\n${stderr}`)), 60_000);
    let out = '';
    proc.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      const line = out.split('\n').find((l) => l.includes('"ready"'));
      if (line) {
        clearTimeout(timer);
        resolve((JSON.parse(line) as { port: number }).port);
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`host exited with ${code}:\n${stderr}`));
    });
  });
  proc.removeAllListeners('exit');
  return { proc, port };
}

async function stopChild(child: Child | undefined, signal: NodeJS.Signals): Promise<void> {
  if (!child || child.proc.exitCode !== null || child.proc.signalCode !== null) return;
  const exited = once(child.proc, 'exit');
  child.proc.kill(signal);
  await exited;
}

async function api(port: number, p: string, body?: unknown): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`http://127.0.0.1:${port}${p}`, {
    method: body === undefined && !p.includes('/raise/') && !p.startsWith('/api/start') ? 'GET' : 'POST',
    headers: body === undefined ? undefined : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as unknown) : undefined };
}

async function statuses(port: number, ids: string[]): Promise<Array<{ runtimeStatus: string; output: unknown }>> {
  return Promise.all(
    ids.map(async (id) => (await api(port, `/api/instances/${id}`)).body as { runtimeStatus: string; output: unknown }),
  );
}

describe('local durable engine survives a host crash', () => {
  let azurite: Azurite;
  let child: Child | undefined;

  before(async () => {
    prepareFixture();
    azurite = await startAzurite();
  });
  after(async () => {
    await stopChild(child, 'SIGKILL');
    await azurite?.close();
  });

  it('resumes 50 instances waiting on timers and events after SIGKILL and a restart', async () => {
    child = await startChild(azurite.connectionString);
    const ids: string[] = [];
    for (let i = 0; i < N; i++) {
      // Even instances wait for a timer that fires after the crash; odd ones for an event raised after it.
      const input = { i, timerMs: i % 2 === 0 ? 4000 : 120_000 };
      const r = await api(child.port, `/api/start/WaitTimerOrEvent/restart-${i}`, input);
      assert.equal(r.status, 202, JSON.stringify(r.body));
      ids.push((r.body as { id: string }).id);
    }
    // All waiting (their activity done, timer and event pending), then kill without warning.
    // Bounds, not timing assertions: generous for a loaded 2-core machine.
    const deadline = Date.now() + 60_000;
    for (;;) {
      const s = await statuses(child.port, ids);
      // On a very loaded machine a timer may beat the crash; that instance is then simply done.
      if (s.every((x, i) => x.runtimeStatus === 'Running' || (i % 2 === 0 && x.runtimeStatus === 'Completed'))) break;
      assert.ok(Date.now() < deadline, `instances reached Running: ${JSON.stringify(s.map((x) => x.runtimeStatus))}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    // Also in flight at the crash: fresh instances whose activities may be running right now.
    const busy: string[] = [];
    for (let i = 0; i < 10; i++) busy.push(((await api(child.port, '/api/start/FourSteps')).body as { id: string }).id);
    await stopChild(child, 'SIGKILL');

    child = await startChild(azurite.connectionString);
    for (let i = 1; i < N; i += 2) {
      const r = await api(child.port, `/api/instances/${ids[i]}/raise/go`, { i });
      assert.equal(r.status, 202);
    }
    const done = Date.now() + 60_000;
    let last: Array<{ runtimeStatus: string; output: unknown }> = [];
    while (Date.now() < done) {
      last = await statuses(child.port, ids);
      if (last.every((x) => x.runtimeStatus === 'Completed')) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    last.forEach((s, i) => {
      assert.equal(s.runtimeStatus, 'Completed', `instance ${i}: ${JSON.stringify(s)}`);
      const expected =
        i % 2 === 0
          ? { i, hello: `Hello n${i}!`, via: 'timer' }
          : { i, hello: `Hello n${i}!`, via: 'event', data: { i } };
      assert.deepEqual(s.output, expected);
    });
    // Activities whose completion was not recorded before the crash ran again (at least once).
    const busyDeadline = Date.now() + 60_000;
    let busyStatus = await statuses(child.port, busy);
    while (!busyStatus.every((x) => x.runtimeStatus === 'Completed') && Date.now() < busyDeadline) {
      await new Promise((r) => setTimeout(r, 100));
      busyStatus = await statuses(child.port, busy);
    }
    for (const s of busyStatus) assert.deepEqual(s, { ...s, runtimeStatus: 'Completed', output: [0, 2, 4, 6] });
    await stopChild(child, 'SIGTERM');
    assert.equal(child.proc.exitCode, 0, 'a clean exit on SIGTERM');
  });
});
