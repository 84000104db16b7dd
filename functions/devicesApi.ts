// Device registry routes (admin): register, list, show, rotate the enrollment, delete.
import { registerDeviceSchema } from '../lib/devices/deviceRegistry';
import { parseJsonBody, parseWith, deviceIdSchema } from '../lib/validation';
import { sessionOrchestrations } from './shared/sessionOrchestrations';
import { adminAction } from '../lib/audit/adminAudit';
import { json, route } from './shared/route';

route('devicesCreate', {
  methods: ['POST'],
  route: 'devices',
  access: ['admin'],
  handler: async ({ req, body, services, principal }) => {
    const input = parseJsonBody(body, req.headers.get('content-type'), registerDeviceSchema);
    const enrollment = await services.devices.register(principal!, input);
    await services.audit.append(adminAction('device.add', principal!.id, enrollment.deviceId));
    return json(201, enrollment, { location: `${services.config.publicApiUrl}/devices/${enrollment.deviceId}` });
  },
});

route('devicesList', {
  methods: ['GET'],
  route: 'devices',
  access: ['admin'],
  handler: async ({ services }) => json(200, { devices: await services.devices.list() }),
});

route('devicesGet', {
  methods: ['GET'],
  route: 'devices/{deviceId}',
  access: ['admin'],
  handler: async ({ req, services }) => {
    const deviceId = parseWith(deviceIdSchema, req.params.deviceId, 'The device id');
    return json(200, await services.devices.get(deviceId));
  },
});

route('devicesRotate', {
  methods: ['POST'],
  route: 'devices/{deviceId}/rotate',
  access: ['admin'],
  handler: async ({ req, services, principal }) => {
    const deviceId = parseWith(deviceIdSchema, req.params.deviceId, 'The device id');
    const rotated = await services.devices.rotate(deviceId);
    await services.audit.append(adminAction('device.rotate', principal!.id, deviceId));
    return json(200, rotated);
  },
});

route('devicesDelete', {
  methods: ['DELETE'],
  route: 'devices/{deviceId}',
  access: ['admin'],
  durableClient: true,
  handler: async (api) => {
    const { req, services, ctx } = api;
    const deviceId = parseWith(deviceIdSchema, req.params.deviceId, 'The device id');
    const ended = await services
      .sessionControl(sessionOrchestrations(() => api.durable()))
      .deleteDevice(deviceId, (sessionId, err) =>
        ctx.warn(`could not end session ${sessionId} of deleted device ${deviceId}: ${String(err)}`),
      );
    ctx.info(`device ${deviceId} deleted; ${ended} open session(s) ended`);
    await services.audit.append(adminAction('device.remove', api.principal!.id, deviceId, { sessionsEnded: ended }));
    return { status: 204 };
  },
});
