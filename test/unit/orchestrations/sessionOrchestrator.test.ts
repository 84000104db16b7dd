// The session orchestrator as a pure function of its history: synthetic histories go through the
// real durable-functions replay code and each outcome's actions and custom status are asserted.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as df from 'durable-functions';
import type { OrchestrationContext } from 'durable-functions';
import { sessionOrchestrator } from '../../../functions/sessionOrchestrator';
import {
  ActionType,
  buildTriggerPayload,
  EventType,
  parseOrchestratorState,
  parseOutOfProcError,
  type HistoryEvent,
  type OrchestratorResult,
} from '../../../local/durable/protocol';

type Handler = (trigger: unknown, context: unknown) => Promise<unknown>;
// The SDK's own test helper is not exported: required by path (as the durable replay tests do).
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { createOrchestrator } = require('durable-functions/lib/src/util/testingUtils') as {
  createOrchestrator: (fn: (ctx: OrchestrationContext) => Generator<unknown, unknown, unknown>) => Handler;
};
const handler = createOrchestrator(
  sessionOrchestrator as (ctx: OrchestrationContext) => Generator<unknown, unknown, unknown>,
);

const T0 = Date.parse('2026-11-25T10:00:00Z');
const input = {
  sessionId: '6f1c2d1e-8a55-4a55-9d55-0a0b0c0d0e0f',
  deviceId: 'plc-1',
  port: 22,
  openerId: 'alice',
  createdAt: new Date(T0).toISOString(),
  expiresAt: new Date(T0 + 3600_000).toISOString(),
  readyTimeoutMs: 7000,
};
const opened = {
  ok: true,
  namespace: 'rbk-ns-1',
  endpoint: 'https://rbk-ns-1.servicebus.windows.net/',
  hybridConnection: 'tunnel',
  generation: 3,
  sealedSendToken: 'v1.aaa.bbb',
  expiresAt: input.expiresAt,
};

/** A history built one episode at a time, each starting with OrchestratorStarted. */
class History {
  events: HistoryEvent[] = [];
  private clock = T0;
  private ev(type: number, extra: Partial<HistoryEvent> = {}): HistoryEvent {
    return { EventType: type, EventId: -1, IsPlayed: false, Timestamp: new Date(this.clock).toISOString(), ...extra };
  }
  episode(atMs: number, ...events: Array<Partial<HistoryEvent> & { EventType: number }>): this {
    this.clock = T0 + atMs;
    this.events.push(this.ev(EventType.OrchestratorStarted), ...events.map((e) => this.ev(e.EventType, e)));
    return this;
  }
  start(withInput: object = input): this {
    return this.episode(0, {
      EventType: EventType.ExecutionStarted,
      Name: 'sessionOrchestrator',
      Input: JSON.stringify(withInput),
    });
  }
  completed(at: number, id: number, result: unknown): this {
    return this.episode(at, {
      EventType: EventType.TaskCompleted,
      TaskScheduledId: id,
      Result: JSON.stringify(result),
    });
  }
  failed(at: number, id: number, reason: string): this {
    return this.episode(at, { EventType: EventType.TaskFailed, TaskScheduledId: id, Reason: reason, Details: 'stack' });
  }
  timer(at: number, id: number): this {
    return this.episode(at, { EventType: EventType.TimerFired, TimerId: id, FireAt: new Date(T0 + at).toISOString() });
  }
  raised(at: number, name: string, payload: unknown): this {
    return this.episode(at, { EventType: EventType.EventRaised, Name: name, Input: JSON.stringify(payload) });
  }
}

async function replay(h: History, withInput: object = input): Promise<OrchestratorResult> {
  const payload = buildTriggerPayload({
    history: h.events,
    input: withInput,
    instanceId: input.sessionId,
    isReplaying: false,
  });
  const ctx = new df.DummyOrchestrationContext('sessionOrchestrator', 'inv', () => undefined);
  try {
    return parseOrchestratorState(JSON.parse(JSON.stringify(await handler(JSON.parse(JSON.stringify(payload)), ctx))));
  } catch (err) {
    const r = parseOutOfProcError((err as Error).message);
    if (!r) throw err;
    return r;
  }
}

