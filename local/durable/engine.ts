// The durable engine: per-instance serialized episodes that drive the REAL orchestrator handler
// through the local host, bounded worker pools for orchestrators and activities, in-process wake
// ups and timers, and the commit/recovery protocol on top of DurableStore.
import { randomBytes, randomUUID } from 'node:crypto';
import type { ExtensionHostApi } from '../host/functionsHost';
import type { RpcTypedData } from '../host/coreTypes';
import {
  activityInputData,
  buildTriggerPayload,
  decodeReturnValue,
  encodeActionInput,
  encodeResult,
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
import { crossCheckOpenTasks, decideEpisode, type ExecState, newExecState, type Work } from './replay';
import {
  type BlobRecord,
  ConflictError,
  DurableStore,
  etagOf,
  type IndexRecord,
  isTransient,
  readBlobs,
  type StoredRow,
} from './store';
import { MinHeap } from '../../lib/minHeap';

export type RuntimeStatus =
  'Pending' | 'Running' | 'Completed' | 'ContinuedAsNew' | 'Failed' | 'Canceled' | 'Terminated' | 'Suspended';
export const TERMINAL: ReadonlySet<string> = new Set(['Completed', 'Failed', 'Terminated', 'Canceled']);

/** What is persisted in an instance's `~state` row. */
export interface InstanceState {
  instanceId: string;
  name: string;
  status: RuntimeStatus;
  createdTime: string;
  lastUpdatedTime: string;
  /** JSON texts. */
  input?: string;
  output?: string;
  customStatus?: string;
  parent?: { instanceId: string; executionId: string; taskId: number };
  /** Execution generation: history rows are `h-<gen>-<seq>`; continue-as-new starts a new one. */
  gen: number;
  historyCount: number;
  /** Commit counter; staged rows tagged with a later episode are not committed. */
  episode: number;
  exec: ExecState;
}

type MessageKind = 'start' | 'event' | 'result' | 'timer' | 'terminate' | 'suspend' | 'resume';

interface Message {
  key: string;
  kind: MessageKind;
  /** The execution a result/timer/start belongs to; messages of other executions are dropped. */
  ex?: string;
  due: number;
  ord: number;
  event?: HistoryEvent;
  reason?: string;
}

type WorkItem =
  | {
      key: string;
      type: 'activity';
      ex: string;
      id: number;
      name: string;
      input: unknown;
      failImmediately?: { reason: string; details: string };
    }
  | { key: string; type: 'startSub'; ex: string; id: number; name: string; childId: string; input: unknown }
  | {
      key: string;
      type: 'notifyParent';
      ex: string;
      parent: { instanceId: string; executionId: string; taskId: number };
      completion: HistoryEvent;
    };

class Instance {
  history?: HistoryEvent[];
  readonly messages = new Map<string, Message>();
  /** Row keys of multi-row blobs, for deletion. */
  readonly rowKeys = new Map<string, string[]>();
  busy = false;
  queued = false;
  indexChain: Promise<void> = Promise.resolve();
  indexedEpisode = -1;
  constructor(
    public state: InstanceState,
    public etag: string | undefined,
  ) {}
  get id(): string {
    return this.state.instanceId;
  }
}

export interface StatusSnapshot {
  name: string;
  instanceId: string;
  runtimeStatus: string;
  input: unknown;
  customStatus: unknown;
  output: unknown;
  createdTime: string;
  lastUpdatedTime: string;
  historyEvents?: unknown[];
}

export class InstanceExistsError extends Error {
  constructor(readonly status: string) {
    super(`An Orchestration instance with the status ${status} already exists.`);
    this.name = 'OrchestrationAlreadyExistsException';
  }
}
export class UnknownOrchestratorError extends Error {
  constructor(name: string) {
    super(`The function '${name}' doesn't exist, is disabled, or is not an orchestrator function.`);
    this.name = 'ArgumentException';
  }
}

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

type Status = 'closed' | 'starting' | 'running' | 'closing';

let ordCounter = 0;
/** Enqueue order: wall-clock ms with a per-process counter, so it survives restarts. */
function nextOrd(at = Date.now()): number {
  ordCounter = (ordCounter + 1) % 1000;
  return at * 1000 + ordCounter;
}

function pad(n: number, width: number): string {
  return String(n).padStart(width, '0');
}
export function historyKey(gen: number, seq: number): string {
  return `h-${pad(gen, 6)}-${pad(seq, 8)}`;
}

export class DurableEngine {
  private status: Status = 'closed';
  private readonly instances = new Map<string, Instance>();
  /** Terminal instances recently seen, for cheap status reads. */
  private readonly finished = new Map<string, InstanceState>();
  private readonly readyQueue: Instance[] = [];
  private orchestratorsRunning = 0;
  private readonly activityQueue: Array<{ instanceId: string; work: Extract<WorkItem, { type: 'activity' }> }> = [];
  private activitiesRunning = 0;
  private readonly timerHeap = new MinHeap<{ due: number; id: string }>((t) => t.due);
  private timer?: NodeJS.Timeout;
  private timerDue = Infinity;
  private readonly inFlight = new Set<Promise<unknown>>();
  private readonly store: DurableStore;
  private readonly host: ExtensionHostApi;
  /** Counters for tests and benchmarks. */
  readonly stats = { episodes: 0, activityRuns: 0, commits: 0, conflicts: 0 };
  /** Activity runs per `name`, for the replay-rule test. */
  readonly activityRunsByName = new Map<string, number>();

  constructor(private readonly options: DurableEngineOptions) {
    this.store = options.store;
    this.host = options.host;
  }

  async start(): Promise<void> {
    if (this.status !== 'closed') throw new Error(`Cannot start the durable engine in status ${this.status}`);
    this.status = 'starting';
    await this.store.init();
    await this.recover();
    this.status = 'running';
    for (const inst of this.instances.values()) this.markReady(inst);
    this.pumpOrchestrators();
    this.pumpActivities();
    this.armTimer();
  }

  async close(): Promise<void> {
    if (this.status !== 'running' && this.status !== 'starting') return;
    this.status = 'closing';
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.readyQueue.length = 0;
    this.activityQueue.length = 0;
    // Let running episodes and activities finish their commits so nothing is half-written.
    const deadline = Date.now() + 10_000;
    while (this.inFlight.size > 0 && Date.now() < deadline)
      await Promise.race([Promise.allSettled([...this.inFlight]), delay(100)]);
    await Promise.allSettled([...this.instances.values()].map((i) => i.indexChain));
    this.instances.clear();
    this.status = 'closed';
  }

  private get accepting(): boolean {
    return this.status === 'running' || this.status === 'starting';
  }

  private track<T>(p: Promise<T>): Promise<T> {
    this.inFlight.add(p);
    void p.finally(() => this.inFlight.delete(p)).catch(() => undefined);
    return p;
  }

  private log(level: 'information' | 'warning' | 'error', message: string): void {
    this.host.log(level, `[durable] ${message}`);
  }

  // ---- recovery ------------------------------------------------------------------------------

  /** Loads every instance that is not terminal, its inbox and its pending work; repairs the index. */
  private async recover(): Promise<void> {
    const [stateRows, pendingRows, index] = await Promise.all([
      this.store.scan('~state', '~state~'),
      this.store.scan('m-', 'x'),
      this.store.scanIndex(),
    ]);
    const byPartition = new Map<string, StoredRow[]>();
    for (const r of [...stateRows, ...pendingRows]) {
      const list = byPartition.get(r.partitionKey) ?? [];
      list.push(r);
      byPartition.set(r.partitionKey, list);
    }
    const indexById = new Map(index.map((r) => [r.instanceId, r]));
    let resumed = 0;
    const work: Array<{ instanceId: string; item: WorkItem }> = [];
    for (const [pk, rows] of byPartition) {
      const blobs = readBlobs(rows);
      const stateBlob = blobs.get('~state');
      if (!stateBlob) {
        // Messages for an instance that does not exist (purged, or never created): drop them.
        await this.store.deleteRows(
          pk,
          rows.map((r) => r.rowKey),
        );
        continue;
      }
      const state = JSON.parse(stateBlob.text) as InstanceState;
      const etag = etagOf(stateBlob.row);
      const stale: string[] = [];
      const inst = new Instance(state, etag);
      for (const [key, blob] of blobs) {
        if (key === '~state') continue;
        const ep = typeof blob.row.ep === 'number' ? blob.row.ep : 0;
        const keys = rows.filter((r) => r.rowKey === key || r.rowKey.startsWith(`${key}.`)).map((r) => r.rowKey);
        // Staged by an episode whose commit never happened, or left over by a finished instance.
        if (ep > state.episode || TERMINAL.has(state.status)) {
          stale.push(...keys);
          continue;
        }
        inst.rowKeys.set(key, keys);
        if (key.startsWith('m-')) inst.messages.set(key, JSON.parse(blob.text) as Message);
      }
      if (stale.length) await this.store.deleteRows(pk, stale);
      const indexed = indexById.get(pk);
      if (!indexed || indexed.episode !== state.episode || indexed.runtimeStatus !== state.status) {
        await this.store.writeIndex(this.indexRecord(state));
      }
      inst.indexedEpisode = state.episode;
      if (TERMINAL.has(state.status)) continue;
      this.instances.set(pk, inst);
      resumed++;
      for (const [key, blob] of blobs) {
        if (!key.startsWith('w-') || !inst.rowKeys.has(key)) continue;
        work.push({ instanceId: inst.id, item: JSON.parse(blob.text) as WorkItem });
      }
      for (const m of inst.messages.values()) if (m.due > Date.now()) this.pushTimer(m.due, inst.id);
    }
    // Only now that every instance is loaded: a child started before the crash must be found.
    for (const w of work) this.dispatchWork(w.instanceId, w.item, false);
    if (resumed) this.log('information', `resumed ${resumed} instance(s) from ${this.store.history.tableName}`);
  }

  // ---- client operations (HTTP API) -----------------------------------------------------------

  knowsOrchestrator(name: string): boolean {
    return this.host.functionsWithTrigger('orchestrationTrigger').some((f) => f.fn.name === name);
  }

  /** Starts an instance; `inputText` is JSON text or undefined. */
  async startNew(
    name: string,
    instanceId: string | undefined,
    inputText: string | undefined,
    parent?: InstanceState['parent'],
  ): Promise<string> {
    if (!this.accepting) throw new Error('The durable engine is not running');
    if (!this.knowsOrchestrator(name)) throw new UnknownOrchestratorError(name);
    const id = instanceId || randomUUID().replace(/-/g, '');
    validateInstanceId(id);
    const live = this.instances.get(id);
    if (live && !TERMINAL.has(live.state.status)) throw new InstanceExistsError(live.state.status);
    const now = new Date().toISOString();
    const executionId = newExecutionId();
    const state: InstanceState = {
      instanceId: id,
      name,
      status: 'Pending',
      createdTime: now,
      lastUpdatedTime: now,
      input: inputText,
      parent,
      gen: 0,
      historyCount: 0,
      episode: 1,
      exec: newExecState(executionId),
    };
    const start: Message = {
      key: `m-start-${executionId}`,
      kind: 'start',
      ex: executionId,
      due: Date.now(),
      ord: nextOrd(),
      event: {
        EventType: EventType.ExecutionStarted,
        EventId: -1,
        IsPlayed: false,
        Timestamp: now,
        Name: name,
        Input: inputText,
        ParentInstanceId: parent?.instanceId,
      },
    };
    const create = () =>
      this.store.commit({
        instanceId: id,
        etag: undefined,
        state: stateBlob(state),
        upserts: [messageBlob(start, 1)],
        deletes: [],
      });
    let etag: string;
    try {
      etag = await create();
    } catch (err) {
      if (!(err instanceof ConflictError)) throw err;
      // The id exists. A finished instance is replaced (overridableExistingInstanceStates:
      // NonRunningStates, the extension's default); a running one is refused.
      const existing = await this.readState(id);
      if (existing && !TERMINAL.has(existing.state.status)) throw new InstanceExistsError(existing.state.status);
      await this.store.purge(id);
      this.finished.delete(id);
      try {
        etag = await create();
      } catch (again) {
        if (again instanceof ConflictError) throw new InstanceExistsError('Pending');
        throw again;
      }
    }
    const inst = new Instance(state, etag);
    inst.history = [];
    inst.messages.set(start.key, start);
    this.instances.set(id, inst);
    // The index row is written before answering so that list queries see the instance at once.
    await this.writeIndex(inst);
    this.markReady(inst);
    return id;
  }

  /** 'accepted' | 'gone' (completed) | 'notFound' */
  async raiseEvent(
    instanceId: string,
    eventName: string,
    dataText: string | undefined,
  ): Promise<'accepted' | 'gone' | 'notFound'> {
    return this.enqueueControl(instanceId, (ord) => ({
      key: `m-e-${ord}-${randomBytes(3).toString('hex')}`,
      kind: 'event',
      due: Date.now(),
      ord,
      event: {
        EventType: EventType.EventRaised,
        EventId: -1,
        IsPlayed: false,
        Timestamp: new Date().toISOString(),
        Name: eventName,
        Input: dataText,
      },
    }));
  }

  async terminate(instanceId: string, reason: string | undefined): Promise<'accepted' | 'gone' | 'notFound'> {
    return this.enqueueControl(instanceId, (ord) => ({
      key: `m-x-${ord}`,
      kind: 'terminate',
      due: Date.now(),
      ord,
      reason,
    }));
  }

  async suspend(instanceId: string, reason: string | undefined): Promise<'accepted' | 'gone' | 'notFound'> {
    return this.enqueueControl(instanceId, (ord) => ({
      key: `m-p-${ord}`,
      kind: 'suspend',
      due: Date.now(),
      ord,
      reason,
    }));
  }

  async resume(instanceId: string, reason: string | undefined): Promise<'accepted' | 'gone' | 'notFound'> {
    return this.enqueueControl(instanceId, (ord) => ({
      key: `m-q-${ord}`,
      kind: 'resume',
      due: Date.now(),
      ord,
      reason,
    }));
  }

  private async enqueueControl(
    instanceId: string,
    make: (ord: number) => Message,
  ): Promise<'accepted' | 'gone' | 'notFound'> {
    const inst = this.instances.get(instanceId);
    if (!inst) {
      const stored = this.finished.get(instanceId) ?? (await this.readState(instanceId))?.state;
      return stored ? 'gone' : 'notFound';
    }
    if (TERMINAL.has(inst.state.status)) return 'gone';
    const msg = make(nextOrd());
    await this.store.put(instanceId, [messageBlob(msg, 0)]);
    inst.messages.set(msg.key, msg);
    this.markReady(inst);
    return 'accepted';
  }

  async getStatus(
    instanceId: string,
    opts: { showHistory?: boolean; showHistoryOutput?: boolean; showInput?: boolean } = {},
  ): Promise<StatusSnapshot | undefined> {
    const live = this.instances.get(instanceId);
    let state = live?.state ?? this.finished.get(instanceId);
    if (!state) {
      const indexed = await this.store.readIndex(instanceId);
      if (!indexed) return undefined;
      if (!indexed.large && !opts.showHistory) return snapshotFromIndex(indexed, opts.showInput !== false);
      state = (await this.readState(instanceId))?.state;
      if (!state) return undefined;
    }
    const snap = snapshot(state, opts.showInput !== false);
    if (opts.showHistory) {
      const history = live?.history ?? (await this.loadHistory(state));
      snap.historyEvents = history.map((e) => historyForStatus(e, opts.showHistoryOutput === true));
    }
    return snap;
  }

  async list(
    q: {
      runtimeStatus?: string[];
      createdTimeFrom?: Date;
      createdTimeTo?: Date;
      instanceIdPrefix?: string;
      showInput?: boolean;
    },
    top: number,
    continuationToken?: string,
  ): Promise<{ items: StatusSnapshot[]; continuationToken?: string }> {
    // The index is written at creation and at the end (not on every episode), so a live
    // instance may still be indexed as Pending: widen the query, then filter on the live status.
    const wanted = q.runtimeStatus;
    const widened =
      wanted?.length && wanted.some((s) => !TERMINAL.has(s))
        ? [...new Set([...wanted, 'Pending', 'Running', 'ContinuedAsNew', 'Suspended'])]
        : wanted;
    const page = await this.store.queryIndex({ ...q, runtimeStatus: widened }, top, continuationToken);
    const items: StatusSnapshot[] = [];
    for (const r of page.records) {
      // Prefer live state (the index lags for fields that change without a status change).
      const live = this.instances.get(r.instanceId)?.state ?? this.finished.get(r.instanceId);
      if (live && (!wanted?.length || wanted.includes(live.status))) items.push(snapshot(live, q.showInput === true));
      else if (!live && (!wanted?.length || wanted.includes(r.runtimeStatus)))
        items.push(snapshotFromIndex(r, q.showInput === true));
    }
    return { items, continuationToken: page.continuationToken };
  }

  /** Purges one instance if it is terminal. Returns the number purged (0 or 1). */
  async purge(instanceId: string): Promise<number> {
    const live = this.instances.get(instanceId);
    if (live && !TERMINAL.has(live.state.status)) return 0;
    const stored = this.finished.get(instanceId) ?? (await this.readState(instanceId))?.state;
    if (!stored || !TERMINAL.has(stored.status)) return 0;
    await this.store.purge(instanceId);
    this.finished.delete(instanceId);
    return 1;
  }

  async purgeBy(q: { createdTimeFrom: Date; createdTimeTo?: Date; runtimeStatus?: string[] }): Promise<number> {
    const statuses = (q.runtimeStatus?.length ? q.runtimeStatus : [...TERMINAL]).filter((s) => TERMINAL.has(s));
    if (statuses.length === 0) return 0;
    let purged = 0;
    let token: string | undefined;
    for (let page = 0; page < 10_000; page++) {
      const res = await this.store.queryIndex(
        { runtimeStatus: statuses, createdTimeFrom: q.createdTimeFrom, createdTimeTo: q.createdTimeTo ?? new Date() },
        100,
        token,
      );
      for (const r of res.records) purged += await this.purge(r.instanceId);
      token = res.continuationToken;
      if (!token) break;
    }
    return purged;
  }

  private async readState(instanceId: string): Promise<{ state: InstanceState; etag: string | undefined } | undefined> {
    const rows = await this.store.loadPartition(instanceId, '~state', '~state~');
    const blob = readBlobs(rows).get('~state');
    return blob ? { state: JSON.parse(blob.text) as InstanceState, etag: etagOf(blob.row) } : undefined;
  }

  private async loadHistory(state: InstanceState): Promise<HistoryEvent[]> {
    const from = `h-${pad(state.gen, 6)}-`;
    const rows = await this.store.loadPartition(state.instanceId, from, `${from}~`);
    const blobs = readBlobs(rows);
    const out: HistoryEvent[] = [];
    for (let seq = 0; seq < state.historyCount; seq++) {
      const b = blobs.get(historyKey(state.gen, seq));
      if (!b) throw new Error(`History of ${state.instanceId} is missing event ${seq} (of ${state.historyCount})`);
      out.push(JSON.parse(b.text) as HistoryEvent);
    }
    return out;
  }

  // ---- scheduling ------------------------------------------------------------------------------

  private nextMessage(inst: Instance, now: number): Message | undefined {
    let best: Message | undefined;
    const suspended = inst.state.status === 'Suspended';
    for (const m of inst.messages.values()) {
      if (m.due > now) continue;
      if (suspended && m.kind !== 'resume' && m.kind !== 'terminate') continue;
      if (!best || m.ord < best.ord) best = m;
    }
    return best;
  }

  private markReady(inst: Instance): void {
    if (!this.accepting || inst.busy || inst.queued) return;
    if (!this.nextMessage(inst, Date.now())) return;
    inst.queued = true;
    this.readyQueue.push(inst);
    this.pumpOrchestrators();
  }

  private pumpOrchestrators(): void {
    if (this.status !== 'running') return;
    while (this.orchestratorsRunning < this.options.maxConcurrentOrchestratorFunctions && this.readyQueue.length > 0) {
      const inst = this.readyQueue.shift()!;
      inst.queued = false;
      if (inst.busy || this.instances.get(inst.id) !== inst) continue;
      inst.busy = true;
      this.orchestratorsRunning++;
      void this.track(
        this.runEpisode(inst)
          .catch((err: unknown) => this.log('error', `episode of ${inst.id} failed: ${errorStack(err)}`))
          .finally(() => {
            inst.busy = false;
            this.orchestratorsRunning--;
            this.markReady(inst);
            this.pumpOrchestrators();
          }),
      );
    }
  }

  private pushTimer(due: number, id: string): void {
    this.timerHeap.push({ due, id });
    if (due < this.timerDue) this.armTimer();
  }

  private armTimer(): void {
    if (this.status !== 'running') return;
    const next = this.timerHeap.peek();
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerDue = Infinity;
    if (!next) return;
    this.timerDue = next.due;
    const wait = Math.min(Math.max(0, next.due - Date.now()), 2 ** 31 - 1);
    this.timer = setTimeout(() => this.onTimer(), wait);
  }

  private onTimer(): void {
    this.timer = undefined;
    this.timerDue = Infinity;
    const now = Date.now();
    while (this.timerHeap.size > 0 && this.timerHeap.peek()!.due <= now) {
      const t = this.timerHeap.pop()!;
      const inst = this.instances.get(t.id);
      if (inst) this.markReady(inst);
    }
    this.armTimer();
  }

  // ---- episodes ------------------------------------------------------------------------------

  private async runEpisode(inst: Instance): Promise<void> {
    const now = Date.now();
    const msg = this.nextMessage(inst, now);
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
      if (!inst.history) inst.history = await this.loadHistory(state);
      if (msg.kind === 'terminate') return await this.finishWithoutCode(inst, msg, 'Terminated');
      if (msg.kind === 'suspend' || msg.kind === 'resume') return await this.suspendOrResume(inst, msg);
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
        if (!TERMINAL.has(inst.state.status))
          await this.failWithoutCode(
            inst,
            `The local durable engine could not persist an episode: ${errorMessage(err)}`,
          );
        return;
      }
      msg.due = Date.now() + 500 * attempts;
      this.pushTimer(msg.due, inst.id);
    }
  }

  private readonly permanentFailures = new Map<string, number>();

  /** Fails an instance without running its code (storage limits exceeded). */
  private async failWithoutCode(inst: Instance, message: string): Promise<void> {
    const state = inst.state;
    const timestamp = new Date().toISOString();
    const next: InstanceState = {
      ...state,
      status: 'Failed',
      lastUpdatedTime: timestamp,
      episode: state.episode + 1,
      output: JSON.stringify(`Orchestrator function '${state.name}' failed: ${message}`),
    };
    const notify = state.parent ? this.parentNotification(next, { kind: 'failed', message }) : undefined;
    const upserts: BlobRecord[] = notify
      ? [{ rowKey: notify.key, text: JSON.stringify(notify), ep: next.episode, props: {} }]
      : [];
    inst.etag = await this.store.commit({
      instanceId: state.instanceId,
      etag: inst.etag,
      state: stateBlob(next),
      upserts,
      deletes: [],
    });
    inst.state = next;
    if (notify) this.dispatchWork(inst.id, notify, true);
    await this.writeIndex(inst);
    this.retire(inst);
  }

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
    const payload = buildTriggerPayload({
      history: [...history, started, newEvent],
      input: state.input === undefined ? null : parseJsonOrUndefined(state.input),
      instanceId: state.instanceId,
      parentInstanceId: state.parent?.instanceId,
      isReplaying: history.length > 0,
    });
    this.stats.episodes++;
    let result: OrchestratorResult;
    const sdkKey = `${state.instanceId}`;
    this.options.sdkOpenTasks?.delete(sdkKey);
    try {
      const response = await this.host.invoke(
        state.name,
        { string: JSON.stringify(payload) },
        { instanceId: { string: state.instanceId } },
      );
      result = parseOrchestratorState(decodeReturnValue(response.returnValue));
    } catch (err) {
      const embedded = parseOutOfProcError(errorMessage(err));
      result = embedded ?? { isDone: false, actions: [], error: errorMessage(err), hasCustomStatus: false };
    }
    const decision = decideEpisode({
      exec: state.exec,
      instanceId: state.instanceId,
      newEvent,
      result,
      nowMs,
      timestamp,
    });
    if (this.options.crossCheck && decision.outcome.kind === 'running') {
      const sdk = this.options.sdkOpenTasks?.get(sdkKey);
      const mismatch = sdk ? crossCheckOpenTasks(decision.exec, sdk) : 'the SDK bookkeeping was not captured';
      if (mismatch) {
        decision.outcome = {
          kind: 'failed',
          message: `Local durable engine cross-check failed after ${EventTypeName[newEvent.EventType]}: ${mismatch}`,
        };
        this.log('error', `${state.instanceId}: ${decision.outcome.message}`);
      }
    }
    const next: InstanceState = {
      ...state,
      exec: decision.exec,
      lastUpdatedTime: timestamp,
      episode: state.episode + 1,
    };
    if (decision.customStatus) next.customStatus = JSON.stringify(decision.customStatus.value);
    const appended: HistoryEvent[] = [started, newEvent, ...decision.appended];
    const upserts: BlobRecord[] = [];
    const newMessages: Message[] = [];
    const newWork: WorkItem[] = [];
    const ep = next.episode;
    const outcome = decision.outcome;
    let newHistory: HistoryEvent[] | undefined;

    if (outcome.kind === 'running') {
      if (next.status === 'Pending' || next.status === 'ContinuedAsNew') next.status = 'Running';
      for (const w of decision.work) this.planWork(next, w, newMessages, newWork);
      appended.push({ EventType: EventType.OrchestratorCompleted, EventId: -1, IsPlayed: false, Timestamp: timestamp });
    } else if (outcome.kind === 'continuedAsNew') {
      const executionId = newExecutionId();
      const inputText = encodeActionInput(outcome.input);
      next.status = 'ContinuedAsNew';
      next.input = inputText;
      next.gen = state.gen + 1;
      next.historyCount = 0;
      next.exec = newExecState(executionId);
      newHistory = [];
      // Events received but not consumed stay behind with the old history, as in the real
      // extension (preserveUnprocessedEvents defaults to false); queued messages carry over.
      newMessages.push({
        key: `m-start-${executionId}`,
        kind: 'start',
        ex: executionId,
        due: nowMs,
        ord: nextOrd(nowMs),
        event: {
          EventType: EventType.ExecutionStarted,
          EventId: -1,
          IsPlayed: false,
          Timestamp: timestamp,
          Name: state.name,
          Input: inputText,
          ParentInstanceId: state.parent?.instanceId,
        },
      });
    } else {
      const completed = outcome.kind === 'completed';
      next.status = completed ? 'Completed' : 'Failed';
      next.output = completed
        ? encodeResult(outcome.output)
        : JSON.stringify(`Orchestrator function '${state.name}' failed: ${outcome.message}`);
      appended.push({ EventType: EventType.OrchestratorCompleted, EventId: -1, IsPlayed: false, Timestamp: timestamp });
      appended.push({
        EventType: EventType.ExecutionCompleted,
        EventId: -1,
        IsPlayed: false,
        Timestamp: timestamp,
        Result: completed ? next.output : outcome.message,
        Details: completed ? undefined : outcome.details,
      } as HistoryEvent);
      if (state.parent) newWork.push(this.parentNotification(next, outcome));
    }
    if (!newHistory) {
      appended.forEach((e, i) =>
        upserts.push({ rowKey: historyKey(state.gen, state.historyCount + i), text: JSON.stringify(e), ep, props: {} }),
      );
      next.historyCount = state.historyCount + appended.length;
    }
    for (const m of newMessages) upserts.push(messageBlob(m, ep));
    for (const w of newWork) upserts.push({ rowKey: w.key, text: JSON.stringify(w), ep, props: {} });
    const deletes = inst.rowKeys.get(msg.key) ?? [msg.key];
    const etag = await this.store.commit({
      instanceId: state.instanceId,
      etag: inst.etag,
      state: stateBlob(next),
      upserts,
      deletes,
    });
    this.stats.commits++;

    // Committed: apply to memory, then start what the episode scheduled.
    inst.state = next;
    inst.etag = etag;
    inst.messages.delete(msg.key);
    inst.rowKeys.delete(msg.key);
    if (newHistory) inst.history = newHistory;
    else for (const e of appended) history.push({ ...e, IsPlayed: true });
    for (const m of newMessages) {
      inst.messages.set(m.key, m);
      if (m.due > Date.now()) this.pushTimer(m.due, inst.id);
    }
    for (const w of newWork) this.dispatchWork(inst.id, w, true);
    // Live instances answer status reads from memory, so the index is written only at creation,
    // at the end (and on suspension): one transaction per episode on the hot path. Index writes
    // are chained per instance (ordered) and not awaited.
    if (TERMINAL.has(next.status)) void this.writeIndex(inst);
    if (newHistory && state.historyCount > 0) {
      const oldRows = Array.from({ length: state.historyCount }, (_, i) => historyKey(state.gen, i));
      void this.track(this.store.deleteRows(inst.id, oldRows).catch(() => undefined));
    }
    if (TERMINAL.has(next.status)) this.retire(inst);
  }

  private planWork(state: InstanceState, w: Work, messages: Message[], work: WorkItem[]): void {
    const ex = state.exec.executionId;
    if (w.type === 'timer') {
      const due = Date.parse(w.fireAt);
      messages.push({
        key: `m-t-${ex}-${w.id}`,
        kind: 'timer',
        ex,
        due: Number.isFinite(due) ? due : Date.now(),
        ord: nextOrd(Number.isFinite(due) ? Math.max(due, Date.now()) : Date.now()),
        event: {
          EventType: EventType.TimerFired,
          EventId: -1,
          IsPlayed: false,
          Timestamp: w.fireAt,
          TimerId: w.id,
          FireAt: w.fireAt,
        },
      });
    } else if (w.type === 'activity') {
      work.push({
        key: `w-a-${ex}-${w.id}`,
        type: 'activity',
        ex,
        id: w.id,
        name: w.name,
        input: w.input,
        failImmediately: w.failImmediately,
      });
    } else {
      work.push({
        key: `w-s-${ex}-${w.id}`,
        type: 'startSub',
        ex,
        id: w.id,
        name: w.name,
        childId: w.instanceId,
        input: w.input,
      });
    }
  }

  private parentNotification(
    state: InstanceState,
    outcome: { kind: 'completed'; output: unknown } | { kind: 'failed'; message: string; details?: string },
  ): WorkItem {
    const parent = state.parent!;
    const ts = state.lastUpdatedTime;
    const completion: HistoryEvent =
      outcome.kind === 'completed'
        ? {
            EventType: EventType.SubOrchestrationInstanceCompleted,
            EventId: -1,
            IsPlayed: false,
            Timestamp: ts,
            TaskScheduledId: parent.taskId,
            Result: encodeResult(outcome.output),
          }
        : {
            EventType: EventType.SubOrchestrationInstanceFailed,
            EventId: -1,
            IsPlayed: false,
            Timestamp: ts,
            TaskScheduledId: parent.taskId,
            Reason: `Orchestrator function '${state.name}' failed: ${outcome.message}`,
            Details: outcome.details ?? JSON.stringify({ message: outcome.message }),
          };
    return {
      key: `w-n-${state.exec.executionId}`,
      type: 'notifyParent',
      ex: state.exec.executionId,
      parent,
      completion,
    };
  }

  private async finishWithoutCode(inst: Instance, msg: Message, status: 'Terminated'): Promise<void> {
    const state = inst.state;
    const timestamp = new Date().toISOString();
    const next: InstanceState = {
      ...state,
      status,
      lastUpdatedTime: timestamp,
      episode: state.episode + 1,
      output: JSON.stringify(msg.reason ?? ''),
    };
    const ev: HistoryEvent = {
      EventType: EventType.ExecutionTerminated,
      EventId: -1,
      IsPlayed: false,
      Timestamp: timestamp,
      Input: msg.reason,
    };
    const upserts: BlobRecord[] = [
      { rowKey: historyKey(state.gen, state.historyCount), text: JSON.stringify(ev), ep: next.episode, props: {} },
    ];
    next.historyCount = state.historyCount + 1;
    const etag = await this.store.commit({
      instanceId: state.instanceId,
      etag: inst.etag,
      state: stateBlob(next),
      upserts,
      deletes: inst.rowKeys.get(msg.key) ?? [msg.key],
    });
    inst.state = next;
    inst.etag = etag;
    inst.messages.delete(msg.key);
    inst.rowKeys.delete(msg.key);
    inst.history?.push(ev);
    await this.writeIndex(inst);
    this.retire(inst);
  }

  private async suspendOrResume(inst: Instance, msg: Message): Promise<void> {
    const state = inst.state;
    const suspend = msg.kind === 'suspend';
    if (suspend === (state.status === 'Suspended')) return this.discardMessage(inst, msg);
    const timestamp = new Date().toISOString();
    const next: InstanceState = {
      ...state,
      status: suspend ? 'Suspended' : 'Running',
      lastUpdatedTime: timestamp,
      episode: state.episode + 1,
    };
    const ev: HistoryEvent = {
      EventType: suspend ? EventType.ExecutionSuspended : EventType.ExecutionResumed,
      EventId: -1,
      IsPlayed: false,
      Timestamp: timestamp,
      Reason: msg.reason,
    };
    const upserts: BlobRecord[] = [
      { rowKey: historyKey(state.gen, state.historyCount), text: JSON.stringify(ev), ep: next.episode, props: {} },
    ];
    next.historyCount = state.historyCount + 1;
    inst.etag = await this.store.commit({
      instanceId: state.instanceId,
      etag: inst.etag,
      state: stateBlob(next),
      upserts,
      deletes: inst.rowKeys.get(msg.key) ?? [msg.key],
    });
    inst.state = next;
    inst.messages.delete(msg.key);
    inst.rowKeys.delete(msg.key);
    inst.history?.push(ev);
    await this.writeIndex(inst);
  }

  private async discardMessage(inst: Instance, msg: Message): Promise<void> {
    const keys = inst.rowKeys.get(msg.key) ?? [msg.key];
    inst.messages.delete(msg.key);
    inst.rowKeys.delete(msg.key);
    await this.store.deleteRows(inst.id, keys);
  }

  /** A terminal instance leaves memory (its status stays readable from the small cache and the index). */
  private retire(inst: Instance): void {
    this.instances.delete(inst.id);
    this.finished.set(inst.id, inst.state);
    if (this.finished.size > 5000) this.finished.delete(this.finished.keys().next().value as string);
    const leftovers = [...inst.rowKeys.values()].flat();
    if (leftovers.length) void this.track(this.store.deleteRows(inst.id, leftovers).catch(() => undefined));
    for (const w of this.waiters.get(inst.id) ?? []) w(inst.state);
    this.waiters.delete(inst.id);
  }

  private async reload(inst: Instance): Promise<void> {
    const rows = await this.store.loadPartition(inst.id);
    const blobs = readBlobs(rows);
    const stateBlobRead = blobs.get('~state');
    if (!stateBlobRead) {
      this.instances.delete(inst.id);
      return;
    }
    const state = JSON.parse(stateBlobRead.text) as InstanceState;
    inst.state = state;
    inst.etag = etagOf(stateBlobRead.row);
    inst.history = undefined;
    inst.messages.clear();
    inst.rowKeys.clear();
    for (const [key, blob] of blobs) {
      const ep = typeof blob.row.ep === 'number' ? blob.row.ep : 0;
      if (ep > state.episode) continue;
      inst.rowKeys.set(
        key,
        rows.filter((r) => r.rowKey === key || r.rowKey.startsWith(`${key}.`)).map((r) => r.rowKey),
      );
      if (key.startsWith('m-')) inst.messages.set(key, JSON.parse(blob.text) as Message);
    }
    if (TERMINAL.has(state.status)) this.retire(inst);
  }

  // ---- work: activities, sub-orchestrations, parent notifications ------------------------------

  private dispatchWork(instanceId: string, w: WorkItem, fresh: boolean): void {
    void fresh;
    if (w.type === 'activity') {
      this.activityQueue.push({ instanceId, work: w });
      this.pumpActivities();
    } else if (w.type === 'startSub') {
      void this.track(
        this.withRetry(`start sub-orchestration ${w.childId}`, () => this.startSubOrchestration(instanceId, w)),
      );
    } else {
      void this.track(this.withRetry(`notify parent ${w.parent.instanceId}`, () => this.notifyParent(instanceId, w)));
    }
  }

  private pumpActivities(): void {
    if (this.status !== 'running') return;
    while (this.activitiesRunning < this.options.maxConcurrentActivityFunctions && this.activityQueue.length > 0) {
      const item = this.activityQueue.shift()!;
      this.activitiesRunning++;
      void this.track(
        this.runActivity(item.instanceId, item.work)
          .catch((err: unknown) =>
            this.log('error', `activity ${item.work.name} of ${item.instanceId} failed to record: ${errorStack(err)}`),
          )
          .finally(() => {
            this.activitiesRunning--;
            this.pumpActivities();
          }),
      );
    }
  }

  private async runActivity(instanceId: string, w: Extract<WorkItem, { type: 'activity' }>): Promise<void> {
    const inst = this.instances.get(instanceId);
    if (!inst || TERMINAL.has(inst.state.status) || inst.state.exec.executionId !== w.ex) {
      await this.store.deleteRows(instanceId, [w.key]);
      return;
    }
    let event: HistoryEvent;
    const ts = () => new Date().toISOString();
    if (w.failImmediately) {
      event = {
        EventType: EventType.TaskFailed,
        EventId: -1,
        IsPlayed: false,
        Timestamp: ts(),
        TaskScheduledId: w.id,
        Reason: w.failImmediately.reason,
        Details: w.failImmediately.details,
      };
    } else {
      this.stats.activityRuns++;
      this.activityRunsByName.set(w.name, (this.activityRunsByName.get(w.name) ?? 0) + 1);
      try {
        const meta: Record<string, RpcTypedData> = { instanceId: { string: instanceId } };
        const response = await this.host.invoke(w.name, activityInputData(w.input), meta);
        event = {
          EventType: EventType.TaskCompleted,
          EventId: -1,
          IsPlayed: false,
          Timestamp: ts(),
          TaskScheduledId: w.id,
          Result: encodeResult(decodeReturnValue(response.returnValue)),
        };
      } catch (err) {
        event = {
          EventType: EventType.TaskFailed,
          EventId: -1,
          IsPlayed: false,
          Timestamp: ts(),
          TaskScheduledId: w.id,
          Reason: `Activity function '${w.name}' failed: ${errorMessage(err)}`,
          Details: JSON.stringify({ message: errorMessage(err), stack: errorStack(err) }),
        };
      }
    }
    const msg: Message = {
      key: `m-r-${w.ex}-${w.id}`,
      kind: 'result',
      ex: w.ex,
      due: Date.now(),
      ord: nextOrd(),
      event,
    };
    if (this.status === 'closing' || this.status === 'closed') return; // the work row stays: it runs again after a restart
    const owner = this.instances.get(instanceId);
    if (!owner || owner.state.exec.executionId !== w.ex) {
      // Finished (or continued as new) while the activity ran: its result has no reader.
      await this.store.deleteRows(instanceId, [w.key]);
      return;
    }
    // The result is handed to the instance in memory, not written: the episode that consumes it
    // deletes the work item in the same transaction that appends TaskCompleted/TaskFailed. A crash
    // before that commit leaves the work item, so the activity runs again (at-least-once).
    owner.rowKeys.set(msg.key, [w.key]);
    owner.messages.set(msg.key, msg);
    this.markReady(owner);
  }

  private async startSubOrchestration(parentId: string, w: Extract<WorkItem, { type: 'startSub' }>): Promise<void> {
    const parent = this.instances.get(parentId);
    if (parent && parent.state.exec.executionId === w.ex && !TERMINAL.has(parent.state.status)) {
      const info = { instanceId: parentId, executionId: w.ex, taskId: w.id };
      try {
        const live = this.instances.get(w.childId);
        const sameChild = live?.state.parent?.executionId === w.ex && live.state.parent.taskId === w.id;
        if (!sameChild)
          await this.startNew(w.name, w.childId, w.input === undefined ? undefined : JSON.stringify(w.input), info);
      } catch (err) {
        const existing = err instanceof InstanceExistsError ? await this.readState(w.childId) : undefined;
        const ours = existing?.state.parent?.executionId === w.ex && existing.state.parent.taskId === w.id;
        if (ours) {
          // Started before a crash that came before this work item was removed.
          await this.store.deleteRows(parentId, [w.key]);
          return;
        }
        const failure: HistoryEvent = {
          EventType: EventType.SubOrchestrationInstanceFailed,
          EventId: -1,
          IsPlayed: false,
          Timestamp: new Date().toISOString(),
          TaskScheduledId: w.id,
          Reason: errorMessage(err),
          Details: JSON.stringify({ message: errorMessage(err) }),
        };
        await this.deliver(parentId, {
          key: `m-s-${w.ex}-${w.id}`,
          kind: 'result',
          ex: w.ex,
          due: Date.now(),
          ord: nextOrd(),
          event: failure,
        });
      }
    }
    await this.store.deleteRows(parentId, [w.key]);
  }

  private async notifyParent(childId: string, w: Extract<WorkItem, { type: 'notifyParent' }>): Promise<void> {
    const p = w.parent;
    const parent = this.instances.get(p.instanceId);
    if (parent && parent.state.exec.executionId === p.executionId) {
      await this.deliver(p.instanceId, {
        key: `m-s-${p.executionId}-${p.taskId}`,
        kind: 'result',
        ex: p.executionId,
        due: Date.now(),
        ord: nextOrd(),
        event: w.completion,
      });
    }
    await this.store.deleteRows(childId, [w.key]);
  }

  private async deliver(instanceId: string, msg: Message): Promise<void> {
    await this.store.put(instanceId, [messageBlob(msg, 0)]);
    const inst = this.instances.get(instanceId);
    if (inst) {
      inst.messages.set(msg.key, msg);
      this.markReady(inst);
    }
  }

  private async withRetry(what: string, fn: () => Promise<void>, ignoreNotFound = false): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        const code = (err as { statusCode?: number }).statusCode;
        if (ignoreNotFound && code === 404) return; // the instance was purged meanwhile
        if (!isTransient(err) || attempt >= 8 || !this.accepting) {
          this.log('error', `${what} failed: ${errorMessage(err)}`);
          return;
        }
        await delay(Math.min(2000, 50 * 2 ** attempt));
      }
    }
  }

  // ---- index and waiting -----------------------------------------------------------------------

  private indexRecord(state: InstanceState): IndexRecord {
    const small = (s: string | undefined) => (s !== undefined && s.length <= 30_000 ? s : undefined);
    const large = [state.input, state.output, state.customStatus].some((s) => s !== undefined && s.length > 30_000);
    return {
      instanceId: state.instanceId,
      name: state.name,
      runtimeStatus: state.status,
      createdTime: new Date(state.createdTime),
      lastUpdatedTime: new Date(state.lastUpdatedTime),
      input: small(state.input),
      output: small(state.output),
      customStatus: small(state.customStatus),
      large,
      episode: state.episode,
    };
  }

  private writeIndex(inst: Instance): Promise<void> {
    const rec = this.indexRecord(inst.state);
    const run = inst.indexChain.then(() =>
      this.withRetry(`index ${inst.id}`, async () => {
        await this.store.writeIndex(rec);
        inst.indexedEpisode = rec.episode;
      }),
    );
    inst.indexChain = run;
    return this.track(run);
  }

  private readonly waiters = new Map<string, Array<(s: InstanceState) => void>>();

  /** Resolves when the instance reaches a terminal status (tests and benchmarks). */
  waitForTerminal(instanceId: string, timeoutMs: number): Promise<{ status: string; output: unknown } | undefined> {
    const done = this.finished.get(instanceId);
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

  get runningInstances(): number {
    return this.instances.size;
  }
}

