// The durable engine: per-instance serialized episodes that drive the REAL orchestrator handler
// through the local host, and the commit/recovery protocol on top of DurableStore. An episode is
// invoke → decide (replay.ts) → plan (replay.ts) → commit → apply; client operations live in
// clientOps.ts, the ready queue, worker pools and timer heap in scheduler.ts.
import type { ExtensionHostApi } from '../host/functionsHost';
import { Lifecycle } from '../lifecycle';
import { DurableClientOperations } from './clientOps';
import {
  type ActivityWork,
  Instance,
  type InstanceState,
  type Message,
  newExecutionId,
  nextOrd,
  historyKey,
  stateBlob,
  TERMINAL,
  type WorkItem,
} from './instance';
import {
  buildTriggerPayload,
  decodeReturnValue,
  errorMessage,
  errorStack,
  EventType,
  EventTypeName,
  type HistoryEvent,
  type OrchestratorResult,
  parseJsonOrUndefined,
  parseOrchestratorState,
  parseOutOfProcError,
} from './protocol';
import { indexRecord, InstanceRegistry } from './registry';
import {
  type CommitPlan,
  crossCheckOpenTasks,
  decideEpisode,
  planCommit,
  planFailure,
  planSuspendResume,
  planTerminate,
} from './replay';
import { BoundedPool, TimerHeap } from './scheduler';
import { WorkRunner } from './work';
import { ConflictError, DurableStore, isTransient } from './store';

export interface DurableEngineOptions {
  store: DurableStore;
  host: ExtensionHostApi;
  maxConcurrentOrchestratorFunctions: number;
  maxConcurrentActivityFunctions: number;
  /** Compare the engine's task ids with the SDK's openTasks after every episode. */
  crossCheck: boolean;
  /** Filled by the extension's postInvocation hook when crossCheck is on. */
  sdkOpenTasks?: Map<string, Map<number, string>>;
}

/** How an applied commit updates the index row: awaited, in the background when terminal, or not. */
type IndexWrite = 'await' | 'ifTerminal';

export class DurableEngine {
  private readonly lifecycle = new Lifecycle('the durable engine');
  private readonly registry: InstanceRegistry;
  private readonly episodes: BoundedPool<Instance>;
  private readonly activities: BoundedPool<{ instanceId: string; work: ActivityWork }>;
  private readonly timers = new TimerHeap<string>((id) => {
    const inst = this.registry.get(id);
    if (inst) this.markReady(inst);
  });
  private readonly inFlight = new Set<Promise<unknown>>();
  private readonly store: DurableStore;
  private readonly host: ExtensionHostApi;
  private readonly permanentFailures = new Map<string, number>();
  private readonly waiters = new Map<string, Array<(s: InstanceState) => void>>();
  private readonly work: WorkRunner;
  /** What a durable client can do: the HTTP API's operations. */
  readonly client: DurableClientOperations;
  /** Counters for tests and benchmarks. */
  readonly stats = { episodes: 0, activityRuns: 0, commits: 0, conflicts: 0 };
  /** Activity runs per `name`, for the replay-rule test. */
  readonly activityRunsByName = new Map<string, number>();

  constructor(private readonly options: DurableEngineOptions) {
    this.store = options.store;
    this.host = options.host;
    this.registry = new InstanceRegistry(options.store);
    const track = (p: Promise<unknown>) => void this.track(p);
    this.episodes = new BoundedPool(
      options.maxConcurrentOrchestratorFunctions,
      (inst) => this.runReady(inst),
      (inst, err) => this.log('error', `episode of ${inst.id} failed: ${errorStack(err)}`),
      track,
    );
    this.activities = new BoundedPool(
      options.maxConcurrentActivityFunctions,
      (item) => this.work.runActivity(item.instanceId, item.work),
      (item, err) =>
        this.log('error', `activity ${item.work.name} of ${item.instanceId} failed to record: ${errorStack(err)}`),
      track,
    );
    const lifecycle = this.lifecycle;
    const wake = (inst: Instance) => this.markReady(inst);
    this.client = new DurableClientOperations(this.registry, {
      get accepting() {
        return lifecycle.accepting;
      },
      knowsOrchestrator: (name) => this.knowsOrchestrator(name),
      writeIndex: (inst) => this.writeIndex(inst),
      wake,
    });
    this.work = new WorkRunner(this.registry, this.store, {
      host: this.host,
      client: this.client,
      get accepting() {
        return lifecycle.accepting;
      },
      get stopping() {
        return lifecycle.stopping;
      },
      stats: this.stats,
      activityRunsByName: this.activityRunsByName,
      wake,
      log: (level, message) => this.log(level, message),
    });
  }

