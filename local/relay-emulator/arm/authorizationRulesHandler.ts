// ARM: authorization rules at namespace and hybrid connection level: PUT, GET, list, DELETE,
// listKeys and regenerateKeys. The keys here are the very keys the data plane checks tokens against.
import { generateAccessKey, type AccessRight, type AuthorizationRuleRecord, type NamespaceRecord } from '../store';
import {
  ArmError,
  bodyObject,
  notFound,
  propertiesOf,
  requireActiveNamespace,
  requireNamespace,
  ruleJson,
  serviceBusEndpoint,
  type ArmContext,
  type ArmRequest,
  type ArmResponse,
} from './armTypes';

const RULE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,49}$/;
const RIGHTS: readonly AccessRight[] = ['Manage', 'Send', 'Listen'];
const MAX_RULES_PER_ENTITY = 12;

/** The namespace and (for entity-level rules) the hybrid connection the route names; 404 when missing. */
function parentOf(
  ctx: ArmContext,
  req: ArmRequest,
  forWrite: boolean,
): { ns: NamespaceRecord; hc: string | undefined } {
  const ns = forWrite ? requireActiveNamespace(ctx, req.route) : requireNamespace(ctx, req.route);
  const hcName = req.route.hybridConnection;
  if (hcName === undefined) return { ns, hc: undefined };
  const hc = ctx.store.getHybridConnection(ns.name, hcName);
  if (!hc) throw notFound(`Microsoft.Relay/namespaces/${ns.name}/hybridConnections`, hcName, ns.resourceGroup);
  return { ns, hc: hc.name };
}

function requireRule(
  ctx: ArmContext,
  ns: NamespaceRecord,
  hc: string | undefined,
  name: string,
): AuthorizationRuleRecord {
  const rule = ctx.store.getRule(ns.name, hc, name);
  if (!rule) throw notFound('authorizationRules', name, ns.resourceGroup);
  return rule;
}

function accessKeys(ctx: ArmContext, ns: NamespaceRecord, rule: AuthorizationRuleRecord): unknown {
  const endpoint = serviceBusEndpoint(ctx, ns).replace(/^https:/, 'sb:');
  const connectionString = (key: string): string =>
    `Endpoint=${endpoint};SharedAccessKeyName=${rule.name};SharedAccessKey=${key}`;
  return {
    keyName: rule.name,
    primaryKey: rule.primaryKey,
    secondaryKey: rule.secondaryKey,
    primaryConnectionString: connectionString(rule.primaryKey),
    secondaryConnectionString: connectionString(rule.secondaryKey),
  };
}

export function createOrUpdateRule(ctx: ArmContext, req: ArmRequest): ArmResponse {
  const { ns, hc } = parentOf(ctx, req, true);
  const name = req.route.rule ?? '';
  if (!RULE_NAME.test(name)) throw new ArmError(400, 'BadRequest', `The authorization rule name '${name}' is invalid.`);
  const rights = propertiesOf(req.body).rights;
  if (
    !Array.isArray(rights) ||
    rights.length === 0 ||
    !rights.every((r): r is AccessRight => typeof r === 'string' && (RIGHTS as readonly string[]).includes(r)) ||
    new Set(rights).size !== rights.length
  ) {
    throw new ArmError(
      400,
      'BadRequest',
      'properties.rights must be a non-empty list of distinct Manage, Send, Listen.',
    );
  }
  const existing = ctx.store.getRule(ns.name, hc, name);
  if (!existing && ctx.store.listRules(ns.name, hc).length >= MAX_RULES_PER_ENTITY) {
    throw new ArmError(400, 'QuotaExceeded', `An entity holds at most ${MAX_RULES_PER_ENTITY} authorization rules.`);
  }
  const now = ctx.now();
  const record: AuthorizationRuleRecord = {
    name: existing?.name ?? name,
    rights,
    primaryKey: existing?.primaryKey ?? generateAccessKey(),
    secondaryKey: existing?.secondaryKey ?? generateAccessKey(),
    createdAt: existing?.createdAt ?? now,
    updatedAt: now,
  };
  ctx.store.putRule(ns.name, hc, record);
  return { status: 200, body: ruleJson(ns, hc, record) };
}

export function getRule(ctx: ArmContext, req: ArmRequest): ArmResponse {
  const { ns, hc } = parentOf(ctx, req, false);
  return { status: 200, body: ruleJson(ns, hc, requireRule(ctx, ns, hc, req.route.rule ?? '')) };
}

export function listRules(ctx: ArmContext, req: ArmRequest): ArmResponse {
  const { ns, hc } = parentOf(ctx, req, false);
  return { status: 200, body: { value: ctx.store.listRules(ns.name, hc).map((r) => ruleJson(ns, hc, r)) } };
}

export function deleteRule(ctx: ArmContext, req: ArmRequest): ArmResponse {
  const { ns, hc } = parentOf(ctx, req, false);
  return { status: ctx.store.deleteRule(ns.name, hc, req.route.rule ?? '') ? 200 : 204 };
}

export function listKeys(ctx: ArmContext, req: ArmRequest): ArmResponse {
  const { ns, hc } = parentOf(ctx, req, false);
  return { status: 200, body: accessKeys(ctx, ns, requireRule(ctx, ns, hc, req.route.rule ?? '')) };
}

export function regenerateKeys(ctx: ArmContext, req: ArmRequest): ArmResponse {
  const { ns, hc } = parentOf(ctx, req, true);
  const rule = requireRule(ctx, ns, hc, req.route.rule ?? '');
  const body = bodyObject(req.body);
  if (body.keyType !== 'PrimaryKey' && body.keyType !== 'SecondaryKey') {
    throw new ArmError(400, 'BadRequest', 'keyType must be PrimaryKey or SecondaryKey.');
  }
  if (body.key !== undefined && (typeof body.key !== 'string' || body.key.length < 16)) {
    throw new ArmError(400, 'BadRequest', 'key, when given, must be a string of at least 16 characters.');
  }
  const fresh = typeof body.key === 'string' ? body.key : generateAccessKey();
  const updated: AuthorizationRuleRecord = {
    ...rule,
    ...(body.keyType === 'PrimaryKey' ? { primaryKey: fresh } : { secondaryKey: fresh }),
    updatedAt: ctx.now(),
  };
  ctx.store.putRule(ns.name, hc, updated);
  return { status: 200, body: accessKeys(ctx, ns, updated) };
}
