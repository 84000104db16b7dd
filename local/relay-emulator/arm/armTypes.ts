// Shared types of the emulator's ARM handlers: the parsed route, the handler context, ARM errors
// and the wire shapes (SDK models are flat; on the wire their fields live under `properties`).
import type { DataPlaneRegistry } from '../dataPlane';
import type { FaultInjector } from '../faults';
import type { AuthorizationRuleRecord, HybridConnectionRecord, IRelayStore, NamespaceRecord } from '../store';

export interface ArmRoute {
  subscriptionId: string;
  resourceGroup?: string;
  namespace?: string;
  hybridConnection?: string;
  rule?: string;
  /** `listKeys`, `regenerateKeys`, `operationresults`, `checkNameAvailability` */
  action?: string;
}

export interface ArmRequest {
  method: string;
  route: ArmRoute;
  body: unknown;
}

export interface ArmResponse {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

export interface ArmContext {
  store: IRelayStore;
  dataPlane: DataPlaneRegistry;
  faults: FaultInjector;
  createDelayMs: number;
  deleteDelayMs: number;
  /** The emulator's time scale: under one (≠ 1) Retry-After values are sent scaled, with ms precision. */
  timeScale: number;
  quotaPerSubscription: number;
  /** `https://127.0.0.1:<port>`: where LRO Location headers point. */
  armBaseUrl: () => string;
  /** The host and scheme of every namespace's data plane. */
  dataPlaneHost: string;
  now: () => Date;
  /** Runs `fn` after `ms` on a timer the emulator clears at close. */
  schedule: (ms: number, fn: () => void) => void;
}

/** An ARM error answer: `{ error: { code, message } }`. */
export class ArmError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export const API_VERSIONS = new Set(['2017-04-01', '2021-11-01', '2024-01-01']);

export function namespaceId(r: { subscriptionId: string; resourceGroup: string; name: string }): string {
  return `/subscriptions/${r.subscriptionId}/resourceGroups/${r.resourceGroup}/providers/Microsoft.Relay/namespaces/${r.name}`;
}

export function isActive(ns: NamespaceRecord, now: Date): boolean {
  return !ns.deletingSince && ns.activeAt !== null && ns.activeAt <= now;
}

export function serviceBusEndpoint(ctx: ArmContext, ns: NamespaceRecord): string {
  return `https://${ctx.dataPlaneHost}:${ns.dataPlanePort}/`;
}

export function namespaceJson(ctx: ArmContext, ns: NamespaceRecord): unknown {
  const now = ctx.now();
  const [provisioningState, status] = ns.deletingSince
    ? ['Deleting', 'Removing']
    : isActive(ns, now)
      ? ['Succeeded', 'Active']
      : ['Created', 'Activating'];
  return {
    id: namespaceId(ns),
    name: ns.name,
    type: 'Microsoft.Relay/Namespaces',
    location: ns.location,
    tags: ns.tags,
    sku: { name: 'Standard', tier: 'Standard' },
    properties: {
      provisioningState,
      status,
      createdAt: ns.createdAt.toISOString(),
      updatedAt: ns.updatedAt.toISOString(),
      serviceBusEndpoint: serviceBusEndpoint(ctx, ns),
      metricId: `${ns.subscriptionId}:${ns.name}`,
    },
  };
}

export function hybridConnectionJson(ctx: ArmContext, ns: NamespaceRecord, hc: HybridConnectionRecord): unknown {
  return {
    id: `${namespaceId(ns)}/hybridConnections/${hc.name}`,
    name: hc.name,
    type: 'Microsoft.Relay/Namespaces/HybridConnections',
    properties: {
      createdAt: hc.createdAt.toISOString(),
      updatedAt: hc.updatedAt.toISOString(),
      listenerCount: ctx.dataPlane.listenerCount(ns.name, hc.name),
      requiresClientAuthorization: hc.requiresClientAuthorization,
      ...(hc.userMetadata === undefined ? {} : { userMetadata: hc.userMetadata }),
    },
  };
}

export function ruleJson(
  ns: NamespaceRecord,
  hybridConnection: string | undefined,
  rule: AuthorizationRuleRecord,
): unknown {
  const parent =
    hybridConnection === undefined ? namespaceId(ns) : `${namespaceId(ns)}/hybridConnections/${hybridConnection}`;
  return {
    id: `${parent}/authorizationRules/${rule.name}`,
    name: rule.name,
    type:
      hybridConnection === undefined
        ? 'Microsoft.Relay/Namespaces/AuthorizationRules'
        : 'Microsoft.Relay/Namespaces/HybridConnections/AuthorizationRules',
    properties: { rights: rule.rights },
  };
}

export function notFound(kind: string, name: string, resourceGroup?: string): ArmError {
  return new ArmError(
    404,
    'ResourceNotFound',
    `The Resource '${kind}/${name}'${resourceGroup ? ` under resource group '${resourceGroup}'` : ''} was not found.`,
  );
}

/** The namespace named by the route, in the route's subscription and resource group, or a 404. */
export function requireNamespace(ctx: ArmContext, route: ArmRoute): NamespaceRecord {
  const name = route.namespace ?? '';
  const ns = ctx.store.getNamespace(name);
  if (
    !ns ||
    ns.subscriptionId.toLowerCase() !== route.subscriptionId.toLowerCase() ||
    ns.resourceGroup.toLowerCase() !== (route.resourceGroup ?? '').toLowerCase()
  ) {
    throw notFound('Microsoft.Relay/namespaces', name, route.resourceGroup);
  }
  return ns;
}

/** Child resources can be written only once the namespace is active. */
export function requireActiveNamespace(ctx: ArmContext, route: ArmRoute): NamespaceRecord {
  const ns = requireNamespace(ctx, route);
  if (ns.deletingSince) throw new ArmError(409, 'Conflict', `Namespace '${ns.name}' is being deleted.`);
  if (!isActive(ns, ctx.now())) throw new ArmError(409, 'Conflict', `Namespace '${ns.name}' is still activating.`);
  return ns;
}

export function bodyObject(body: unknown): Record<string, unknown> {
  return body !== null && typeof body === 'object' && !Array.isArray(body) ? (body as Record<string, unknown>) : {};
}

export function propertiesOf(body: unknown): Record<string, unknown> {
  return bodyObject(bodyObject(body).properties);
}
