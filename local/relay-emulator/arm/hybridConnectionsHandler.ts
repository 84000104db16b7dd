// ARM: Microsoft.Relay/namespaces/hybridConnections (PUT answers 200 only, as the spec says; DELETE
// also drops every listener and connection of the hybrid connection with 1001).
import {
  ArmError,
  hybridConnectionJson,
  notFound,
  propertiesOf,
  requireActiveNamespace,
  requireNamespace,
  type ArmContext,
  type ArmRequest,
  type ArmResponse,
} from './armTypes';

const HYBRID_CONNECTION_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,259}$/;

export function createOrUpdateHybridConnection(ctx: ArmContext, req: ArmRequest): ArmResponse {
  const ns = requireActiveNamespace(ctx, req.route);
  const name = req.route.hybridConnection ?? '';
  if (!HYBRID_CONNECTION_NAME.test(name)) {
    throw new ArmError(400, 'BadRequest', `The hybrid connection name '${name}' is invalid.`);
  }
  const properties = propertiesOf(req.body);
  const now = ctx.now();
  const existing = ctx.store.getHybridConnection(ns.name, name);
  if (!existing && ctx.store.listHybridConnections(ns.name).length >= 10_000) {
    throw new ArmError(400, 'QuotaExceeded', 'A namespace holds at most 10,000 relay endpoints.');
  }
  const requiresClientAuthorization =
    typeof properties.requiresClientAuthorization === 'boolean'
      ? properties.requiresClientAuthorization
      : (existing?.requiresClientAuthorization ?? true);
  const userMetadata = typeof properties.userMetadata === 'string' ? properties.userMetadata : existing?.userMetadata;
  const record = {
    name: existing?.name ?? name,
    requiresClientAuthorization,
    userMetadata,
    createdAt: existing?.createdAt ?? now,
    updatedAt: now,
  };
  ctx.store.putHybridConnection(ns.name, record);
  return { status: 200, body: hybridConnectionJson(ctx, ns, record) };
}

export function getHybridConnection(ctx: ArmContext, req: ArmRequest): ArmResponse {
  const ns = requireNamespace(ctx, req.route);
  const name = req.route.hybridConnection ?? '';
  const hc = ctx.store.getHybridConnection(ns.name, name);
  if (!hc) throw notFound(`Microsoft.Relay/namespaces/${ns.name}/hybridConnections`, name, ns.resourceGroup);
  return { status: 200, body: hybridConnectionJson(ctx, ns, hc) };
}

export function listHybridConnections(ctx: ArmContext, req: ArmRequest): ArmResponse {
  const ns = requireNamespace(ctx, req.route);
  const value = ctx.store.listHybridConnections(ns.name).map((hc) => hybridConnectionJson(ctx, ns, hc));
  return { status: 200, body: { value } };
}

export function deleteHybridConnection(ctx: ArmContext, req: ArmRequest): ArmResponse {
  const ns = requireNamespace(ctx, req.route);
  const name = req.route.hybridConnection ?? '';
  if (!ctx.store.deleteHybridConnection(ns.name, name)) return { status: 204 };
  ctx.dataPlane.closeHybridConnection(ns.name, name);
  return { status: 200 };
}
