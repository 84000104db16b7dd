// The Azure Relay emulator: wires the ARM surface (https, one port) and the per-namespace Hybrid
// Connections data plane over one shared store, with fault injection and request counters. Strict
// like Azure by default: RBAC by scope, ARM throttling, conflicting-operation 429s, real-scale
// provisioning times, no automatic pongs and an idle cut; each has a setting (README "Settings").
import type { IncomingMessage, ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import https from 'node:https';
import { resolveArmRoute, type ResolvedRoute } from './arm/armRouter';
import { API_VERSIONS, ArmError, type ArmContext, type ArmRequest, type ArmResponse } from './arm/armTypes';
import { generateTlsIdentity, type TlsIdentity } from './certificate';
export { generateTlsIdentity, loadOrCreateTlsIdentity, type TlsIdentity } from './certificate';
import { DataPlaneRegistry } from './dataPlane';
import { FaultInjector, type ArmOperation, type FaultSpec } from './faults';
import { InMemoryRelayStore, type IRelayStore } from './store';
import {
  ArmAuthorizer,
  actionAndScope,
  DEFAULT_ROLE_ASSIGNMENTS,
  principalOf,
  type RoleAssignment,
} from './armAuthorization';
import { ConflictTracker, conflictMessage, type ConflictOptions } from './armConflicts';
import { ArmThrottle, type RequestKind, type ThrottlingOptions } from './armThrottling';

export { FaultInjector } from './faults';
export type { ActiveFault, ArmOperation, FaultKind, FaultSpec } from './faults';
export { FileRelayStore, InMemoryRelayStore } from './store';
export type { IRelayStore } from './store';
export { CLOSE_ENTITY_DELETED, CLOSE_POLICY_VIOLATION, MAX_LISTENERS_PER_HYBRID_CONNECTION } from './dataPlane';
export { BUILT_IN_ROLES, DEFAULT_ROLE_ASSIGNMENTS, LOCAL_APP_PRINCIPAL } from './armAuthorization';
export type { BuiltInRole, RoleAssignment } from './armAuthorization';
export { ARM_LIMITS } from './armThrottling';
export type { BucketLimit, ThrottlingOptions } from './armThrottling';
export type { ConflictOptions } from './armConflicts';

/** Recorded real traffic: PUT at 02:21:10, `Succeeded` at 02:21:54 (README "Sources"). */
export const REAL_CREATE_DELAY_MS = 44_000;
/** Recorded real traffic: DELETE 202, operation done 38 s later. */
export const REAL_DELETE_DELAY_MS = 38_000;
/** Azure's load balancers cut a flow idle for ~4 min (azure-relay#33: 4:10-4:15). */
export const DEFAULT_IDLE_TIMEOUT_MS = 240_000;

/**
 * Ways the emulator can be kinder than Azure, for what the product does not survive yet. Each is
 * off by default; whoever turns one on says why next to it.
 */
export interface RelayEmulatorLenience {
  /** Any principal may list namespaces at subscription scope (Azure: 403 AuthorizationFailed under a resource-group role). */
  subscriptionScopeList?: boolean;
  /** A hybrid connection may be re-created under a name deleted moments ago (Azure: 429 SubCode 40901). */
  hybridConnectionNameReuse?: boolean;
  /** Writes under one namespace may overlap (Azure: the later one gets 429 SubCode 40901). */
  concurrentWrites?: boolean;
}

export interface RelayEmulatorOptions {
  /**
   * Multiplies every ARM duration (create, delete, write duration, conflict and throttling windows,
   * bucket refill time) so tests run real behaviour faster (default 1: real scale).
   */
  timeScale?: number;
  /** How long a new namespace stays `Created`/`Activating` (default env RELAY_EMULATOR_CREATE_DELAY_MS, else 44 s × timeScale). */
  createDelayMs?: number;
  /** How long a deleted namespace answers 202 on its operation result before 200 (default 38 s × timeScale). */
  deleteDelayMs?: number;
  /** principal → role → scope (default DEFAULT_ROLE_ASSIGNMENTS: Azure Relay Owner on resource groups only). */
  roleAssignments?: readonly RoleAssignment[];
  /** ARM's token buckets and Relay's namespace-write limit (default: Azure's values). */
  throttling?: ThrottlingOptions;
  /** Conflicting-operation 429s (default: on). */
  conflicts?: ConflictOptions;
  /** Cut any data-plane WebSocket idle this long (default 240000; not time-scaled; 0 = never). */
  idleTimeoutMs?: number;
  /** Answer WebSocket pings on the data plane (default false: nothing documents that Relay does). */
  autoPong?: boolean;
  lenient?: RelayEmulatorLenience;
  /** Namespaces per subscription before PUT answers QuotaExceeded (default 100). */
  quotaPerSubscription?: number;
  /** Faults armed from the start; more can be added at runtime through `emulator.faults`. */
  faults?: FaultSpec[];
  /** ARM port (default 0: a free one). */
  port?: number;
  /** How long an accept address stays valid (default 30000). */
  rendezvousTimeoutMs?: number;
  /** A store other than the in-memory one (`npm start`: a `FileRelayStore` in its state folder). */
  store?: IRelayStore;
  /** The TLS identity both faces serve (default: a new one naming 127.0.0.1, localhost and `publicHost`). */
  tls?: TlsIdentity;
  /** The host name or address namespaces' endpoints name and token audiences must name (default 127.0.0.1). */
  publicHost?: string;
  /** Where the data plane listens (default 127.0.0.1; `0.0.0.0` for devices on other machines). ARM stays on loopback. */
  dataPlaneBind?: string;
  /** The ports namespaces' data planes are served on, one each (default: any free port). */
  dataPlanePorts?: { first: number; last: number };
}

export interface RelayEmulatorStats {
  /** Requests per ARM operation (SDK method name), reads and writes. */
  byOperation: Partial<Record<ArmOperation, number>>;
  /** GET requests. */
  reads: number;
  /** PUT, PATCH, POST and DELETE requests (ARM throttles them as writes). */
  writes: number;
  total: number;
  /** 429s answered by the throttles (ARM's buckets, the namespace-write limit; injected faults not counted). */
  throttled: number;
  /** 429 SubCode 40901 "conflicting operation" answers. */
  conflicts: number;
}

type Status = 'closed' | 'starting' | 'running' | 'closing';
const HOST = '127.0.0.1';
const MAX_BODY_BYTES = 1024 * 1024;

function envCreateDelayMs(): number | undefined {
  const raw = process.env.RELAY_EMULATOR_CREATE_DELAY_MS;
  if (raw === undefined || raw === '') return undefined;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 0)
    throw new Error(`RELAY_EMULATOR_CREATE_DELAY_MS must be a number of ms >= 0, got ${raw}`);
  return value;
}

