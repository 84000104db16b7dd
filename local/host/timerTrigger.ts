// The timer trigger as a built-in host extension: NCRONTAB/TimeSpan schedules, non-overlapping
// occurrences, missed ones collapsed into one past-due run, and Core Tools' admin endpoint
// `POST /admin/functions/{name}` that runs a timer function now.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { type ExtensionHostApi, type HostExtension, triggerOf, type TriggeredFunction } from './extensionApi';
import { parseSchedule, type Schedule } from './timerSchedule';
import { describeError } from '../../lib/errors';

export const ADMIN_FUNCTIONS_PREFIX = '/admin/functions/';

interface TimerState {
  fn: TriggeredFunction['fn'];
  schedule: Schedule;
  timer?: NodeJS.Timeout;
  running?: Promise<void>;
  last?: Date;
  next?: Date;
}

export interface TimerTriggerOptions {
  /** Do not arm timers (tests that trigger them through the admin API). */
  disableTimers?: boolean;
}

export function createTimerTrigger(options: TimerTriggerOptions = {}): HostExtension {
  let host: ExtensionHostApi | undefined;
  let timers: TimerState[] = [];
  let open = false;

  const scheduleNext = (t: TimerState, after: Date): void => {
    if (!open) return;
    t.next = t.schedule.next(after);
    const wait = Math.min(Math.max(0, t.next.getTime() - Date.now()), 2 ** 31 - 1);
    const due = t.next;
    t.timer = setTimeout(() => {
      if (Date.now() < due.getTime()) return scheduleNext(t, after); // re-arm very long waits
      void onTimerDue(t, due);
    }, wait);
  };

  const onTimerDue = async (t: TimerState, due: Date): Promise<void> => {
    // Occurrences never overlap: a run that is still going delays the next, which is then past due.
    if (t.running) await t.running;
    const late = Date.now() - due.getTime() > 1000;
    await fire(t, due, late);
    // Occurrences missed while it ran collapse into one past-due run, as in the real host.
    let missed: Date | undefined;
    for (let n = t.schedule.next(due), i = 0; n.getTime() <= Date.now() && i < 10_000; n = t.schedule.next(n), i++)
      missed = n;
    if (missed && open) await fire(t, missed, true);
    scheduleNext(t, new Date(Math.max(Date.now(), due.getTime())));
  };

  const fire = (t: TimerState, scheduled: Date, isPastDue: boolean): Promise<void> => {
    const payload = {
      Schedule: { AdjustForDST: true },
      ScheduleStatus: {
        Last: (t.last ?? new Date(0)).toISOString(),
        Next: t.schedule.next(scheduled).toISOString(),
        LastUpdated: new Date().toISOString(),
      },
      IsPastDue: isPastDue,
    };
    t.last = scheduled;
    const run = host!
      .invoke(t.fn.name, { json: JSON.stringify(payload) })
      .then(() => undefined)
      .catch((err: unknown) => host!.log('error', `timer invocation failed: ${describeError(err, 2000)}`, t.fn.name))
      .finally(() => {
        if (t.running === run) t.running = undefined;
      });
    t.running = run;
    return run;
  };

  return {
    name: 'timer',
    triggerTypes: ['timerTrigger'],
    inputTypes: [],

    start(h: ExtensionHostApi): Promise<void> {
      host = h;
      timers = h.functionsWithTrigger('timerTrigger').map(({ fn, trigger }) => {
        const schedule = (trigger as { schedule?: string }).schedule;
        if (!schedule) throw new Error(`Timer function "${fn.name}" has no schedule`);
        return { fn, schedule: parseSchedule(schedule) };
      });
      open = true;
      if (!options.disableTimers) {
        for (const t of timers) {
          const b = triggerOf(t.fn)!.binding as { runOnStartup?: boolean };
          if (b.runOnStartup) void fire(t, new Date(), false);
          scheduleNext(t, new Date());
        }
      }
      return Promise.resolve();
    },

    close(): Promise<void> {
      // Runs in flight are the host's invocations: it waits for them after closing extensions.
      open = false;
      for (const t of timers) clearTimeout(t.timer);
      timers = [];
      return Promise.resolve();
    },

    /** Core Tools' admin endpoint to run a non-HTTP function now: POST /admin/functions/{name}. */
    async handleHttp(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
      const url = new URL(req.url ?? '/', 'http://127.0.0.1');
      if (!url.pathname.startsWith(ADMIN_FUNCTIONS_PREFIX) || req.method !== 'POST') return false;
      const name = decodeURIComponent(url.pathname.slice(ADMIN_FUNCTIONS_PREFIX.length));
      const timer = timers.find((t) => t.fn.name === name);
      if (!timer) {
        const text = `No timer function named ${name}`;
        res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(text) });
        res.end(text);
        return true;
      }
      if (timer.running) await timer.running;
      void fire(timer, new Date(), false);
      res.writeHead(202).end();
      return true;
    },
  };
}
