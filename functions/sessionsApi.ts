// Session routes: open (and wait for ready within the budget), read, list, end, and the device's
// ready call. The flow itself lives in sessionOrchestrator.ts; the rules in lib/sessions/.
import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { authorizeSessionOpen } from '../lib/auth/grantStore';
import { ConflictError, ForbiddenError, NotFoundError, ValidationError } from '../lib/errors';
import { tokenMatchesHash, sha256Base64url } from '../lib/sealing';
import {
  openSessionRequestSchema,
  SESSION_EVENTS,
  sessionStatusSchema,
  type SessionInput,
} from '../lib/sessions/session';
import {
  assertCanSee,
  buildView,
  credentialsFrom,
  openFailure,
  publicStatus,
  readCustomStatus,
} from '../lib/sessions/sessionView';
import { recordSessionOpen } from '../lib/metrics';
import { deviceIdSchema, parseJsonBody, parseWith, sessionIdSchema } from '../lib/validation';
import { SESSION_ORCHESTRATOR } from './sessionOrchestrator';
import { raiseEventIfRunning, statusOrUndefined } from './shared/durable';
import { json, route, type ApiContext } from './shared/route';

/** Status polls start fast and back off, so 500 waiting opens do not flood the status store. */
const POLL_DELAYS_MS = [20, 40, 60, 100, 150, 200, 250];

route('sessionsOpen', {
  methods: ['POST'],
  route: 'sessions',
  access: ['admin', 'operator'],
  durableClient: true,
  observe: recordSessionOpen,
  handler: async ({ req, body, services, principal, durable, ctx }) => {
    const p = principal!;
    const input = parseJsonBody(body, req.headers.get('content-type'), openSessionRequestSchema);
    services.rateLimiter.enforce(p.id);
    // Grants before existence: an operator cannot probe which device ids exist.
    await authorizeSessionOpen(p, input.deviceId, services.grants);
    await services.devices.requireRecord(input.deviceId);
    const { sessions } = services.config;
    const lifetime = input.maxLifetimeMinutes ?? sessions.defaultLifetimeMinutes;
    if (lifetime > sessions.maxLifetimeMinutes) {
      const message = `may be at most ${sessions.maxLifetimeMinutes} here`;
      throw new ValidationError(`maxLifetimeMinutes ${message}.`, [{ path: 'maxLifetimeMinutes', message }]);
    }
    const started = Date.now();
    const createdAt = new Date(started);
    const sessionInput: SessionInput = {
      sessionId: randomUUID(),
      deviceId: input.deviceId,
      port: input.port,
      openerId: p.id,
      createdAt: createdAt.toISOString(),
      expiresAt: new Date(started + lifetime * 60_000).toISOString(),
      readyTimeoutMs: sessions.readyTimeoutMs,
    };
    await services.sessionStore.insert({
      sessionId: sessionInput.sessionId,
      deviceId: input.deviceId,
      openerId: p.id,
      ...(p.name ? { openerName: p.name } : {}),
      port: input.port,
      status: 'pending',
      createdAt: sessionInput.createdAt,
      expiresAt: sessionInput.expiresAt,
    });
    const client = durable();
    await client.startNew(SESSION_ORCHESTRATOR, { instanceId: sessionInput.sessionId, input: sessionInput });
    ctx.info(`session ${sessionInput.sessionId} requested by ${p.id} for device ${input.deviceId} port ${input.port}`);
    const location = `${services.config.publicApiUrl}/sessions/${sessionInput.sessionId}`;

    // Wait for ready (or a failure) within the budget, then answer 202 and let the caller poll.
    const deadline = started + sessions.openBudgetMs;
    for (let poll = 0; Date.now() < deadline; poll++) {
      const st = await statusOrUndefined(client, sessionInput.sessionId);
      const cs = readCustomStatus(st?.customStatus);
      // An orchestration that failed or was terminated never hands out credentials.
      if (st?.runtimeStatus === 'Failed' || st?.runtimeStatus === 'Terminated') throw openFailure('error');
      if (cs.status === 'ready') {
        return json(
          201,
          {
            sessionId: sessionInput.sessionId,
            status: 'ready',
            relay: credentialsFrom(cs, sessionInput.sessionId, services.sealer),
          },
          { location },
        );
      }
      const pub = publicStatus(cs);
      if (pub.status === 'failed' || pub.status === 'ended') {
        throw openFailure(pub.reason ?? 'error', cs.status === 'failed' ? cs.retryAfterSeconds : undefined);
      }
      await sleep(
        Math.min(POLL_DELAYS_MS[Math.min(poll, POLL_DELAYS_MS.length - 1)], Math.max(0, deadline - Date.now())),
      );
    }
    return json(202, { sessionId: sessionInput.sessionId, status: 'pending' }, { location, 'retry-after': '1' });
  },
});

route('sessionsGet', {
  methods: ['GET'],
  route: 'sessions/{sessionId}',
  access: ['admin', 'operator'],
  durableClient: true,
  handler: async (api) => {
    const { record, customStatus } = await loadSession(api);
    return json(200, buildView(record, customStatus, api.principal!, api.services.sealer));
  },
});

