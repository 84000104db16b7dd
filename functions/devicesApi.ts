// Device registry routes (admin): register, list, show, rotate the enrollment, delete.
import { registerDeviceSchema } from '../lib/devices/deviceRegistry';
import { parseJsonBody, parseWith, deviceIdSchema } from '../lib/validation';
import { sessionOrchestrations } from './shared/sessionOrchestrations';
import { json, route } from './shared/route';

route('devicesCreate', {
  methods: ['POST'],
  route: 'devices',
  access: ['admin'],
  handler: async ({ req, body, services, principal }) => {
    const input = parseJsonBody(body, req.headers.get('content-type'), registerDeviceSchema);
    const enrollment = await services.devices.register(principal!, input);
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
  handler: async ({ req, services }) => {
    const deviceId = parseWith(deviceIdSchema, req.params.deviceId, 'The device id');
    return json(200, await services.devices.rotate(deviceId));
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
    return { status: 204 };
  },
});
