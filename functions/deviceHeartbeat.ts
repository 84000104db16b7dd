// The device agent's heartbeat: anonymous at the Functions level, authenticated by the device
// credential (`Authorization: Bearer <deviceKey>`); presence, reconciliation and renewal live in
// lib/devices/devicePresence.ts.
import { heartbeatSchema, endThroughOrchestration } from '../lib/devices/devicePresence';
import { UnauthenticatedError } from '../lib/errors';
import { deviceIdSchema, parseJsonBody, parseWith } from '../lib/validation';
import { json, route } from './shared/route';
import { sessionOrchestrations } from './shared/sessionOrchestrations';

route('devicesHeartbeat', {
  methods: ['POST'],
  route: 'devices/{deviceId}/heartbeat',
  access: 'anonymous',
  durableClient: true,
  handler: async (api) => {
    const { req, services, ctx } = api;
    const deviceId = parseWith(deviceIdSchema, req.params.deviceId, 'The device id');
    const key = /^Bearer\s+(\S{16,256})$/i.exec(req.headers.get('authorization') ?? '')?.[1];
    if (!key)
      throw new UnauthenticatedError('A heartbeat carries the device credential: Authorization: Bearer <deviceKey>.');
    const hb = parseJsonBody(api.body, req.headers.get('content-type'), heartbeatSchema);
    const endSession = endThroughOrchestration(
      sessionOrchestrations(() => api.durable()),
      services.sessionStore,
      `device:${deviceId}`,
    );
    const answer = await services.devicePresence.heartbeat(deviceId, key, hb, async (session, reason) => {
      ctx.warn(`session ${session.sessionId} of device ${deviceId}: the agent lost it; ending (${reason})`);
      await endSession(session, reason);
    });
    if (answer.renewed) ctx.info(`device ${deviceId}: enrollment renewed until ${answer.renewed.expiresAt}`);
    if (hb.stopping) ctx.info(`device ${deviceId}: agent stopping`);
    return json(200, answer);
  },
});
