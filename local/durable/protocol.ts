// The out-of-process Durable Functions protocol as the `durable-functions` 3.x package speaks it
// (research section 2): history event shapes, the orchestrator's returned state and actions, the
// trigger payload, and the payload encodings the real extension uses.
import type { RpcTypedData } from '../host/coreTypes';

export const EventType = {
  ExecutionStarted: 0,
  ExecutionCompleted: 1,
  ExecutionFailed: 2,
  ExecutionTerminated: 3,
  TaskScheduled: 4,
  TaskCompleted: 5,
  TaskFailed: 6,
  SubOrchestrationInstanceCreated: 7,
  SubOrchestrationInstanceCompleted: 8,
  SubOrchestrationInstanceFailed: 9,
  TimerCreated: 10,
  TimerFired: 11,
  OrchestratorStarted: 12,
  OrchestratorCompleted: 13,
  EventSent: 14,
  EventRaised: 15,
  ContinueAsNew: 16,
  GenericEvent: 17,
  HistoryState: 18,
  ExecutionSuspended: 19,
  ExecutionResumed: 20,
} as const;
export type EventTypeNumber = (typeof EventType)[keyof typeof EventType];
export const EventTypeName: Record<number, string> = Object.fromEntries(
  Object.entries(EventType).map(([k, v]) => [v, k]),
);

/** A history event as the extension serializes it (PascalCase, Newtonsoft defaults). */
export interface HistoryEvent {
  EventType: number;
  EventId: number;
  IsPlayed: boolean;
  Timestamp: string;
  Name?: string;
  Input?: string;
  Result?: string;
  Reason?: string;
  Details?: string;
  TaskScheduledId?: number;
  TimerId?: number;
  FireAt?: string;
  InstanceId?: string;
  ParentInstanceId?: string;
}

export const ActionType = {
  CallActivity: 0,
  CallActivityWithRetry: 1,
  CallSubOrchestrator: 2,
  CallSubOrchestratorWithRetry: 3,
  ContinueAsNew: 4,
  CreateTimer: 5,
  WaitForExternalEvent: 6,
  CallEntity: 7,
  CallHttp: 8,
  SignalEntity: 9,
  ScheduledSignalEntity: 10,
  WhenAny: 11,
  WhenAll: 12,
  LockEntities: 13,
  ReleaseEntities: 14,
} as const;

export interface RetryOptions {
  firstRetryIntervalInMilliseconds: number;
  maxNumberOfAttempts: number;
  backoffCoefficient?: number;
  maxRetryIntervalInMilliseconds?: number;
  retryTimeoutInMilliseconds?: number;
}

/** One leaf action (compound WhenAll/WhenAny actions are flattened away). */
export interface Action {
  actionType: number;
  functionName?: string;
  /** Activity and continue-as-new inputs arrive pre-encoded when they were strings (Utils.processInput). */
  input?: unknown;
  retryOptions?: RetryOptions;
  instanceId?: string;
  fireAt?: string;
  isCanceled?: boolean;
  externalEventName?: string;
}

/** The OrchestratorState the SDK returns (or embeds after `$OutOfProcData$:` when it fails). */
export interface OrchestratorResult {
  isDone: boolean;
  actions: Action[];
  output?: unknown;
  error?: string;
  customStatus?: unknown;
  hasCustomStatus: boolean;
}

