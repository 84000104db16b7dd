// ARM authorization (RBAC) as the emulator applies it: role assignments (principal → built-in role →
// scope) are configuration; a request is allowed when one assignment of its principal covers its
// action at a scope that contains the request's scope, else 403 AuthorizationFailed with ARM's body.
import type { ArmOperation } from './faults';
import { ArmError, type ArmRoute } from './arm/armTypes';

/** The built-in roles the emulator knows, with their control-plane actions (dataActions do not matter here). */
export const BUILT_IN_ROLES = {
  Owner: ['*'],
  Contributor: ['*'],
  Reader: ['*/read'],
  /** 2787bf04-f1f5-4bfe-8383-c8a24483ee38: actions `Microsoft.Relay/*`. */
  'Azure Relay Owner': ['Microsoft.Relay/*'],
} as const satisfies Record<string, readonly string[]>;

export type BuiltInRole = keyof typeof BUILT_IN_ROLES;

export interface RoleAssignment {
  /** The principal's object id (the `oid` of a JWT bearer token, or an opaque token's text); `*` for any. */
  principalId: string;
  role: BuiltInRole;
  /** `/subscriptions/{s}[/resourceGroups/{rg}[/providers/...]]`; a segment `*` matches any one segment (emulator only). */
  scope: string;
}

/**
 * The token `createRelayApiFactory` sends to a non-Azure endpoint: the local app's principal.
 * Opaque (non-JWT) bearer tokens name their principal directly in the emulator.
 */
export const LOCAL_APP_PRINCIPAL = 'relay-emulator';

/**
 * What `infra/pool-subscription.bicep` grants the app: Azure Relay Owner on the pool resource
 * group, nothing at subscription scope. The emulator does not know the pool's group names, so the
 * default grants it on every resource group; tests that need one group pass their own assignments.
 */
export const DEFAULT_ROLE_ASSIGNMENTS: readonly RoleAssignment[] = [
  { principalId: '*', role: 'Azure Relay Owner', scope: '/subscriptions/*/resourceGroups/*' },
];

/** The principal a bearer token stands for: a JWT's `oid` (ARM's object id), else the token text itself. */
export function principalOf(token: string): string {
  const parts = token.split('.');
  if (parts.length === 3) {
    try {
      const claims = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8')) as {
        oid?: unknown;
        sub?: unknown;
      };
      if (typeof claims.oid === 'string') return claims.oid;
      if (typeof claims.sub === 'string') return claims.sub;
    } catch {
      // not a JWT: fall through
    }
    return 'unknown';
  }
  return token;
}

/** The action and the scope ARM checks for a request. */
export function actionAndScope(
  method: string,
  op: ArmOperation,
  route: ArmRoute,
  pathname: string,
): { action: string; scope: string } {
  const sub = `/subscriptions/${route.subscriptionId}`;
  if (op === 'namespaces.list') return { action: 'Microsoft.Relay/namespaces/read', scope: sub };
  if (op === 'namespaces.checkNameAvailability')
    return { action: 'Microsoft.Relay/checkNameAvailability/action', scope: sub };
  if (op === 'namespaces.listByResourceGroup')
    return { action: 'Microsoft.Relay/namespaces/read', scope: `${sub}/resourceGroups/${route.resourceGroup}` };
  let type = 'Microsoft.Relay/namespaces';
  if (route.hybridConnection !== undefined) type += '/hybridConnections';
  if (route.rule !== undefined || /\/authorizationRules\/?$/i.test(pathname)) type += '/authorizationRules';
  if (op === 'namespaces.deleteOperationResult') type += '/operationresults';
  const segments = pathname.split('/').filter((s) => s.length > 0);
  let verb: string;
  if (op.endsWith('.listKeys')) verb = 'listKeys/action';
  else if (op.endsWith('.regenerateKeys')) verb = 'regenerateKeys/action';
  else verb = method === 'GET' ? 'read' : method === 'DELETE' ? 'delete' : 'write';
  const scopeSegments = verb.endsWith('/action') ? segments.slice(0, -1) : segments;
  return { action: `${type}/${verb}`, scope: `/${scopeSegments.map(decodeSafe).join('/')}` };
}

function decodeSafe(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

function actionMatches(pattern: string, action: string): boolean {
  const p = pattern.toLowerCase();
  const a = action.toLowerCase();
  if (p === '*') return true;
  if (p.startsWith('*/')) return a.endsWith(p.slice(1));
  if (p.endsWith('/*')) return a.startsWith(p.slice(0, -1));
  return p === a;
}

/** `assigned` contains `requested` (segment by segment, case-insensitive; `*` matches one segment). */
function scopeContains(assigned: string, requested: string): boolean {
  const a = assigned.split('/').filter((s) => s.length > 0);
  const r = requested.split('/').filter((s) => s.length > 0);
  if (a.length > r.length) return false;
  return a.every((seg, i) => seg === '*' || seg.toLowerCase() === r[i].toLowerCase());
}

export class ArmAuthorizer {
  constructor(private readonly assignments: readonly RoleAssignment[]) {}

  /** Throws ARM's 403 AuthorizationFailed unless an assignment of `principal` allows `action` over `scope`. */
  check(principal: string, action: string, scope: string): void {
    const allowed = this.assignments.some(
      (ra) =>
        (ra.principalId === '*' || ra.principalId.toLowerCase() === principal.toLowerCase()) &&
        scopeContains(ra.scope, scope) &&
        BUILT_IN_ROLES[ra.role].some((pattern) => actionMatches(pattern, action)),
    );
    if (allowed) return;
    throw new ArmError(
      403,
      'AuthorizationFailed',
      `The client '${principal}' with object id '${principal}' does not have authorization to perform action ` +
        `'${action}' over scope '${scope}' or the scope is invalid. If access was recently granted, please refresh your credentials.`,
    );
  }
}
