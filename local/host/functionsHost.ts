// The local functions host: loads the app's registrations through the injected core module and
// invokes them through the library's own InvocationModel with worker-shaped invocation requests.
// Triggers: HTTP (127.0.0.1:<port>/<routePrefix>), timer (NCRONTAB), and what extensions add
// (the durable engine registers orchestration/activity triggers and the durableClient input).
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
  RpcBindingInfo,
  RpcHttpCookie,
  RpcInvocationResponse,
  RpcParameterBinding,
  RpcTypedData,
} from './coreTypes';
import { describeError } from '../../lib/errors';
import { matchRoute, parseRouteTemplate, type RouteTemplate } from './routes';
import { parseSchedule, type Schedule } from './timerSchedule';

export interface LogRecord {
  time: Date;
  level: LogLevel;
  category: LogCategory | 'host';
  functionName?: string;
  invocationId?: string;
  message: string;
}
export type LogSink = (record: LogRecord) => void;

export interface TriggeredFunction {
  fn: RegisteredFunction;
  triggerName: string;
  trigger: RpcBindingInfo;
}

/** What an extension (the durable engine) sees of the host. */
export interface ExtensionHostApi {
  readonly appDir: string;
  readonly hostJson: HostJson;
  /** http://127.0.0.1:<port> */
  readonly baseUrl: string;
  functionsWithTrigger(type: string): TriggeredFunction[];
  /** Invokes a function with the trigger's data; other inputs come from their extensions. */
  invoke(
    name: string,
    triggerData: RpcTypedData,
    triggerMetadata?: Record<string, RpcTypedData>,
  ): Promise<RpcInvocationResponse>;
  log(level: LogLevel, message: string): void;
}

/** The seam through which trigger and binding types beyond HTTP and timer plug in. */
export interface HostExtension {
  readonly name: string;
  readonly triggerTypes: readonly string[];
  readonly inputTypes: readonly string[];
  start(host: ExtensionHostApi): Promise<void>;
  close(): Promise<void>;
  /** Data for an input binding of one of `inputTypes`. */
  inputData?(binding: RpcBindingInfo, fn: RegisteredFunction): RpcTypedData | Promise<RpcTypedData>;
  /** A request outside the route prefix (e.g. /runtime/webhooks/durabletask/...); return true when handled. */
  handleHttp?(req: IncomingMessage, res: ServerResponse, body: Buffer): Promise<boolean>;
}

export interface FunctionsHostOptions {
  appDir: string;
  /** 0 picks a free port. */
  port?: number;
  extensions?: HostExtension[];
  logSink?: LogSink;
  /** Largest request body accepted (the Azure front end's limit is 100 MB). */
  maxRequestBytes?: number;
  /** Do not arm timers (tests that trigger them through the admin API). */
  disableTimers?: boolean;
}

type Status = 'closed' | 'starting' | 'running' | 'closing';

interface HttpRoute {
  fn: RegisteredFunction;
  triggerName: string;
  route: RouteTemplate;
  methods: string[] | undefined;
}

interface TimerState {
  fn: RegisteredFunction;
  triggerName: string;
  schedule: Schedule;
  timer?: NodeJS.Timeout;
  running?: Promise<void>;
  last?: Date;
  next?: Date;
}

const SUPPORTED_TRIGGERS = ['httpTrigger', 'timerTrigger'];

export function consoleLogSink(record: LogRecord): void {
  const where = record.functionName ? ` ${record.functionName}` : '';
  const line = `${record.time.toISOString()} ${record.level.padEnd(11)}${where}: ${record.message}`;
  if (record.level === 'error' || record.level === 'critical' || record.level === 'warning') console.error(line);
  else console.log(line);
}

export class FunctionsHost implements ExtensionHostApi {
  private status: Status = 'closed';
  private readonly registry = new Registry();
  private server?: http.Server;
  private routes: HttpRoute[] = [];
  private timers: TimerState[] = [];
  private readonly extensions: HostExtension[];
  private readonly logSink: LogSink;
  private readonly inFlight = new Set<Promise<unknown>>();
  readonly appDir: string;
  hostJson: HostJson = { routePrefix: 'api', raw: {} };
  port = 0;
  private previousHostname?: string;

