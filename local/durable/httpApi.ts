// The HTTP API the real DurableClient calls (rpcBaseUrl and webhook forms share these routes),
// with the status codes of the extension's HttpApiHandler.cs (research 2.7).
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { DurableClientOperations } from './clientOps';
import { InstanceExistsError, UnknownOrchestratorError } from './instance';
import { errorMessage } from './protocol';

export const WEBHOOK_PREFIX = '/runtime/webhooks/durabletask';

function send(res: ServerResponse, status: number, body?: unknown, headers: Record<string, string> = {}): void {
  const text = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, {
    ...(text ? { 'content-type': 'application/json; charset=utf-8' } : {}),
    'content-length': String(Buffer.byteLength(text)),
    ...headers,
  });
  res.end(text);
}

/** The extension's CreateErrorResponse shape. */
function sendError(res: ServerResponse, status: number, message: string, err?: unknown): void {
  const body: Record<string, unknown> = { Message: message };
  if (err !== undefined) {
    body.ExceptionMessage = errorMessage(err);
    body.ExceptionType = err instanceof Error ? err.name : 'Error';
  }
  send(res, status, body);
}

function bool(v: string | null): boolean | undefined {
  if (v === null) return undefined;
  if (/^true$/i.test(v)) return true;
  if (/^false$/i.test(v)) return false;
  return undefined;
}

function date(v: string | null): Date | undefined {
  if (!v) return undefined;
  const d = new Date(v);
  return Number.isNaN(d.getTime()) ? undefined : d;
}

function statuses(v: string | null): string[] | undefined {
  if (!v) return undefined;
  return v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((s) => s[0].toUpperCase() + s.slice(1));
}

export interface ManagementLinks {
  id: string;
  statusQueryGetUri: string;
  sendEventPostUri: string;
  terminatePostUri: string;
  rewindPostUri: string;
  purgeHistoryDeleteUri: string;
  restartPostUri: string;
  suspendPostUri: string;
  resumePostUri: string;
}

/** The query every webhook URL carries: task hub, connection and the system key as `code`. */
export function requiredQuery(hubName: string, systemKey: string): string {
  return `taskHub=${encodeURIComponent(hubName)}&connection=Storage&code=${encodeURIComponent(systemKey)}`;
}

export function managementLinks(base: string, hubName: string, instanceId: string, systemKey: string): ManagementLinks {
  const qs = requiredQuery(hubName, systemKey);
  const i = `${base}${WEBHOOK_PREFIX}/instances/${instanceId}`;
  return {
    id: instanceId,
    statusQueryGetUri: `${i}?${qs}`,
    sendEventPostUri: `${i}/raiseEvent/{eventName}?${qs}`,
    terminatePostUri: `${i}/terminate?reason={text}&${qs}`,
    rewindPostUri: `${i}/rewind?reason={text}&${qs}`,
    purgeHistoryDeleteUri: `${i}?${qs}`,
    restartPostUri: `${i}/restart?${qs}`,
    suspendPostUri: `${i}/suspend?reason={text}&${qs}`,
    resumePostUri: `${i}/resume?reason={text}&${qs}`,
  };
}

export class DurableHttpApi {
  constructor(
    private readonly client: DurableClientOperations,
    private readonly hubName: string,
    private readonly baseUrl: () => string,
    private readonly systemKey: string,
  ) {}

  async handle(req: IncomingMessage, res: ServerResponse, body: Buffer): Promise<boolean> {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (url.pathname !== WEBHOOK_PREFIX && !url.pathname.startsWith(WEBHOOK_PREFIX + '/')) return false;
    const segments = url.pathname
      .slice(WEBHOOK_PREFIX.length)
      .split('/')
      .filter((s) => s !== '')
      .map((s) => decodeURIComponent(s));
    const trailingSlash = url.pathname.endsWith('/');
    const method = (req.method ?? 'GET').toUpperCase();
    const q = url.searchParams;
    try {
      if (segments[0] === 'orchestrators' && segments.length >= 2 && segments.length <= 3) {
        if (method !== 'POST') return (send(res, 404), true);
        await this.start(res, segments[1], segments[2], body, req);
        return true;
      }
      if (segments[0] === 'entities') {
        sendError(res, 501, 'Durable entities are not supported by the local durable engine.');
        return true;
      }
      if (segments[0] !== 'instances') {
        send(res, 404);
        return true;
      }
      const id = segments[1];
      if (id === undefined || (segments.length === 1 && trailingSlash)) {
        if (method === 'GET') await this.list(res, q, req);
        else if (method === 'DELETE') await this.purgeBy(res, q);
        else send(res, 404);
        return true;
      }
      if (segments.length === 2) {
        if (method === 'GET') await this.status(res, id, q, url);
        else if (method === 'DELETE') {
          const n = await this.client.purge(id);
          if (n === 0) send(res, 404);
          else send(res, 200, { instancesDeleted: n });
        } else send(res, 404);
        return true;
      }
      if (method !== 'POST') return (send(res, 404), true);
      const op = segments[2].toLowerCase();
      const reason = q.get('reason') ?? undefined;
      if (op === 'raiseevent' && segments.length === 4) {
        let data: string | undefined;
        if (body.length > 0) {
          const ct = req.headers['content-type'];
          if (ct && !/json/i.test(ct))
            return (sendError(res, 400, 'Only application/json request content is supported'), true);
          try {
            JSON.parse(body.toString('utf8'));
          } catch (e) {
            return (sendError(res, 400, 'Invalid JSON content', e), true);
          }
          data = body.toString('utf8');
        }
        return (this.answer(res, await this.client.raiseEvent(id, segments[3], data)), true);
      }
      if (segments.length !== 3) return (send(res, 404), true);
      if (op === 'terminate') return (this.answer(res, await this.client.terminate(id, reason)), true);
      if (op === 'suspend') return (this.answer(res, await this.client.suspend(id, reason)), true);
      if (op === 'resume') return (this.answer(res, await this.client.resume(id, reason)), true);
      if (op === 'rewind' || op === 'restart') {
        sendError(res, 501, `The ${op} operation is not supported by the local durable engine.`);
        return true;
      }
      send(res, 404);
      return true;
    } catch (err) {
      if (err instanceof UnknownOrchestratorError || (err instanceof Error && err.name === 'ArgumentException')) {
        sendError(res, 400, 'One or more of the arguments submitted is incorrect', err);
      } else {
        // OrchestrationAlreadyExistsException lands here too: the extension answers it with a 500.
        sendError(res, 500, 'Something went wrong while processing your request', err);
      }
      return true;
    }
  }

