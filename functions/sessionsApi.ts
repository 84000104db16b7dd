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
  access: ['admin'],
  handler: async (api) => {
    // Listings read the records alone: no orchestration is asked.
    const q = parseWith(
      z
        .object({
          deviceId: deviceIdSchema.optional(),
          status: sessionStatusSchema.optional(),
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
    const ended = await api.services.sessionControl(sessionsOf(api)).end(api.principal!, sessionIdOf(api));
    if (ended.status === 'ending') api.ctx.info(`session ${ended.sessionId} end requested by ${api.principal!.id}`);
    return json(202, ended, { location: `${api.services.config.publicApiUrl}/sessions/${ended.sessionId}` });
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
    api.ctx.info(`session ${sessionId}: device reported ${input.status}${input.detail ? ` (${input.detail})` : ''}`);
    return { status: 204 };
  },
});