  constructor(private readonly options: FunctionsHostOptions) {
    this.appDir = path.resolve(options.appDir);
    this.extensions = options.extensions ?? [];
    this.logSink = options.logSink ?? consoleLogSink;
  }

  get baseUrl(): string {
    return `http://127.0.0.1:${this.port}`;
  }
  get apiUrl(): string {
    return `${this.baseUrl}/${this.hostJson.routePrefix}`.replace(/\/$/, '');
  }
  get functions(): RegisteredFunction[] {
    return [...this.registry.functions.values()];
  }

  async start(): Promise<this> {
    if (this.status !== 'closed') throw new Error(`Cannot start the functions host in status ${this.status}`);
    this.status = 'starting';
    try {
      applyLocalSettings(this.appDir);
      this.hostJson = readHostJson(this.appDir);
      installCoreModule();
      activateRegistry(this.registry);
      this.registry.onLog = (level, category, message) => this.emit({ level, category, message });
      // Listen first so the app (and WEBSITE_HOSTNAME-sensitive libraries) can know the address.
      this.server = http.createServer((req, res) => void this.onRequest(req, res));
      this.server.keepAliveTimeout = 5000;
      await new Promise<void>((resolve, reject) => {
        this.server!.once('error', reject);
        this.server!.listen(this.options.port ?? 0, '127.0.0.1', () => resolve());
      });
      this.port = (this.server.address() as AddressInfo).port;
      // As Core Tools does: the app (and the durable client's URL rewriting) sees this host's address.
      this.previousHostname = process.env.WEBSITE_HOSTNAME;
      process.env.WEBSITE_HOSTNAME = `127.0.0.1:${this.port}`;

      loadEntryPoints(resolveEntryPoints(this.appDir));
      await this.runHooks('appStart', { functionAppDirectory: this.appDir });
      await this.registry.programmingModel?.getCapabilities({});
      this.indexFunctions();
      for (const ext of this.extensions) await ext.start(this);
      if (!this.options.disableTimers) this.armTimers();
      this.status = 'running';
      this.emit({
        level: 'information',
        category: 'host',
        message: `host started on ${this.baseUrl} with ${this.registry.functions.size} functions`,
      });
      return this;
    } catch (err) {
      this.status = 'running';
      await this.close().catch(() => undefined);
      throw err;
    }
  }

  async close(): Promise<void> {
    if (this.status !== 'running') return;
    this.status = 'closing';
    for (const t of this.timers) clearTimeout(t.timer);
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
    this.timers = [];
    this.routes = [];
    if (this.previousHostname === undefined) delete process.env.WEBSITE_HOSTNAME;
    else process.env.WEBSITE_HOSTNAME = this.previousHostname;
    deactivateRegistry(this.registry);
    this.registry.functions.clear();
    this.registry.hooks.clear();
    this.status = 'closed';
  }

  log(level: LogLevel, message: string): void {
    this.emit({ level, category: 'host', message });
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

  private indexFunctions(): void {
    const known = new Set([
      ...SUPPORTED_TRIGGERS.map((t) => t.toLowerCase()),
      ...this.extensions.flatMap((e) => e.triggerTypes.map((t) => t.toLowerCase())),
    ]);
    this.routes = [];
    this.timers = [];
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
      if (type === 'httptrigger') {
        const b = trigger.binding as { route?: string; methods?: string[] };
        this.routes.push({
          fn,
          triggerName: trigger.name,
          route: parseRouteTemplate(b.route ?? fn.name),
          methods: b.methods?.map((m) => m.toUpperCase()),
        });
      } else if (type === 'timertrigger') {
        const b = trigger.binding as { schedule?: string };
        if (!b.schedule) throw new Error(`Timer function "${fn.name}" has no schedule`);
        this.timers.push({ fn, triggerName: trigger.name, schedule: parseSchedule(b.schedule) });
      }
    }
    this.routes.sort((a, b) => b.route.precedence - a.route.precedence);
  }

  // ---- timers --------------------------------------------------------------------------------

  private armTimers(): void {
    for (const t of this.timers) {
      const b = triggerOf(t.fn)!.binding as { runOnStartup?: boolean };
      if (b.runOnStartup) void this.fireTimer(t, new Date(), false);
      this.scheduleNext(t, new Date());
    }
  }

