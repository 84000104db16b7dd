// The relay emulator's state (namespaces, hybrid connections, authorization rules and their keys)
// behind `IRelayStore`, with the in-memory implementation the emulator uses and a file-backed one
// for `npm start`, which keeps its state across restarts.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';

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
  /** Every namespace, whatever its subscription (ports in use, re-opening after a restart). */
  listAllNamespaces?(): NamespaceRecord[];
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

  /** Every namespace's name (all subscriptions). */
  protected namespaceNames(): string[] {
    return [...this.namespaces.values()].map((e) => e.record.name).sort();
  }

  listAllNamespaces(): NamespaceRecord[] {
    return [...this.namespaces.values()].map((e) => e.record);
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

/** What `FileRelayStore` writes: every namespace with its rules, hybrid connections and their rules. */
interface StoreFileV1 {
  version: 1;
  namespaces: {
    record: NamespaceRecord;
    rules: AuthorizationRuleRecord[];
    hybridConnections: { record: HybridConnectionRecord; rules: AuthorizationRuleRecord[] }[];
  }[];
}

const DATE_FIELDS = new Set(['createdAt', 'updatedAt', 'activeAt', 'deletingSince']);

/**
 * The in-memory store written through to one JSON file (mode 0600) after every change, atomically
 * (a temporary file renamed over it), and read back at construction, so `npm start` keeps the
 * emulator's namespaces, hybrid connections, rules and keys across restarts. Local mode only: the
 * file holds the namespaces' keys, so it lives in the 0700 state folder next to the sealing key.
 * A second write of the same state rewrites the same bytes.
 */
export class FileRelayStore extends InMemoryRelayStore {
  private loading = true;

  constructor(private readonly file: string) {
    super();
    let text: string | undefined;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (err) {
      if ((err as { code?: unknown }).code !== 'ENOENT') throw err;
    }
    if (text !== undefined) this.load(text);
    this.loading = false;
  }

  private load(text: string): void {
    let data: StoreFileV1;
    try {
      data = JSON.parse(text, (key, value: unknown) =>
        DATE_FIELDS.has(key) && typeof value === 'string' ? new Date(value) : value,
      ) as StoreFileV1;
    } catch {
      throw new Error(`${this.file} is not valid JSON; remove it (or run \`npm start -- --reset\`)`);
    }
    if (data?.version !== 1 || !Array.isArray(data.namespaces))
      throw new Error(`${this.file} is not a relay emulator store; remove it (or run \`npm start -- --reset\`)`);
    for (const ns of data.namespaces) {
      super.putNamespace(ns.record);
      for (const rule of ns.rules) super.putRule(ns.record.name, undefined, rule);
      for (const hc of ns.hybridConnections) {
        super.putHybridConnection(ns.record.name, hc.record);
        for (const rule of hc.rules) super.putRule(ns.record.name, hc.record.name, rule);
      }
    }
  }

  private snapshot(): StoreFileV1 {
    const namespaces = this.namespaceNames().map((name) => {
      const record = this.getNamespace(name)!;
      return {
        record,
        rules: this.listRules(name, undefined),
        hybridConnections: this.listHybridConnections(name).map((hc) => ({
          record: hc,
          rules: this.listRules(name, hc.name),
        })),
      };
    });
    return { version: 1, namespaces };
  }

  private save(): void {
    if (this.loading) return;
    const tmp = `${this.file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify(this.snapshot()), { mode: 0o600 });
    fs.renameSync(tmp, this.file);
  }

  override putNamespace(record: NamespaceRecord): void {
    super.putNamespace(record);
    this.save();
  }
  override deleteNamespace(name: string): boolean {
    const deleted = super.deleteNamespace(name);
    if (deleted) this.save();
    return deleted;
  }
  override putHybridConnection(namespace: string, record: HybridConnectionRecord): void {
    super.putHybridConnection(namespace, record);
    this.save();
  }
  override deleteHybridConnection(namespace: string, name: string): boolean {
    const deleted = super.deleteHybridConnection(namespace, name);
    if (deleted) this.save();
    return deleted;
  }
  override putRule(namespace: string, hybridConnection: string | undefined, record: AuthorizationRuleRecord): void {
    super.putRule(namespace, hybridConnection, record);
    this.save();
  }
  override deleteRule(namespace: string, hybridConnection: string | undefined, name: string): boolean {
    const deleted = super.deleteRule(namespace, hybridConnection, name);
    if (deleted) this.save();
    return deleted;
  }
}
