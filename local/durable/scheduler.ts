// Scheduling without durable knowledge: a ready queue drained by a bounded number of concurrent
// runs (one pool for orchestrator episodes, one for activities) and a timer heap that wakes keys
// at their due time with a single Node timer armed for the earliest.
import { MinHeap } from '../../lib/minHeap';

/** The longest delay setTimeout accepts; longer waits re-arm when it fires. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** A FIFO of ready items run at most `concurrency` at a time, from start() until stop(). */
export class BoundedPool<T> {
  private readonly queue: T[] = [];
  private active = 0;
  private open = false;

  constructor(
    private readonly concurrency: number,
    /** Runs one item; its rejection goes to `onError`, never to the caller of push(). */
    private readonly run: (item: T) => Promise<void>,
    private readonly onError: (item: T, err: unknown) => void,
    /** Lets the owner wait for runs in flight when it closes. */
    private readonly track: (p: Promise<unknown>) => void,
  ) {}

  get running(): number {
    return this.active;
  }

  push(item: T): void {
    this.queue.push(item);
    this.pump();
  }

  start(): void {
    this.open = true;
    this.pump();
  }

  /** Drops what is queued; runs in flight finish on their own. */
  stop(): void {
    this.open = false;
    this.queue.length = 0;
  }

  private pump(): void {
    while (this.open && this.active < this.concurrency && this.queue.length > 0) {
      const item = this.queue.shift()!;
      this.active++;
      const run = this.run(item)
        .catch((err: unknown) => this.onError(item, err))
        .finally(() => {
          this.active--;
          this.pump();
        });
      this.track(run);
    }
  }
}

/** Calls `fire(key)` once each pushed due time has passed; keys may repeat. */
export class TimerHeap<K> {
  private readonly heap = new MinHeap<{ due: number; key: K }>((t) => t.due);
  private timer?: NodeJS.Timeout;
  private timerDue = Infinity;
  private open = false;

  constructor(private readonly fire: (key: K) => void) {}

  push(due: number, key: K): void {
    this.heap.push({ due, key });
    if (due < this.timerDue) this.arm();
  }

  start(): void {
    this.open = true;
    this.arm();
  }

  /** Clears the Node timer so the process can exit; pending entries are forgotten by the owner. */
  stop(): void {
    this.open = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerDue = Infinity;
  }

  private arm(): void {
    if (!this.open) return;
    const next = this.heap.peek();
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerDue = Infinity;
    if (!next) return;
    this.timerDue = next.due;
    const wait = Math.min(Math.max(0, next.due - Date.now()), MAX_TIMER_MS);
    this.timer = setTimeout(() => this.onTimer(), wait);
  }

  private onTimer(): void {
    this.timer = undefined;
    this.timerDue = Infinity;
    const now = Date.now();
    while (this.heap.size > 0 && this.heap.peek()!.due <= now) this.fire(this.heap.pop()!.key);
    this.arm();
  }
}
