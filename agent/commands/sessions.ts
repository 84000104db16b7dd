// `relay-broker sessions list|show|end` and `relay-broker pool` (admin views over the HTTP API).
// A session view can carry the opener's send token: it is removed before anything is printed.
import { InvalidArgumentError, type Command } from 'commander';
import { z } from 'zod';
import { SESSION_STATUSES } from '../../lib/sessions/session';
import { parseDeviceId, parsePositiveInt, parseSessionId } from '../options';
import { table } from '../output';
import { action, apiFor } from './context';

export const sessionViewSchema = z
  .object({
    sessionId: z.string(),
    deviceId: z.string(),
    status: z.string(),
    reason: z.string().optional(),
    port: z.number().optional(),
    createdAt: z.string().optional(),
    readyAt: z.string().optional(),
    endedAt: z.string().optional(),
    expiresAt: z.string().optional(),
    openedBy: z.string().optional(),
    namespace: z.string().optional(),
    endedBy: z.string().optional(),
    bytesToDevice: z.number().optional(),
    bytesFromDevice: z.number().optional(),
    cost: z.object({ usd: z.number(), pricesDate: z.string() }).loose().optional(),
    relay: z
      .object({
        namespace: z.string(),
        endpoint: z.string(),
        hybridConnection: z.string(),
        sendToken: z.string(),
        expiresAt: z.string(),
      })
      .loose()
      .optional(),
  })
  .loose();
export type SessionViewDoc = z.infer<typeof sessionViewSchema>;

/** The view without any credential (tokens are never printed). */
export function withoutSecrets(body: unknown): unknown {
  if (!body || typeof body !== 'object') return body;
  const copy: Record<string, unknown> = { ...(body as Record<string, unknown>) };
  if (copy.relay && typeof copy.relay === 'object') {
    const { sendToken: _dropped, ...relay } = copy.relay as Record<string, unknown>;
    copy.relay = relay;
  }
  return copy;
}

const STATUSES: readonly string[] = SESSION_STATUSES;

function describeSession(s: SessionViewDoc): string[] {
  return [
    `session:   ${s.sessionId}`,
    `device:    ${s.deviceId}${s.port ? ` port ${s.port}` : ''}`,
    `status:    ${s.status}${s.reason ? ` (${s.reason})` : ''}`,
    ...(s.openedBy ? [`opened by: ${s.openedBy}`] : []),
    ...(s.createdAt ? [`created:   ${s.createdAt}`] : []),
    ...(s.readyAt ? [`ready:     ${s.readyAt}`] : []),
    ...(s.endedAt ? [`ended:     ${s.endedAt}${s.endedBy ? ` by ${s.endedBy}` : ''}`] : []),
    ...(s.bytesToDevice !== undefined || s.bytesFromDevice !== undefined
      ? [`bytes:     ${s.bytesToDevice ?? 0} to the device, ${s.bytesFromDevice ?? 0} from it`]
      : []),
    ...(s.cost ? [`cost:      ≈ $${s.cost.usd.toFixed(4)} (Relay list prices of ${s.cost.pricesDate})`] : []),
    ...(s.expiresAt ? [`expires:   ${s.expiresAt}`] : []),
    ...(s.namespace ? [`namespace: ${s.namespace}`] : []),
  ];
}

/** Nested object as indented `key: value` lines (the pool document's shape belongs to the API). */
function describeObject(value: unknown, indent = ''): string[] {
  if (!value || typeof value !== 'object') return [`${indent}${String(value)}`];
  const lines: string[] = [];
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      lines.push(`${indent}${k}:`);
      lines.push(...describeObject(v, `${indent}  `));
    } else if (Array.isArray(v)) {
      lines.push(`${indent}${k}: ${v.length === 0 ? '(none)' : ''}`);
      for (const item of v)
        lines.push(
          ...(item && typeof item === 'object'
            ? describeObject(item, `${indent}  - `)
            : [`${indent}  - ${String(item)}`]),
        );
    } else {
      lines.push(`${indent}${k}: ${String(v)}`);
    }
  }
  return lines;
}