const inputOf = (a: { input?: unknown }) =>
  (typeof a.input === 'string' ? (JSON.parse(a.input) as unknown) : a.input) as Record<string, unknown>;
const names = (r: OrchestratorResult) =>
  r.actions.map((a) =>
    a.actionType === ActionType.WaitForExternalEvent
      ? `wait:${a.externalEventName}`
      : a.actionType === ActionType.CreateTimer
        ? 'timer'
        : String(a.functionName),
  );

// Task ids in order: 0 openSession, 1 ready timer, 2 markSessionReady, 3 lifetime timer, then the end.
describe('sessionOrchestrator (synthetic histories)', () => {
  it('starts by opening the session, status pending', async () => {
    const r = await replay(new History().start());
    assert.deepEqual(names(r), ['openSession']);
    assert.deepEqual(r.customStatus, { status: 'pending' });
  });

  it('opened by the request (input.opened): waits for the device in its first episode, no openSession', async () => {
    const { ok: _ok, ...leased } = opened;
    const withOpened = { ...input, opened: leased };
    const r = await replay(new History().start(withOpened), withOpened);
    assert.deepEqual(names(r), ['wait:DeviceReady', 'wait:EndSession', 'timer']);
    assert.deepEqual(r.customStatus, { status: 'pending', namespace: 'rbk-ns-1' });
    // Ready: the credentials come from the input; the audit record is written next (task id 1).
    const h = new History().start(withOpened).raised(900, 'DeviceReady', { status: 'ready' });
    const r2 = await replay(h, withOpened);
    assert.equal((r2.customStatus as { relay: { sealedSendToken: string } }).relay.sealedSendToken, 'v1.aaa.bbb');
    assert.equal(names(r2).at(-1), 'markSessionReady');
  });

  it('waits for ready, the end or the ready timeout once open', async () => {
    const r = await replay(new History().start().completed(100, 0, opened));
    assert.deepEqual(names(r).slice(1), ['wait:DeviceReady', 'wait:EndSession', 'timer']);
    const timer = r.actions.find((a) => a.actionType === ActionType.CreateTimer)!;
    assert.equal(
      timer.fireAt,
      new Date(T0 + 100 + 7000).toISOString(),
      'the ready timer counts from the orchestration clock',
    );
    assert.deepEqual(r.customStatus, { status: 'pending', namespace: 'rbk-ns-1' });
  });

  it('ready wins: status ready with the sealed credentials, then the audit record, then waits for the end or the lifetime', async () => {
    const h = new History().start().completed(100, 0, opened).raised(900, 'DeviceReady', { status: 'ready' });
    const r = await replay(h);
    assert.equal((r.customStatus as { status: string }).status, 'ready');
    assert.deepEqual((r.customStatus as { relay: unknown }).relay, {
      namespace: 'rbk-ns-1',
      endpoint: opened.endpoint,
      hybridConnection: 'tunnel',
      sealedSendToken: 'v1.aaa.bbb',
      expiresAt: input.expiresAt,
    });
    assert.equal(names(r).at(-1), 'markSessionReady');
    const r2 = await replay(h.completed(950, 2, null));
    assert.deepEqual(names(r2).slice(-2), ['wait:EndSession', 'timer']);
    assert.equal(r2.actions.at(-1)!.fireAt, input.expiresAt, 'the lifetime timer fires at expiresAt');
  });

  it('an end request after ready recycles, tells the device, records the end, and completes ended/requested', async () => {
    const h = new History()
      .start()
      .completed(100, 0, opened)
      .raised(900, 'DeviceReady', { status: 'ready' })
      .completed(950, 2, null)
      .raised(60_000, 'EndSession', { reason: 'requested', by: 'alice' });
    let r = await replay(h);
    assert.deepEqual(r.customStatus, { status: 'ending', reason: 'requested' });
    const recycle = r.actions.at(-1)!;
    assert.equal(recycle.functionName, 'endSessionRelay');
    // The first try without the engine's retries: a failure turns to the kill switch at once.
    assert.equal(recycle.actionType, ActionType.CallActivity);
    assert.deepEqual(inputOf(recycle), { sessionId: input.sessionId, namespace: 'rbk-ns-1', generation: 3 });
    r = await replay(h.completed(61_000, 4, 'deleted'));
    assert.equal(names(r).at(-1), 'closeOnDevice');
    assert.deepEqual(r.customStatus, { status: 'ending', reason: 'requested' }, 'ended only once recorded');
    r = await replay(h.completed(61_100, 5, null));
    assert.equal(names(r).at(-1), 'recordSessionEnd');
    assert.deepEqual(inputOf(r.actions.at(-1)!).reason, 'requested');
    r = await replay(h.completed(61_200, 6, null));
    assert.deepEqual(r.customStatus, { status: 'ended', reason: 'requested' });
    assert.equal(names(r).at(-1), 'prepareNextGeneration', 'the next generation is prepared after the end');
    assert.deepEqual(inputOf(r.actions.at(-1)!), { sessionId: input.sessionId, namespace: 'rbk-ns-1', generation: 3 });
    r = await replay(h.completed(62_000, 7, 'recycled'));
    assert.equal(r.isDone, true);
    assert.deepEqual(r.output, { status: 'ended', reason: 'requested' });
    assert.deepEqual(r.customStatus, { status: 'ended', reason: 'requested' });
  });

  it('the lifetime timer ends a ready session with reason lifetime', async () => {
    const h = new History()
      .start()
      .completed(100, 0, opened)
      .raised(900, 'DeviceReady', {})
      .completed(950, 2, null)
      .timer(3_600_000, 3);
    const r = await replay(h);
    assert.deepEqual(r.customStatus, { status: 'ending', reason: 'lifetime' });
    assert.equal(names(r).at(-1), 'endSessionRelay');
  });

  it('the ready timeout fails the session with device_not_ready and still recycles', async () => {
    const r = await replay(new History().start().completed(100, 0, opened).timer(7100, 1));
    assert.deepEqual(r.customStatus, { status: 'ending', reason: 'device_not_ready' });
    assert.equal(names(r).at(-1), 'endSessionRelay');
  });

  it('a device that refuses fails the session with device_refused', async () => {
    const r = await replay(
      new History()
        .start()
        .completed(100, 0, opened)
        .raised(900, 'DeviceReady', { status: 'refused', detail: 'port 22 not allowed' }),
    );
    assert.deepEqual(r.customStatus, { status: 'ending', reason: 'device_refused' });
  });

  it('an end while pending ends the session without ever showing credentials', async () => {
    const r = await replay(
      new History().start().completed(100, 0, opened).raised(500, 'EndSession', { reason: 'device_deleted' }),
    );
    assert.deepEqual(r.customStatus, { status: 'ending', reason: 'device_deleted' });
  });

  it('an end that arrives while the ready record is written is not lost', async () => {
    const h = new History()
      .start()
      .completed(100, 0, opened)
      .raised(900, 'DeviceReady', {})
      .raised(920, 'EndSession', { reason: 'requested' })
      .completed(950, 2, null);
    const r = await replay(h);
    assert.deepEqual(r.customStatus, { status: 'ending', reason: 'requested' });
    assert.equal(names(r).at(-1), 'endSessionRelay');
  });

  it('an empty pool fails at once with pool_exhausted and Retry-After, recording the end', async () => {
    const r = await replay(
      new History().start().completed(50, 0, { ok: false, reason: 'pool_exhausted', retryAfterSeconds: 30 }),
    );
    assert.deepEqual(r.customStatus, { status: 'failed', reason: 'pool_exhausted', retryAfterSeconds: 30 });
    assert.equal(names(r).at(-1), 'recordSessionEnd');
    const done = await replay(
      new History()
        .start()
        .completed(50, 0, { ok: false, reason: 'pool_exhausted', retryAfterSeconds: 30 })
        .completed(60, 1, null),
    );
    assert.equal(done.isDone, true);
  });

  it('a failed open still recycles whatever the session holds (no namespace is left leased)', async () => {
    const r = await replay(new History().start().failed(100, 0, 'queue unavailable'));
    assert.deepEqual(r.customStatus, { status: 'ending', reason: 'error' });
    const recycle = r.actions.at(-1)!;
    assert.equal(recycle.functionName, 'endSessionRelay');
    assert.deepEqual(inputOf(recycle), { sessionId: input.sessionId });
  });
});