export class RelayEmulator {
  readonly faults = new FaultInjector();
  readonly store: IRelayStore;
  private status: Status = 'closed';
  private server?: https.Server;
  private tls?: TlsIdentity;
  private dataPlane?: DataPlaneRegistry;
  private port = 0;
  private readonly timers = new Set<NodeJS.Timeout>();
  private counters: RelayEmulatorStats = emptyStats();
  private readonly createDelayMs: number;
  private readonly deleteDelayMs: number;
  private readonly quotaPerSubscription: number;
  private readonly authorizer: ArmAuthorizer;
  private readonly throttle: ArmThrottle;
  private readonly conflicts: ConflictTracker;

  constructor(private readonly options: RelayEmulatorOptions = {}) {
    const timeScale = options.timeScale ?? 1;
    if (!Number.isFinite(timeScale) || timeScale <= 0) throw new Error(`timeScale must be > 0, got ${timeScale}`);
    this.store = options.store ?? new InMemoryRelayStore();
    this.createDelayMs = options.createDelayMs ?? envCreateDelayMs() ?? REAL_CREATE_DELAY_MS * timeScale;
    this.deleteDelayMs = options.deleteDelayMs ?? REAL_DELETE_DELAY_MS * timeScale;
    this.quotaPerSubscription = options.quotaPerSubscription ?? 100;
    this.authorizer = new ArmAuthorizer(options.roleAssignments ?? DEFAULT_ROLE_ASSIGNMENTS);
    this.throttle = new ArmThrottle(options.throttling ?? {}, timeScale);
    this.conflicts = new ConflictTracker(
      options.conflicts ?? {},
      timeScale,
      !(options.lenient?.hybridConnectionNameReuse ?? false),
    );
    for (const fault of options.faults ?? []) this.faults.add(fault);
  }