  start(): Promise<void> {
    return this.lifecycle
      .start(
        async () => {
          await this.store.init();
          await this.recover();
        },
        () => this.shutdown(),
      )
      .then(() => {
        for (const inst of this.registry.values()) this.markReady(inst);
        this.episodes.start();
        this.activities.start();
        this.timers.start();
      });
  }

  close(): Promise<void> {
    return this.lifecycle.close(() => this.shutdown());
  }

  private async shutdown(): Promise<void> {
    this.timers.stop();
    this.episodes.stop();
    this.activities.stop();
    // Let running episodes and activities finish their commits so nothing is half-written.
    const deadline = Date.now() + 10_000;
    while (this.inFlight.size > 0 && Date.now() < deadline)
      await Promise.race([Promise.allSettled([...this.inFlight]), delay(100)]);
    await Promise.allSettled([...this.registry.values()].map((i) => i.indexChain));
    this.registry.clear();
  }

  private track<T>(p: Promise<T>): Promise<T> {
    this.inFlight.add(p);
    void p.finally(() => this.inFlight.delete(p)).catch(() => undefined);
    return p;
  }

  private log(level: 'information' | 'warning' | 'error', message: string): void {
    this.host.log(level, `[durable] ${message}`);
  }

  knowsOrchestrator(name: string): boolean {
    return this.host.functionsWithTrigger('orchestrationTrigger').some((f) => f.fn.name === name);
  }

  get runningInstances(): number {
    return this.registry.size;
  }

  // ---- recovery ------------------------------------------------------------------------------

  /** Loads every unfinished instance (registry.ts), arms its timers and restarts its pending work. */
  private async recover(): Promise<void> {
    const work = await this.registry.recover();
    for (const inst of this.registry.values())
      for (const m of inst.messages.values()) if (m.due > Date.now()) this.timers.push(m.due, inst.id);
    // Only now that every instance is loaded: a child started before the crash must be found.
    for (const w of work) this.dispatchWork(w.instanceId, w.item);
    if (this.registry.size)
      this.log('information', `resumed ${this.registry.size} instance(s) from ${this.store.history.tableName}`);
  }

  /** After a commit conflict or a transient fault: memory becomes what storage holds. */
  private async reload(inst: Instance): Promise<void> {
    if (await this.registry.reload(inst)) this.retire(inst);
  }

  // ---- scheduling ------------------------------------------------------------------------------

  private markReady(inst: Instance): void {
    if (!this.lifecycle.accepting || inst.busy || inst.queued) return;
    if (!nextMessage(inst, Date.now())) return;
    inst.queued = true;
    this.episodes.push(inst);
  }

  /** One episode of a ready instance; instances are serialized (never two episodes at once). */
  private async runReady(inst: Instance): Promise<void> {
    inst.queued = false;
    if (inst.busy || this.registry.get(inst.id) !== inst) return;
    inst.busy = true;
    try {
      await this.runEpisode(inst);
    } finally {
      inst.busy = false;
      this.markReady(inst);
    }
  }

  // ---- episodes ------------------------------------------------------------------------------