  private scheduleNext(t: TimerState, after: Date): void {
    if (this.status === 'closing' || this.status === 'closed') return;
    t.next = t.schedule.next(after);
    const wait = Math.min(Math.max(0, t.next.getTime() - Date.now()), 2 ** 31 - 1);
    const due = t.next;
    t.timer = setTimeout(() => {
      if (Date.now() < due.getTime()) return this.scheduleNext(t, after); // re-arm very long waits
      void this.onTimerDue(t, due);
    }, wait);
  }

  private async onTimerDue(t: TimerState, due: Date): Promise<void> {
    // Occurrences never overlap: a run that is still going delays the next, which is then past due.
    if (t.running) await t.running;
    const late = Date.now() - due.getTime() > 1000;
    await this.fireTimer(t, due, late);
    // Occurrences missed while it ran collapse into one past-due run, as in the real host.
    let missed: Date | undefined;
    for (let n = t.schedule.next(due), i = 0; n.getTime() <= Date.now() && i < 10_000; n = t.schedule.next(n), i++)
      missed = n;
    if (missed && this.status === 'running') await this.fireTimer(t, missed, true);
    this.scheduleNext(t, new Date(Math.max(Date.now(), due.getTime())));
  }

  private fireTimer(t: TimerState, scheduled: Date, isPastDue: boolean): Promise<void> {
    const payload = {
      Schedule: { AdjustForDST: true },
      ScheduleStatus: {
        Last: (t.last ?? new Date(0)).toISOString(),
        Next: t.schedule.next(scheduled).toISOString(),
        LastUpdated: new Date().toISOString(),
      },
      IsPastDue: isPastDue,
    };
    t.last = scheduled;
    const run = this.invoke(t.fn.name, { json: JSON.stringify(payload) })
      .then(() => undefined)
      .catch((err: unknown) =>
        this.emit({
          level: 'error',
          category: 'host',
          functionName: t.fn.name,
          message: `timer invocation failed: ${errorText(err)}`,
        }),
      )
      .finally(() => {
        if (t.running === run) t.running = undefined;
      });
    t.running = run;
    return run;
  }

  // ---- HTTP ----------------------------------------------------------------------------------

  private async onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const body = await readBody(req, this.options.maxRequestBytes ?? 100 * 1024 * 1024);
      if (body === undefined) return sendPlain(res, 413, 'Request body too large');
      const url = new URL(req.url ?? '/', 'http://127.0.0.1');
      const prefix = this.hostJson.routePrefix ? `/${this.hostJson.routePrefix}` : '';
      if (url.pathname.startsWith('/admin/functions/') && req.method === 'POST')
        return await this.adminInvoke(url, body, res);
      if (prefix === '' || url.pathname === prefix || url.pathname.startsWith(prefix + '/')) {
        if (await this.dispatchFunction(req, res, url, url.pathname.slice(prefix.length), body)) return;
      }
      for (const ext of this.extensions) if (ext.handleHttp && (await ext.handleHttp(req, res, body))) return;
      sendPlain(res, 404, 'Not Found');
    } catch (err) {
      this.emit({
        level: 'error',
        category: 'host',
        message: `request ${req.method} ${req.url?.split('?')[0]} failed: ${errorText(err)}`,
      });
      if (!res.headersSent) sendPlain(res, 500, 'Internal Server Error');
      else res.destroy();
    }
  }

  private async dispatchFunction(
    req: IncomingMessage,
    res: ServerResponse,
    url: URL,
    path: string,
    body: Buffer,
  ): Promise<boolean> {
    const method = (req.method ?? 'GET').toUpperCase();
    let methodMismatch = false;
    for (const r of this.routes) {
      const params = matchRoute(r.route, path);
      if (!params) continue;
      if (r.methods && !r.methods.includes(method)) {
        methodMismatch = true;
        continue;
      }
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers))
        if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(', ') : v;
      const query: Record<string, string> = {};
      for (const key of new Set(url.searchParams.keys())) query[key] = url.searchParams.getAll(key).join(',');
      const httpData = {
        method,
        url: `http://${req.headers.host ?? `127.0.0.1:${this.port}`}${req.url ?? '/'}`,
        headers,
        query,
        params,
        body: method === 'GET' || method === 'HEAD' ? undefined : { bytes: new Uint8Array(body) },
      };
      const response = await this.invoke(r.fn.name, { http: httpData });
      writeHttpResponse(res, response, r.fn.metadata.bindings);
      return true;
    }
    if (methodMismatch) {
      sendPlain(res, 405, 'Method Not Allowed');
      return true;
    }
    return false;
  }

  /** Core Tools' admin endpoint to run a non-HTTP function now: POST /admin/functions/{name}. */
  private async adminInvoke(url: URL, body: Buffer, res: ServerResponse): Promise<void> {
    const name = decodeURIComponent(url.pathname.slice('/admin/functions/'.length));
    const timer = this.timers.find((t) => t.fn.name === name);
    if (!timer) return sendPlain(res, 404, `No timer function named ${name}`);
    void body;
    if (timer.running) await timer.running;
    void this.fireTimer(timer, new Date(), false);
    res.writeHead(202).end();
  }

  private emit(r: Omit<LogRecord, 'time'>): void {
    try {
      this.logSink({ time: new Date(), ...r });
    } catch {
      // a broken sink must not break an invocation
    }
  }
}

