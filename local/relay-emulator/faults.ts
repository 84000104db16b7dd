// Runtime-programmable fault injection for the emulator's ARM surface: throttling, server errors,
// slow answers and namespaces that never finish activating.

/** ARM operations by the name of the @azure/arm-relay method that issues them. */
export type ArmOperation =
  | 'namespaces.createOrUpdate'
  | 'namespaces.get'
  | 'namespaces.update'
  | 'namespaces.list'
  | 'namespaces.listByResourceGroup'
  | 'namespaces.delete'
  | 'namespaces.deleteOperationResult'
  | 'namespaces.checkNameAvailability'
  | 'namespaces.createOrUpdateAuthorizationRule'
  | 'namespaces.getAuthorizationRule'
  | 'namespaces.listAuthorizationRules'
  | 'namespaces.deleteAuthorizationRule'
  | 'namespaces.listKeys'
  | 'namespaces.regenerateKeys'
  | 'hybridConnections.createOrUpdate'
  | 'hybridConnections.get'
  | 'hybridConnections.listByNamespace'
  | 'hybridConnections.delete'
  | 'hybridConnections.createOrUpdateAuthorizationRule'
  | 'hybridConnections.getAuthorizationRule'
  | 'hybridConnections.listAuthorizationRules'
  | 'hybridConnections.deleteAuthorizationRule'
  | 'hybridConnections.listKeys'
  | 'hybridConnections.regenerateKeys';

export type FaultKind = '429' | '500' | 'slow' | 'stuckActivating';

export interface FaultSpec {
  /** The operation to hit; `*` for every operation. */
  op: ArmOperation | '*';
  kind: FaultKind;
  /** How many matching requests it hits (default 1; Infinity for all). */
  count?: number;
  /** For `429`: the Retry-After header, in seconds (default 1). */
  retryAfterSeconds?: number;
  /** For `slow`: how long to hold the request before serving it (default 1000). */
  delayMs?: number;
  /** Only requests whose namespace name matches (a RegExp, or a string matched exactly, case-insensitive). */
  namePattern?: RegExp | string;
}

export interface ActiveFault extends Required<Omit<FaultSpec, 'namePattern'>> {
  id: number;
  namePattern?: RegExp | string;
  /** How many requests it has hit so far. */
  hits: number;
}

export class FaultInjector {
  private readonly faults: ActiveFault[] = [];
  private nextId = 1;

  /** Adds a fault; returns its id for `remove`. */
  add(spec: FaultSpec): number {
    const id = this.nextId++;
    this.faults.push({
      id,
      op: spec.op,
      kind: spec.kind,
      count: spec.count ?? 1,
      retryAfterSeconds: spec.retryAfterSeconds ?? 1,
      delayMs: spec.delayMs ?? 1000,
      namePattern: spec.namePattern,
      hits: 0,
    });
    return id;
  }

  remove(id: number): void {
    const i = this.faults.findIndex((f) => f.id === id);
    if (i >= 0) this.faults.splice(i, 1);
  }

  clear(): void {
    this.faults.length = 0;
  }

  list(): ActiveFault[] {
    return this.faults.map((f) => ({ ...f }));
  }

  /**
   * Consumes and returns the first fault of one of `kinds` that matches the request, if any.
   * A fault whose count is used up is removed.
   */
  take(op: ArmOperation, namespaceName: string | undefined, kinds: readonly FaultKind[]): ActiveFault | undefined {
    const i = this.faults.findIndex(
      (f) => kinds.includes(f.kind) && (f.op === '*' || f.op === op) && matchesName(f.namePattern, namespaceName),
    );
    if (i < 0) return undefined;
    const fault = this.faults[i];
    fault.hits++;
    if (fault.hits >= fault.count) this.faults.splice(i, 1);
    return { ...fault };
  }
}

function matchesName(pattern: RegExp | string | undefined, name: string | undefined): boolean {
  if (pattern === undefined) return true;
  if (name === undefined) return false;
  if (typeof pattern === 'string') return pattern.toLowerCase() === name.toLowerCase();
  pattern.lastIndex = 0;
  return pattern.test(name);
}
