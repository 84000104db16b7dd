// Golden histories through the REAL durable-functions orchestrator handler: pins the SDK's task
// id rules (research 2.4/2.5) and checks that the engine's allocation (decideEpisode) matches the
// SDK's own openTasks after every episode, one new event per episode.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as df from 'durable-functions';
import type { OrchestrationContext } from 'durable-functions';
import {
  ActionType,
  buildTriggerPayload,
  EventType,
  type HistoryEvent,
  parseOrchestratorState,
  parseOutOfProcError,
} from '../../../local/durable/protocol';
import {
  crossCheckOpenTasks,
  decideEpisode,
  type ExecState,
  newExecState,
  retryDelayMs,
} from '../../../local/durable/replay';

type Handler = (trigger: unknown, context: unknown) => Promise<unknown>;
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { createOrchestrator } = require('durable-functions/lib/src/util/testingUtils') as {
  createOrchestrator: (fn: (ctx: OrchestrationContext) => Generator<unknown, unknown, unknown>) => Handler;
};

const T0 = Date.parse('2026-01-01T00:00:00Z');

interface EpisodeResult {
  newActions: string[];
  open: Map<number, string>;
  outcome: string;
  allocated: number[];
}

/** Drives an orchestrator the way the engine does: one new event per episode. */
class Driver {
  history: HistoryEvent[] = [];
  exec: ExecState = newExecState('exec-1');
  private readonly handler: Handler;
  private clock = T0;
  constructor(
    fn: (ctx: OrchestrationContext) => Generator<unknown, unknown, unknown>,
    private readonly input: unknown = null,
  ) {
    this.handler = createOrchestrator(fn);
  }

  async episode(newEvent: HistoryEvent): Promise<EpisodeResult> {
    this.clock += 1000;
    const ts = new Date(this.clock).toISOString();
    const started: HistoryEvent = {
      EventType: EventType.OrchestratorStarted,
      EventId: -1,
      IsPlayed: false,
      Timestamp: ts,
    };
    const payload = buildTriggerPayload({
      history: [...this.history, started, newEvent],
      input: this.input,
      instanceId: 'inst',
      isReplaying: this.history.length > 0,
    });
    const context = new df.DummyOrchestrationContext('orch', 'inv', () => undefined);
    let raw: unknown;
    let result;
    try {
      raw = await this.handler(JSON.parse(JSON.stringify(payload)), context);
      result = parseOrchestratorState(JSON.parse(JSON.stringify(raw)));
    } catch (err) {
      result = parseOutOfProcError((err as Error).message);
      assert.ok(result, `orchestrator threw without state: ${(err as Error).message}`);
    }
    const before = this.exec.nextId;
    const decision = decideEpisode({
      exec: this.exec,
      instanceId: 'inst',
      newEvent,
      result,
      nowMs: this.clock,
      timestamp: ts,
    });
    const sdk = (
      context as unknown as { df: { taskOrchestratorExecutor: { openTasks: Record<string, { actionObj: unknown }> } } }
    ).df.taskOrchestratorExecutor.openTasks;
    const open = new Map<number, string>();
    for (const [k, t] of Object.entries(sdk))
      open.set(
        Number(k),
        typeof t.actionObj === 'string' ? t.actionObj : String((t.actionObj as { actionType: number }).actionType),
      );
    if (decision.outcome.kind === 'running')
      assert.equal(crossCheckOpenTasks(decision.exec, open), undefined, 'engine and SDK agree on open task ids');
    const newActions = result.actions
      .slice(this.exec.sigs.length)
      .map((a) => `${a.actionType}:${a.functionName ?? a.externalEventName ?? ''}`);
    this.history.push(started, newEvent, ...decision.appended);
    this.exec = decision.exec;
    const allocated = Array.from({ length: decision.exec.nextId - before }, (_, i) => before + i);
    return { newActions, open, outcome: decision.outcome.kind, allocated };
  }

