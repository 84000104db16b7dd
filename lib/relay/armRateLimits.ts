// What ARM says about its own limits, read off every response: the `x-ms-ratelimit-remaining-*`
// headers (ARM's token buckets per subscription, and Microsoft.Relay's lower namespace-write limit
// in `…-subscription-resource-requests`) and the Retry-After of 429s and of delete-operation polls.
// A pipeline policy feeds it; RelayManager reads it to space its polls and to tell provisioning how
// much namespace-write budget a subscription has left (lib/pool/provisionPacing.ts decides with it).
import { parseRetryAfter } from '../backoff';

/** What a subscription's last responses said; fields absent until a response carried them. */
export interface SubscriptionRateLimits {
  /** `x-ms-ratelimit-remaining-subscription-writes` (ARM's write bucket; 200 when full). */
  writesRemaining?: number;
  /** `x-ms-ratelimit-remaining-subscription-reads` (250 when full). */
  readsRemaining?: number;
  /** `x-ms-ratelimit-remaining-subscription-deletes`. */
  deletesRemaining?: number;
  /** `x-ms-ratelimit-remaining-subscription-resource-requests`: Relay's namespace writes left in its window (~50). */
  namespaceWritesRemaining?: number;
  /** 429s this process received for the subscription (every kind). */
  throttled: number;
  /** The last 429 on a namespace write: until when Relay refuses another (its Retry-After). */
  namespaceWritesRefusedUntil?: Date;
  /** When the last header was read. */
  observedAt?: Date;
}

const HEADERS: Array<[string, keyof SubscriptionRateLimits]> = [
  ['x-ms-ratelimit-remaining-subscription-writes', 'writesRemaining'],
  ['x-ms-ratelimit-remaining-subscription-reads', 'readsRemaining'],
  ['x-ms-ratelimit-remaining-subscription-deletes', 'deletesRemaining'],
  ['x-ms-ratelimit-remaining-subscription-resource-requests', 'namespaceWritesRemaining'],
];

interface HeaderBag {
  get(name: string): string | undefined;
}

/** The parts of a request and its response the tracker reads (core-rest-pipeline's shapes). */
export interface ObservedExchange {
  method: string;
  url: string;
  status: number;
  headers: HeaderBag;
}

const SUBSCRIPTION = /\/subscriptions\/([^/?]+)/i;
const NAMESPACE_WRITE = /\/providers\/Microsoft\.Relay\/namespaces\/[^/?]+(\?|$)/i;
const OPERATION_RESULT = /\/namespaces\/([^/?]+)\/operationresults\//i;

export class ArmRateLimits {
  private readonly bySubscription = new Map<string, SubscriptionRateLimits>();
  /** Retry-After of the last poll of a namespace's delete operation, by namespace (lowercase). */
  private readonly pollHints = new Map<string, number>();

  constructor(private readonly now: () => Date = () => new Date()) {}

  /** Reads one response. Never throws: a header it cannot parse is ignored. */
  observe(x: ObservedExchange): void {
    const sub = SUBSCRIPTION.exec(x.url)?.[1]?.toLowerCase();
    if (!sub) return;
    const state = this.state(sub);
    let seen = false;
    for (const [header, field] of HEADERS) {
      const raw = x.headers.get(header);
      if (raw === undefined || !/^\d+$/.test(raw.trim())) continue;
      (state as unknown as Record<string, number>)[field] = Number(raw);
      seen = true;
    }
    const retryAfterMs = parseRetryAfter(x.headers.get('retry-after'));
    if (x.status === 429) {
      state.throttled++;
      const namespaceWrite = x.method !== 'GET' && x.method !== 'DELETE' && NAMESPACE_WRITE.test(x.url);
      if (namespaceWrite && retryAfterMs !== undefined) {
        state.namespaceWritesRefusedUntil = new Date(this.now().getTime() + retryAfterMs);
        state.namespaceWritesRemaining = 0;
      }
      seen = true;
    }
    const op = OPERATION_RESULT.exec(x.url)?.[1]?.toLowerCase();
    if (op && x.method === 'GET') {
      if (x.status === 202 && retryAfterMs !== undefined) this.pollHints.set(op, retryAfterMs);
      else this.pollHints.delete(op);
    }
    if (seen) state.observedAt = this.now();
  }

  /** A copy of what a subscription's responses said so far. */
  of(subscriptionId: string): SubscriptionRateLimits {
    return { ...this.state(subscriptionId.toLowerCase()) };
  }

  /** The Retry-After the last poll of `namespace`'s delete carried (undefined: none). */
  pollHint(namespace: string): number | undefined {
    return this.pollHints.get(namespace.toLowerCase());
  }

  forgetPoll(namespace: string): void {
    this.pollHints.delete(namespace.toLowerCase());
  }

  private state(sub: string): SubscriptionRateLimits {
    let s = this.bySubscription.get(sub);
    if (!s) this.bySubscription.set(sub, (s = { throttled: 0 }));
    return s;
  }
}

/** A core-rest-pipeline policy that shows every response (and every failed one) to `limits`. */
export function armRateLimitsPolicy(limits: ArmRateLimits) {
  return {
    name: 'relayBrokerArmRateLimits',
    async sendRequest<Req extends { method: string; url: string }, Res extends { status: number; headers: HeaderBag }>(
      request: Req,
      next: (request: Req) => Promise<Res>,
    ): Promise<Res> {
      try {
        const response = await next(request);
        limits.observe({
          method: request.method,
          url: request.url,
          status: response.status,
          headers: response.headers,
        });
        return response;
      } catch (err) {
        const response = (err as { response?: { status?: unknown; headers?: HeaderBag } }).response;
        if (response && typeof response.status === 'number' && typeof response.headers?.get === 'function')
          limits.observe({
            method: request.method,
            url: request.url,
            status: response.status,
            headers: response.headers,
          });
        throw err;
      }
    },
  };
}
