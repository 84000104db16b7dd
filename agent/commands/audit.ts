// `relay-broker audit`: the audit trail (admin actions and finished sessions), newest first, over
// a time range and filters, every page followed; as a table, CSV or NDJSON (one entry per line).
import { InvalidArgumentError, Option, type Command } from 'commander';
import { z } from 'zod';
import { parseDeviceId, parsePositiveInt } from '../options';
import { table } from '../output';
import { action, apiFor } from './context';

const entrySchema = z
  .object({
    at: z.string(),
    action: z.string(),
    principal: z.string(),
    deviceId: z.string().optional(),
    sessionId: z.string().optional(),
    outcome: z.string(),
    details: z.record(z.string(), z.unknown()).default({}),
  })
  .loose();
type Entry = z.infer<typeof entrySchema>;
const pageSchema = z.object({ entries: z.array(entrySchema), continuation: z.string().optional() }).loose();

const RELATIVE = /^(\d+)([mhd])$/;
const UNIT_MS = { m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/**
 * A point in time: ISO-8601, a day (YYYY-MM-DD: its start, or its end for --until), or a duration
 * back from now (30m, 24h, 7d).
 */
export function parseTime(value: string, endOfDay: boolean, now = Date.now()): string {
  const rel = RELATIVE.exec(value);
  if (rel) return new Date(now - Number(rel[1]) * UNIT_MS[rel[2] as keyof typeof UNIT_MS]).toISOString();
  if (/^\d{4}-\d{2}-\d{2}$/.test(value)) {
    const start = Date.parse(`${value}T00:00:00.000Z`);
    if (Number.isNaN(start)) throw new InvalidArgumentError(`${value} is not a day`);
    return new Date(endOfDay ? start + 86_399_999 : start).toISOString();
  }
  const t = Date.parse(value);
  if (Number.isNaN(t) || !/^\d{4}-\d{2}-\d{2}T/.test(value))
    throw new InvalidArgumentError('give an ISO time (2026-12-03T10:00:00Z), a day (2026-12-03) or 30m/24h/7d');
  return new Date(t).toISOString();
}

/** The columns of the table and the CSV, in order. */
export const AUDIT_COLUMNS = [
  'at',
  'action',
  'principal',
  'deviceId',
  'sessionId',
  'outcome',
  'port',
  'readyAt',
  'endedAt',
  'reason',
  'endedBy',
  'bytesToDevice',
  'bytesFromDevice',
  'clientAddress',
  'costUsd',
  'details',
] as const;

/** A detail as text: scalars as they are, anything else as JSON. */
function cell(v: unknown): string {
  if (v === undefined || v === null) return '';
  return typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean' ? String(v) : JSON.stringify(v);
}

/** One entry as a flat row: the known details in their columns, the others as `k=v` in `details`. */
export function auditRow(e: Entry): string[] {
  const d = e.details;
  const known = new Set<string>(AUDIT_COLUMNS);
  const rest = Object.entries(d)
    .filter(([k]) => !known.has(k) && k !== 'createdAt' && k !== 'pricesDate')
    .map(([k, v]) => `${k}=${cell(v)}`)
    .join(' ');
  return [
    e.at,
    e.action,
    e.principal,
    cell(e.deviceId),
    cell(e.sessionId),
    e.outcome,
    cell(d.port),
    cell(d.readyAt),
    cell(d.endedAt),
    cell(d.reason),
    cell(d.endedBy),
    cell(d.bytesToDevice),
    cell(d.bytesFromDevice),
    cell(d.clientAddress),
    cell(d.costUsd),
    rest,
  ];
}

/** RFC 4180: quoted when it holds a comma, a quote or a line break; quotes doubled. */
export function csvCell(v: string): string {
  return /[",\r\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v;
}

export function registerAudit(program: Command): void {
  program
    .command('audit')
    .description('the audit trail, newest first: admin actions and finished sessions (admin)')
    .option('--since <time>', 'from (ISO time, a day YYYY-MM-DD, or 30m/24h/7d back)', '24h')
    .option('--until <time>', 'to (ISO time, a day = its end, or 30m/24h/7d back; default now)')
    .option('--device <deviceId>', 'only this device', parseDeviceId)
    .option('--principal <id>', 'only what this principal did (opened, for sessions)')
    .option('--outcome <outcome>', 'only this outcome (ok for admin actions; ended or failed for sessions)')
    .addOption(
      new Option('--action <action>', 'only this action').choices([
        'device.add',
        'device.rotate',
        'device.remove',
        'grant.add',
        'grant.remove',
        'session.end',
        'session',
      ]),
    )
    .addOption(new Option('--format <format>', 'output format').choices(['table', 'csv', 'ndjson']).default('table'))
    .option('--limit <n>', 'at most this many entries (default: all in the range)', parsePositiveInt('--limit'))
    .action(
      action(async (cmd, out) => {
        const o = cmd.opts<{
          since: string;
          until?: string;
          device?: string;
          principal?: string;
          outcome?: string;
          action?: string;
          format: 'table' | 'csv' | 'ndjson';
          limit?: number;
        }>();
        const since = parseTime(o.since, false);
        const until = o.until ? parseTime(o.until, true) : new Date().toISOString();
        const { api } = await apiFor(cmd, out);
        const entries: Entry[] = [];
        let continuation: string | undefined;
        do {
          const want = o.limit === undefined ? 1000 : Math.min(1000, o.limit - entries.length);
          const res = await api.get('/audit', {
            since,
            until,
            deviceId: o.device,
            principal: o.principal,
            outcome: o.outcome,
            action: o.action,
            limit: String(want),
            continuation,
          });
          const page = pageSchema.parse(res.body);
          entries.push(...page.entries);
          continuation = page.continuation;
        } while (continuation && (o.limit === undefined || entries.length < o.limit));
        const doc = { since, until, entries };
        if (out.json || o.format === 'table') {
          out.result(doc, () =>
            entries.length === 0
              ? [`no audit entries from ${since} to ${until}`]
              : table(
                  AUDIT_COLUMNS.map((c) => c.toUpperCase()),
                  entries.map(auditRow),
                ),
          );
          return;
        }
        if (o.format === 'csv') {
          out.line(AUDIT_COLUMNS.join(','));
          for (const e of entries) out.line(auditRow(e).map(csvCell).join(','));
          return;
        }
        for (const e of entries) out.line(JSON.stringify(e));
      }),
    );
}