  /** The provisioning durations in effect (after timeScale and the environment). */
  get timing(): { createDelayMs: number; deleteDelayMs: number } {
    return { createDelayMs: this.createDelayMs, deleteDelayMs: this.deleteDelayMs };
  }

  /** `https://127.0.0.1:<port>`: pass it as `endpoint` to RelayAPI. */
  get armEndpoint(): string {
    this.requireRunning();
    return `https://${HOST}:${this.port}`;
  }

  /** The host name namespaces' endpoints and token audiences name. */
  get publicHost(): string {
    return this.options.publicHost ?? HOST;
  }

  /**
   * A kept store (`FileRelayStore`) comes back with namespaces: re-open each one's data plane on the
   * port its endpoint names (the pool table and issued tokens hold that endpoint), and finish the
   * deletions that were under way when the emulator stopped.
   */
  private async reopenKeptNamespaces(): Promise<void> {
    const now = Date.now();
    for (const ns of this.store.listAllNamespaces?.() ?? []) {
      if (ns.deletingSince) {
        const leftMs = ns.deletingSince.getTime() + this.deleteDelayMs - now;
        const finish = () => {
          if (this.store.getNamespace(ns.name)?.deletingSince) this.store.deleteNamespace(ns.name);
        };
        if (leftMs <= 0) finish();
        else this.context().schedule(leftMs, finish);
        continue;
      }
      const port = await this.dataPlane!.ensure(ns.name, ns.dataPlanePort || undefined);
      if (port !== ns.dataPlanePort) this.store.putNamespace({ ...ns, dataPlanePort: port });
    }
  }

  /** The PEM of the self-signed certificate both faces serve; trust it as a CA. */
  get caCertPem(): string {
    this.requireRunning();
    return this.tls!.cert;
  }