  start(): Promise<EpisodeResult> {
    return this.episode({
      EventType: EventType.ExecutionStarted,
      EventId: -1,
      IsPlayed: false,
      Timestamp: new Date(T0).toISOString(),
      Name: 'orch',
    });
  }
  completed(id: number, value: unknown): Promise<EpisodeResult> {
    return this.episode({
      EventType: EventType.TaskCompleted,
      EventId: -1,
      IsPlayed: false,
      Timestamp: new Date(this.clock).toISOString(),
      TaskScheduledId: id,
      Result: JSON.stringify(value),
    });
  }
  failed(id: number, reason: string): Promise<EpisodeResult> {
    return this.episode({
      EventType: EventType.TaskFailed,
      EventId: -1,
      IsPlayed: false,
      Timestamp: new Date(this.clock).toISOString(),
      TaskScheduledId: id,
      Reason: reason,
      Details: 'details',
    });
  }
  timerFired(id: number): Promise<EpisodeResult> {
    return this.episode({
      EventType: EventType.TimerFired,
      EventId: -1,
      IsPlayed: false,
      Timestamp: new Date(this.clock).toISOString(),
      TimerId: id,
      FireAt: new Date(this.clock).toISOString(),
    });
  }
  raised(name: string, value: unknown): Promise<EpisodeResult> {
    return this.episode({
      EventType: EventType.EventRaised,
      EventId: -1,
      IsPlayed: false,
      Timestamp: new Date(this.clock).toISOString(),
      Name: name,
      Input: JSON.stringify(value),
    });
  }
}

const ids = (m: Map<number, string>): number[] => [...m.keys()].sort((a, b) => a - b);

