// The durable client's "not found" and "already finished" answers as values, not exceptions:
// the client throws plain Errors naming the HTTP status, which would otherwise surface as 500s.
import * as df from 'durable-functions';
import type { DurableClient, DurableOrchestrationStatus } from 'durable-functions';
import type { DurableRetryPolicy } from '../../lib/backoff';

const statusIn = (err: unknown, codes: number[]): boolean => {
  const text = err instanceof Error ? err.message : String(err);
  return codes.some((c) => new RegExp(`\\b${c}\\b`).test(text));
};

/** The engine's RetryOptions for an activity: doubling from `baseMs`, capped, deterministic. */
export function durableRetry(policy: DurableRetryPolicy): df.RetryOptions {
  const r = new df.RetryOptions(policy.baseMs, policy.maxAttempts);
  r.backoffCoefficient = 2;
  if (policy.capMs !== undefined) r.maxRetryIntervalInMilliseconds = policy.capMs;
  return r;
}

/** The instance's status, or undefined when no instance has that id. */
export async function statusOrUndefined(
  client: DurableClient,
  instanceId: string,
): Promise<DurableOrchestrationStatus | undefined> {
  try {
    const st = await client.getStatus(instanceId);
    return st?.instanceId ? st : undefined;
  } catch (err) {
    if (statusIn(err, [404])) return undefined;
    throw err;
  }
}

/** Raises an event; false when the instance is gone or already finished (404/410). */
export async function raiseEventIfRunning(
  client: DurableClient,
  instanceId: string,
  eventName: string,
  data: unknown,
): Promise<boolean> {
  try {
    await client.raiseEvent(instanceId, eventName, data);
    return true;
  } catch (err) {
    if (statusIn(err, [404, 410])) return false;
    throw err;
  }
}