export const OUT_OF_PROC_MARKER = '$OutOfProcData$:';

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function num(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

function parseRetryOptions(v: unknown): RetryOptions | undefined {
  if (!isRecord(v)) return undefined;
  const first = num(v.firstRetryIntervalInMilliseconds);
  const max = num(v.maxNumberOfAttempts);
  if (first === undefined || max === undefined) return undefined;
  return {
    firstRetryIntervalInMilliseconds: first,
    maxNumberOfAttempts: max,
    backoffCoefficient: num(v.backoffCoefficient),
    maxRetryIntervalInMilliseconds: num(v.maxRetryIntervalInMilliseconds),
    retryTimeoutInMilliseconds: num(v.retryTimeoutInMilliseconds),
  };
}

/** Depth-first, in order: the order in which the SDK's trackOpenTask visits (and numbers) tasks. */
export function flattenActions(actions: unknown): Action[] {
  const out: Action[] = [];
  const visit = (a: unknown): void => {
    if (Array.isArray(a)) {
      for (const x of a) visit(x);
      return;
    }
    if (!isRecord(a)) throw new Error(`Malformed action in orchestrator state: ${JSON.stringify(a)}`);
    const type = num(a.actionType);
    if (type === undefined) throw new Error(`Action without actionType: ${JSON.stringify(a)}`);
    if (type === ActionType.WhenAll || type === ActionType.WhenAny) {
      visit(a.compoundActions ?? []);
      return;
    }
    out.push({
      actionType: type,
      functionName: typeof a.functionName === 'string' ? a.functionName : undefined,
      input: a.input,
      retryOptions: parseRetryOptions(a.retryOptions),
      instanceId: typeof a.instanceId === 'string' && a.instanceId ? a.instanceId : undefined,
      fireAt: typeof a.fireAt === 'string' ? a.fireAt : a.fireAt instanceof Date ? a.fireAt.toISOString() : undefined,
      isCanceled: a.isCanceled === true,
      externalEventName: typeof a.externalEventName === 'string' ? a.externalEventName : undefined,
    });
  };
  visit(actions);
  return out;
}

export function parseOrchestratorState(value: unknown): OrchestratorResult {
  if (!isRecord(value)) throw new Error('The orchestrator returned no OrchestratorState');
  if (typeof value.isDone !== 'boolean' || !Array.isArray(value.actions)) {
    throw new Error(`The orchestrator returned a malformed OrchestratorState: ${JSON.stringify(value).slice(0, 300)}`);
  }
  return {
    isDone: value.isDone,
    actions: flattenActions(value.actions),
    output: value.output,
    error: typeof value.error === 'string' ? value.error : undefined,
    customStatus: value.customStatus,
    hasCustomStatus: 'customStatus' in value && value.customStatus !== undefined && value.customStatus !== null,
  };
}

/** The state embedded in a failed orchestrator invocation's error message, if any. */
export function parseOutOfProcError(message: string): OrchestratorResult | undefined {
  const at = message.indexOf(OUT_OF_PROC_MARKER);
  if (at < 0) return undefined;
  try {
    return parseOrchestratorState(JSON.parse(message.slice(at + OUT_OF_PROC_MARKER.length)));
  } catch {
    return undefined;
  }
}

/** A stable signature of an action for the non-determinism check (type and name, as DTFx checks). */
export function actionSignature(a: Action): string {
  return `${a.actionType}:${a.functionName ?? a.externalEventName ?? ''}`;
}

export function describeAction(a: Action): string {
  const names = Object.entries(ActionType).find(([, v]) => v === a.actionType)?.[0] ?? `action ${a.actionType}`;
  return a.functionName ? `${names}('${a.functionName}')` : names;
}

// --- the trigger payload ----------------------------------------------------------------------

/** 100 years: the SDK then never splits timers into LongTimerTasks (research 2.4 rule 3). */
export const MAXIMUM_SHORT_TIMER_DURATION = '36500.00:00:00';
export const LONG_RUNNING_TIMER_INTERVAL = '3.00:00:00';

export interface TriggerPayload {
  history: HistoryEvent[];
  input: unknown;
  instanceId: string;
  isReplaying: boolean;
  parentInstanceId: string | null;
  upperSchemaVersion: number;
  upperSchemaVersionNew: number;
  longRunningTimerIntervalDuration: string;
  maximumShortTimerDuration: string;
  defaultHttpAsyncRequestSleepTimeMillseconds: number;
}

export function buildTriggerPayload(args: {
  history: HistoryEvent[];
  input: unknown;
  instanceId: string;
  parentInstanceId?: string;
  isReplaying: boolean;
}): TriggerPayload {
  return {
    history: args.history,
    input: args.input,
    instanceId: args.instanceId,
    isReplaying: args.isReplaying,
    parentInstanceId: args.parentInstanceId ?? null,
    upperSchemaVersion: 1,
    upperSchemaVersionNew: 2,
    longRunningTimerIntervalDuration: LONG_RUNNING_TIMER_INTERVAL,
    maximumShortTimerDuration: MAXIMUM_SHORT_TIMER_DURATION,
    defaultHttpAsyncRequestSleepTimeMillseconds: 30000,
  };
}

// --- payload encodings --------------------------------------------------------------------------

/** Activity input as typed data: string inputs are already JSON-encoded by the SDK (research 2.8). */
export function activityInputData(input: unknown): RpcTypedData {
  return typeof input === 'string' ? { string: input } : { json: JSON.stringify(input ?? null) };
}

/** JSON text of an input value as it travels in ExecutionStarted/TaskScheduled `Input`. */
export function encodeActionInput(input: unknown): string | undefined {
  if (input === undefined) return undefined;
  return typeof input === 'string' ? input : JSON.stringify(input);
}

/** Decodes an invocation's returnValue into the JSON text stored as TaskCompleted.Result. */
export function decodeReturnValue(rv: RpcTypedData | null | undefined): unknown {
  if (!rv) return undefined;
  if (rv.json !== undefined && rv.json !== null) return JSON.parse(rv.json);
  if (rv.string !== undefined && rv.string !== null) return rv.string;
  if (rv.int !== undefined && rv.int !== null) return Number(rv.int);
  if (rv.double !== undefined && rv.double !== null) return Number(rv.double);
  if (rv.bytes) return Buffer.from(rv.bytes).toString('base64');
  return undefined;
}

/** `undefined` would make the SDK's JSON.parse throw, so it becomes `null`. */
export function encodeResult(value: unknown): string {
  return JSON.stringify(value ?? null) ?? 'null';
}

/** Sub-orchestration inputs are NOT pre-encoded by the SDK (CallSubOrchestratorAction). */
export function encodeRawInput(input: unknown): string | undefined {
  return input === undefined ? undefined : JSON.stringify(input);
}

export function parseJsonOrUndefined(text: string | undefined): unknown {
  if (text === undefined || text === '') return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export function errorStack(err: unknown): string {
  return err instanceof Error ? (err.stack ?? err.message) : String(err);
}
