// What a durable client can ask of the engine (the HTTP API's operations): start, raise an event,
// terminate, suspend, resume, read status, list, purge. Each writes an inbox message or the
// instance's first rows and wakes the instance; the episodes themselves run in the engine.
import { randomBytes, randomUUID } from 'node:crypto';
import {
  Instance,
  InstanceExistsError,
  type InstanceState,
  type Message,
  messageBlob,
  newExecutionId,
  nextOrd,
  stateBlob,
  type StatusSnapshot,
  TERMINAL,
  UnknownOrchestratorError,
  validateInstanceId,
} from './instance';
import { EventType, EventTypeName, type HistoryEvent, parseJsonOrUndefined } from './protocol';
import type { InstanceRegistry } from './registry';
import { newExecState } from './replay';
import { ConflictError, type IndexRecord } from './store';

/** What the client operations need of the engine that runs the instances. */
export interface EngineSeam {
  /** Starting or running (a closing engine takes no new instances). */
  readonly accepting: boolean;
  knowsOrchestrator(name: string): boolean;
  /** Writes the instance's index row (awaited, so lists see it at once). */
  writeIndex(inst: Instance): Promise<void>;
  /** The instance has a new message: queue it for an episode. */
  wake(inst: Instance): void;
}

export type ControlOutcome = 'accepted' | 'gone' | 'notFound';

export interface ListQuery {
  runtimeStatus?: string[];
  createdTimeFrom?: Date;
  createdTimeTo?: Date;
  instanceIdPrefix?: string;
  showInput?: boolean;
}

export class DurableClientOperations {
  constructor(
    private readonly registry: InstanceRegistry,
    private readonly engine: EngineSeam,
  ) {}

  private get store() {
    return this.registry.store;
  }

  /** Starts an instance; `inputText` is JSON text or undefined. A second start of a running id is refused. */
  async startNew(
    name: string,
    instanceId: string | undefined,
    inputText: string | undefined,
    parent?: InstanceState['parent'],
  ): Promise<string> {
    if (!this.engine.accepting) throw new Error('The durable engine is not running');
    if (!this.engine.knowsOrchestrator(name)) throw new UnknownOrchestratorError(name);
    const id = instanceId || randomUUID().replace(/-/g, '');
    validateInstanceId(id);
    const live = this.registry.get(id);
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
      const existing = await this.registry.readState(id);
      if (existing && !TERMINAL.has(existing.state.status)) throw new InstanceExistsError(existing.state.status);
      await this.store.purge(id);
      this.registry.forget(id);
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
    this.registry.add(inst);
    // The index row is written before answering so that list queries see the instance at once.
    await this.engine.writeIndex(inst);
    this.engine.wake(inst);
    return id;
  }

  raiseEvent(instanceId: string, eventName: string, dataText: string | undefined): Promise<ControlOutcome> {
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

  terminate(instanceId: string, reason: string | undefined): Promise<ControlOutcome> {
    return this.enqueueControl(instanceId, (ord) => ({
      key: `m-x-${ord}`,
      kind: 'terminate',
      due: Date.now(),
      ord,
      reason,
    }));
  }

  suspend(instanceId: string, reason: string | undefined): Promise<ControlOutcome> {
    return this.enqueueControl(instanceId, (ord) => ({
      key: `m-p-${ord}`,
      kind: 'suspend',
      due: Date.now(),
      ord,
      reason,
    }));
  }

  resume(instanceId: string, reason: string | undefined): Promise<ControlOutcome> {
    return this.enqueueControl(instanceId, (ord) => ({
      key: `m-q-${ord}`,
      kind: 'resume',
      due: Date.now(),
      ord,
      reason,
    }));
  }

  /** Stores the message in the instance's inbox, then wakes it; a finished instance answers 'gone'. */
  private async enqueueControl(instanceId: string, make: (ord: number) => Message): Promise<ControlOutcome> {
    const inst = this.registry.get(instanceId);
    if (!inst) return (await this.registry.knownState(instanceId)) ? 'gone' : 'notFound';
    if (TERMINAL.has(inst.state.status)) return 'gone';
    const msg = make(nextOrd());
    await this.store.put(instanceId, [messageBlob(msg, 0)]);
    inst.messages.set(msg.key, msg);
    this.engine.wake(inst);
    return 'accepted';
  }

  async getStatus(
    instanceId: string,
    opts: { showHistory?: boolean; showHistoryOutput?: boolean; showInput?: boolean } = {},
  ): Promise<StatusSnapshot | undefined> {
    const live = this.registry.get(instanceId);
    let state = live?.state ?? this.registry.finishedState(instanceId);
    if (!state) {
      const indexed = await this.store.readIndex(instanceId);
      if (!indexed) return undefined;
      if (!indexed.large && !opts.showHistory) return snapshotFromIndex(indexed, opts.showInput !== false);
      state = (await this.registry.readState(instanceId))?.state;
      if (!state) return undefined;
    }
    const snap = snapshot(state, opts.showInput !== false);
    if (opts.showHistory) {
      const history = live?.history ?? (await this.registry.loadHistory(state));
      snap.historyEvents = history.map((e) => historyForStatus(e, opts.showHistoryOutput === true));
    }
    return snap;
  }

  async list(
    q: ListQuery,
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
      const live = this.registry.get(r.instanceId)?.state ?? this.registry.finishedState(r.instanceId);
      if (live && (!wanted?.length || wanted.includes(live.status))) items.push(snapshot(live, q.showInput === true));
      else if (!live && (!wanted?.length || wanted.includes(r.runtimeStatus)))
        items.push(snapshotFromIndex(r, q.showInput === true));
    }
    return { items, continuationToken: page.continuationToken };
  }

  /** Purges one instance if it is terminal. Returns the number purged (0 or 1); a second run finds nothing. */
  async purge(instanceId: string): Promise<number> {
    const live = this.registry.get(instanceId);
    if (live && !TERMINAL.has(live.state.status)) return 0;
    const stored = await this.registry.knownState(instanceId);
    if (!stored || !TERMINAL.has(stored.status)) return 0;
    await this.store.purge(instanceId);
    this.registry.forget(instanceId);
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