  private async runEpisode(inst: Instance): Promise<void> {
    const now = Date.now();
    const msg = nextMessage(inst, now);
    if (!msg) return;
    const state = inst.state;
    if (TERMINAL.has(state.status)) return this.discardMessage(inst, msg);
    if (msg.ex !== undefined && msg.ex !== state.exec.executionId) return this.discardMessage(inst, msg);
    if (msg.kind === 'result' || msg.kind === 'timer') {
      const id = msg.event?.TaskScheduledId ?? msg.event?.TimerId;
      // A duplicate (at-least-once delivery) or a message for a task the SDK no longer tracks.
      if (id === undefined || !state.exec.open[String(id)]) return this.discardMessage(inst, msg);
    }
    try {
      if (!inst.history) inst.history = await this.registry.loadHistory(state);
      const timestamp = new Date().toISOString();
      if (msg.kind === 'terminate')
        return await this.commit(inst, planTerminate(state, msg.reason, timestamp), msg, 'await');
      if (msg.kind === 'suspend' || msg.kind === 'resume') {
        const suspend = msg.kind === 'suspend';
        if (suspend === (state.status === 'Suspended')) return await this.discardMessage(inst, msg);
        return await this.commit(inst, planSuspendResume(state, suspend, msg.reason, timestamp), msg, 'await');
      }
      await this.orchestrate(inst, msg, now);
    } catch (err) {
      if (err instanceof ConflictError || isTransient(err)) {
        this.stats.conflicts++;
        this.log('warning', `commit of ${inst.id} did not go through (${errorMessage(err)}); reloading and retrying`);
        await delay(err instanceof ConflictError ? 10 : 250);
        await this.reload(inst);
        return;
      }
      // A permanent storage error (e.g. a payload over the table limits): retry a few times with
      // backoff, then fail the instance rather than loop on the same message forever.
      const attempts = (this.permanentFailures.get(inst.id) ?? 0) + 1;
      this.permanentFailures.set(inst.id, attempts);
      this.log('error', `episode of ${inst.id} could not be persisted (attempt ${attempts}): ${errorMessage(err)}`);
      if (attempts >= 3) {
        this.permanentFailures.delete(inst.id);
        await this.reload(inst);
        if (!TERMINAL.has(inst.state.status)) {
          const message = `The local durable engine could not persist an episode: ${errorMessage(err)}`;
          await this.commit(inst, planFailure(inst.state, message, new Date().toISOString()), undefined, 'await');
        }
        return;
      }
      msg.due = Date.now() + 500 * attempts;
      this.timers.push(msg.due, inst.id);
    }
  }

  /** invoke → decide → plan → commit → apply. */
  private async orchestrate(inst: Instance, msg: Message, nowMs: number): Promise<void> {
    const state = inst.state;
    const history = inst.history!;
    const timestamp = new Date(Math.max(nowMs, Date.parse(state.lastUpdatedTime) || 0)).toISOString();
    const started: HistoryEvent = {
      EventType: EventType.OrchestratorStarted,
      EventId: -1,
      IsPlayed: false,
      Timestamp: timestamp,
    };
    const newEvent: HistoryEvent = { ...msg.event!, IsPlayed: false };
    const result = await this.invokeOrchestrator(state, [...history, started, newEvent], history.length > 0);
    const decision = decideEpisode({
      exec: state.exec,
      instanceId: state.instanceId,
      newEvent,
      result,
      nowMs,
      timestamp,
    });
    if (this.options.crossCheck && decision.outcome.kind === 'running') {
      const sdk = this.options.sdkOpenTasks?.get(state.instanceId);
      const mismatch = sdk ? crossCheckOpenTasks(decision.exec, sdk) : 'the SDK bookkeeping was not captured';
      if (mismatch) {
        decision.outcome = {
          kind: 'failed',
          message: `Local durable engine cross-check failed after ${EventTypeName[newEvent.EventType]}: ${mismatch}`,
        };
        this.log('error', `${state.instanceId}: ${decision.outcome.message}`);
      }
    }
    const plan = planCommit(state, {
      decision,
      started,
      newEvent,
      timestamp,
      nowMs,
      ids: { executionId: newExecutionId, ord: nextOrd },
    });
    // Live instances answer status reads from memory, so the index is written only at creation,
    // at the end (and on suspension): one transaction per episode on the hot path.
    await this.commit(inst, plan, msg, 'ifTerminal', true);
  }

  /** Runs the orchestrator function once over the history; a thrown error becomes the result's error. */
  private async invokeOrchestrator(
    state: InstanceState,
    history: HistoryEvent[],
    isReplaying: boolean,
  ): Promise<OrchestratorResult> {
    const payload = buildTriggerPayload({
      history,
      input: state.input === undefined ? null : parseJsonOrUndefined(state.input),
      instanceId: state.instanceId,
      parentInstanceId: state.parent?.instanceId,
      isReplaying,
    });
    this.stats.episodes++;
    this.options.sdkOpenTasks?.delete(state.instanceId);
    try {
      const response = await this.host.invoke(
        state.name,
        { string: JSON.stringify(payload) },
        { instanceId: { string: state.instanceId } },
      );
      return parseOrchestratorState(decodeReturnValue(response.returnValue));
    } catch (err) {
      const embedded = parseOutOfProcError(errorMessage(err));
      return embedded ?? { isDone: false, actions: [], error: errorMessage(err), hasCustomStatus: false };
    }
  }