route('sessionsList', {
  methods: ['GET'],
  route: 'sessions',
  access: ['admin'],
  handler: async ({ req, services, principal }) => {
    const q = parseWith(
      z
        .object({
          deviceId: deviceIdSchema.optional(),
          status: sessionStatusSchema.optional(),
          limit: z.coerce.number().int().min(1).max(1000).optional(),
        })
        .strict(),
      Object.fromEntries(req.query.entries()),
      'The query',
    );
    const records = await services.sessionStore.list(q);
    // Listings never carry credentials, not even the caller's own.
    return json(200, { sessions: records.map((r) => buildView(r, undefined, principal!, services.sealer)) });
  },
});

route('sessionsEnd', {
  methods: ['DELETE'],
  route: 'sessions/{sessionId}',
  access: ['admin', 'operator'],
  durableClient: true,
  handler: async (api) => {
    const { record, runtimeStatus } = await loadSession(api);
    // The instance may finish between the read and the event (lifetime, ready timeout): then it has ended anyway.
    if (record.status !== 'ended' && record.status !== 'failed' && isRunning(runtimeStatus)) {
      if (
        await raiseEventIfRunning(api.durable(), record.sessionId, SESSION_EVENTS.endSession, {
          reason: 'requested',
          by: api.principal!.id,
        })
      ) {
        api.ctx.info(`session ${record.sessionId} end requested by ${api.principal!.id}`);
      }
    }
    const ended = record.status === 'ended' || record.status === 'failed';
    return json(
      202,
      { sessionId: record.sessionId, status: ended ? record.status : 'ending' },
      {
        location: `${api.services.config.publicApiUrl}/sessions/${record.sessionId}`,
      },
    );
  },
});

const readyBodySchema = z
  .object({
    readyToken: z.string().min(16).max(256),
    status: z.enum(['ready', 'refused']).default('ready'),
    detail: z.string().max(500).optional(),
  })
  .strict();

route('sessionsReady', {
  methods: ['POST'],
  route: 'sessions/{sessionId}/ready',
  // The device proves itself with the session's readyToken, not with an identity token.
  access: 'anonymous',
  durableClient: true,
  handler: async ({ req, body, services, durable, ctx }) => {
    const sessionId = parseWith(sessionIdSchema, req.params.sessionId, 'The session id');
    const input = parseJsonBody(body, req.headers.get('content-type'), readyBodySchema);
    // The expected token is derived, so the check needs no read and reveals nothing about existence.
    if (!tokenMatchesHash(input.readyToken, sha256Base64url(services.sealer.readyToken(sessionId)))) {
      throw new ForbiddenError('The readyToken does not match this session.', 'invalid_ready_token');
    }
    const client = durable();
    const st = await statusOrUndefined(client, sessionId);
    if (!st) throw new NotFoundError(`Session ${sessionId} does not exist.`, 'session_not_found');
    const cs = readCustomStatus(st.customStatus);
    const notPending = () =>
      new ConflictError(
        `Session ${sessionId} is not waiting for its device (it is ${publicStatus(cs).status}).`,
        'session_not_pending',
      );
    if (!isRunning(st.runtimeStatus) || cs.status !== 'pending') throw notPending();
    if (
      !(await raiseEventIfRunning(client, sessionId, SESSION_EVENTS.deviceReady, {
        status: input.status,
        ...(input.detail ? { detail: input.detail } : {}),
      }))
    ) {
      throw notPending();
    }
    ctx.info(`session ${sessionId}: device reported ${input.status}${input.detail ? ` (${input.detail})` : ''}`);
    return { status: 204 };
  },
});

async function loadSession(api: ApiContext) {
  const sessionId = parseWith(sessionIdSchema, api.req.params.sessionId, 'The session id');
  const st = await statusOrUndefined(api.durable(), sessionId);
  const notFound = () => new NotFoundError(`Session ${sessionId} does not exist.`, 'session_not_found');
  const parsedInput = z.object({ deviceId: z.string(), openerId: z.string() }).safeParse(st?.input);
  if (!st?.instanceId || !parsedInput.success) throw notFound();
  assertCanSee(api.principal!, parsedInput.data.openerId, sessionId);
  const record = await api.services.sessionStore.get(parsedInput.data.deviceId, sessionId);
  if (!record) throw notFound();
  let customStatus =
    st.customStatus === undefined || st.customStatus === null ? undefined : readCustomStatus(st.customStatus);
  // A failed or terminated orchestration's last status may still say ready: it is not.
  if (
    (st.runtimeStatus === 'Failed' || st.runtimeStatus === 'Terminated') &&
    customStatus?.status !== 'ended' &&
    customStatus?.status !== 'failed'
  ) {
    customStatus = { status: 'failed', reason: 'error' };
  }
  return { record, customStatus, runtimeStatus: st.runtimeStatus };
}

function isRunning(runtimeStatus: unknown): boolean {
  return runtimeStatus === 'Running' || runtimeStatus === 'Pending';
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
