// The local functions host: loads the app's registrations through the injected core module and
// invokes them through the library's own InvocationModel with worker-shaped invocation requests.
// Every trigger is an extension (extensionApi.ts): HTTP and timer are built in, durable plugs in
// the same way. The host keeps lifecycle, the registry, the HTTP front door and invoke.
import { randomUUID } from 'node:crypto';
import http, { IncomingMessage, ServerResponse } from 'node:http';
import { AddressInfo } from 'node:net';
import path from 'node:path';
import {
  applyLocalSettings,
  loadEntryPoints,
  readHostJson,
  resolveEntryPoints,
  resolvePlaceholders,
  type HostJson,
} from './appLoader';
import { activateRegistry, deactivateRegistry, installCoreModule, Registry, type RegisteredFunction } from './coreApi';
import type {
  CoreInvocationContext,
  HookContext,
  LogCategory,
  LogLevel,
  RpcInvocationResponse,
  RpcParameterBinding,
  RpcTypedData,
} from './coreTypes';
import { describeError } from '../../lib/errors';
import { Lifecycle } from '../lifecycle';
import { type ExtensionHostApi, type HostExtension, triggerOf, type TriggeredFunction } from './extensionApi';
import { createHttpTrigger } from './httpTrigger';
import { createTimerTrigger } from './timerTrigger';
import {
  applyServerLimits,
  DEFAULT_LIMITS,
  type FrontDoorLimits,
  keyMatches,
  needsSystemKey,
  newSystemKey,
  presentedKey,
  readBodyWithin,
  sendProblem,
} from './frontDoor';

export type { ExtensionHostApi, HostExtension, TriggeredFunction } from './extensionApi';
export interface LogRecord {
  time: Date;
  level: LogLevel;
  category: LogCategory | 'host';
  functionName?: string;
  invocationId?: string;
  message: string;
}
export type LogSink = (record: LogRecord) => void;

export interface FunctionsHostOptions {
  appDir: string;
  /** 0 picks a free port. */
  port?: number;
  /** The address to listen on (default 127.0.0.1; local mode's RELAY_BROKER_BIND). */
  listenHost?: string;
  extensions?: HostExtension[];
  logSink?: LogSink;
  /** Request limits of the front door (frontDoor.ts); each defaults to Azure's or a local choice. */
  limits?: Partial<FrontDoorLimits>;
  /** The key /admin and the extension webhooks require; a random one per host when not given. */
  systemKey?: string;
  /** Do not arm timers (tests that trigger them through the admin API). */
  disableTimers?: boolean;
}

export function consoleLogSink(record: LogRecord): void {
  const where = record.functionName ? ` ${record.functionName}` : '';
  const line = `${record.time.toISOString()} ${record.level.padEnd(11)}${where}: ${record.message}`;
  if (record.level === 'error' || record.level === 'critical' || record.level === 'warning') console.error(line);
  else console.log(line);
}

export class FunctionsHost implements ExtensionHostApi {
  private readonly lifecycle = new Lifecycle('the functions host');
  private readonly registry = new Registry();
  private server?: http.Server;
  /** Built-in triggers first: timer (its /admin route before a catch-all), HTTP, then the caller's. */
  private readonly extensions: HostExtension[];
  private readonly logSink: LogSink;
  private readonly inFlight = new Set<Promise<unknown>>();
  readonly appDir: string;
  hostJson: HostJson = { routePrefix: 'api', raw: {} };
  port = 0;
  private previousHostname?: string;
  private readonly limits: FrontDoorLimits;
  /** Required on /admin/* and /runtime/webhooks/*, as the real host's master and system keys are. */
  readonly systemKey: string;

  constructor(private readonly options: FunctionsHostOptions) {
    this.appDir = path.resolve(options.appDir);
    this.limits = { ...DEFAULT_LIMITS, ...options.limits };
    this.systemKey = options.systemKey ?? newSystemKey();
    this.extensions = [
      createTimerTrigger({ disableTimers: options.disableTimers }),
      createHttpTrigger(),
      ...(options.extensions ?? []),
    ];
    this.logSink = options.logSink ?? consoleLogSink;
  }

  get baseUrl(): string {
    return `http://${this.connectHost}:${this.port}`;
  }
  /** Where this host is reached from this machine: its listen address, or loopback when it listens on all. */
  private get connectHost(): string {
    const h = this.options.listenHost;
    if (!h || h === '0.0.0.0' || h === '::') return '127.0.0.1';
    return h.includes(':') ? `[${h}]` : h;
  }
  get apiUrl(): string {
    return `${this.baseUrl}/${this.hostJson.routePrefix}`.replace(/\/$/, '');
  }
  get functions(): RegisteredFunction[] {
    return [...this.registry.functions.values()];
  }

  async start(): Promise<this> {
    await this.lifecycle.start(
      () => this.boot(),
      () => this.shutdown(),
    );
    this.emit({
      level: 'information',
      category: 'host',
      message: `host started on ${this.baseUrl} with ${this.registry.functions.size} functions`,
    });
    return this;
  }

