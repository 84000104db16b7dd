// ARM: Microsoft.Relay/namespaces (create as the real service does it: 200 `Created` then re-GET until
// `Succeeded`; delete: 202 + Location, 202 ... 200), list, checkNameAvailability, PATCH.
import type { ArmOperation } from '../faults';
import { generateAccessKey, type NamespaceRecord } from '../store';
import {
  ArmError,
  bodyObject,
  namespaceId,
  namespaceJson,
  requireNamespace,
  type ArmContext,
  type ArmRequest,
  type ArmResponse,
} from './armTypes';

export const ROOT_RULE = 'RootManageSharedAccessKey';
/** 6–50 characters, letters, digits and hyphens, starting with a letter and not ending with a hyphen. */
const NAMESPACE_NAME = /^[A-Za-z][A-Za-z0-9-]{4,48}[A-Za-z0-9]$/;

function validateName(name: string): void {
  if (!NAMESPACE_NAME.test(name)) {
    throw new ArmError(
      400,
      'BadRequest',
      `The specified namespace name '${name}' is invalid: it must be 6 to 50 characters of letters, digits and hyphens, start with a letter and end with a letter or digit.`,
    );
  }
}

function parseTags(value: unknown): Record<string, string> | undefined {
  if (value === undefined || value === null) return undefined;
  const tags: Record<string, string> = {};
  for (const [k, v] of Object.entries(bodyObject(value))) {
    if (typeof v !== 'string') throw new ArmError(400, 'InvalidRequestContent', `Tag '${k}' must be a string.`);
    tags[k] = v;
  }
  return tags;
}

export async function createOrUpdateNamespace(
  ctx: ArmContext,
  req: ArmRequest,
  op: ArmOperation,
): Promise<ArmResponse> {
  const { subscriptionId } = req.route;
  const resourceGroup = req.route.resourceGroup ?? '';
  const name = req.route.namespace ?? '';
  validateName(name);
  const body = bodyObject(req.body);
  const tags = parseTags(body.tags);
  const now = ctx.now();
  const existing = ctx.store.getNamespace(name);
  if (existing) {
    if (
      existing.subscriptionId.toLowerCase() !== subscriptionId.toLowerCase() ||
      existing.resourceGroup.toLowerCase() !== resourceGroup.toLowerCase()
    ) {
      throw new ArmError(409, 'Conflict', `The namespace name '${name}' is already in use.`);
    }
    if (existing.deletingSince) throw new ArmError(409, 'Conflict', `Namespace '${name}' is being deleted.`);
    const updated: NamespaceRecord = { ...existing, tags: tags ?? existing.tags, updatedAt: now };
    ctx.store.putNamespace(updated);
    await ctx.dataPlane.ensure(name);
    return { status: 200, body: namespaceJson(ctx, ctx.store.getNamespace(name) ?? updated) };
  }
  if (typeof body.location !== 'string' || body.location.length === 0) {
    throw new ArmError(400, 'LocationRequired', 'The location property is required for this definition.');
  }
  if (ctx.store.countNamespaces(subscriptionId) >= ctx.quotaPerSubscription) {
    throw new ArmError(
      400,
      'QuotaExceeded',
      `TooManyNamespaceInCurrentSubscription: the subscription already has ${ctx.quotaPerSubscription} Relay namespaces.`,
    );
  }
  const stuck = ctx.faults.take(op, name, ['stuckActivating']);
  // Written before the port is opened, so a concurrent PUT or the quota count sees it at once.
  const record: NamespaceRecord = {
    subscriptionId,
    resourceGroup,
    name,
    location: body.location,
    tags: tags ?? {},
    createdAt: now,
    updatedAt: now,
    activeAt: stuck ? null : new Date(now.getTime() + ctx.createDelayMs),
    dataPlanePort: 0,
  };
  ctx.store.putNamespace(record);
  ctx.store.putRule(name, undefined, {
    name: ROOT_RULE,
    rights: ['Listen', 'Manage', 'Send'],
    primaryKey: generateAccessKey(),
    secondaryKey: generateAccessKey(),
    createdAt: now,
    updatedAt: now,
  });
  let port: number;
  try {
    port = await ctx.dataPlane.ensure(name);
  } catch (err) {
    ctx.store.deleteNamespace(name);
    throw new ArmError(500, 'InternalServerError', `Could not open the namespace's endpoint: ${String(err)}`);
  }
  const current = ctx.store.getNamespace(name);
  if (current) ctx.store.putNamespace({ ...current, dataPlanePort: port });
  return { status: 200, body: namespaceJson(ctx, ctx.store.getNamespace(name) ?? { ...record, dataPlanePort: port }) };
}

