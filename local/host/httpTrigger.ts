// The HTTP trigger as a built-in host extension: function routes under the route prefix (ASP.NET
// templates, literal segments first), the worker's HTTP request shape, and the response written
// back from the function's `$return` or http output binding, cookies included.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { RpcBindingInfo, RpcHttpCookie, RpcInvocationResponse } from './coreTypes';
import type { ExtensionHostApi, HostExtension, TriggeredFunction } from './extensionApi';
import { matchRoute, parseRouteTemplate, type RouteTemplate } from './routes';

interface HttpRoute {
  fn: TriggeredFunction['fn'];
  route: RouteTemplate;
  methods: string[] | undefined;
}

export function createHttpTrigger(): HostExtension {
  let host: ExtensionHostApi | undefined;
  let routes: HttpRoute[] = [];

  /** Invokes the first route (by precedence) whose template and method match; false when none does. */
  const dispatch = async (req: IncomingMessage, res: ServerResponse, url: URL, path: string, body: Buffer) => {
    const method = (req.method ?? 'GET').toUpperCase();
    let methodMismatch = false;
    for (const r of routes) {
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
        url: `http://${req.headers.host ?? host!.baseUrl.slice('http://'.length)}${req.url ?? '/'}`,
        headers,
        query,
        params,
        body: method === 'GET' || method === 'HEAD' ? undefined : { bytes: new Uint8Array(body) },
      };
      const response = await host!.invoke(r.fn.name, { http: httpData });
      writeHttpResponse(res, response, r.fn.metadata.bindings);
      return true;
    }
    if (methodMismatch) {
      const text = 'Method Not Allowed';
      res.writeHead(405, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(text) });
      res.end(text);
      return true;
    }
    return false;
  };

  return {
    name: 'http',
    triggerTypes: ['httpTrigger'],
    inputTypes: [],

    start(h: ExtensionHostApi): Promise<void> {
      host = h;
      routes = h.functionsWithTrigger('httpTrigger').map(({ fn, trigger }) => {
        const b = trigger as { route?: string; methods?: string[] };
        return {
          fn,
          route: parseRouteTemplate(b.route ?? fn.name),
          methods: b.methods?.map((m) => m.toUpperCase()),
        };
      });
      routes.sort((a, b) => b.route.precedence - a.route.precedence);
      return Promise.resolve();
    },

    close(): Promise<void> {
      routes = [];
      return Promise.resolve();
    },

    async handleHttp(req: IncomingMessage, res: ServerResponse, body: Buffer): Promise<boolean> {
      if (!host) return false;
      const url = new URL(req.url ?? '/', 'http://127.0.0.1');
      const prefix = host.hostJson.routePrefix ? `/${host.hostJson.routePrefix}` : '';
      if (prefix !== '' && url.pathname !== prefix && !url.pathname.startsWith(prefix + '/')) return false;
      return dispatch(req, res, url, url.pathname.slice(prefix.length), body);
    },
  };
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
