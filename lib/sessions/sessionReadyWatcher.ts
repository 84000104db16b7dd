// One watcher per process for the opens that wait for their session to be ready. A device's ready
// call that lands on this instance nudges it (nudge): the session alone is then read every 50 ms
// until its orchestration has taken the event, so the open answers at once for one point read or
// two. A ready call that lands on another instance is seen by the fallback: one read of the running
// sessions created lately every second, whatever the number of waiting requests (in a burst of 500
// opens, reading that list every 100 ms held the storage the opens themselves needed).
import type { InstanceState, SessionOrchestrations } from './orchestrations';

export interface SessionReadyWatcherOptions {
  /** Time between two list reads while anyone waits (default 1000 ms): the cross-instance fallback. */
  intervalMs?: number;
  /** Time between two point reads of a nudged session (default 50 ms). */
  hotIntervalMs?: number;
  /** How long a nudge keeps its session read at hotIntervalMs (default 3 s). */
  hotForMs?: number;
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
  /**
   * Two loops that never wait for each other: the list read (slow under load: it pages through
   * every session opened lately) must not hold back the point reads of the sessions a ready call
   * has just nudged, or a burst's ready answers wait for the list.
   */
  private readonly listLoop = new Loop(
    () => this.listTick(),
    () => this.waiters.size > 0,
  );
  private readonly hotLoop = new Loop(
    () => this.hotTick(),
    () => this.hot.size > 0,
  );
  private readonly intervalMs: number;
  private readonly hotIntervalMs: number;
  private readonly hotForMs: number;
  /** Nudged sessions → until when they are read alone at hotIntervalMs. */
  private readonly hot = new Map<string, number>();
  private readonly slackMs: number;
  private readonly now: () => number;
  /** Reads made since the watcher was made (list reads and point reads), for tests and logs. */
  readonly stats = { listReads: 0, pointReads: 0 };

  constructor(private readonly o: SessionReadyWatcherOptions = {}) {
    this.intervalMs = o.intervalMs ?? 1000;
    this.hotIntervalMs = o.hotIntervalMs ?? 50;
    this.hotForMs = o.hotForMs ?? 3000;
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
      this.listLoop.schedule(0);
    });
  }

  /**
   * The device's ready (or refusal) for this session reached this instance: read the session alone
   * every hotIntervalMs for a while (its orchestration takes the event within an episode) instead of
   * waiting for the next list read. A session nobody waits for here costs nothing.
   */
  nudge(sessionId: string): void {
    if (![...this.waiters].some((w) => w.sessionId === sessionId)) return;
    this.hot.set(sessionId, this.now() + this.hotForMs);
    this.hotLoop.schedule(this.hotIntervalMs);
  }

  /** Stops the ticks; waiting requests get their last state now. */
  close(): void {
    this.listLoop.stop();
    this.hotLoop.stop();
    for (const w of [...this.waiters]) w.resolve(undefined);
  }

  /** The nudged sessions that still have a waiter, each read alone. Returns the next tick's delay. */
  private async hotTick(): Promise<number | undefined> {
    const port = this.port;
    const now = this.now();
    const waitingIds = new Set([...this.waiters].map((w) => w.sessionId));
    for (const [id, until] of this.hot) if (until <= now || !waitingIds.has(id)) this.hot.delete(id);
    if (!port || this.hot.size === 0) return undefined;
    try {
      await this.readEach(
        port,
        [...this.waiters].filter((w) => this.hot.has(w.sessionId)),
      );
    } catch (err) {
      this.o.onError?.(err);
    }
    return this.hotIntervalMs;
  }

  /** Every waiter from one list read (point reads for those not listed). Returns the next tick's delay. */
  private async listTick(): Promise<number | undefined> {
    const port = this.port;
    if (!port || this.waiters.size === 0) return undefined;
    try {
      const waiting = [...this.waiters];
      if (!port.listRunningSince) {
        // Without a list read (fakes): every waiter alone, still from this one loop.
        await this.readEach(port, waiting);
        return Math.min(this.intervalMs, 100);
      }
      const oldest = Math.min(...waiting.map((w) => w.createdAtMs));
      this.stats.listReads++;
      const running = await port.listRunningSince(new Date(oldest - this.slackMs));
      const missing: Waiter[] = [];
      for (const w of waiting) {
        const state = running.get(w.sessionId);
        if (!state) missing.push(w);
        else if (w.settled(state)) w.resolve(state);
      }
      // Not running (finished: failed before it was ready) or not listed yet: read each one.
      await this.readEach(port, missing);
    } catch (err) {
      this.o.onError?.(err);
    }
    return port.listRunningSince ? this.intervalMs : Math.min(this.intervalMs, 100);
  }

  private async readEach(port: SessionOrchestrations, waiters: Waiter[]): Promise<void> {
    await Promise.all(
      waiters.map(async (w) => {
        if (!this.waiters.has(w)) return;
        this.stats.pointReads++;
        const state = await port.getStatus(w.sessionId);
        if (this.waiters.has(w) && w.settled(state)) w.resolve(state);
      }),
    );
  }
}

/** A self-rescheduling loop: at most one timer armed and one run in flight; a run returns its next delay. */
class Loop {
  private timer?: NodeJS.Timeout;
  private running = false;

  constructor(
    /** One run; never throws. Undefined: the loop rests until the next schedule(). */
    private readonly run: () => Promise<number | undefined>,
    /** Whether there is anything to do (checked when a run is armed). */
    private readonly wanted: () => boolean,
  ) {}

  schedule(delayMs: number): void {
    if (this.timer || this.running || !this.wanted()) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.tick();
    }, delayMs);
    this.timer.unref?.();
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private async tick(): Promise<void> {
    this.running = true;
    let next: number | undefined;
    try {
      next = await this.run();
    } finally {
      this.running = false;
    }
    if (next !== undefined) this.schedule(next);
  }
}
