// The relay emulator's state (namespaces, hybrid connections, authorization rules and their keys)
// behind `IRelayStore`, with the in-memory implementation the emulator uses.
import { randomBytes } from 'node:crypto';

export type AccessRight = 'Manage' | 'Send' | 'Listen';

export interface AuthorizationRuleRecord {
  name: string;
  rights: AccessRight[];
  primaryKey: string;
  secondaryKey: string;
  createdAt: Date;
  updatedAt: Date;
}

export interface HybridConnectionRecord {
  name: string;
  requiresClientAuthorization: boolean;
  userMetadata?: string;
  createdAt: Date;
  updatedAt: Date;
}

export interface NamespaceRecord {
  subscriptionId: string;
  resourceGroup: string;
  name: string;
  location: string;
  tags: Record<string, string>;
  createdAt: Date;
  updatedAt: Date;
  /** When provisioning finishes; `null` never (the `stuckActivating` fault). */
  activeAt: Date | null;
  /** Set by DELETE; the record disappears when the deletion completes. */
  deletingSince?: Date;
  /** The namespace's own data-plane port (0 until its host listens). */
  dataPlanePort: number;
}

/** Every lookup is by name, case-insensitive, as ARM resource names are. Namespace names are global. */
export interface IRelayStore {
  getNamespace(name: string): NamespaceRecord | undefined;
  listNamespaces(filter: { subscriptionId: string; resourceGroup?: string }): NamespaceRecord[];
  countNamespaces(subscriptionId: string): number;
  putNamespace(record: NamespaceRecord): void;
  /** Removes the namespace and everything under it. */
  deleteNamespace(name: string): boolean;

  getHybridConnection(namespace: string, name: string): HybridConnectionRecord | undefined;
  listHybridConnections(namespace: string): HybridConnectionRecord[];
  putHybridConnection(namespace: string, record: HybridConnectionRecord): void;
  /** Removes the hybrid connection and its rules. */
  deleteHybridConnection(namespace: string, name: string): boolean;

  /** `hybridConnection` undefined: a namespace-level rule. */
  getRule(namespace: string, hybridConnection: string | undefined, name: string): AuthorizationRuleRecord | undefined;
  listRules(namespace: string, hybridConnection: string | undefined): AuthorizationRuleRecord[];
  putRule(namespace: string, hybridConnection: string | undefined, record: AuthorizationRuleRecord): void;
  deleteRule(namespace: string, hybridConnection: string | undefined, name: string): boolean;
}

/** A new random key like the service's: 256 bits, base64. */
export function generateAccessKey(): string {
  return randomBytes(32).toString('base64');
}

interface NamespaceEntry {
  record: NamespaceRecord;
  rules: Map<string, AuthorizationRuleRecord>;
  hybridConnections: Map<string, { record: HybridConnectionRecord; rules: Map<string, AuthorizationRuleRecord> }>;
}

const k = (name: string): string => name.toLowerCase();

export class InMemoryRelayStore implements IRelayStore {
  private readonly namespaces = new Map<string, NamespaceEntry>();

  getNamespace(name: string): NamespaceRecord | undefined {
    return this.namespaces.get(k(name))?.record;
  }

  listNamespaces(filter: { subscriptionId: string; resourceGroup?: string }): NamespaceRecord[] {
    return [...this.namespaces.values()]
      .map((e) => e.record)
      .filter(
        (r) =>
          k(r.subscriptionId) === k(filter.subscriptionId) &&
          (filter.resourceGroup === undefined || k(r.resourceGroup) === k(filter.resourceGroup)),
      )
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  countNamespaces(subscriptionId: string): number {
    return this.listNamespaces({ subscriptionId }).length;
  }

  putNamespace(record: NamespaceRecord): void {
    const entry = this.namespaces.get(k(record.name));
    if (entry) entry.record = record;
    else this.namespaces.set(k(record.name), { record, rules: new Map(), hybridConnections: new Map() });
  }

  deleteNamespace(name: string): boolean {
    return this.namespaces.delete(k(name));
  }

  getHybridConnection(namespace: string, name: string): HybridConnectionRecord | undefined {
    return this.namespaces.get(k(namespace))?.hybridConnections.get(k(name))?.record;
  }

  listHybridConnections(namespace: string): HybridConnectionRecord[] {
    const entry = this.namespaces.get(k(namespace));
    return entry ? [...entry.hybridConnections.values()].map((h) => h.record) : [];
  }

  putHybridConnection(namespace: string, record: HybridConnectionRecord): void {
    const entry = this.requireNamespace(namespace);
    const existing = entry.hybridConnections.get(k(record.name));
    if (existing) existing.record = record;
    else entry.hybridConnections.set(k(record.name), { record, rules: new Map() });
  }

  deleteHybridConnection(namespace: string, name: string): boolean {
    return this.namespaces.get(k(namespace))?.hybridConnections.delete(k(name)) ?? false;
  }

  getRule(namespace: string, hybridConnection: string | undefined, name: string): AuthorizationRuleRecord | undefined {
    return this.ruleMap(namespace, hybridConnection)?.get(k(name));
  }

  listRules(namespace: string, hybridConnection: string | undefined): AuthorizationRuleRecord[] {
    return [...(this.ruleMap(namespace, hybridConnection)?.values() ?? [])];
  }

  putRule(namespace: string, hybridConnection: string | undefined, record: AuthorizationRuleRecord): void {
    const rules = this.ruleMap(namespace, hybridConnection);
    if (!rules) throw new Error(`no such parent for rule ${record.name}`);
    rules.set(k(record.name), record);
  }

  deleteRule(namespace: string, hybridConnection: string | undefined, name: string): boolean {
    return this.ruleMap(namespace, hybridConnection)?.delete(k(name)) ?? false;
  }

  private requireNamespace(name: string): NamespaceEntry {
    const entry = this.namespaces.get(k(name));
    if (!entry) throw new Error(`no such namespace ${name}`);
    return entry;
  }

  private ruleMap(
    namespace: string,
    hybridConnection: string | undefined,
  ): Map<string, AuthorizationRuleRecord> | undefined {
    const entry = this.namespaces.get(k(namespace));
    if (!entry) return undefined;
    if (hybridConnection === undefined) return entry.rules;
    return entry.hybridConnections.get(k(hybridConnection))?.rules;
  }
}
