// Timer schedules as the Functions host accepts them: a six-field NCRONTAB expression
// (`{second} {minute} {hour} {day} {month} {day-of-week}`, UTC unless WEBSITE_TIME_ZONE) or a
// TimeSpan (`hh:mm:ss`, an interval from the last run).
import { Cron } from 'croner';

export interface Schedule {
  /** The next occurrence strictly after `after`. */
  next(after: Date): Date;
  describe(): string;
}

export function parseSchedule(expression: string, timeZone = process.env.WEBSITE_TIME_ZONE): Schedule {
  const trimmed = expression.trim();
  const span = /^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})$/.exec(trimmed);
  if (span) {
    const ms = ((Number(span[1] ?? 0) * 24 + Number(span[2])) * 3600 + Number(span[3]) * 60 + Number(span[4])) * 1000;
    if (ms <= 0) throw new Error(`Timer schedule "${expression}" must be a positive interval`);
    return { next: (after) => new Date(after.getTime() + ms), describe: () => `every ${ms / 1000} s` };
  }
  const fields = trimmed.split(/\s+/);
  if (fields.length !== 6) {
    throw new Error(
      `Timer schedule "${expression}" must have six fields (NCRONTAB: second minute hour day month day-of-week)`,
    );
  }
  const cron = new Cron(trimmed, { timezone: timeZone ?? 'Etc/UTC', paused: true });
  return {
    next(after) {
      const n = cron.nextRun(after);
      if (!n) throw new Error(`Timer schedule "${expression}" has no next occurrence`);
      return n;
    },
    describe: () => trimmed,
  };
}
