// One watcher per process for the opens that wait for their session to be ready: one read of the
// running sessions created lately per tick, whatever the number of waiting requests, instead of
// each request polling its own status. It reads the orchestration store every instance shares, so a
// session made ready through another instance (the device's ready call may land anywhere) wakes
// its waiter here just the same.
import type { InstanceState, SessionOrchestrations } from './orchestrations';

export interface SessionReadyWatcherOptions {
  /** Time between two reads while anyone waits (default 100 ms). */
  intervalMs?: number;
  /**
   * How far before the oldest waiter's creation the read reaches (default 5 s): the instance is
   * created after the waiter's start, and instances' clocks may differ a little.
   */
  createdSlackMs?: number;
  /** A read failed (storage busy): waiters keep waiting, the next tick reads again. */
  onError?: (err: unknown) => void;
  now?: () => number;
}

interface Waiter {
  sessionId: string;
  createdAtMs: number;
  /** True when the state is worth handing back (ready, failed…); false: keep waiting. */
  settled: (state: InstanceState | undefined) => boolean;
  resolve: (state: InstanceState | undefined) => void;
  timer: NodeJS.Timeout;
}

export class SessionReadyWatcher {
  private readonly waiters = new Set<Waiter>();
  /** The port of the latest waiter: any durable client of the task hub reads the same store. */
  private port?: SessionOrchestrations;
  private ticking?: NodeJS.Timeout;
  private running = false;
  private readonly intervalMs: number;
  private readonly slackMs: number;
  private readonly now: () => number;
  /** Reads made since the watcher was made (list reads and point reads), for tests and logs. */
  readonly stats = { listReads: 0, pointReads: 0 };

  constructor(private readonly o: SessionReadyWatcherOptions = {}) {
    this.intervalMs = o.intervalMs ?? 100;
    this.slackMs = o.createdSlackMs ?? 5000;
    this.now = o.now ?? Date.now;
  }

  /** How many requests wait now. */
  get waiting(): number {
    return this.waiters.size;
  }

  /**
   * Resolves with the session's state once `settled` says so, or with the last state seen (or
   * undefined) at `deadlineMs`. `createdAtMs`: when the open started (before its orchestration).
   */
  wait(
    orchestrations: SessionOrchestrations,
    sessionId: string,
    createdAtMs: number,
    deadlineMs: number,
    settled: (state: InstanceState | undefined) => boolean,
  ): Promise<InstanceState | undefined> {
    this.port = orchestrations;
    return new Promise((resolve) => {
      let last: InstanceState | undefined;
      const waiter: Waiter = {
        sessionId,
        createdAtMs,
        settled: (s) => {
          if (s) last = s;
          return settled(s);
        },
        resolve: (s) => {
          clearTimeout(waiter.timer);
          this.waiters.delete(waiter);
          resolve(s);
        },
        timer: setTimeout(() => waiter.resolve(last), Math.max(0, deadlineMs - this.now())),
      };
      this.waiters.add(waiter);
      this.schedule(0);
    });
  }

  /** Stops the ticks; waiting requests get their last state now. */
  close(): void {
    clearTimeout(this.ticking);
    this.ticking = undefined;
    for (const w of [...this.waiters]) w.resolve(undefined);
  }

  private schedule(delayMs: number): void {
    if (this.ticking || this.running || this.waiters.size === 0) return;
    this.ticking = setTimeout(() => {
      this.ticking = undefined;
      void this.tick();
    }, delayMs);
    this.ticking.unref?.();
  }

  private async tick(): Promise<void> {
    const port = this.port;
    if (!port || this.waiters.size === 0) return;
    this.running = true;
    try {
      const waiting = [...this.waiters];
      let missing = waiting;
      if (port.listRunningSince) {
        const oldest = Math.min(...waiting.map((w) => w.createdAtMs));
        this.stats.listReads++;
        const running = await port.listRunningSince(new Date(oldest - this.slackMs));
        missing = [];
        for (const w of waiting) {
          const state = running.get(w.sessionId);
          if (!state) missing.push(w);
          else if (w.settled(state)) w.resolve(state);
        }
      }
      // Not running (finished: failed before it was ready) or not listed yet: read each one.
      // Without a list read (fakes), this is every waiter, still from this one loop.
      await Promise.all(
        missing.map(async (w) => {
          if (!this.waiters.has(w)) return;
          this.stats.pointReads++;
          const state = await port.getStatus(w.sessionId);
          if (this.waiters.has(w) && w.settled(state)) w.resolve(state);
        }),
      );
    } catch (err) {
      this.o.onError?.(err);
    } finally {
      this.running = false;
      this.schedule(this.intervalMs);
    }
  }
}