describe('golden histories through the real orchestrator (task id rules)', () => {
  it('numbers a sequence of activities 0, 1, 2 and resolves them by TaskScheduledId', async () => {
    const d = new Driver(function* (ctx) {
      const a: unknown = yield ctx.df.callActivity('A', 'x');
      const b: unknown = yield ctx.df.callActivity('B', a);
      return [a, b];
    });
    const e1 = await d.start();
    assert.deepEqual(e1.newActions, [`${ActionType.CallActivity}:A`]);
    assert.deepEqual(ids(e1.open), [0]);
    const e2 = await d.completed(0, 'ra');
    assert.deepEqual(e2.newActions, [`${ActionType.CallActivity}:B`]);
    assert.deepEqual(ids(e2.open), [1]);
    const e3 = await d.completed(1, 'rb');
    assert.equal(e3.outcome, 'completed');
    assert.equal(d.history.filter((e) => e.EventType === EventType.TaskScheduled).length, 2);
  });

  it('numbers Task.all children in order and gives an external event no id', async () => {
    const d = new Driver(function* (ctx) {
      const ev = ctx.df.waitForExternalEvent('go');
      const results: unknown = yield ctx.df.Task.all([
        ctx.df.callActivity('A'),
        ev,
        ctx.df.createTimer(new Date(T0 + 60_000)),
        ctx.df.callActivity('B'),
      ]);
      return results;
    });
    const e1 = await d.start();
    assert.deepEqual(ids(e1.open), [0, 1, 2]);
    assert.equal(e1.open.get(1), String(ActionType.CreateTimer));
    await d.completed(2, 'b');
    await d.timerFired(1);
    await d.raised('go', { ok: true });
    const last = await d.completed(0, 'a');
    assert.equal(last.outcome, 'completed');
  });

  it('allocates the retry timer before new actions, then the rescheduled attempt (RetryableTask)', async () => {
    const d = new Driver(function* (ctx) {
      const retried = ctx.df.callActivityWithRetry('F', new df.RetryOptions(1000, 3));
      const other = ctx.df.callActivity('G');
      yield ctx.df.Task.any([retried, other]);
      const b: unknown = yield ctx.df.callActivity('B');
      const r: unknown = yield retried;
      return [b, r];
    });
    const e1 = await d.start();
    assert.deepEqual(ids(e1.open), [0, 1]);
    const e2 = await d.failed(0, 'boom'); // the SDK opens the retry timer: id 2
    assert.deepEqual(e2.allocated, [2]);
    assert.equal(e2.open.get(2), 'noOp');
    const e3 = await d.completed(1, 'g'); // Task.any resolves; B gets 3 (not 2)
    assert.deepEqual(e3.allocated, [3]);
    assert.deepEqual(e3.newActions, [`${ActionType.CallActivity}:B`]);
    const e4 = await d.timerFired(2); // attempts left: the rescheduled attempt gets 4
    assert.deepEqual(e4.allocated, [4]);
    const e5 = await d.completed(3, 'b');
    assert.deepEqual(e5.allocated, []);
    const e6 = await d.completed(4, 'f-ok');
    assert.equal(e6.outcome, 'completed');
  });

  it('opens a timer even after the last failed attempt, then fails the task', async () => {
    const d = new Driver(function* (ctx) {
      try {
        yield ctx.df.callActivityWithRetry('F', new df.RetryOptions(10, 2));
        return 'ok';
      } catch (err) {
        return `caught: ${(err as Error).message.split(' \n ')[0]}`;
      }
    });
    await d.start(); // F = 0
    assert.deepEqual((await d.failed(0, 'first')).allocated, [1]); // timer 1
    assert.deepEqual((await d.timerFired(1)).allocated, [2]); // attempt 2 = id 2
    const e4 = await d.failed(2, 'second');
    assert.deepEqual(e4.allocated, [3]); // a timer even though attempts are exhausted
    const e5 = await d.timerFired(3);
    assert.equal(e5.outcome, 'completed');
    assert.deepEqual(e5.allocated, []);
  });

  it('delivers an event raised before the wait (the SDK defers it) without taking an id', async () => {
    const d = new Driver(function* (ctx) {
      const a: unknown = yield ctx.df.callActivity('A');
      const ev: unknown = yield ctx.df.waitForExternalEvent('ping');
      const b: unknown = yield ctx.df.callActivity('B');
      return [a, ev, b];
    });
    await d.start();
    const early = await d.raised('ping', 7);
    assert.deepEqual(early.allocated, []);
    const e3 = await d.completed(0, 'a'); // the wait resolves at once from the deferred event
    assert.deepEqual(e3.newActions, [`${ActionType.WaitForExternalEvent}:ping`, `${ActionType.CallActivity}:B`]);
    assert.deepEqual(e3.allocated, [1]);
  });

  it('numbers sub-orchestrations like activities and continue-as-new takes no id', async () => {
    const d = new Driver(function* (ctx) {
      const c: unknown = yield ctx.df.callSubOrchestrator('Child', { x: 1 });
      ctx.df.continueAsNew({ again: c });
      return undefined;
    });
    const e1 = await d.start();
    assert.deepEqual(e1.newActions, [`${ActionType.CallSubOrchestrator}:Child`]);
    assert.deepEqual(ids(e1.open), [0]);
    const created = d.history.find((e) => e.EventType === EventType.SubOrchestrationInstanceCreated);
    assert.equal(created?.Input, '{"x":1}', 'sub-orchestration inputs are not pre-encoded by the SDK');
    const e2 = await d.episode({
      EventType: EventType.SubOrchestrationInstanceCompleted,
      EventId: -1,
      IsPlayed: false,
      Timestamp: new Date(T0).toISOString(),
      TaskScheduledId: 0,
      Result: '"done"',
    });
    assert.equal(e2.outcome, 'continuedAsNew');
  });

  it('detects non-determinism when replayed code yields a different action', async () => {
    let variant = 'A';
    const d = new Driver(function* (ctx) {
      yield ctx.df.callActivity(variant);
      yield ctx.df.callActivity('next');
      return 'done';
    });
    await d.start();
    variant = 'Z';
    const e2 = await d.completed(0, 'a');
    assert.equal(e2.outcome, 'failed');
  });

  it('pre-encodes string activity inputs exactly once', async () => {
    const d = new Driver(function* (ctx) {
      yield ctx.df.callActivity('A', 'Tokyo');
      return 'ok';
    });
    await d.start();
    const scheduled = d.history.find((e) => e.EventType === EventType.TaskScheduled);
    assert.equal(scheduled?.Input, '"Tokyo"');
  });
});

describe('retry delay arithmetic', () => {
  it('multiplies by the backoff coefficient and caps at the max interval', () => {
    const o = {
      firstRetryIntervalInMilliseconds: 100,
      maxNumberOfAttempts: 5,
      backoffCoefficient: 2,
      maxRetryIntervalInMilliseconds: 300,
    };
    assert.deepEqual(
      [1, 2, 3, 4].map((n) => retryDelayMs(o, n)),
      [100, 200, 300, 300],
    );
  });
});
