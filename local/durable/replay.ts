// The pure heart of the engine: given what an execution has recorded so far, the one new event of
// an episode and the OrchestratorState the real SDK returned, decide which task ids the SDK just
// allocated (retry-internal ids first, then new actions in yield order: research 2.4/2.5), which
// work to schedule, which history to append, and whether the code diverged from its history;
// then plan the commit that records it (planCommit and the no-code transitions), still pure.
import { createHash } from 'node:crypto';
import {
  historyBlobs,
  type InstanceState,
  type Message,
  messageBlob,
  type NotifyParentWork,
  workBlob,
  type WorkItem,
} from './instance';
import {
  Action,
  ActionType,
  actionSignature,
  describeAction,
  encodeActionInput,
  encodeRawInput,
  encodeResult,
  EventType,
  type HistoryEvent,
  type OrchestratorResult,
  type RetryOptions,
} from './protocol';
import type { BlobRecord } from './store';

export type OpenTaskKind = 'activity' | 'timer' | 'sub' | 'retryTimer';

/** A task id the SDK has allocated and not yet seen resolved. */
export interface OpenTask {
  kind: OpenTaskKind;
  name?: string;
  /** The retry group (keyed by the group's first id) this task belongs to. */
  group?: number;
}

export interface RetryGroup {
  target: 'activity' | 'sub';
  name: string;
  /** The action input as the SDK sent it (strings pre-encoded). */
  input?: unknown;
  instanceId?: string;
  options: RetryOptions;
  /** The SDK's attemptNumber: 1, then +1 on every failure. */
  attempt: number;
  firstAttemptAtMs: number;
  lastReason?: string;
  lastDetails?: string;
}

/** Per-execution bookkeeping persisted with the instance. */
export interface ExecState {
  executionId: string;
  /** The SDK's sequenceNumber, mirrored. */
  nextId: number;
  /** Signatures of every flattened action seen, in order. */
  sigs: string[];
  open: Record<string, OpenTask>;
  retries: Record<string, RetryGroup>;
}

export function newExecState(executionId: string): ExecState {
  return { executionId, nextId: 0, sigs: [], open: {}, retries: {} };
}

export type Work =
  | {
      type: 'activity';
      id: number;
      name: string;
      input: unknown;
      group?: number;
      failImmediately?: { reason: string; details: string };
    }
  | { type: 'timer'; id: number; fireAt: string }
  | { type: 'subOrchestration'; id: number; name: string; instanceId: string; input: unknown };

export type Outcome =
  | { kind: 'running' }
  | { kind: 'completed'; output: unknown }
  | { kind: 'failed'; message: string; details?: string }
  | { kind: 'continuedAsNew'; input: unknown };

export interface Decision {
  exec: ExecState;
  /** Events to append after the episode's OrchestratorStarted + new event. */
  appended: HistoryEvent[];
  work: Work[];
  outcome: Outcome;
  customStatus?: { value: unknown };
}

const UNSUPPORTED: Record<number, string> = {
  [ActionType.CallEntity]: 'entities (callEntity)',
  [ActionType.SignalEntity]: 'entities (signalEntity)',
  [ActionType.ScheduledSignalEntity]: 'entities (signalEntity)',
  [ActionType.LockEntities]: 'entities (lock)',
  [ActionType.ReleaseEntities]: 'entities (lock)',
  [ActionType.CallHttp]: 'callHttp',
};

/** The delay before retry `failures` (1 = after the first failure), as DTFx computes it. */
export function retryDelayMs(options: RetryOptions, failures: number): number {
  const coefficient = options.backoffCoefficient && options.backoffCoefficient > 0 ? options.backoffCoefficient : 1;
  let delay = options.firstRetryIntervalInMilliseconds * Math.pow(coefficient, Math.max(0, failures - 1));
  if (options.maxRetryIntervalInMilliseconds && options.maxRetryIntervalInMilliseconds > 0)
    delay = Math.min(delay, options.maxRetryIntervalInMilliseconds);
  return Math.max(0, Math.round(delay));
}

