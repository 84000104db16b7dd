// The start()/close() guard every long-lived local component shares (CONVENTIONS: "guarded by a
// status"): one status type and one set of transitions instead of one copy per server.

export type LifecycleStatus = 'closed' | 'starting' | 'running' | 'closing';

export class Lifecycle {
  private current: LifecycleStatus = 'closed';

  /** `component` names the owner in the error a second start() throws. */
  constructor(private readonly component: string) {}

  get status(): LifecycleStatus {
    return this.current;
  }
  get running(): boolean {
    return this.current === 'running';
  }
  /** Starting or running: new work may still be taken. */
  get accepting(): boolean {
    return this.current === 'starting' || this.current === 'running';
  }
  /** Closing or closed: work that finishes now must not start more. */
  get stopping(): boolean {
    return this.current === 'closing' || this.current === 'closed';
  }

  /**
   * closed → starting → running. When `body` throws, `cleanup` (the component's close steps) runs
   * and the status is closed again, so a failed start leaves nothing behind and may be retried.
   */
  async start(body: () => Promise<void>, cleanup: () => Promise<void>): Promise<void> {
    if (this.current !== 'closed') throw new Error(`Cannot start ${this.component} in status ${this.current}`);
    this.current = 'starting';
    try {
      await body();
    } catch (err) {
      this.current = 'closing';
      await cleanup().catch(() => undefined);
      this.current = 'closed';
      throw err;
    }
    if (this.current !== 'starting') throw new Error(`${this.component} was closed while starting`);
    this.current = 'running';
  }

  /** starting|running → closing → closed; from any other status it returns at once (idempotent). */
  async close(body: () => Promise<void>): Promise<void> {
    if (!this.accepting) return;
    this.current = 'closing';
    try {
      await body();
    } finally {
      this.current = 'closed';
    }
  }
}
