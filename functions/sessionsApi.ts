// Session routes: open (and wait for ready within the budget), read, list, end, and the device's
// ready call. Adapters only: the flow lives in sessionOrchestrator.ts, the rules in lib/sessions/.
import { z } from 'zod';
import { recordSessionOpen } from '../lib/metrics';
import { openSessionRequestSchema, sessionStatusSchema } from '../lib/sessions/session';
import { deviceIdSchema, parseJsonBody, parseWith, sessionIdSchema } from '../lib/validation';
import { sessionOrchestrations } from './shared/sessionOrchestrations';
import { json, route, type ApiContext } from './shared/route';

const sessionsOf = (api: ApiContext) => sessionOrchestrations(() => api.durable());
const sessionIdOf = (api: ApiContext) => parseWith(sessionIdSchema, api.req.params.sessionId, 'The session id');

route('sessionsOpen', {
  methods: ['POST'],
  route: 'sessions',
  access: ['admin', 'operator'],
  durableClient: true,
  observe: recordSessionOpen,
  handler: async (api) => {
    const { req, body, services, ctx } = api;
    const principal = api.principal!;
    const input = parseJsonBody(body, req.headers.get('content-type'), openSessionRequestSchema);
    const opened = await services.sessionOpener(sessionsOf(api)).open(principal, input);
    ctx.info(
      `session ${opened.sessionId} requested by ${principal.id} for device ${input.deviceId} port ${input.port}`,
    );
    const location = `${services.config.publicApiUrl}/sessions/${opened.sessionId}`;
    return opened.status === 'ready'
      ? json(201, opened, { location })
      : json(202, opened, { location, 'retry-after': '1' });
  },
});

route('sessionsGet', {
  methods: ['GET'],
  route: 'sessions/{sessionId}',
  access: ['admin', 'operator'],
  durableClient: true,
  handler: async (api) =>
    json(200, await api.services.sessionControl(sessionsOf(api)).get(api.principal!, sessionIdOf(api))),
});

route('sessionsList', {
  methods: ['GET'],
  route: 'sessions',
  // An operator sees their own sessions only (SessionControl.list scopes it).
  access: ['admin', 'operator'],
  handler: async (api) => {
    // Listings read the records alone: no orchestration is asked.
    const q = parseWith(
      z
        .object({
          deviceId: deviceIdSchema.optional(),
          status: sessionStatusSchema.optional(),
          openerId: z.string().min(1).max(256).optional(),
          limit: z.coerce.number().int().min(1).max(1000).optional(),
        })
        .strict(),
      Object.fromEntries(api.req.query.entries()),
      'The query',
    );
    return json(200, { sessions: await api.services.sessionControl(sessionsOf(api)).list(api.principal!, q) });
  },
});

route('sessionsEnd', {
  methods: ['DELETE'],
  route: 'sessions/{sessionId}',
  access: ['admin', 'operator'],
  durableClient: true,
  handler: async (api) => {
    const { changed, ...ended } = await api.services
      .sessionControl(sessionsOf(api))
      .end(api.principal!, sessionIdOf(api));
    if (changed) api.ctx.info(`session ${ended.sessionId} end requested by ${api.principal!.id}`);
    // 202: the end is under way; 200: nothing done, it was ending or over already (its status says which).
    return json(changed ? 202 : 200, ended, {
      location: `${api.services.config.publicApiUrl}/sessions/${ended.sessionId}`,
    });
  },
});

const heartbeatBodySchema = z
  .object({
    openConnections: z.number().int().min(0).max(1_000_000),
    connections: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
    bytesToDevice: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
    bytesFromDevice: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  })
  .strict();

/** The client's address as the front end saw it: the first X-Forwarded-For hop, without its port. */
function clientAddressOf(headers: Headers): string | undefined {
  const first = headers.get('x-forwarded-for')?.split(',')[0]?.trim();
  if (!first) return undefined;
  const v4 = /^(\d{1,3}(?:\.\d{1,3}){3})(?::\d+)?$/.exec(first);
  if (v4) return v4[1];
  const v6 = /^\[([0-9a-fA-F:.]+)\](?::\d+)?$/.exec(first);
  if (v6) return v6[1];
  return /^[0-9a-fA-F:.]{2,45}$/.test(first) ? first : undefined;
}

route('sessionsHeartbeat', {
  methods: ['POST'],
  route: 'sessions/{sessionId}/heartbeat',
  access: ['admin', 'operator'],
  handler: async (api) => {
    const input = parseJsonBody(api.body, api.req.headers.get('content-type'), heartbeatBodySchema);
    const answer = await api.services
      .sessionControl(sessionsOf(api))
      .heartbeat(api.principal!, sessionIdOf(api), input, clientAddressOf(api.req.headers));
    return json(200, answer);
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
  handler: async (api) => {
    const sessionId = sessionIdOf(api);
    const input = parseJsonBody(api.body, api.req.headers.get('content-type'), readyBodySchema);
    await api.services.sessionControl(sessionsOf(api)).deviceReady(sessionId, input);
    // The open waiting for it, if it waits on this instance, reads it now rather than at the next list read.
    api.services.readyWatcher.nudge(sessionId);
    api.ctx.info(`session ${sessionId}: device reported ${input.status}${input.detail ? ` (${input.detail})` : ''}`);
    return { status: 204 };
  },
});
