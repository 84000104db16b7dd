// How many opens one instance works on at a time, in arrival order. An open's storage work (the
// record, the lease, the orchestration's start, the device's message) is CPU and storage round
// trips; 500 of them started at once all advance together and all finish late (none within the
// budget), while the same work taken a few at a time in order finishes the first ones early and
// leaves room for the ready calls of the opens already sent to their devices. The waiting for the
// device is not counted here: an open leaves the gate once its device has been told.
import { ServiceBusyError } from '../errors';

export interface OpenAdmissionOptions {
  /** Opens worked on at once (SESSION_OPEN_CONCURRENCY). */
  concurrency: number;
  now?: () => number;
}

interface Waiter {
  admit: (release: AdmissionRelease) => void;
  timer: NodeJS.Timeout;
}

/** A release function: idempotent, so a `finally` and an error path may both call it. */
export type AdmissionRelease = () => void;

export class OpenAdmission {
  private readonly now: () => number;
  private readonly queue: Waiter[] = [];
  private running = 0;
  /** The mean time an admitted open held its slot (exponential average), for Retry-After. */
  private meanHoldMs = 200;

  constructor(private readonly o: OpenAdmissionOptions) {
    if (!Number.isInteger(o.concurrency) || o.concurrency < 1) {
      throw new RangeError(`concurrency must be a positive integer, not ${o.concurrency}`);
    }
    this.now = o.now ?? Date.now;
  }

  /** Opens holding a slot now. */
  get active(): number {
    return this.running;
  }

  /** Opens waiting for a slot now. */
  get waiting(): number {
    return this.queue.length;
  }

  /**
   * Waits for a slot, in arrival order, until `deadline` (epoch ms). Throws ServiceBusyError (503
   * with Retry-After) when the deadline passes first: nothing of the open has been done yet, so the
   * caller may simply retry.
   */
  async enter(deadline: number): Promise<AdmissionRelease> {
    if (this.running < this.o.concurrency && this.queue.length === 0) return this.hold();
    const ahead = this.queue.length;
    return new Promise<AdmissionRelease>((resolve, reject) => {
      const waiter: Waiter = {
        admit: (release) => {
          clearTimeout(waiter.timer);
          resolve(release);
        },
        timer: setTimeout(
          () => {
            const i = this.queue.indexOf(waiter);
            if (i >= 0) this.queue.splice(i, 1);
            reject(this.busy(ahead));
          },
          Math.max(0, deadline - this.now()),
        ),
      };
      this.queue.push(waiter);
    });
  }

  private hold(): AdmissionRelease {
    this.running++;
    const since = this.now();
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.meanHoldMs = 0.9 * this.meanHoldMs + 0.1 * Math.max(0, this.now() - since);
      this.running--;
      this.next();
    };
  }

  private next(): void {
    while (this.running < this.o.concurrency && this.queue.length > 0) {
      // The slot is taken here, before the waiter's continuation runs, so a new arrival cannot
      // jump the queue in between.
      this.queue.shift()!.admit(this.hold());
    }
  }

  private busy(ahead: number): ServiceBusyError {
    // The time the opens queued now need, at the pace admitted opens have held their slots.
    const drainSeconds = Math.ceil(((this.queue.length + 1) * this.meanHoldMs) / this.o.concurrency / 1000);
    const retryAfter = Math.min(30, Math.max(1, drainSeconds));
    return new ServiceBusyError(
      `This instance is opening sessions as fast as it can: ${this.o.concurrency} at a time ` +
        `(SESSION_OPEN_CONCURRENCY), and ${ahead} more were waiting ahead of this one when it came. ` +
        `Its budget ran out before its turn; nothing was created, retry in ${retryAfter} s.`,
      retryAfter,
      { extensions: { openQueue: ahead, openConcurrency: this.o.concurrency } },
    );
  }
}
