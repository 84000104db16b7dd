// Maps an ARM request (method + path) to the operation name the SDK method carries and its handler.
import type { ArmOperation } from '../faults';
import { ArmError, type ArmContext, type ArmRequest, type ArmResponse, type ArmRoute } from './armTypes';
import * as rules from './authorizationRulesHandler';
import * as hybridConnections from './hybridConnectionsHandler';
import * as namespaces from './namespacesHandler';

export type ArmHandler = (ctx: ArmContext, req: ArmRequest, op: ArmOperation) => ArmResponse | Promise<ArmResponse>;

export interface ResolvedRoute {
  op: ArmOperation;
  route: ArmRoute;
  handler: ArmHandler;
}

type MethodTable = Partial<Record<string, [ArmOperation, ArmHandler]>>;

const eq = (a: string | undefined, b: string): boolean => a !== undefined && a.toLowerCase() === b.toLowerCase();

/** Resolves a request; throws ArmError 404 (unknown path) or 405 (known path, other method). */
export function resolveArmRoute(method: string, pathname: string): ResolvedRoute {
  let segments: string[];
  try {
    segments = pathname
      .split('/')
      .filter((s) => s.length > 0)
      .map(decodeURIComponent);
  } catch {
    throw new ArmError(400, 'BadRequest', 'The request path is not valid.');
  }
  const unknown = new ArmError(404, 'InvalidResourceType', `No route for ${pathname}.`);
  if (!eq(segments[0], 'subscriptions') || !segments[1]) throw unknown;
  const route: ArmRoute = { subscriptionId: segments[1] };
  let rest = segments.slice(2);
  let table: MethodTable | undefined;

  if (eq(rest[0], 'providers') && eq(rest[1], 'Microsoft.Relay') && rest.length === 3) {
    if (eq(rest[2], 'namespaces')) table = { GET: ['namespaces.list', namespaces.listNamespaces] };
    else if (eq(rest[2], 'checkNameAvailability')) {
      table = { POST: ['namespaces.checkNameAvailability', namespaces.checkNameAvailability] };
    }
  } else if (
    eq(rest[0], 'resourceGroups') &&
    rest[1] &&
    eq(rest[2], 'providers') &&
    eq(rest[3], 'Microsoft.Relay') &&
    eq(rest[4], 'namespaces')
  ) {
    route.resourceGroup = rest[1];
    rest = rest.slice(5);
    if (rest.length === 0) table = { GET: ['namespaces.listByResourceGroup', namespaces.listNamespaces] };
    else {
      route.namespace = rest[0];
      rest = rest.slice(1);
      if (rest.length === 0) {
        table = {
          PUT: ['namespaces.createOrUpdate', namespaces.createOrUpdateNamespace],
          GET: ['namespaces.get', namespaces.getNamespace],
          PATCH: ['namespaces.update', namespaces.updateNamespace],
          DELETE: ['namespaces.delete', namespaces.deleteNamespace],
        };
      } else if (eq(rest[0], 'operationresults') && rest.length === 2) {
        table = { GET: ['namespaces.deleteOperationResult', namespaces.deleteOperationResult] };
      } else if (eq(rest[0], 'authorizationRules')) {
        table = ruleTable('namespaces', rest.slice(1), route);
      } else if (eq(rest[0], 'hybridConnections')) {
        rest = rest.slice(1);
        if (rest.length === 0)
          table = { GET: ['hybridConnections.listByNamespace', hybridConnections.listHybridConnections] };
        else {
          route.hybridConnection = rest[0];
          rest = rest.slice(1);
          if (rest.length === 0) {
            table = {
              PUT: ['hybridConnections.createOrUpdate', hybridConnections.createOrUpdateHybridConnection],
              GET: ['hybridConnections.get', hybridConnections.getHybridConnection],
              DELETE: ['hybridConnections.delete', hybridConnections.deleteHybridConnection],
            };
          } else if (eq(rest[0], 'authorizationRules')) {
            table = ruleTable('hybridConnections', rest.slice(1), route);
          }
        }
      }
    }
  }
  if (!table) throw unknown;
  const entry = table[method.toUpperCase()];
  if (!entry) throw new ArmError(405, 'MethodNotAllowed', `${method} is not allowed on ${pathname}.`);
  return { op: entry[0], route, handler: entry[1] };
}

function ruleTable(
  level: 'namespaces' | 'hybridConnections',
  rest: string[],
  route: ArmRoute,
): MethodTable | undefined {
  if (rest.length === 0) return { GET: [`${level}.listAuthorizationRules`, rules.listRules] };
  route.rule = rest[0];
  if (rest.length === 1) {
    return {
      PUT: [`${level}.createOrUpdateAuthorizationRule`, rules.createOrUpdateRule],
      GET: [`${level}.getAuthorizationRule`, rules.getRule],
      DELETE: [`${level}.deleteAuthorizationRule`, rules.deleteRule],
    };
  }
  if (rest.length === 2 && eq(rest[1], 'listKeys')) return { POST: [`${level}.listKeys`, rules.listKeys] };
  if (rest.length === 2 && eq(rest[1], 'regenerateKeys'))
    return { POST: [`${level}.regenerateKeys`, rules.regenerateKeys] };
  return undefined;
}
