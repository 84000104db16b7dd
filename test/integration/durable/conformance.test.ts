// Conformance of the local durable engine: orchestrations written with the real durable-functions
// API, started and managed through the real DurableClient over HTTP, state in Azurite tables.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { type Azurite, startAzurite } from '../../../local/azurite';
import {
  isDone,
  type RunningHost,
  startHost,
  startOrchestration,
  type Status,
  waitFor,
} from '../../fixtures/durableApp/harness';

const HUB = 'ConformanceHub';

describe('local durable engine conformance (real durable-functions client and orchestrations)', () => {
  let azurite: Azurite;
  let h: RunningHost;

  before(async () => {
    azurite = await startAzurite();
    h = await startHost(azurite.connectionString, HUB, { crossCheck: true });
  });
  after(async () => {
    await h?.close();
    await azurite?.close();
  });

  /** Webhook calls carry the host's system key, as the real host requires. */
  const withKey = (init: RequestInit = {}): RequestInit => ({
    ...init,
    headers: { ...(init.headers as Record<string, string> | undefined), 'x-functions-key': h.host.systemKey },
  });

  /** The extension's status API with showHistory (the JS client drops `historyEvents`). */
  const rawHistory = async (id: string): Promise<Array<{ EventType: string }>> => {
    const r = await fetch(
      `${h.host.baseUrl}/runtime/webhooks/durabletask/instances/${id}?showHistory=true&showHistoryOutput=true`,
      withKey(),
    );
    return ((await r.json()) as { historyEvents?: Array<{ EventType: string }> }).historyEvents ?? [];
  };

  const run = async (name: string, input?: unknown, id?: string): Promise<Status> => {
    const instanceId = await startOrchestration(h, name, input, id);
    return waitFor(h, instanceId, isDone);
  };

  it('runs a sequence of activities with string, object, number and missing inputs', async () => {
    const s = await run('Sequence');
    assert.equal(s.runtimeStatus, 'Completed');
    assert.deepEqual(s.output, [
      'Hello Tokyo!',
      'Hello Seattle!',
      { echoed: { a: 1, s: 'x' }, type: 'object' },
      { echoed: 42, type: 'number' },
      { echoed: null, type: 'object' },
    ]);
  });

  it('fans out to 100 activities and fans in', async () => {
    const s = await run('FanOut', 100);
    assert.equal(s.runtimeStatus, 'Completed');
    assert.deepEqual(s.output, { count: 100, sum: 100 * 101 });
  });

  it('retries an activity until it succeeds, and the ids after the hidden retry tasks still match', async () => {
    const s = await run('Retry', { key: 'conf-ok', failures: 2, attempts: 5 });
    assert.deepEqual(s.output, { result: 'ok after 3', after: 'Hello after!' });
  });

  it('fails the task with the last error once the attempts are used up', async () => {
    const s = await run('Retry', { key: 'conf-exhausted', failures: 10, attempts: 3 });
    assert.deepEqual(s.output, { error: "Activity function 'Flaky' failed: flaky failure 3 " });
  });

  it('lets an external event win against a timer', async () => {
    const id = await startOrchestration(h, 'TimerOrEvent', { timeoutMs: 60_000 });
    await waitFor(h, id, (s) => s.runtimeStatus === 'Running');
    const r = await h.api(`/api/instances/${id}/raise/approve`, { body: { by: 'alice' } });
    assert.equal(r.status, 202);
    const s = await waitFor(h, id, isDone);
    assert.deepEqual(s.output, { outcome: 'event', data: { by: 'alice' } });
  });

  it('lets a timer win against an external event that never comes', async () => {
    const s = await run('TimerOrEvent', { timeoutMs: 200 });
    assert.deepEqual(s.output, { outcome: 'timeout' });
  });

  it('buffers an event that arrives before the orchestrator waits for it', async () => {
    const id = await startOrchestration(h, 'EarlyEvent');
    await h.api(`/api/instances/${id}/raise/ping`, { body: 'early bird' });
    const s = await waitFor(h, id, isDone);
    assert.deepEqual(s.output, { first: 'Hello early!', ev: 'early bird' });
  });

  it('runs sub-orchestrations (generated and explicit ids) and surfaces a child failure', async () => {
    const id = await startOrchestration(h, 'Parent');
    const s = await waitFor(h, id, isDone);
    const out = s.output as { a: { greeting: string; parent: string }; b: { greeting: string }; failure: string };
    assert.equal(s.runtimeStatus, 'Completed');
    assert.deepEqual(out.a, { greeting: 'Hello Kyoto!', parent: id });
    assert.equal(out.b.greeting, 'Hello Osaka!');
    assert.equal(out.failure, "Orchestrator function 'Child' failed: child refuses ");
    const explicit = await h.api(`/api/instances/${id}-child`);
    assert.equal((explicit.body as Status).runtimeStatus, 'Completed');
  });

  it('continues as new with a fresh history and the new input', async () => {
    const id = await startOrchestration(h, 'Counter', { n: 0, max: 3, seen: [] });
    const s = await waitFor(h, id, isDone);
    assert.deepEqual(s.output, { n: 3, seen: ['Hello step 0!', 'Hello step 1!', 'Hello step 2!', 'Hello step 3!'] });
    const history = await rawHistory(id);
    assert.equal(
      history.filter((e) => e.EventType === 'TaskScheduled').length,
      1,
      'only the last execution is in the history',
    );
  });

  it('shows custom status to the client while the orchestration runs', async () => {
    const id = await startOrchestration(h, 'Status');
    const waiting = await waitFor(h, id, (s) => s.runtimeStatus === 'Running' && s.customStatus !== null);
    assert.deepEqual(waiting.customStatus, { stage: 'waiting' });
    await h.api(`/api/instances/${id}/raise/go`, { body: 1 });
    const s = await waitFor(h, id, isDone);
    assert.deepEqual(s.customStatus, { stage: 'done' });
    assert.deepEqual(s.output, { data: 1 });
  });

  it('fails an orchestration that throws, keeping its custom status', async () => {
    const s = await run('Fails');
    assert.equal(s.runtimeStatus, 'Failed');
    assert.equal(s.output, "Orchestrator function 'Fails' failed: orchestrator gives up");
    assert.equal(s.customStatus, 'about to fail');
  });

  it('terminates a running instance; raising an event afterwards is accepted as gone', async () => {
    const id = await startOrchestration(h, 'WaitForever');
    await waitFor(h, id, (s) => s.runtimeStatus === 'Running');
    assert.equal((await h.api(`/api/instances/${id}/terminate?reason=enough`, { method: 'POST' })).status, 202);
    const s = await waitFor(h, id, isDone);
    assert.equal(s.runtimeStatus, 'Terminated');
    assert.equal(s.output, 'enough');
    const raw = await fetch(
      `${h.host.baseUrl}/runtime/webhooks/durabletask/instances/${id}/raiseEvent/never`,
      withKey({ method: 'POST', body: '1', headers: { 'content-type': 'application/json' } }),
    );
    assert.equal(raw.status, 410);
  });

  it('refuses a second start with the id of a running instance and replaces a finished one', async () => {
    const id = `dup-${Date.now()}`;
    await startOrchestration(h, 'WaitForever', undefined, id);
    const again = await h.api(`/api/start/WaitForever/${id}`, { method: 'POST' });
    assert.equal(again.status, 500, 'the real client rejects the extension error');
    await h.api(`/api/instances/${id}/terminate`, { method: 'POST' });
    await waitFor(h, id, isDone);
    await startOrchestration(h, 'Sequence', undefined, id);
    const s = await waitFor(h, id, isDone);
    assert.equal(s.runtimeStatus, 'Completed');
  });

  it('delivers 40 concurrent events to one instance, one episode at a time', async () => {
    const id = await startOrchestration(h, 'Collect', 40);
    await waitFor(h, id, (s) => s.runtimeStatus === 'Running');
    const codes = await Promise.all(
      Array.from({ length: 40 }, (_, i) => h.api(`/api/instances/${id}/raise/tick`, { body: i }).then((r) => r.status)),
    );
    assert.ok(codes.every((c) => c === 202));
    const s = await waitFor(h, id, isDone);
    assert.deepEqual(
      [...(s.output as number[])].sort((a, b) => a - b),
      Array.from({ length: 40 }, (_, i) => i),
    );
  });

  it('runs 30 instances concurrently to completion', async () => {
    const ids = await Promise.all(Array.from({ length: 30 }, () => startOrchestration(h, 'FourSteps')));
    const done = await Promise.all(ids.map((id) => waitFor(h, id, isDone)));
    assert.ok(done.every((s) => s.runtimeStatus === 'Completed' && JSON.stringify(s.output) === '[0,2,4,6]'));
  });

  it('lists instances by status through the client and pages with x-ms-continuation-token', async () => {
    const from = new Date(Date.now() - 1000).toISOString();
    const ids = await Promise.all(Array.from({ length: 5 }, () => startOrchestration(h, 'WaitForever')));
    for (const id of ids) await waitFor(h, id, (s) => s.runtimeStatus === 'Running');
    const list = await h.api('/api/list', { body: { from, statuses: ['Running'] } });
    const listed = (list.body as Array<{ instanceId: string; runtimeStatus: string }>).map((s) => s.instanceId);
    for (const id of ids) assert.ok(listed.includes(id), `${id} listed`);
    // One raw page of 2: the continuation header is how the real client pages.
    const page = await fetch(
      `${h.host.baseUrl}/runtime/webhooks/durabletask/instances/?runtimeStatus=Running&top=2`,
      withKey(),
    );
    assert.equal(((await page.json()) as unknown[]).length, 2);
    const token = page.headers.get('x-ms-continuation-token');
    assert.ok(token, 'a continuation token for the next page');
    const next = await fetch(
      `${h.host.baseUrl}/runtime/webhooks/durabletask/instances/?runtimeStatus=Running&top=2`,
      withKey({ headers: { 'x-ms-continuation-token': token } }),
    );
    assert.equal(next.status, 200);
    for (const id of ids) await h.api(`/api/instances/${id}/terminate`, { method: 'POST' });
  });

  it('purges a finished instance, refuses to purge a running one, and purges by filter', async () => {
    const done = await startOrchestration(h, 'Sequence');
    await waitFor(h, done, isDone);
    const purged = await h.api(`/api/instances/${done}/purge`, { method: 'POST' });
    assert.deepEqual(purged.body, { instancesDeleted: 1 });
    assert.equal((await h.api(`/api/instances/${done}`)).status, 404);
    const running = await startOrchestration(h, 'WaitForever');
    await waitFor(h, running, (s) => s.runtimeStatus === 'Running');
    assert.deepEqual((await h.api(`/api/instances/${running}/purge`, { method: 'POST' })).body, {
      instancesDeleted: 0,
    });
    const from = new Date(Date.now() - 60_000).toISOString();
    const byFilter = await h.api('/api/purge', { body: { from, statuses: ['Completed'] } });
    assert.ok((byFilter.body as { instancesDeleted: number }).instancesDeleted >= 1);
    const left = await h.api('/api/list', { body: { from, statuses: ['Completed'] } });
    assert.deepEqual(left.body, []);
    await h.api(`/api/instances/${running}/terminate`, { method: 'POST' });
  });

  it('answers the extension status codes: 404 unknown instance, 400 unknown orchestrator, 501 rewind and entities', async () => {
    const base = `${h.host.baseUrl}/runtime/webhooks/durabletask`;
    assert.equal((await fetch(`${base}/instances/nope`, withKey())).status, 404);
    assert.equal((await fetch(`${base}/orchestrators/NoSuchOrchestrator`, withKey({ method: 'POST' }))).status, 400);
    const failed = await startOrchestration(h, 'Fails');
    await waitFor(h, failed, isDone);
    assert.equal((await fetch(`${base}/instances/${failed}/rewind?reason=x`, withKey({ method: 'POST' }))).status, 501);
    assert.equal((await fetch(`${base}/entities/counter/one`, withKey())).status, 501);
    const running = await fetch(`${base}/instances/${failed}`, withKey());
    assert.equal(running.status, 200);
  });

  it('refuses keyless webhook calls (401) and takes the system key as header or code, as the binding URLs carry it', async () => {
    const base = `${h.host.baseUrl}/runtime/webhooks/durabletask`;
    const started = await h.api('/api/start/WaitForever', { method: 'POST' });
    const links = started.body as { id: string; statusQueryGetUri: string; terminatePostUri: string };
    assert.match(links.statusQueryGetUri, /[?&]code=/, 'the client binding data carries the key as the real one does');
    const id = links.id;
    await waitFor(h, id, (s) => s.runtimeStatus === 'Running');
    const keyless = [
      await fetch(`${base}/instances/${id}`),
      await fetch(`${base}/instances/`),
      await fetch(`${base}/instances/${id}/raiseEvent/x`, { method: 'POST', body: '1' }),
      await fetch(`${base}/instances/${id}/terminate`, { method: 'POST' }),
      await fetch(`${base}/orchestrators/Sequence`, { method: 'POST' }),
      await fetch(`${base}/instances/${id}?code=wrong`),
      await fetch(`${base}/instances/${id}`, { headers: { 'x-functions-key': 'wrong' } }),
    ];
    for (const r of keyless) {
      assert.equal(r.status, 401);
      assert.equal(r.headers.get('content-type'), 'application/problem+json');
      assert.equal(((await r.json()) as { code: string }).code, 'unauthenticated');
    }
    assert.equal((await fetch(links.statusQueryGetUri)).status, 202, 'the code= in the binding URL is accepted');
    assert.equal((await fetch(`${base}/instances/${id}`, withKey())).status, 202);
    assert.equal((await fetch(links.terminatePostUri.replace('{text}', 'done'), { method: 'POST' })).status, 202);
    const s = await waitFor(h, id, isDone);
    assert.equal(s.runtimeStatus, 'Terminated', 'only the keyed terminate took effect');
    assert.equal(s.output, 'done');
  });

  it('returns the history with showHistory', async () => {
    const id = await startOrchestration(h, 'Sequence');
    await waitFor(h, id, isDone);
    const events = (await rawHistory(id)).map((e) => e.EventType);
    assert.equal(events[0], 'OrchestratorStarted');
    assert.equal(events[1], 'ExecutionStarted');
    assert.equal(events.filter((e) => e === 'TaskCompleted').length, 5);
    assert.equal(events.at(-1), 'ExecutionCompleted');
  });

  it('never runs an activity again once its completion is recorded, across a host restart (replay rule)', async () => {
    const key = `replay-${Date.now()}`;
    const id = await startOrchestration(h, 'ReplayRule', key);
    await waitFor(h, id, (s) => s.runtimeStatus === 'Running');
    // Wait until the first activity's completion is in the history before restarting.
    for (let i = 0; i < 200; i++) {
      const hist = await rawHistory(id);
      if (hist.some((e) => e.EventType === 'TaskCompleted')) break;
      await new Promise((res) => setTimeout(res, 20));
    }
    await h.close();
    h = await startHost(azurite.connectionString, HUB, { crossCheck: true });
    const runsBefore = h.durable.engine!.activityRunsByName.get('Record') ?? 0;
    assert.equal((await h.api(`/api/instances/${id}/raise/continue`, { body: true })).status, 202);
    const s = await waitFor(h, id, isDone);
    assert.deepEqual(s.output, { first: `${key}-a#1`, second: `${key}-b#1` });
    assert.equal(
      (h.durable.engine!.activityRunsByName.get('Record') ?? 0) - runsBefore,
      1,
      'only the second activity ran after the restart',
    );
  });
});