function newExecutionId(): string {
  return randomBytes(16).toString('hex');
}

/** The real client's rules (DurableClient.StartNewAsync), plus what a table key cannot hold. */
export function validateInstanceId(id: string): void {
  if (id.startsWith('@'))
    throw Object.assign(new Error('Orchestration instance ids must not start with @.'), { name: 'ArgumentException' });
  // eslint-disable-next-line no-control-regex
  if (/[/\\#?\u0000-\u001f\u007f-\u009f]/.test(id))
    throw Object.assign(new Error('Orchestration instance ids must not contain /, \\, #, ?, or control characters.'), {
      name: 'ArgumentException',
    });
  if (id.length > 256)
    throw Object.assign(new Error('Instance ID lengths must not exceed 256 characters.'), {
      name: 'ArgumentException',
    });
}

function stateBlob(state: InstanceState): BlobRecord {
  return { rowKey: '~state', text: JSON.stringify(state), ep: state.episode, props: { status: state.status } };
}

function messageBlob(m: Message, ep: number): BlobRecord {
  return { rowKey: m.key, text: JSON.stringify(m), ep, props: { due: m.due } };
}

function snapshot(state: InstanceState, showInput: boolean): StatusSnapshot {
  return {
    name: state.name,
    instanceId: state.instanceId,
    runtimeStatus: state.status,
    input: showInput ? (parseJsonOrUndefined(state.input) ?? null) : null,
    customStatus: parseJsonOrUndefined(state.customStatus) ?? null,
    output: parseJsonOrUndefined(state.output) ?? null,
    createdTime: toSeconds(state.createdTime),
    lastUpdatedTime: toSeconds(state.lastUpdatedTime),
  };
}

function snapshotFromIndex(r: IndexRecord, showInput: boolean): StatusSnapshot {
  return {
    name: r.name,
    instanceId: r.instanceId,
    runtimeStatus: r.runtimeStatus,
    input: showInput ? (parseJsonOrUndefined(r.input) ?? null) : null,
    customStatus: parseJsonOrUndefined(r.customStatus) ?? null,
    output: parseJsonOrUndefined(r.output) ?? null,
    createdTime: toSeconds(r.createdTime.toISOString()),
    lastUpdatedTime: toSeconds(r.lastUpdatedTime.toISOString()),
  };
}

/** The extension formats times with "s" + "Z" (second precision). */
function toSeconds(iso: string): string {
  return iso.replace(/\.\d+Z$/, 'Z');
}

/** The history shape of the status API: event type names, no internal bookkeeping. */
function historyForStatus(e: HistoryEvent, withOutput: boolean): Record<string, unknown> {
  const out: Record<string, unknown> = {
    EventType: EventTypeName[e.EventType] ?? String(e.EventType),
    Timestamp: e.Timestamp,
  };
  if (e.Name !== undefined) out.FunctionName = e.Name;
  if (e.EventId >= 0) out.EventId = e.EventId;
  if (e.TaskScheduledId !== undefined) out.TaskScheduledId = e.TaskScheduledId;
  if (e.TimerId !== undefined) out.TimerId = e.TimerId;
  if (e.FireAt !== undefined) out.FireAt = e.FireAt;
  if (e.InstanceId !== undefined) out.InstanceId = e.InstanceId;
  if (e.Reason !== undefined) out.Reason = e.Reason;
  if (withOutput && e.Result !== undefined) out.Result = parseJsonOrUndefined(e.Result);
  if (withOutput && e.Input !== undefined && e.EventType === EventType.EventRaised)
    out.Input = parseJsonOrUndefined(e.Input);
  return out;
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