describe('sessionOrchestrator: ended means the hybrid connection is deleted', () => {
  const ending = () =>
    new History()
      .start()
      .completed(100, 0, opened)
      .raised(900, 'DeviceReady', {})
      .completed(950, 2, null)
      .raised(60_000, 'EndSession', { reason: 'requested' });

  /** An activity with the recycle retry (4 attempts) failing every time: task ids `id`, `id + 2`, …, each followed by its retry timer. */
  const failRetried = (h: History, at: number, id: number): History => {
    for (let attempt = 0; attempt < 4; attempt++) {
      h.failed(at + attempt * 20_000, id + attempt * 2, 'RelayArmUnavailableError: throttled');
      h.timer(at + attempt * 20_000 + 10_000, id + attempt * 2 + 1);
    }
    return h;
  };

  it('a first delete that fails regenerates the keys at once, then retries, stays ending and asks again after a timer', async () => {
    // The first try has no engine retry: its failure goes straight to the kill switch.
    const h = ending().failed(61_000, 4, 'RelayArmUnavailableError: throttled');
    let r = await replay(h);
    assert.equal(names(r).at(-1), 'killSessionRelayKeys');
    assert.deepEqual(r.customStatus, { status: 'ending', reason: 'requested' });
    // Keys regenerated: the delete again, now with the retries, and no timer before it.
    r = await replay(h.completed(62_000, 5, true));
    assert.equal(names(r).at(-1), 'endSessionRelay');
    assert.deepEqual(r.customStatus, { status: 'ending', reason: 'requested' });
    // Past its retries: a timer, still ending, and the keys are not regenerated again.
    r = await replay(failRetried(h, 63_000, 6));
    assert.equal(names(r).at(-1), 'timer');
    assert.equal(r.actions.at(-1)!.fireAt, new Date(T0 + 133_000 + 15_000).toISOString());
    assert.deepEqual(r.customStatus, { status: 'ending', reason: 'requested' });
    r = await replay(h.timer(148_000, 14));
    assert.equal(names(r).at(-1), 'endSessionRelay', 'the delete is tried again');
    r = await replay(failRetried(h, 150_000, 15));
    assert.equal(names(r).at(-1), 'timer');
    assert.deepEqual(r.customStatus, { status: 'ending', reason: 'requested' });
    r = await replay(h.timer(245_000, 23).completed(246_000, 24, 'deleted'));
    assert.equal(names(r).at(-1), 'closeOnDevice');
    r = await replay(h.completed(246_100, 25, null));
    assert.equal(names(r).at(-1), 'recordSessionEnd');
    r = await replay(h.completed(246_200, 26, null));
    assert.deepEqual(r.customStatus, { status: 'ended', reason: 'requested' });
  });

  it('a namespace whose recycle maintenance holds is not ended until its delete is seen', async () => {
    const r = await replay(ending().completed(61_000, 4, 'claimed'));
    assert.equal(names(r).at(-1), 'timer');
    assert.deepEqual(r.customStatus, { status: 'ending', reason: 'requested' });
  });
});

describe('sessionOrchestrator: events that arrive early', () => {
  it('a ready event that arrives before the open activity completes is not lost', async () => {
    const h = new History().start().raised(50, 'DeviceReady', { status: 'ready' }).completed(100, 0, opened);
    const r = await replay(h);
    assert.equal((r.customStatus as { status: string }).status, 'ready');
  });
});