  close(): Promise<void> {
    return this.lifecycle.close(() => this.shutdown());
  }

  private async boot(): Promise<void> {
    applyLocalSettings(this.appDir);
    this.hostJson = readHostJson(this.appDir);
    installCoreModule();
    activateRegistry(this.registry);
    this.registry.onLog = (level, category, message) => this.emit({ level, category, message });
    // Listen first so the app (and WEBSITE_HOSTNAME-sensitive libraries) can know the address.
    // Node checks the header and request timeouts on this interval: keep it well inside them.
    const checkMs = Math.max(10, Math.min(1000, this.limits.headersTimeoutMs / 4));
    this.server = http.createServer(
      { connectionsCheckingInterval: checkMs },
      (req, res) => void this.onRequest(req, res),
    );
    this.server.keepAliveTimeout = 5000;
    applyServerLimits(this.server, this.limits);
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(
        {
          port: this.options.port ?? 0,
          host: this.options.listenHost ?? '127.0.0.1',
          backlog: this.limits.acceptBacklog,
        },
        () => resolve(),
      );
    });
    this.port = (this.server.address() as AddressInfo).port;
    // As Core Tools does: the app (and the durable client's URL rewriting) sees this host's address.
    this.previousHostname = process.env.WEBSITE_HOSTNAME;
    process.env.WEBSITE_HOSTNAME = `${this.connectHost}:${this.port}`;

    loadEntryPoints(resolveEntryPoints(this.appDir));
    await this.runHooks('appStart', { functionAppDirectory: this.appDir });
    await this.registry.programmingModel?.getCapabilities({});
    this.indexFunctions();
    for (const ext of this.extensions) await ext.start(this);
  }

  private async shutdown(): Promise<void> {
    for (const ext of [...this.extensions].reverse())
      await ext.close().catch((e: unknown) => this.log('error', `extension ${ext.name} failed to close: ${String(e)}`));
    await Promise.race([Promise.allSettled([...this.inFlight]), delay(10_000)]);
    await this.runHooks('appTerminate', {}).catch(() => undefined);
    if (this.server) {
      const server = this.server;
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    }
    this.server = undefined;
    if (this.previousHostname === undefined) delete process.env.WEBSITE_HOSTNAME;
    else process.env.WEBSITE_HOSTNAME = this.previousHostname;
    deactivateRegistry(this.registry);
    this.registry.functions.clear();
    this.registry.hooks.clear();
  }

  log(level: LogLevel, message: string, functionName?: string): void {
    this.emit({ level, category: 'host', message, functionName });
  }

  functionsWithTrigger(type: string): TriggeredFunction[] {
    const out: TriggeredFunction[] = [];
    for (const fn of this.registry.functions.values()) {
      const t = triggerOf(fn);
      if (t && t.binding.type?.toLowerCase() === type.toLowerCase())
        out.push({ fn, triggerName: t.name, trigger: t.binding });
    }
    return out;
  }

  /** Invokes through the library's InvocationModel, as the worker's InvocationHandler does. */
  async invoke(
    name: string,
    triggerData: RpcTypedData,
    triggerMetadata: Record<string, RpcTypedData> = {},
  ): Promise<RpcInvocationResponse> {
    const fn = this.registry.functions.get(name);
    if (!fn) throw new Error(`Function "${name}" is not registered`);
    const pm = this.registry.programmingModel;
    if (!pm) throw new Error('The app registered no programming model');
    const trigger = triggerOf(fn);
    if (!trigger) throw new Error(`Function "${name}" has no trigger binding`);
    const inputData: RpcParameterBinding[] = [{ name: trigger.name, data: triggerData }];
    for (const [bindingName, binding] of Object.entries(fn.metadata.bindings)) {
      if (bindingName === trigger.name || binding.direction !== 'in') continue;
      const ext = this.extensions.find((e) =>
        e.inputTypes.some((t) => t.toLowerCase() === binding.type?.toLowerCase()),
      );
      if (!ext?.inputData)
        throw new Error(
          `Input binding type "${binding.type}" of function "${name}" is not supported by the local host`,
        );
      inputData.push({ name: bindingName, data: await ext.inputData(binding, fn) });
    }
    const invocationId = randomUUID();
    const coreContext: CoreInvocationContext = {
      invocationId,
      request: { invocationId, functionId: name, inputData, triggerMetadata },
      metadata: fn.metadata,
      log: (level, category, message) => this.emit({ level, category, message, functionName: name, invocationId }),
    };
    const run = (async () => {
      const model = await pm.getInvocationModel(coreContext);
      const { context, inputs } = await model.getArguments();
      const hookData: Record<string, unknown> = {};
      const pre: HookContext = {
        hookData,
        appHookData: this.appHookData,
        invocationContext: context,
        functionCallback: fn.callback,
        inputs,
      };
      coreContext.state = 'preInvocationHooks';
      await this.runHookList('preInvocation', pre);
      coreContext.state = 'invocation';
      let result: unknown;
      let error: unknown;
      try {
        result = await model.invokeFunction(
          context,
          pre.inputs as unknown[],
          pre.functionCallback as RegisteredFunction['callback'],
        );
      } catch (e) {
        error = e;
      }
      coreContext.state = 'postInvocationHooks';
      const post: HookContext = {
        hookData,
        appHookData: this.appHookData,
        invocationContext: context,
        inputs: pre.inputs,
        result,
        error,
      };
      await this.runHookList('postInvocation', post);
      // A hook may replace the error with any value; it is rethrown as the handler's failure.
      // eslint-disable-next-line @typescript-eslint/only-throw-error
      if (post.error) throw post.error;
      return model.getResponse(context, post.result);
    })();
    this.inFlight.add(run);
    try {
      return await run;
    } finally {
      this.inFlight.delete(run);
    }
  }

  // ---- loading -------------------------------------------------------------------------------

  private readonly appHookData: Record<string, unknown> = {};

  private async runHooks(name: 'appStart' | 'appTerminate', extra: Record<string, unknown>): Promise<void> {
    await this.runHookList(name, { hookData: {}, appHookData: this.appHookData, ...extra });
  }

  private async runHookList(
    name: 'appStart' | 'appTerminate' | 'preInvocation' | 'postInvocation',
    ctx: HookContext,
  ): Promise<void> {
    for (const cb of this.registry.hooksOf(name)) await cb(ctx);
  }

  /** Checks every function's trigger and bindings against what the extensions serve. */
  private indexFunctions(): void {
    const known = new Set(this.extensions.flatMap((e) => e.triggerTypes.map((t) => t.toLowerCase())));
    for (const fn of this.registry.functions.values()) {
      fn.metadata = { ...fn.metadata, bindings: resolvePlaceholders(fn.metadata.bindings) };
      const trigger = triggerOf(fn);
      if (!trigger) throw new Error(`Function "${fn.name}" has no trigger`);
      const type = trigger.binding.type?.toLowerCase() ?? '';
      if (!known.has(type))
        throw new Error(
          `Function "${fn.name}" uses trigger type "${trigger.binding.type}", which the local host does not support`,
        );
      for (const [bName, b] of Object.entries(fn.metadata.bindings)) {
        if (b.direction === 'out' && bName !== '$return' && b.type?.toLowerCase() !== 'http') {
          throw new Error(
            `Function "${fn.name}" uses output binding type "${b.type}", which the local host does not support`,
          );
        }
      }
      if (fn.metadata.retryOptions && type !== 'httptrigger') {
        throw new Error(`Function "${fn.name}" declares a retry policy, which the local host does not implement`);
      }
    }
  }

  // ---- HTTP front door -------------------------------------------------------------------------

  /**
   * Checks what can be refused without reading the body (URL length, the system key, a declared
   * length over the limit), reads the body within the limit, then offers the request to each
   * extension in turn.
   */
  private async onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      if ((req.url ?? '').length > this.limits.maxUrlBytes)
        return sendProblem(
          res,
          414,
          'uri_too_long',
          'URI too long',
          `URLs are limited to ${this.limits.maxUrlBytes} bytes.`,
        );
      const url = new URL(req.url ?? '/', 'http://127.0.0.1');
      if (needsSystemKey(url.pathname) && !keyMatches(presentedKey(req, url), this.systemKey)) {
        return sendProblem(
          res,
          401,
          'unauthenticated',
          'Unauthorized',
          'This endpoint requires the host system key (x-functions-key header or code query parameter).',
          // The body is never read: do not leave it to the next request on this connection.
          { connection: 'close' },
        );
      }
      const body = await readBodyWithin(req, this.limits.maxRequestBytes);
      if (body === undefined) {
        return sendProblem(
          res,
          413,
          'payload_too_large',
          'Payload too large',
          `Request bodies are limited to ${this.limits.maxRequestBytes} bytes.`,
          { connection: 'close' },
        );
      }
      for (const ext of this.extensions) if (ext.handleHttp && (await ext.handleHttp(req, res, body))) return;
      sendPlain(res, 404, 'Not Found');
    } catch (err) {
      this.emit({
        level: 'error',
        category: 'host',
        message: `request ${req.method} ${req.url?.split('?')[0]} failed: ${describeError(err, 2000)}`,
      });
      if (!res.headersSent) sendPlain(res, 500, 'Internal Server Error');
      else res.destroy();
    }
  }

  private emit(r: Omit<LogRecord, 'time'>): void {
    try {
      this.logSink({ time: new Date(), ...r });
    } catch {
      // a broken sink must not break an invocation
    }
  }
}

function sendPlain(res: ServerResponse, status: number, text: string): void {
  res
    .writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(text) })
    .end(text);
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}