  /**
   * Stores a plan in one transaction (consuming `consumed`, if any), then applies it to memory and
   * starts what it scheduled. `played` marks the appended events as replayed for the next episode.
   */
  private async commit(
    inst: Instance,
    plan: CommitPlan,
    consumed: Message | undefined,
    index: IndexWrite,
    played = false,
  ): Promise<void> {
    const prev = inst.state;
    const etag = await this.store.commit({
      instanceId: prev.instanceId,
      etag: inst.etag,
      state: stateBlob(plan.next),
      upserts: plan.upserts,
      deletes: consumed ? (inst.rowKeys.get(consumed.key) ?? [consumed.key]) : [],
    });
    this.stats.commits++;
    inst.state = plan.next;
    inst.etag = etag;
    if (consumed) {
      inst.messages.delete(consumed.key);
      inst.rowKeys.delete(consumed.key);
    }
    if (plan.newGeneration) inst.history = [];
    else for (const e of plan.appended) inst.history?.push(played ? { ...e, IsPlayed: true } : e);
    for (const m of plan.messages) {
      inst.messages.set(m.key, m);
      if (m.due > Date.now()) this.timers.push(m.due, inst.id);
    }
    for (const w of plan.work) this.dispatchWork(inst.id, w);
    const terminal = TERMINAL.has(plan.next.status);
    // Index writes are chained per instance (ordered); on the hot path they are not awaited.
    if (index === 'await') await this.writeIndex(inst);
    else if (terminal) void this.writeIndex(inst);
    if (plan.newGeneration && prev.historyCount > 0) {
      const oldRows = Array.from({ length: prev.historyCount }, (_, i) => historyKey(prev.gen, i));
      void this.track(this.store.deleteRows(inst.id, oldRows).catch(() => undefined));
    }
    if (terminal) this.retire(inst);
  }

  private async discardMessage(inst: Instance, msg: Message): Promise<void> {
    const keys = inst.rowKeys.get(msg.key) ?? [msg.key];
    inst.messages.delete(msg.key);
    inst.rowKeys.delete(msg.key);
    await this.store.deleteRows(inst.id, keys);
  }

  /** A terminal instance leaves memory (its status stays readable from the small cache and the index). */
  private retire(inst: Instance): void {
    this.registry.retire(inst);
    const leftovers = [...inst.rowKeys.values()].flat();
    if (leftovers.length) void this.track(this.store.deleteRows(inst.id, leftovers).catch(() => undefined));
    for (const w of this.waiters.get(inst.id) ?? []) w(inst.state);
    this.waiters.delete(inst.id);
  }

  // ---- work: activities, sub-orchestrations, parent notifications ------------------------------

  private dispatchWork(instanceId: string, w: WorkItem): void {
    const run = this.work;
    if (w.type === 'activity') {
      this.activities.push({ instanceId, work: w });
    } else if (w.type === 'startSub') {
      void this.track(
        run.withRetry(`start sub-orchestration ${w.childId}`, () => run.startSubOrchestration(instanceId, w)),
      );
    } else {
      void this.track(run.withRetry(`notify parent ${w.parent.instanceId}`, () => run.notifyParent(instanceId, w)));
    }
  }

  // ---- index and waiting -----------------------------------------------------------------------

  private writeIndex(inst: Instance): Promise<void> {
    const rec = indexRecord(inst.state);
    const run = inst.indexChain.then(() =>
      this.work.withRetry(`index ${inst.id}`, async () => {
        await this.store.writeIndex(rec);
        inst.indexedEpisode = rec.episode;
      }),
    );
    inst.indexChain = run;
    return this.track(run);
  }

  /** Resolves when the instance reaches a terminal status (tests and benchmarks). */
  waitForTerminal(instanceId: string, timeoutMs: number): Promise<{ status: string; output: unknown } | undefined> {
    const done = this.registry.finishedState(instanceId);
    if (done) return Promise.resolve({ status: done.status, output: parseJsonOrUndefined(done.output) });
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(undefined), timeoutMs);
      const list = this.waiters.get(instanceId) ?? [];
      list.push((s) => {
        clearTimeout(timer);
        resolve({ status: s.status, output: parseJsonOrUndefined(s.output) });
      });
      this.waiters.set(instanceId, list);
    });
  }
}

/** The instance's next due message in enqueue order; a suspended instance takes only resume and terminate. */
function nextMessage(inst: Instance, now: number): Message | undefined {
  let best: Message | undefined;
  const suspended = inst.state.status === 'Suspended';
  for (const m of inst.messages.values()) {
    if (m.due > now) continue;
    if (suspended && m.kind !== 'resume' && m.kind !== 'terminate') continue;
    if (!best || m.ord < best.ord) best = m;
  }
  return best;
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