/** Deterministic GUID for a sub-orchestration started without an instance id (the real extension uses one too). */
export function subOrchestrationInstanceId(parentInstanceId: string, executionId: string, taskId: number): string {
  const h = createHash('sha1').update(`${parentInstanceId}|${executionId}|${taskId}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-${((parseInt(h[16], 16) & 0x3) | 0x8).toString(16)}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

function clone<T>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T;
}

/**
 * Applies one episode. `newEvent` is the single event handed to the SDK after the fresh
 * OrchestratorStarted; `result` is what the SDK returned for it (or embedded in its failure).
 */
export function decideEpisode(args: {
  exec: ExecState;
  instanceId: string;
  newEvent: HistoryEvent;
  result: OrchestratorResult;
  nowMs: number;
  timestamp: string;
}): Decision {
  const exec = clone(args.exec);
  const { newEvent, result, nowMs, timestamp } = args;
  const appended: HistoryEvent[] = [];
  const work: Work[] = [];
  const customStatus = result.hasCustomStatus ? { value: result.customStatus } : undefined;
  const fail = (message: string, details?: string): Decision => ({
    exec,
    appended,
    work: [],
    outcome: { kind: 'failed', message, details },
    customStatus,
  });

  // 1. What the new event resolves, and the retry-internal id it makes the SDK allocate.
  const resolvedId =
    newEvent.EventType === EventType.TaskCompleted ||
    newEvent.EventType === EventType.TaskFailed ||
    newEvent.EventType === EventType.SubOrchestrationInstanceCompleted ||
    newEvent.EventType === EventType.SubOrchestrationInstanceFailed
      ? newEvent.TaskScheduledId
      : newEvent.EventType === EventType.TimerFired
        ? newEvent.TimerId
        : undefined;
  if (resolvedId !== undefined) {
    const task = exec.open[String(resolvedId)];
    delete exec.open[String(resolvedId)];
    const group = task?.group !== undefined ? exec.retries[String(task.group)] : undefined;
    if (task && group) {
      const failed =
        newEvent.EventType === EventType.TaskFailed || newEvent.EventType === EventType.SubOrchestrationInstanceFailed;
      if (failed && task.kind !== 'retryTimer') {
        // RetryableTask: on a failed attempt the SDK always opens a timer with the next id.
        group.attempt += 1;
        group.lastReason = newEvent.Reason;
        group.lastDetails = newEvent.Details;
        const timerId = exec.nextId++;
        exec.open[String(timerId)] = { kind: 'retryTimer', group: task.group };
        const exhausted = group.attempt > group.options.maxNumberOfAttempts;
        const delay = exhausted ? 0 : retryDelayMs(group.options, group.attempt - 1);
        const fireAt = new Date(Math.max(nowMs, Date.parse(timestamp)) + delay).toISOString();
        appended.push({
          EventType: EventType.TimerCreated,
          EventId: timerId,
          IsPlayed: false,
          Timestamp: timestamp,
          FireAt: fireAt,
        });
        work.push({ type: 'timer', id: timerId, fireAt });
      } else if (task.kind === 'retryTimer' && group.attempt <= group.options.maxNumberOfAttempts) {
        // ...and when that timer fires with attempts left, a rescheduled task with the next id.
        const retryId = exec.nextId++;
        exec.open[String(retryId)] = {
          kind: group.target === 'activity' ? 'activity' : 'sub',
          name: group.name,
          group: task.group,
        };
        const timedOut =
          group.options.retryTimeoutInMilliseconds !== undefined &&
          group.options.retryTimeoutInMilliseconds > 0 &&
          nowMs - group.firstAttemptAtMs > group.options.retryTimeoutInMilliseconds;
        if (group.target === 'activity') {
          appended.push({
            EventType: EventType.TaskScheduled,
            EventId: retryId,
            IsPlayed: false,
            Timestamp: timestamp,
            Name: group.name,
            Input: encodeActionInput(group.input),
          });
          work.push({
            type: 'activity',
            id: retryId,
            name: group.name,
            input: group.input,
            group: task.group,
            // Past the retry timeout the attempt fails at once with the last error (no run).
            failImmediately: timedOut
              ? { reason: group.lastReason ?? 'Retry timeout exceeded', details: group.lastDetails ?? '' }
              : undefined,
          });
        } else {
          const childId = group.instanceId ?? subOrchestrationInstanceId(args.instanceId, exec.executionId, retryId);
          appended.push({
            EventType: EventType.SubOrchestrationInstanceCreated,
            EventId: retryId,
            IsPlayed: false,
            Timestamp: timestamp,
            Name: group.name,
            InstanceId: childId,
            Input: encodeRawInput(group.input),
          });
          work.push({
            type: 'subOrchestration',
            id: retryId,
            name: group.name,
            instanceId: childId,
            input: group.input,
          });
        }
      } else if (task.kind === 'retryTimer' || !failed) {
        // Attempts exhausted (the SDK now fails the task) or the attempt succeeded: the group is done.
        delete exec.retries[String(task.group)];
      }
    }
  }

  // 2. Non-determinism: the actions already recorded must come back the same, in the same order.
  const actions = result.actions;
  const known = exec.sigs.length;
  for (let i = 0; i < Math.min(known, actions.length); i++) {
    if (actionSignature(actions[i]) !== exec.sigs[i]) {
      return fail(
        `Non-deterministic workflow detected: action ${i} is now ${describeAction(actions[i])} but the history recorded '${exec.sigs[i]}'. ` +
          'Orchestrator code must replay the same actions in the same order.',
      );
    }
  }
  if (actions.length < known && !result.error) {
    return fail(
      `Non-deterministic workflow detected: the orchestrator yielded ${actions.length} actions but the history recorded ${known}.`,
    );
  }

  // 3. New actions, in the order the SDK numbered them.
  let continueAsNew: { input: unknown } | undefined;
  for (const action of actions.slice(known)) {
    exec.sigs.push(actionSignature(action));
    const unsupported = UNSUPPORTED[action.actionType];
    if (unsupported) {
      return fail(
        `The local durable engine does not support ${unsupported}: ${describeAction(action)} cannot run here.`,
      );
    }
    switch (action.actionType) {
      case ActionType.CallActivity:
      case ActionType.CallActivityWithRetry: {
        const id = exec.nextId++;
        const name = action.functionName ?? '';
        let group: number | undefined;
        if (action.actionType === ActionType.CallActivityWithRetry) {
          if (!action.retryOptions) return fail(`${describeAction(action)} has no valid retryOptions`);
          group = id;
          exec.retries[String(id)] = {
            target: 'activity',
            name,
            input: action.input,
            options: action.retryOptions,
            attempt: 1,
            firstAttemptAtMs: nowMs,
          };
        }
        exec.open[String(id)] = { kind: 'activity', name, group };
        appended.push({
          EventType: EventType.TaskScheduled,
          EventId: id,
          IsPlayed: false,
          Timestamp: timestamp,
          Name: name,
          Input: encodeActionInput(action.input),
        });
        work.push({ type: 'activity', id, name, input: action.input, group });
        break;
      }
      case ActionType.CallSubOrchestrator:
      case ActionType.CallSubOrchestratorWithRetry: {
        const id = exec.nextId++;
        const name = action.functionName ?? '';
        let group: number | undefined;
        if (action.actionType === ActionType.CallSubOrchestratorWithRetry) {
          if (!action.retryOptions) return fail(`${describeAction(action)} has no valid retryOptions`);
          group = id;
          exec.retries[String(id)] = {
            target: 'sub',
            name,
            input: action.input,
            instanceId: action.instanceId,
            options: action.retryOptions,
            attempt: 1,
            firstAttemptAtMs: nowMs,
          };
        }
        const childId = action.instanceId ?? subOrchestrationInstanceId(args.instanceId, exec.executionId, id);
        exec.open[String(id)] = { kind: 'sub', name, group };
        appended.push({
          EventType: EventType.SubOrchestrationInstanceCreated,
          EventId: id,
          IsPlayed: false,
          Timestamp: timestamp,
          Name: name,
          InstanceId: childId,
          Input: encodeRawInput(action.input),
        });
        work.push({ type: 'subOrchestration', id, name, instanceId: childId, input: action.input });
        break;
      }
      case ActionType.CreateTimer: {
        const id = exec.nextId++;
        const fireAt = action.fireAt ?? timestamp;
        exec.open[String(id)] = { kind: 'timer' };
        appended.push({
          EventType: EventType.TimerCreated,
          EventId: id,
          IsPlayed: false,
          Timestamp: timestamp,
          FireAt: fireAt,
        });
        work.push({ type: 'timer', id, fireAt });
        break;
      }
      case ActionType.WaitForExternalEvent:
        break; // keyed by name, takes no id
      case ActionType.ContinueAsNew:
        continueAsNew = { input: action.input };
        break;
      default:
        return fail(`The local durable engine does not know action type ${action.actionType}`);
    }
  }

  if (result.error !== undefined)
    return { exec, appended, work, outcome: { kind: 'failed', message: result.error }, customStatus };
  if (result.isDone && continueAsNew)
    return { exec, appended, work: [], outcome: { kind: 'continuedAsNew', input: continueAsNew.input }, customStatus };
  if (result.isDone)
    return { exec, appended, work: [], outcome: { kind: 'completed', output: result.output }, customStatus };
  return { exec, appended, work, outcome: { kind: 'running' }, customStatus };
}

/** Compares the engine's open ids with the SDK's own `openTasks` (test-mode cross-check). */
export function crossCheckOpenTasks(exec: ExecState, sdkOpen: Map<number, string>): string | undefined {
  const mine = Object.keys(exec.open)
    .map(Number)
    .sort((a, b) => a - b);
  const theirs = [...sdkOpen.keys()].sort((a, b) => a - b);
  if (mine.join(',') !== theirs.join(',')) {
    return `task id mismatch: engine has open ids [${mine.join(',')}], the SDK has [${theirs.join(',')}]`;
  }
  for (const id of mine) {
    const kind = exec.open[String(id)].kind;
    const sdk = sdkOpen.get(id) ?? '';
    const expected =
      kind === 'retryTimer'
        ? 'noOp'
        : kind === 'timer'
          ? `${ActionType.CreateTimer}`
          : kind === 'activity'
            ? 'activity'
            : 'sub';
    const ok =
      expected === 'noOp'
        ? sdk === 'noOp'
        : expected === 'activity'
          ? sdk === `${ActionType.CallActivity}` ||
            sdk === `${ActionType.CallActivityWithRetry}` ||
            (sdk === 'noOp' && exec.open[String(id)].group !== undefined)
          : expected === 'sub'
            ? sdk === `${ActionType.CallSubOrchestrator}` ||
              sdk === `${ActionType.CallSubOrchestratorWithRetry}` ||
              (sdk === 'noOp' && exec.open[String(id)].group !== undefined)
            : sdk === expected;
    if (!ok) return `task ${id}: engine expects ${kind}, the SDK has ${sdk}`;
  }
  return undefined;
}

// ---- commit plans: what one episode (or a transition without code) writes ------------------------

/** Everything one commit writes, derived from the state it read: applied to memory only once stored. */
export interface CommitPlan {
  next: InstanceState;
  /** Events appended to the current generation's history (none when a new generation starts). */
  appended: HistoryEvent[];
  /** Continue-as-new: history restarts empty and the old generation's rows are deleted afterwards. */
  newGeneration: boolean;
  /** New inbox messages (timers, the next execution's start). */
  messages: Message[];
  /** New work rows (activities, sub-orchestration starts, the parent's notification). */
  work: WorkItem[];
  /** The rows written with the state, each tagged with the new episode. */
  upserts: BlobRecord[];
}

/** Ids a plan may need; the caller makes them so that planning stays pure. */
export interface PlanIds {
  executionId(): string;
  /** Enqueue order of a message that becomes due at `atMs`. */
  ord(atMs: number): number;
}

function withRows(plan: Omit<CommitPlan, 'upserts'>, state: InstanceState): CommitPlan {
  const ep = plan.next.episode;
  const upserts = [
    ...historyBlobs(state.gen, state.historyCount, plan.appended, ep),
    ...plan.messages.map((m) => messageBlob(m, ep)),
    ...plan.work.map((w) => workBlob(w, ep)),
  ];
  if (!plan.newGeneration) plan.next.historyCount = state.historyCount + plan.appended.length;
  return { ...plan, upserts };
}

/**
 * The commit of one orchestrator episode: the next state, the history it appends
 * (OrchestratorStarted, the new event, what the decision appended, the completion markers), the
 * messages and work rows it schedules, and the rows that carry them.
 */
export function planCommit(
  state: InstanceState,
  args: {
    decision: Decision;
    started: HistoryEvent;
    newEvent: HistoryEvent;
    timestamp: string;
    nowMs: number;
    ids: PlanIds;
  },
): CommitPlan {
  const { decision, timestamp, nowMs, ids } = args;
  const next: InstanceState = { ...state, exec: decision.exec, lastUpdatedTime: timestamp, episode: state.episode + 1 };
  if (decision.customStatus) next.customStatus = JSON.stringify(decision.customStatus.value);
  const appended: HistoryEvent[] = [args.started, args.newEvent, ...decision.appended];
  const messages: Message[] = [];
  const work: WorkItem[] = [];
  const outcome = decision.outcome;
  const completedMarker: HistoryEvent = {
    EventType: EventType.OrchestratorCompleted,
    EventId: -1,
    IsPlayed: false,
    Timestamp: timestamp,
  };

  if (outcome.kind === 'running') {
    if (next.status === 'Pending' || next.status === 'ContinuedAsNew') next.status = 'Running';
    for (const w of decision.work) planWork(next.exec.executionId, w, nowMs, ids, messages, work);
    appended.push(completedMarker);
  } else if (outcome.kind === 'continuedAsNew') {
    const executionId = ids.executionId();
    const inputText = encodeActionInput(outcome.input);
    next.status = 'ContinuedAsNew';
    next.input = inputText;
    next.gen = state.gen + 1;
    next.historyCount = 0;
    next.exec = newExecState(executionId);
    // Events received but not consumed stay behind with the old history, as in the real
    // extension (preserveUnprocessedEvents defaults to false); queued messages carry over.
    messages.push({
      key: `m-start-${executionId}`,
      kind: 'start',
      ex: executionId,
      due: nowMs,
      ord: ids.ord(nowMs),
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
    return withRows({ next, appended: [], newGeneration: true, messages, work }, state);
  } else {
    const completed = outcome.kind === 'completed';
    next.status = completed ? 'Completed' : 'Failed';
    next.output = completed
      ? encodeResult(outcome.output)
      : JSON.stringify(`Orchestrator function '${state.name}' failed: ${outcome.message}`);
    appended.push(completedMarker, {
      EventType: EventType.ExecutionCompleted,
      EventId: -1,
      IsPlayed: false,
      Timestamp: timestamp,
      Result: completed ? next.output : outcome.message,
      Details: completed ? undefined : outcome.details,
    });
    if (state.parent) work.push(parentNotification(next, outcome));
  }
  return withRows({ next, appended, newGeneration: false, messages, work }, state);
}

/** A decided piece of work as the message (timers) or work row (activities, sub-orchestrations) that carries it. */
function planWork(ex: string, w: Work, nowMs: number, ids: PlanIds, messages: Message[], work: WorkItem[]): void {
  if (w.type === 'timer') {
    const due = Date.parse(w.fireAt);
    messages.push({
      key: `m-t-${ex}-${w.id}`,
      kind: 'timer',
      ex,
      due: Number.isFinite(due) ? due : nowMs,
      ord: ids.ord(Number.isFinite(due) ? Math.max(due, nowMs) : nowMs),
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
    const { id, name, input, failImmediately } = w;
    work.push({ key: `w-a-${ex}-${id}`, type: 'activity', ex, id, name, input, failImmediately });
  } else {
    const { id, name, input } = w;
    work.push({ key: `w-s-${ex}-${id}`, type: 'startSub', ex, id, name, childId: w.instanceId, input });
  }
}

/** The work row that tells a sub-orchestration's parent how it ended. */
export function parentNotification(
  state: InstanceState,
  outcome: { kind: 'completed'; output: unknown } | { kind: 'failed'; message: string; details?: string },
): NotifyParentWork {
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
  const ex = state.exec.executionId;
  return { key: `w-n-${ex}`, type: 'notifyParent', ex, parent, completion };
}

/** Terminate: the instance ends with the reason as its output, without running its code. */
export function planTerminate(state: InstanceState, reason: string | undefined, timestamp: string): CommitPlan {
  const next: InstanceState = {
    ...state,
    status: 'Terminated',
    lastUpdatedTime: timestamp,
    episode: state.episode + 1,
    output: JSON.stringify(reason ?? ''),
  };
  const ev: HistoryEvent = {
    EventType: EventType.ExecutionTerminated,
    EventId: -1,
    IsPlayed: false,
    Timestamp: timestamp,
    Input: reason,
  };
  return withRows({ next, appended: [ev], newGeneration: false, messages: [], work: [] }, state);
}

/** Suspend or resume: a status change and its history event; the caller drops a no-op request. */
export function planSuspendResume(
  state: InstanceState,
  suspend: boolean,
  reason: string | undefined,
  timestamp: string,
): CommitPlan {
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
    Reason: reason,
  };
  return withRows({ next, appended: [ev], newGeneration: false, messages: [], work: [] }, state);
}

/** Fails an instance without running its code (an episode that storage refused to persist). */
export function planFailure(state: InstanceState, message: string, timestamp: string): CommitPlan {
  const next: InstanceState = {
    ...state,
    status: 'Failed',
    lastUpdatedTime: timestamp,
    episode: state.episode + 1,
    output: JSON.stringify(`Orchestrator function '${state.name}' failed: ${message}`),
  };
  const work = state.parent ? [parentNotification(next, { kind: 'failed', message })] : [];
  return withRows({ next, appended: [], newGeneration: false, messages: [], work }, state);
}

export type { Action };