export function registerSessions(program: Command): void {
  const sessions = program.command('sessions').description('list, show and end sessions');

  sessions
    .command('list')
    .description('list sessions, newest first (an operator sees their own)')
    .option('--device <deviceId>', 'only this device', parseDeviceId)
    .option('--status <status>', `only this status (${STATUSES.join(', ')})`, (v: string) => {
      if (!STATUSES.includes(v)) throw new InvalidArgumentError(`status must be one of ${STATUSES.join(', ')}`);
      return v;
    })
    .option('--opener <principalId>', 'only sessions this principal opened (admin)')
    .option('--limit <n>', 'the newest this many (default 1000)', parsePositiveInt('--limit', 1000))
    .action(
      action(async (cmd, out) => {
        const o = cmd.opts<{ device?: string; status?: string; opener?: string; limit?: number }>();
        const { api } = await apiFor(cmd, out);
        const res = await api.get('/sessions', {
          deviceId: o.device,
          status: o.status,
          openerId: o.opener,
          limit: o.limit === undefined ? undefined : String(o.limit),
        });
        const list = z
          .object({ sessions: z.array(sessionViewSchema) })
          .loose()
          .parse(res.body);
        const clean = { ...(res.body as Record<string, unknown>), sessions: list.sessions.map(withoutSecrets) };
        out.result(clean, () =>
          list.sessions.length === 0
            ? ['no sessions']
            : table(
                ['SESSION', 'DEVICE', 'PORT', 'STATUS', 'REASON', 'CREATED', 'OPENED BY'],
                list.sessions.map((s) => [
                  s.sessionId,
                  s.deviceId,
                  String(s.port ?? ''),
                  s.status,
                  s.reason ?? '',
                  s.createdAt ?? '',
                  s.openedBy ?? '',
                ]),
              ),
        );
      }),
    );

  sessions
    .command('show')
    .description('show one session')
    .argument('<sessionId>', 'session id (UUID)', parseSessionId)
    .action(
      action(async (cmd, out, sessionId: string) => {
        const { api } = await apiFor(cmd, out);
        const res = await api.get(`/sessions/${sessionId}`);
        const s = sessionViewSchema.parse(res.body);
        out.result(withoutSecrets(res.body), () => describeSession(s));
      }),
    );

  sessions
    .command('end')
    .description('end a session now: its hybrid connection is deleted and live connections drop')
    .argument('<sessionId>', 'session id (UUID)', parseSessionId)
    .action(
      action(async (cmd, out, sessionId: string) => {
        const { api } = await apiFor(cmd, out);
        const res = await api.delete(`/sessions/${sessionId}`);
        const answer = sessionViewSchema.pick({ status: true, reason: true, endedBy: true, endedAt: true }).loose();
        const body = answer.safeParse(res.body);
        const now = body.success ? body.data : { status: 'ending' };
        // 202: this call ended it. 200: it was ending or over already; not a failure (exit 0), but said.
        out.result(res.body ?? { sessionId, status: 'ending' }, () =>
          res.status === 202
            ? `session ${sessionId} is ending: its relay connections are being dropped`
            : `session ${sessionId} was already ${now.status}${now.reason ? ` (${now.reason})` : ''}${
                now.endedBy ? ` by ${now.endedBy}` : ''
              }${now.endedAt ? ` at ${now.endedAt}` : ''}: nothing to do`,
        );
      }),
    );

  program
    .command('pool')
    .description('the namespace pool: counts by state and subscription, target, last maintenance (admin)')
    .action(
      action(async (cmd, out) => {
        const { api } = await apiFor(cmd, out);
        const res = await api.get('/pool');
        out.result(res.body, () => describePool(res.body));
      }),
    );
}

const POOL_STATES = ['available', 'leased', 'creating', 'recycling', 'quarantined', 'deleting'];

/** A scalar from an untyped API document as text; anything else (absent, an object) is `fallback`. */
function text(v: unknown, fallback: string): string {
  return typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean' ? String(v) : fallback;
}

/** The pool document as a person reads it: one row per subscription, then the target and the last run. */
function describePool(body: unknown): string[] {
  const b = (body ?? {}) as Record<string, unknown>;
  const subs = Array.isArray(b.bySubscription) ? (b.bySubscription as Array<Record<string, unknown>>) : [];
  if (!subs.length && !b.byState) return describeObject(body);
  const count = (o: unknown, k: string) => text(((o ?? {}) as Record<string, unknown>)[k], '0');
  const rows = subs.map((s) => [
    text(s.subscriptionId, ''),
    text(s.resourceGroup, ''),
    `${count(s, 'total')}/${count(s, 'quota')}`,
    ...POOL_STATES.map((st) => count(s.byState, st)),
  ]);
  rows.push(['all', '', text(b.total, '0'), ...POOL_STATES.map((st) => count(b.byState, st))]);
  const lines = [
    `pool ${text(b.pool, '')}`,
    ...table(['SUBSCRIPTION', 'GROUP', 'TOTAL/QUOTA', ...POOL_STATES.map((st) => st.toUpperCase())], rows),
  ];
  // Whether it can still grow (at POOL_CAP, at its quotas, or growing), and the setting to raise.
  const growth = (b.growth ?? {}) as Record<string, unknown>;
  if (typeof growth.detail === 'string')
    lines.push(
      '',
      `${text(growth.state, '?')}: ${growth.detail}${growth.setting ? ` (raise ${text(growth.setting, '')} to grow it)` : ''}`,
    );
  const target = (b.target ?? {}) as Record<string, unknown>;
  if (target.value !== undefined) {
    lines.push(
      '',
      `target ${text(target.value, '?')} usable, ${text(target.usable, '?')} now; would create ${text(target.wouldCreate, '0')}, delete ${text(target.wouldDelete, '0')}`,
    );
    for (const r of Array.isArray(target.reasons) ? target.reasons : []) lines.push(`  ${text(r, '')}`);
  }
  const cost = b.cost as
    | {
        month?: string;
        monthToDateUsd?: number;
        finishedSessions?: number;
        runningSessions?: number;
        idle?: { sessions?: number; usdPerHour?: number };
        prices?: { pricesDate?: string };
      }
    | undefined;
  if (cost && typeof cost.monthToDateUsd === 'number') {
    lines.push(
      '',
      `cost ${cost.month ?? ''}: ≈ $${cost.monthToDateUsd.toFixed(2)} month to date (${cost.finishedSessions ?? 0} finished, ${cost.runningSessions ?? 0} running session(s); Relay list prices of ${cost.prices?.pricesDate ?? '?'})`,
      `idle now: ${cost.idle?.sessions ?? 0} ready session(s) with no connection, ≈ $${(cost.idle?.usdPerHour ?? 0).toFixed(4)} per hour; idle namespaces cost nothing`,
    );
  }
  const run = b.lastRun as Record<string, unknown> | undefined;
  if (run) {
    const errors = Array.isArray(run.errors) ? run.errors.length : 0;
    lines.push(
      '',
      `last maintenance ${text(run.finishedAt ?? run.startedAt, '?')}: ${text(run.outcome, '?')} in ${text(run.durationMs, '?')} ms${errors ? `, ${errors} error(s)` : ''}`,
    );
  } else lines.push('', 'no maintenance run yet');
  return lines;
}