function triggerOf(fn: RegisteredFunction): { name: string; binding: RpcBindingInfo } | undefined {
  for (const [name, binding] of Object.entries(fn.metadata.bindings)) {
    if (binding.type && /trigger$/i.test(binding.type)) return { name, binding };
  }
  return undefined;
}

function writeHttpResponse(
  res: ServerResponse,
  response: RpcInvocationResponse,
  bindings: Record<string, RpcBindingInfo>,
): void {
  const returnsHttp = bindings.$return?.type?.toLowerCase() === 'http';
  let httpData = returnsHttp ? response.returnValue?.http : undefined;
  if (!httpData) {
    const out = response.outputData?.find((o) => bindings[o.name ?? '']?.type?.toLowerCase() === 'http');
    httpData = out?.data?.http ?? undefined;
  }
  if (!httpData) {
    res.writeHead(204).end();
    return;
  }
  const status = Number(httpData.statusCode ?? 200) || 200;
  const headers: Record<string, string | string[]> = { ...(httpData.headers ?? {}) };
  const cookies = (httpData.cookies ?? []).map(serializeCookie);
  if (cookies.length) headers['set-cookie'] = cookies;
  const body = httpData.body?.bytes
    ? Buffer.from(httpData.body.bytes)
    : httpData.body?.string
      ? Buffer.from(httpData.body.string)
      : Buffer.alloc(0);
  if (body.length && !Object.keys(headers).some((h) => h.toLowerCase() === 'content-type'))
    headers['content-type'] = 'text/plain;charset=UTF-8';
  headers['content-length'] = String(body.length);
  res.writeHead(status, headers);
  res.end(body);
}

function serializeCookie(c: RpcHttpCookie): string {
  const parts = [`${c.name ?? ''}=${c.value ?? ''}`];
  if (c.domain?.value) parts.push(`Domain=${c.domain.value}`);
  if (c.path?.value) parts.push(`Path=${c.path.value}`);
  const secs = c.expires?.value?.seconds;
  if (secs !== undefined && secs !== null)
    parts.push(`Expires=${new Date(Number(typeof secs === 'object' ? secs.toNumber() : secs) * 1000).toUTCString()}`);
  if (c.maxAge?.value !== undefined && c.maxAge?.value !== null) parts.push(`Max-Age=${c.maxAge.value}`);
  if (c.secure?.value) parts.push('Secure');
  if (c.httpOnly?.value) parts.push('HttpOnly');
  if (c.sameSite === 'lax') parts.push('SameSite=Lax');
  else if (c.sameSite === 'strict') parts.push('SameSite=Strict');
  else if (c.sameSite === 'explicitNone') parts.push('SameSite=None');
  return parts.join('; ');
}

function readBody(req: IncomingMessage, limit: number): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooBig = false;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) tooBig = true;
      else chunks.push(c);
    });
    req.on('end', () => resolve(tooBig ? undefined : Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function sendPlain(res: ServerResponse, status: number, text: string): void {
  res
    .writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(text) })
    .end(text);
}

function errorText(err: unknown): string {
  return describeError(err, 2000);
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}
