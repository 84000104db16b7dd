// How many opens one process prepares at once (device check, record, lease, start, message), first
// come first served. Under a burst, unbounded opens all progress together and all miss the budget;
// admitted in order, the first ones finish within it while the rest wait their turn, and one that
// cannot start in time is refused (503 service_busy) before anything is written.
import { ServiceBusyError } from '../errors';

export class OpenAdmission {
  private active = 0;
  private readonly queue: Array<{ admit: () => void; timer: NodeJS.Timeout }> = [];

  /** `limit` opens prepared at once (≥ 1). */
  constructor(readonly limit: number) {}

  /** Opens being prepared, and waiting for their turn. */
  get load(): { active: number; waiting: number } {
    return { active: this.active, waiting: this.queue.length };
  }

  /**
   * Runs `work` once a place is free; ServiceBusyError (nothing run) when none frees within
   * `maxWaitMs`. The place is held until `work` settles.
   */
  async run<T>(maxWaitMs: number, work: () => Promise<T>): Promise<T> {
    if (this.active >= this.limit) await this.wait(maxWaitMs);
    else this.active++;
    try {
      return await work();
    } finally {
      this.release();
    }
  }

  private wait(maxWaitMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const entry = {
        // The place is handed over by release(): active stays counted.
        admit: () => {
          clearTimeout(entry.timer);
          resolve();
        },
        timer: setTimeout(
          () => {
            this.queue.splice(this.queue.indexOf(entry), 1);
            reject(
              new ServiceBusyError(
                `Too many sessions are being opened at once here (${this.limit} at a time, ${this.queue.length} waiting); retry shortly.`,
              ),
            );
          },
          Math.max(0, maxWaitMs),
        ),
      };
      this.queue.push(entry);
    });
  }

  private release(): void {
    const next = this.queue.shift();
    if (next) next.admit();
    else this.active--;
  }
}
