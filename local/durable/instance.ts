// What an orchestration instance is to the engine: its persisted state, its inbox messages, its
// pending work rows, the in-memory handle, and the row keys and blobs they are stored under.
import { randomBytes } from 'node:crypto';
import type { HistoryEvent } from './protocol';
import type { ExecState } from './replay';
import type { BlobRecord } from './store';

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

export type MessageKind = 'start' | 'event' | 'result' | 'timer' | 'terminate' | 'suspend' | 'resume';

export interface Message {
  key: string;
  kind: MessageKind;
  /** The execution a result/timer/start belongs to; messages of other executions are dropped. */
  ex?: string;
  due: number;
  ord: number;
  event?: HistoryEvent;
  reason?: string;
}

export type ActivityWork = {
  key: string;
  type: 'activity';
  ex: string;
  id: number;
  name: string;
  input: unknown;
  failImmediately?: { reason: string; details: string };
};
export type StartSubWork = {
  key: string;
  type: 'startSub';
  ex: string;
  id: number;
  name: string;
  childId: string;
  input: unknown;
};
export type NotifyParentWork = {
  key: string;
  type: 'notifyParent';
  ex: string;
  parent: { instanceId: string; executionId: string; taskId: number };
  completion: HistoryEvent;
};
export type WorkItem = ActivityWork | StartSubWork | NotifyParentWork;

/** An instance in memory: its state, its inbox, and the scheduling flags of the ready queue. */
export class Instance {
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

let ordCounter = 0;
/** Enqueue order: wall-clock ms with a per-process counter, so it survives restarts. */
export function nextOrd(at = Date.now()): number {
  ordCounter = (ordCounter + 1) % 1000;
  return at * 1000 + ordCounter;
}

function pad(n: number, width: number): string {
  return String(n).padStart(width, '0');
}
export function historyKey(gen: number, seq: number): string {
  return `h-${pad(gen, 6)}-${pad(seq, 8)}`;
}
/** The row-key prefix of one execution generation's history. */
export function historyPrefix(gen: number): string {
  return `h-${pad(gen, 6)}-`;
}

export function newExecutionId(): string {
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

export function stateBlob(state: InstanceState): BlobRecord {
  return { rowKey: '~state', text: JSON.stringify(state), ep: state.episode, props: { status: state.status } };
}

export function messageBlob(m: Message, ep: number): BlobRecord {
  return { rowKey: m.key, text: JSON.stringify(m), ep, props: { due: m.due } };
}

export function workBlob(w: WorkItem, ep: number): BlobRecord {
  return { rowKey: w.key, text: JSON.stringify(w), ep, props: {} };
}

export function historyBlobs(gen: number, firstSeq: number, events: HistoryEvent[], ep: number): BlobRecord[] {
  return events.map((e, i) => ({ rowKey: historyKey(gen, firstSeq + i), text: JSON.stringify(e), ep, props: {} }));
}