  private answer(res: ServerResponse, outcome: 'accepted' | 'gone' | 'notFound'): void {
    send(res, outcome === 'accepted' ? 202 : outcome === 'gone' ? 410 : 404);
  }

  private origin(req: IncomingMessage): string {
    return req.headers.host ? `http://${req.headers.host}` : this.baseUrl();
  }

  private async start(
    res: ServerResponse,
    name: string,
    instanceId: string | undefined,
    body: Buffer,
    req: IncomingMessage,
  ): Promise<void> {
    let inputText: string | undefined;
    if (body.length > 0) {
      const text = body.toString('utf8');
      try {
        JSON.parse(text);
      } catch (e) {
        return sendError(res, 400, 'Invalid JSON content', e);
      }
      inputText = text;
    }
    try {
      const id = await this.client.startNew(name, instanceId, inputText);
      const links = managementLinks(this.origin(req), this.hubName, id, this.systemKey);
      send(res, 202, links, { location: links.statusQueryGetUri, 'retry-after': '10' });
    } catch (err) {
      if (err instanceof InstanceExistsError)
        return sendError(res, 500, 'Something went wrong while processing your request', err);
      throw err;
    }
  }

  private async status(res: ServerResponse, id: string, q: URLSearchParams, url: URL): Promise<void> {
    const snap = await this.client.getStatus(id, {
      showHistory: bool(q.get('showHistory')) ?? false,
      showHistoryOutput: bool(q.get('showHistoryOutput')) ?? false,
      showInput: bool(q.get('showInput')) ?? true,
    });
    if (!snap) return send(res, 404);
    const running = ['Running', 'Pending', 'ContinuedAsNew', 'Suspended'].includes(snap.runtimeStatus);
    const failed500 = snap.runtimeStatus === 'Failed' && bool(q.get('returnInternalServerErrorOnFailure')) === true;
    const code = running ? 202 : failed500 ? 500 : 200;
    send(
      res,
      code,
      snap,
      running ? { location: url.href.replace(/^http:\/\/127\.0\.0\.1/, this.baseUrl()), 'retry-after': '5' } : {},
    );
  }

  private async list(res: ServerResponse, q: URLSearchParams, req: IncomingMessage): Promise<void> {
    const top = Math.max(1, Math.min(1000, Number(q.get('top')) || 100));
    const tokenHeader = req.headers['x-ms-continuation-token'];
    const token = Array.isArray(tokenHeader) ? tokenHeader[0] : tokenHeader;
    const page = await this.client.list(
      {
        runtimeStatus: statuses(q.get('runtimeStatus')),
        createdTimeFrom: date(q.get('createdTimeFrom')),
        createdTimeTo: date(q.get('createdTimeTo')),
        instanceIdPrefix: q.get('instanceIdPrefix') ?? undefined,
        showInput: bool(q.get('showInput')) ?? false,
      },
      top,
      token || undefined,
    );
    send(res, 200, page.items, page.continuationToken ? { 'x-ms-continuation-token': page.continuationToken } : {});
  }

  private async purgeBy(res: ServerResponse, q: URLSearchParams): Promise<void> {
    const from = date(q.get('createdTimeFrom'));
    if (!from) return send(res, 400, "Please provide value for 'createdTimeFrom' parameter.");
    const n = await this.client.purgeBy({
      createdTimeFrom: from,
      createdTimeTo: date(q.get('createdTimeTo')),
      runtimeStatus: statuses(q.get('runtimeStatus')),
    });
    if (n === 0) return send(res, 404);
    send(res, 200, { instancesDeleted: n });
  }
}
