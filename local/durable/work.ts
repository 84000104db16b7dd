// Work an episode scheduled, run outside it: activities (at least once: the work row is deleted
// only by the episode that consumes the result), sub-orchestration starts, and the notification a
// finished sub-orchestration sends its parent. Results go back into the owner's inbox.
import type { DurableClientOperations } from './clientOps';
import type { ExtensionHostApi } from '../host/functionsHost';
import type { RpcTypedData } from '../host/coreTypes';
import {
  type ActivityWork,
  type Instance,
  InstanceExistsError,
  type Message,
  messageBlob,
  nextOrd,
  type NotifyParentWork,
  type StartSubWork,
  TERMINAL,
} from './instance';
import {
  activityInputData,
  decodeReturnValue,
  encodeResult,
  errorMessage,
  errorStack,
  EventType,
  type HistoryEvent,
} from './protocol';
import type { InstanceRegistry } from './registry';
import { type DurableStore, isTransient } from './store';

/** What running work needs of the engine. */
export interface WorkSeam {
  readonly host: ExtensionHostApi;
  readonly client: DurableClientOperations;
  /** Starting or running: transient failures are still worth retrying. */
  readonly accepting: boolean;
  /** Closing or closed: a finished activity leaves its row to run again after a restart. */
  readonly stopping: boolean;
  readonly stats: { activityRuns: number };
  readonly activityRunsByName: Map<string, number>;
  wake(inst: Instance): void;
  log(level: 'information' | 'warning' | 'error', message: string): void;
}

export class WorkRunner {
  constructor(
    private readonly registry: InstanceRegistry,
    private readonly store: DurableStore,
    private readonly engine: WorkSeam,
  ) {}

  async runActivity(instanceId: string, w: ActivityWork): Promise<void> {
    const inst = this.registry.get(instanceId);
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
      this.engine.stats.activityRuns++;
      this.engine.activityRunsByName.set(w.name, (this.engine.activityRunsByName.get(w.name) ?? 0) + 1);
      try {
        const meta: Record<string, RpcTypedData> = { instanceId: { string: instanceId } };
        const response = await this.engine.host.invoke(w.name, activityInputData(w.input), meta);
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
    // Closing: the work row stays, so the activity runs again after a restart.
    if (this.engine.stopping) return;
    const owner = this.registry.get(instanceId);
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
    this.engine.wake(owner);
  }

  async startSubOrchestration(parentId: string, w: StartSubWork): Promise<void> {
    const parent = this.registry.get(parentId);
    if (parent && parent.state.exec.executionId === w.ex && !TERMINAL.has(parent.state.status)) {
      const info = { instanceId: parentId, executionId: w.ex, taskId: w.id };
      try {
        const live = this.registry.get(w.childId);
        const sameChild = live?.state.parent?.executionId === w.ex && live.state.parent.taskId === w.id;
        if (!sameChild)
          await this.engine.client.startNew(
            w.name,
            w.childId,
            w.input === undefined ? undefined : JSON.stringify(w.input),
            info,
          );
      } catch (err) {
        const existing = err instanceof InstanceExistsError ? await this.registry.readState(w.childId) : undefined;
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

  async notifyParent(childId: string, w: NotifyParentWork): Promise<void> {
    const p = w.parent;
    const parent = this.registry.get(p.instanceId);
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
    const inst = this.registry.get(instanceId);
    if (inst) {
      inst.messages.set(msg.key, msg);
      this.engine.wake(inst);
    }
  }

  async withRetry(what: string, fn: () => Promise<void>, ignoreNotFound = false): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        const code = (err as { statusCode?: number }).statusCode;
        if (ignoreNotFound && code === 404) return; // the instance was purged meanwhile
        if (!isTransient(err) || attempt >= 8 || !this.engine.accepting) {
          this.engine.log('error', `${what} failed: ${errorMessage(err)}`);
          return;
        }
        await delay(Math.min(2000, 50 * 2 ** attempt));
      }
    }
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
