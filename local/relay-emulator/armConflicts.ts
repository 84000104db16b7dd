// Microsoft.Relay's "conflicting operation" answers: a write under a namespace takes a while in the
// resource provider, and another write under the same namespace meanwhile gets 429 SubCode 40901;
// a hybrid connection deleted moments ago is still being cleaned up, so re-creating that name
// within a window gets the same 429.

export interface ConflictOptions {
  /** How long a write under a namespace (hybrid connection or rule PUT/DELETE, regenerateKeys) is in progress, unscaled (default 300; not published). */
  writeDurationMs?: number;
  /** How long a deleted hybrid connection's name stays unusable, unscaled (default 60000; not published). */
  hybridConnectionNameReuseWindowMs?: number;
}

export const DEFAULT_WRITE_DURATION_MS = 300;
export const DEFAULT_HC_NAME_REUSE_WINDOW_MS = 60_000;

/** The body ARM relays from Microsoft.Relay (seen on rule creation, terraform-provider-azapi#559). */
export function conflictMessage(detail: string): string {
  return `${detail} SubCode=40901. Another conflicting operation is in progress.`;
}

const k = (...parts: string[]): string => parts.map((p) => p.toLowerCase()).join('/');

export class ConflictTracker {
  private readonly busy = new Set<string>();
  private readonly deletedAt = new Map<string, number>();
  readonly writeDurationMs: number;
  private readonly reuseWindowMs: number;

  constructor(
    options: ConflictOptions,
    timeScale: number,
    /** Off: never answers a conflict for a re-used name (lenient, see README). */
    private readonly checkNameReuse: boolean,
    private readonly nowMs: () => number = Date.now,
  ) {
    this.writeDurationMs = (options.writeDurationMs ?? DEFAULT_WRITE_DURATION_MS) * timeScale;
    this.reuseWindowMs = (options.hybridConnectionNameReuseWindowMs ?? DEFAULT_HC_NAME_REUSE_WINDOW_MS) * timeScale;
  }

  /** Marks a write under `namespace` in progress; false when another one already is. */
  tryBegin(namespace: string): boolean {
    const key = k(namespace);
    if (this.busy.has(key)) return false;
    this.busy.add(key);
    return true;
  }

  end(namespace: string): void {
    this.busy.delete(k(namespace));
  }

  hybridConnectionDeleted(namespace: string, hybridConnection: string): void {
    this.deletedAt.set(k(namespace, hybridConnection), this.nowMs());
  }

  /** Ms left before `hybridConnection` may be created again under `namespace` (0: now). */
  nameReuseWaitMs(namespace: string, hybridConnection: string): number {
    if (!this.checkNameReuse) return 0;
    const key = k(namespace, hybridConnection);
    const at = this.deletedAt.get(key);
    if (at === undefined) return 0;
    const left = at + this.reuseWindowMs - this.nowMs();
    if (left <= 0) {
      this.deletedAt.delete(key);
      return 0;
    }
    return left;
  }

  forgetNamespace(namespace: string): void {
    const prefix = `${namespace.toLowerCase()}/`;
    for (const key of this.deletedAt.keys()) if (key.startsWith(prefix)) this.deletedAt.delete(key);
    this.busy.delete(k(namespace));
  }
}