  async start(): Promise<this> {
    if (this.status !== 'closed') throw new Error(`Cannot start the relay emulator in status ${this.status}`);
    this.status = 'starting';
    try {
      this.tls =
        this.options.tls ?? (await generateTlsIdentity(this.options.publicHost ? [this.options.publicHost] : []));
      this.dataPlane = new DataPlaneRegistry({
        store: this.store,
        tls: this.tls,
        host: this.publicHost,
        bindHost: this.options.dataPlaneBind ?? HOST,
        ports: this.options.dataPlanePorts,
        rendezvousTimeoutMs: this.options.rendezvousTimeoutMs ?? 30_000,
        idleTimeoutMs: this.options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
        autoPong: this.options.autoPong ?? false,
        now: () => new Date(),
      });
      const server = https.createServer({ cert: this.tls.cert, key: this.tls.key }, (req, res) => {
        this.onArmRequest(req, res).catch(() => {
          if (!res.headersSent) res.writeHead(500);
          res.end();
        });
      });
      server.on('clientError', (_err, socket) => socket.destroy());
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(this.options.port ?? 0, HOST, () => {
          server.off('error', reject);
          resolve();
        });
      });
      const address = server.address();
      this.port = typeof address === 'object' && address ? address.port : 0;
      this.server = server;
      await this.reopenKeptNamespaces();
      this.status = 'running';
      return this;
    } catch (err) {
      await this.dataPlane?.closeAll();
      this.server?.close();
      this.server = undefined;
      this.status = 'closed';
      throw err;
    }
  }

  async close(): Promise<void> {
    if (this.status !== 'running') return;
    this.status = 'closing';
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    await this.dataPlane?.closeAll();
    const server = this.server;
    if (server) {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    }
    this.server = undefined;
    this.status = 'closed';
  }

  stats(): RelayEmulatorStats {
    return { ...this.counters, byOperation: { ...this.counters.byOperation } };
  }

  resetStats(): void {
    this.counters = emptyStats();
  }

  /** Test hook: cuts listener control channels (of one namespace, or all) as a network failure would. */
  dropControlChannels(namespace?: string): number {
    return this.dataPlane?.dropControlChannels(namespace) ?? 0;
  }

  private requireRunning(): void {
    if (this.status !== 'running') throw new Error(`The relay emulator is ${this.status}`);
  }

  private context(): ArmContext {
    return {
      store: this.store,
      dataPlane: this.dataPlane!,
      faults: this.faults,
      createDelayMs: this.createDelayMs,
      deleteDelayMs: this.deleteDelayMs,
      timeScale: this.options.timeScale ?? 1,
      quotaPerSubscription: this.quotaPerSubscription,
      armBaseUrl: () => `https://${HOST}:${this.port}`,
      dataPlaneHost: this.publicHost,
      now: () => new Date(),
      schedule: (ms, fn) => {
        const timer = setTimeout(() => {
          this.timers.delete(timer);
          fn();
        }, ms);
        this.timers.add(timer);
      },
    };
  }

  private async onArmRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = (req.method ?? 'GET').toUpperCase();
    this.counters.total++;
    if (method === 'GET') this.counters.reads++;
    else this.counters.writes++;
    let answer: ArmResponse;
    let rateHeaders: Record<string, string> = {};
    try {
      const url = new URL(req.url ?? '/', `https://${HOST}`);
      const resolved = resolveArmRoute(method, url.pathname);
      this.counters.byOperation[resolved.op] = (this.counters.byOperation[resolved.op] ?? 0) + 1;
      const bearer = /^Bearer (\S+)/.exec(req.headers.authorization ?? '');
      if (!bearer) {
        throw new ArmError(401, 'AuthenticationFailed', 'Authentication failed. The Authorization header is missing.');
      }
      const principal = principalOf(bearer[1]);
      const apiVersion = url.searchParams.get('api-version');
      if (!apiVersion)
        throw new ArmError(
          400,
          'MissingApiVersionParameter',
          'The api-version query parameter (?api-version=) is required for all requests.',
        );
      if (!API_VERSIONS.has(apiVersion))
        throw new ArmError(400, 'InvalidApiVersionParameter', `The api-version '${apiVersion}' is invalid.`);
      const body = await readJsonBody(req);
      const route = resolved.route;
      const name = route.namespace;
      // ARM's pipeline: authorization at the request's scope, then the subscription's throttles.
      const lenientList = resolved.op === 'namespaces.list' && this.options.lenient?.subscriptionScopeList;
      if (!lenientList) {
        const { action, scope } = actionAndScope(method, resolved.op, route, url.pathname);
        this.authorizer.check(principal, action, scope);
      }
      const kind: RequestKind = method === 'GET' ? 'reads' : method === 'DELETE' ? 'deletes' : 'writes';
      const namespaceWrite = resolved.op === 'namespaces.createOrUpdate' || resolved.op === 'namespaces.update';
      const admitted = this.throttle.admit(route.subscriptionId, principal, kind, namespaceWrite);
      rateHeaders = admitted.headers;
      // A throttled request reaches no resource provider, so it uses up no injected fault either.
      const slow = admitted.ok ? this.faults.take(resolved.op, name, ['slow']) : undefined;
      if (slow) await this.sleep(slow.delayMs);
      const fault = admitted.ok ? this.faults.take(resolved.op, name, ['429', '500']) : undefined;
      if (!admitted.ok) {
        this.counters.throttled++;
        answer = { status: 429, body: { error: { code: admitted.code, message: admitted.message } } };
      } else if (fault?.kind === '429') {
        answer = {
          status: 429,
          headers: { 'retry-after': String(fault.retryAfterSeconds) },
          body: { error: { code: 'TooManyRequests', message: 'The request is being throttled.' } },
        };
      } else if (fault?.kind === '500') {
        answer = { status: 500, body: { error: { code: 'InternalServerError', message: 'Injected server error.' } } };
      } else {
        answer = await this.serve(resolved, { method, route, body });
      }
    } catch (err) {
      answer =
        err instanceof ArmError
          ? { status: err.status, body: { error: { code: err.code, message: err.message } } }
          : { status: 500, body: { error: { code: 'InternalServerError', message: 'Internal error.' } } };
    }
    const payload = answer.body === undefined ? '' : JSON.stringify(answer.body);
    res.writeHead(answer.status, {
      ...(payload ? { 'content-type': 'application/json; charset=utf-8' } : {}),
      'content-length': String(Buffer.byteLength(payload)),
      'x-ms-request-id': randomUUID(),
      ...rateHeaders,
      ...(answer.headers ?? {}),
    });
    res.end(payload);
  }

  /**
   * Runs the handler as Microsoft.Relay would: a write under a namespace is in progress for a while
   * and another one meanwhile is a conflict; a hybrid connection name deleted moments ago is still
   * being cleaned up.
   */
  private async serve(resolved: ResolvedRoute, request: ArmRequest): Promise<ArmResponse> {
    const { op, route } = resolved;
    const ns = route.namespace;
    if (ns === undefined || !HOLDING_WRITES.has(op)) {
      const answer = await resolved.handler(this.context(), request, op);
      if (op === 'namespaces.delete' && ns !== undefined) this.conflicts.forgetNamespace(ns);
      return answer;
    }
    if (
      op === 'hybridConnections.createOrUpdate' &&
      route.hybridConnection !== undefined &&
      !this.store.getHybridConnection(ns, route.hybridConnection)
    ) {
      const waitMs = this.conflicts.nameReuseWaitMs(ns, route.hybridConnection);
      if (waitMs > 0) {
        this.counters.conflicts++;
        return conflict(
          `Resource Conflict: the hybrid connection '${route.hybridConnection}' was deleted moments ago and its background cleanup is still pending.`,
        );
      }
    }
    const lenientOverlap = this.options.lenient?.concurrentWrites ?? false;
    if (!this.conflicts.tryBegin(ns) && !lenientOverlap) {
      this.counters.conflicts++;
      return conflict(`Another operation on namespace '${ns}' is still running.`);
    }
    try {
      // The change applies on arrival (validation sees the state then); the answer comes once the
      // operation's time is up, and until then the namespace takes no other write.
      const answer = await resolved.handler(this.context(), request, op);
      if (op === 'hybridConnections.delete' && answer.status === 200 && route.hybridConnection !== undefined) {
        this.conflicts.hybridConnectionDeleted(ns, route.hybridConnection);
      }
      if (this.conflicts.writeDurationMs > 0) await this.sleep(this.conflicts.writeDurationMs);
      return answer;
    } finally {
      // Under the lenient overlap the first writer's end frees the namespace for everyone: harmless.
      this.conflicts.end(ns);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.timers.delete(timer);
        resolve();
      }, ms);
      this.timers.add(timer);
    });
  }
}

