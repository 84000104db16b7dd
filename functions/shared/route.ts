// The one HTTP adapter every API function goes through: authentication and the route's role,
// then the handler, then the mapping of any error to problem+json. A handler only parses its
// input and calls lib/.
import {
  app,
  type HttpMethod,
  type HttpRequest,
  type HttpResponseInit,
  type InvocationContext,
} from '@azure/functions';
import * as df from 'durable-functions';
import { requireRole } from '../../lib/auth/authenticator';
import type { Principal, Role } from '../../lib/auth/principal';
import { describeError, PayloadTooLargeError, toProblem } from '../../lib/errors';
import { DEFAULT_MAX_JSON_BYTES } from '../../lib/validation';
import { getServices, type Services } from './services';

export type Access =
  /** Anyone (health, the device's ready call authenticated by its readyToken). */
  | 'anonymous'
  /** Any of these roles. */
  | readonly Role[];

export interface ApiContext {
  req: HttpRequest;
  ctx: InvocationContext;
  services: Services;
  /** Undefined only on anonymous routes. */
  principal: Principal | undefined;
  /** The raw body (undefined for GET/HEAD). */
  body: Uint8Array | undefined;
  /** The Durable Functions client (routes registered with `durableClient: true`). */
  durable: () => df.DurableClient;
}

export interface RouteOptions {
  methods: HttpMethod[];
  route: string;
  access: Access;
  /** False for routes that never touch storage (health): skips the one-time table creation. */
  usesStorage?: boolean;
  /** Adds the durable client input binding (routes that start or signal orchestrations). */
  durableClient?: boolean;
  handler: (api: ApiContext) => Promise<HttpResponseInit>;
  /**
   * Told every answer's outcome (the body's `status` on success, else the HTTP status; the
   * problem's `code` on error) and how long it took: the metrics of a route that has some.
   */
  observe?: (outcome: string, durationMs: number) => void;
}

/** Registers an HTTP function with the shared pipeline. */
export function route(name: string, options: RouteOptions): void {
  app.http(name, {
    methods: options.methods,
    route: options.route,
    // Authentication is ours (Entra JWT or App Service Authentication), not function keys.
    authLevel: 'anonymous',
    extraInputs: options.durableClient ? [df.input.durableClient()] : [],
    handler: (req, ctx) => runRoute(options, req, ctx),
  });
}

async function runRoute(options: RouteOptions, req: HttpRequest, ctx: InvocationContext): Promise<HttpResponseInit> {
  const instance = new URL(req.url).pathname;
  const started = Date.now();
  const observe = (outcome: string) => options.observe?.(outcome, Date.now() - started);
  try {
    const services = getServices();
    let principal: Principal | undefined;
    if (options.access !== 'anonymous') {
      principal = await services.authenticator.authenticate(req.headers);
      requireRole(principal, ...options.access);
    }
    if (options.usesStorage !== false) await services.ready();
    const body = await readBody(req);
    const durable = () => {
      if (!options.durableClient) throw new Error('route registered without durableClient');
      return df.getClient(ctx);
    };
    const response = await options.handler({ req, ctx, services, principal, body, durable });
    observe(outcomeOf(response));
    return response;
  } catch (err) {
    const problem = toProblem(err, instance);
    observe(problem.body.code);
    if (problem.correlationId) {
      // The full error goes to the log under the correlation id; the caller sees only the id.
      ctx.error(
        `unhandled error ${problem.correlationId} on ${req.method} ${instance}: ${describeError(err, 2000, { stackFrames: 5 })}`,
      );
    } else if (problem.status >= 500) {
      ctx.warn(`${req.method} ${instance} -> ${problem.status} ${problem.body.code}: ${problem.body.detail}`);
    }
    return { status: problem.status, headers: problem.headers, jsonBody: problem.body };
  }
}

/**
 * The body within docs/api.md's limits, before any handler runs: at most 16 KiB on every route
 * (not only those that parse JSON), and none at all on GET, HEAD and DELETE, which take none.
 */
async function readBody(req: HttpRequest): Promise<Uint8Array | undefined> {
  const takesNone = req.method === 'GET' || req.method === 'HEAD' || req.method === 'DELETE';
  const limit = takesNone ? 0 : DEFAULT_MAX_JSON_BYTES;
  const tooLarge = () =>
    new PayloadTooLargeError(
      takesNone
        ? `${req.method} takes no request body.`
        : `The request body is larger than ${limit} bytes, the most any operation accepts.`,
    );
  if (Number(req.headers.get('content-length') ?? 0) > limit) throw tooLarge();
  const body = new Uint8Array(await req.arrayBuffer());
  if (body.length > limit) throw tooLarge();
  return takesNone ? undefined : body;
}

function outcomeOf(response: HttpResponseInit): string {
  const status = (response.jsonBody as { status?: unknown } | undefined)?.status;
  return typeof status === 'string' ? status : String(response.status ?? 200);
}

export function json(status: number, body: unknown, headers: Record<string, string> = {}): HttpResponseInit {
  return { status, jsonBody: body, headers: { 'content-type': 'application/json', ...headers } };
}
