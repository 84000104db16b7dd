// The Azure Relay emulator: wires the ARM surface (https, one port) and the per-namespace Hybrid
// Connections data plane over one shared store, with fault injection and request counters.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import https from 'node:https';
import { resolveArmRoute } from './arm/armRouter';
import { API_VERSIONS, ArmError, type ArmContext, type ArmResponse } from './arm/armTypes';
import { generateTlsIdentity, type TlsIdentity } from './certificate';
import { DataPlaneRegistry } from './dataPlane';
import { FaultInjector, type ArmOperation, type FaultSpec } from './faults';
import { InMemoryRelayStore, type IRelayStore } from './store';

export { FaultInjector } from './faults';
export type { ActiveFault, ArmOperation, FaultKind, FaultSpec } from './faults';
export { InMemoryRelayStore } from './store';
export type { IRelayStore } from './store';
export { CLOSE_ENTITY_DELETED, CLOSE_POLICY_VIOLATION, MAX_LISTENERS_PER_HYBRID_CONNECTION } from './dataPlane';

export const DEFAULT_CREATE_DELAY_MS = 2000;

export interface RelayEmulatorOptions {
  /** How long a new namespace stays `Created`/`Activating` (default env RELAY_EMULATOR_CREATE_DELAY_MS or 2000). */
  createDelayMs?: number;
  /** How long a deleted namespace answers 202 on its operation result before 200 (default 200). */
  deleteDelayMs?: number;
  /** Namespaces per subscription before PUT answers QuotaExceeded (default 100). */
  quotaPerSubscription?: number;
  /** Faults armed from the start; more can be added at runtime through `emulator.faults`. */
  faults?: FaultSpec[];
  /** ARM port (default 0: a free one). */
  port?: number;
  /** How long an accept address stays valid (default 30000). */
  rendezvousTimeoutMs?: number;
  /** A store other than the in-memory one. */
  store?: IRelayStore;
}

export interface RelayEmulatorStats {
  /** Requests per ARM operation (SDK method name), reads and writes. */
  byOperation: Partial<Record<ArmOperation, number>>;
  /** GET requests. */
  reads: number;
  /** PUT, PATCH, POST and DELETE requests (ARM throttles them as writes). */
  writes: number;
  total: number;
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
  private counters: RelayEmulatorStats = { byOperation: {}, reads: 0, writes: 0, total: 0 };
  private readonly createDelayMs: number;
  private readonly deleteDelayMs: number;
  private readonly quotaPerSubscription: number;

  constructor(private readonly options: RelayEmulatorOptions = {}) {
    this.store = options.store ?? new InMemoryRelayStore();
    this.createDelayMs = options.createDelayMs ?? envCreateDelayMs() ?? DEFAULT_CREATE_DELAY_MS;
    this.deleteDelayMs = options.deleteDelayMs ?? 200;
    this.quotaPerSubscription = options.quotaPerSubscription ?? 100;
    for (const fault of options.faults ?? []) this.faults.add(fault);
  }

  /** `https://127.0.0.1:<port>`: pass it as `endpoint` to RelayAPI. */
  get armEndpoint(): string {
    this.requireRunning();
    return `https://${HOST}:${this.port}`;
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
      this.tls = await generateTlsIdentity();
      this.dataPlane = new DataPlaneRegistry({
        store: this.store,
        tls: this.tls,
        host: HOST,
        rendezvousTimeoutMs: this.options.rendezvousTimeoutMs ?? 30_000,
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
      this.status = 'running';
      return this;
    } catch (err) {
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
    this.counters = { byOperation: {}, reads: 0, writes: 0, total: 0 };
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
      quotaPerSubscription: this.quotaPerSubscription,
      armBaseUrl: () => `https://${HOST}:${this.port}`,
      dataPlaneHost: HOST,
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
    try {
      const url = new URL(req.url ?? '/', `https://${HOST}`);
      const resolved = resolveArmRoute(method, url.pathname);
      this.counters.byOperation[resolved.op] = (this.counters.byOperation[resolved.op] ?? 0) + 1;
      if (!/^Bearer \S+/.test(req.headers.authorization ?? '')) {
        throw new ArmError(401, 'AuthenticationFailed', 'Authentication failed. The Authorization header is missing.');
      }
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
      const name = resolved.route.namespace;
      const slow = this.faults.take(resolved.op, name, ['slow']);
      if (slow) await this.sleep(slow.delayMs);
      const fault = this.faults.take(resolved.op, name, ['429', '500']);
      if (fault?.kind === '429') {
        answer = {
          status: 429,
          headers: { 'retry-after': String(fault.retryAfterSeconds) },
          body: { error: { code: 'TooManyRequests', message: 'The request is being throttled.' } },
        };
      } else if (fault?.kind === '500') {
        answer = { status: 500, body: { error: { code: 'InternalServerError', message: 'Injected server error.' } } };
      } else {
        answer = await resolved.handler(this.context(), { method, route: resolved.route, body }, resolved.op);
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
      ...(answer.headers ?? {}),
    });
    res.end(payload);
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