function emptyStats(): RelayEmulatorStats {
  return { byOperation: {}, reads: 0, writes: 0, total: 0, throttled: 0, conflicts: 0 };
}

/** Writes under a namespace that the resource provider runs one at a time. */
const HOLDING_WRITES: ReadonlySet<ArmOperation> = new Set<ArmOperation>([
  'hybridConnections.createOrUpdate',
  'hybridConnections.delete',
  'hybridConnections.createOrUpdateAuthorizationRule',
  'hybridConnections.deleteAuthorizationRule',
  'hybridConnections.regenerateKeys',
  'namespaces.createOrUpdateAuthorizationRule',
  'namespaces.deleteAuthorizationRule',
  'namespaces.regenerateKeys',
]);

/** 429 SubCode 40901 as Microsoft.Relay answers it through ARM (no Retry-After seen in public reports). */
function conflict(detail: string): ArmResponse {
  return {
    status: 429,
    body: { error: { code: 'MessagingGatewayTooManyRequests', message: conflictMessage(detail) } },
  };
}

async function readJsonBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buf = chunk as Buffer;
    size += buf.length;
    if (size > MAX_BODY_BYTES) throw new ArmError(413, 'RequestEntityTooLarge', 'The request body is too large.');
    chunks.push(buf);
  }
  if (size === 0) return undefined;
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  } catch {
    throw new ArmError(400, 'InvalidRequestContent', 'The request content is not valid JSON.');
  }
}

/** Starts an emulator; the caller must `close()` it. */
export async function startRelayEmulator(options: RelayEmulatorOptions = {}): Promise<RelayEmulator> {
  return new RelayEmulator(options).start();
}
