// Grants (admin): which operator may open sessions to which device (`*` for all of them).
import { z } from 'zod';
import { GrantNotFoundError } from '../lib/errors';
import { parseWith } from '../lib/validation';
import { adminAction } from '../lib/audit/adminAudit';
import { json, route } from './shared/route';

route('grantsPut', {
  methods: ['PUT'],
  route: 'grants/{principalId}/{deviceId}',
  access: ['admin'],
  handler: async ({ req, services, principal }) => {
    const { grant, created } = await services.grants.put(req.params.principalId, req.params.deviceId, principal!.id);
    await services.audit.append(
      adminAction('grant.add', principal!.id, req.params.deviceId, { grantee: req.params.principalId, created }),
    );
    return json(created ? 201 : 200, grant);
  },
});

route('grantsDelete', {
  methods: ['DELETE'],
  route: 'grants/{principalId}/{deviceId}',
  access: ['admin'],
  handler: async ({ req, services, principal }) => {
    const existed = await services.grants.delete(req.params.principalId, req.params.deviceId);
    if (!existed) throw new GrantNotFoundError(`No grant of ${req.params.deviceId} to ${req.params.principalId}.`);
    await services.audit.append(
      adminAction('grant.remove', principal!.id, req.params.deviceId, { grantee: req.params.principalId }),
    );
    return { status: 204 };
  },
});

route('grantsList', {
  methods: ['GET'],
  route: 'grants',
  access: ['admin'],
  handler: async ({ req, services }) => {
    const q = parseWith(
      z.object({ principalId: z.string().optional() }).strict(),
      Object.fromEntries(req.query.entries()),
      'The query',
    );
    return json(200, { grants: await services.grants.list(q) });
  },
});
