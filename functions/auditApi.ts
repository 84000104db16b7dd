// GET /audit (admin): the audit trail, newest first, filtered by time range, device, principal,
// outcome and action, paged with a continuation token. Adapter only: lib/audit/auditLog.ts.
import { z } from 'zod';
import { auditActionSchema } from '../lib/audit/auditLog';
import { ValidationError } from '../lib/errors';
import { deviceIdSchema, parseWith } from '../lib/validation';
import { json, route } from './shared/route';

const querySchema = z
  .object({
    since: z.iso.datetime({ offset: true }).optional(),
    until: z.iso.datetime({ offset: true }).optional(),
    deviceId: deviceIdSchema.optional(),
    principal: z.string().min(1).max(256).optional(),
    outcome: z.string().min(1).max(40).optional(),
    action: auditActionSchema.optional(),
    limit: z.coerce.number().int().min(1).max(1000).default(100),
    continuation: z.string().min(1).max(1000).optional(),
  })
  .strict();

/** Without `since`, the last 24 hours; a range longer than the retention is cut by it anyway. */
const DEFAULT_WINDOW_MS = 86_400_000;
const MAX_WINDOW_DAYS = 3660;

route('auditList', {
  methods: ['GET'],
  route: 'audit',
  access: ['admin'],
  handler: async ({ req, services }) => {
    const q = parseWith(querySchema, Object.fromEntries(req.query.entries()), 'The query');
    const until = q.until ? new Date(q.until) : new Date();
    const since = q.since ? new Date(q.since) : new Date(until.getTime() - DEFAULT_WINDOW_MS);
    if (until.getTime() - since.getTime() > MAX_WINDOW_DAYS * 86_400_000) {
      throw new ValidationError(`The range may span at most ${MAX_WINDOW_DAYS} days.`, [
        { path: 'since', message: 'range too long' },
      ]);
    }
    const page = await services.audit.query({
      since,
      until,
      limit: q.limit,
      ...(q.deviceId ? { deviceId: q.deviceId } : {}),
      ...(q.principal ? { principal: q.principal } : {}),
      ...(q.outcome ? { outcome: q.outcome } : {}),
      ...(q.action ? { action: q.action } : {}),
      ...(q.continuation ? { continuation: q.continuation } : {}),
    });
    return json(200, { since: since.toISOString(), until: until.toISOString(), ...page });
  },
});