export function getNamespace(ctx: ArmContext, req: ArmRequest): ArmResponse {
  return { status: 200, body: namespaceJson(ctx, requireNamespace(ctx, req.route)) };
}

export function updateNamespace(ctx: ArmContext, req: ArmRequest): ArmResponse {
  const ns = requireNamespace(ctx, req.route);
  const tags = parseTags(bodyObject(req.body).tags);
  const updated = { ...ns, tags: tags ?? ns.tags, updatedAt: ctx.now() };
  ctx.store.putNamespace(updated);
  return { status: 200, body: namespaceJson(ctx, updated) };
}

export function listNamespaces(ctx: ArmContext, req: ArmRequest): ArmResponse {
  const value = ctx.store
    .listNamespaces({ subscriptionId: req.route.subscriptionId, resourceGroup: req.route.resourceGroup })
    .map((ns) => namespaceJson(ctx, ns));
  return { status: 200, body: { value } };
}

function operationResultUrl(ctx: ArmContext, ns: NamespaceRecord): string {
  return `${ctx.armBaseUrl()}${namespaceId(ns)}/operationresults/${ns.name}?api-version=2017-04-01`;
}

export async function deleteNamespace(ctx: ArmContext, req: ArmRequest): Promise<ArmResponse> {
  let ns: NamespaceRecord;
  try {
    ns = requireNamespace(ctx, req.route);
  } catch {
    return { status: 204 };
  }
  if (!ns.deletingSince) {
    const marked = { ...ns, deletingSince: ctx.now() };
    ctx.store.putNamespace(marked);
    // Listeners and connections go at once (1001); the record goes when the operation completes.
    await ctx.dataPlane.closeNamespace(ns.name);
    ctx.schedule(ctx.deleteDelayMs, () => {
      const current = ctx.store.getNamespace(ns.name);
      if (current?.deletingSince) ctx.store.deleteNamespace(ns.name);
    });
    ns = marked;
  }
  return { status: 202, headers: { location: operationResultUrl(ctx, ns) } };
}

export function deleteOperationResult(ctx: ArmContext, req: ArmRequest): ArmResponse {
  const ns = ctx.store.getNamespace(req.route.namespace ?? '');
  if (ns?.deletingSince) {
    // Real polls answered 202 with Retry-After 37 then 35 (seconds left, roughly).
    const leftMs = ns.deletingSince.getTime() + ctx.deleteDelayMs - ctx.now().getTime();
    // Under a time scale the hint is scaled too (ms precision), as the throttles' Retry-After is.
    const retryAfter =
      ctx.timeScale === 1
        ? String(Math.max(1, Math.ceil(leftMs / 1000)))
        : String(Math.max(0.001, Math.ceil(Math.max(1, leftMs)) / 1000));
    return {
      status: 202,
      body: namespaceJson(ctx, ns),
      headers: { location: operationResultUrl(ctx, ns), 'retry-after': retryAfter },
    };
  }
  return { status: 200 };
}

export function checkNameAvailability(ctx: ArmContext, req: ArmRequest): ArmResponse {
  const name = bodyObject(req.body).name;
  if (typeof name !== 'string') throw new ArmError(400, 'BadRequest', 'name is required.');
  if (!NAMESPACE_NAME.test(name)) {
    return { status: 200, body: { nameAvailable: false, reason: 'InvalidName', message: 'The name is not valid.' } };
  }
  if (ctx.store.getNamespace(name)) {
    return { status: 200, body: { nameAvailable: false, reason: 'NameInUse', message: 'The name is already in use.' } };
  }
  return { status: 200, body: { nameAvailable: true, reason: 'None' } };
}
