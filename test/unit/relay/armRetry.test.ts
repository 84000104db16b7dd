// RelayManager's retry of ARM calls on the shared backoff: exact delays with a fake random, the
// Retry-After of a throttled answer, typed errors for what a retry cannot fix.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  RelayArmError,
  RelayArmUnavailableError,
  RelayConflictError,
  RelayQuotaExceededError,
  RelayResourceNotFoundError,
  RelayThrottledError,
} from '../../../lib/errors';
import { callArm, DEFAULT_RETRY_POLICY } from '../../../lib/relay/armRetry';

const fault = (statusCode: number, retryAfter?: string) =>
  Object.assign(new Error(`ARM ${statusCode}`), {
    statusCode,
    response: { headers: { get: (n: string) => (n === 'retry-after' ? retryAfter : undefined) } },
  });

/** A call failing with `faults` in turn, then answering 'ok'; records the sleeps it was given. */
function scripted(faults: Error[]) {
  const sleeps: number[] = [];
  let calls = 0;
  const fn = (): Promise<string> => {
    const f = faults[calls++];
    return f === undefined ? Promise.resolve('ok') : Promise.reject(f);
  };
  const sleep = (ms: number): Promise<void> => {
    sleeps.push(ms);
    return Promise.resolve();
  };
  return { fn, sleep, sleeps, calls: () => calls };
}

describe('callArm', () => {
  it('retries transient faults on the equal-jittered backoff, and Retry-After wins', async () => {
    const s = scripted([fault(500), fault(503), fault(429, '7'), fault(502)]);
    const out = await callArm('namespaces.get', s.fn, {
      policy: DEFAULT_RETRY_POLICY,
      sleep: s.sleep,
      random: () => 0,
    });
    assert.equal(out, 'ok');
    // base 500 doubled per failure, half of each with random 0; the 429's Retry-After as given.
    assert.deepEqual(s.sleeps, [250, 500, 7000, 2000]);
  });

  it('gives up after maxAttempts with RelayArmUnavailableError carrying the last status', async () => {
    const s = scripted(Array.from({ length: 10 }, () => fault(503)));
    await assert.rejects(
      callArm('namespaces.get', s.fn, { policy: { ...DEFAULT_RETRY_POLICY, maxAttempts: 3 }, sleep: s.sleep }),
      (err: unknown) => err instanceof RelayArmUnavailableError && err.armStatus === 503 && err.status === 503,
    );
    assert.equal(s.calls(), 3);
  });

  it('does not wait past its deadline for a long Retry-After: RelayThrottledError, for the caller to defer', async () => {
    const s = scripted([fault(429, '600')]);
    await assert.rejects(
      callArm('namespaces.get', s.fn, {
        policy: { ...DEFAULT_RETRY_POLICY, deadlineMs: 10_000, maxRetryAfterMs: 1_000_000 },
        sleep: s.sleep,
      }),
      (err: unknown) => err instanceof RelayThrottledError && err.code === 'relay_arm_throttled' && err.status === 503,
    );
    assert.deepEqual(s.sleeps, []);
  });

  it('a 429 asking for more than maxRetryAfterMs is not waited for: RelayThrottledError carries the wait', async () => {
    const s = scripted([fault(429, '1800')]);
    let throttled = 0;
    await assert.rejects(
      callArm('namespaces.createOrUpdate', s.fn, {
        policy: DEFAULT_RETRY_POLICY,
        sleep: s.sleep,
        onThrottled: () => throttled++,
      }),
      (err: unknown) => err instanceof RelayThrottledError && err.retryAfterMs === 1_800_000 && err.armStatus === 429,
    );
    assert.deepEqual(s.sleeps, []);
    assert.equal(s.calls(), 1);
    assert.equal(throttled, 1);
  });

  it('a 429 with a short Retry-After is retried after it, up to half again later, and counted', async () => {
    const s = scripted([fault(429, '0.4'), fault(429, '1')]);
    let throttled = 0;
    const out = await callArm('hybridConnections.createOrUpdate', s.fn, {
      policy: DEFAULT_RETRY_POLICY,
      sleep: s.sleep,
      random: () => 0.5,
      onThrottled: () => throttled++,
    });
    assert.equal(out, 'ok');
    // Retry-After + random × half of it: callers woken by one empty bucket come back spread.
    assert.deepEqual(s.sleeps, [500, 1250]);
    assert.equal(throttled, 2);
  });

  it('fails fast with a typed error for what a retry cannot fix', async () => {
    const cases: Array<[Error, new (...a: never[]) => RelayArmError]> = [
      [fault(404), RelayResourceNotFoundError],
      [fault(409), RelayConflictError],
      [Object.assign(new Error('too many'), { statusCode: 400, code: 'QuotaExceeded' }), RelayQuotaExceededError],
      [fault(400), RelayArmError],
    ];
    for (const [f, type] of cases) {
      const s = scripted([f]);
      await assert.rejects(callArm('op', s.fn, { policy: DEFAULT_RETRY_POLICY, sleep: s.sleep }), type);
      assert.equal(s.calls(), 1);
    }
  });
});
