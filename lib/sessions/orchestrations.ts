// The port through which sessions reach their orchestration (Durable Functions in production,
// a fake in unit tests): start one, read its state, signal it. lib/ never sees the durable client.
import type { SessionInput } from './session';

/** What the orchestration runtime says about an instance (Durable's runtimeStatus and customStatus). */
export interface InstanceState {
  runtimeStatus: string;
  customStatus?: unknown;
  input?: unknown;
}

export interface SessionOrchestrations {
  /** Starts the session's orchestration with the session id as its instance id. */
  startNew(input: SessionInput): Promise<void>;
  /** The instance's state; undefined when no instance has that id (never started, or purged). */
  getStatus(sessionId: string): Promise<InstanceState | undefined>;
  /**
   * The running (or pending) instances created at or after `createdFrom`, by id: one read for all
   * the opens a process waits on (SessionReadyWatcher). Optional: without it, each is read alone.
   */
  listRunningSince?(createdFrom: Date): Promise<Map<string, InstanceState>>;
  /** Raises an event; false when the instance is gone or already finished. */
  raiseEvent(sessionId: string, eventName: string, data: unknown): Promise<boolean>;
  /** Stops an instance for good (not used by the session rules yet). */
  terminate?(sessionId: string, reason: string): Promise<void>;
}

/** Pending and Running instances still take events. */
export function isRunning(state: InstanceState | undefined): boolean {
  return state?.runtimeStatus === 'Running' || state?.runtimeStatus === 'Pending';
}
