// What ArmRateLimits reads off ARM's answers: the remaining-request headers per subscription, a
// namespace write refused until the Retry-After, the delete operation's poll hint.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ArmRateLimits } from '../../../lib/relay/armRateLimits';

const headers = (h: Record<string, string>) => ({ get: (n: string) => h[n.toLowerCase()] });
const NS =
  'https://arm/subscriptions/SUB-1/resourceGroups/rg/providers/Microsoft.Relay/namespaces/ns1?api-version=2017-04-01';

describe('ArmRateLimits', () => {
  it('reads every remaining-request header per subscription, case-insensitively', () => {
    const limits = new ArmRateLimits(() => new Date('2026-03-02T10:00:00.000Z'));
    limits.observe({
      method: 'PUT',
      url: NS,
      status: 200,
      headers: headers({
        'x-ms-ratelimit-remaining-subscription-writes': '199',
        'x-ms-ratelimit-remaining-subscription-resource-requests': '49',
      }),
    });
    limits.observe({
      method: 'GET',
      url: NS,
      status: 200,
      headers: headers({ 'x-ms-ratelimit-remaining-subscription-reads': '249' }),
    });
    assert.deepEqual(limits.of('sub-1'), {
      throttled: 0,
      writesRemaining: 199,
      readsRemaining: 249,
      namespaceWritesRemaining: 49,
      observedAt: new Date('2026-03-02T10:00:00.000Z'),
    });
    assert.deepEqual(limits.of('other'), { throttled: 0 });
  });

  it('a 429 on a namespace PUT marks the namespace writes refused until its Retry-After', () => {
    const limits = new ArmRateLimits(() => new Date('2026-03-02T10:00:00.000Z'));
    limits.observe({ method: 'PUT', url: NS, status: 429, headers: headers({ 'retry-after': '1800' }) });
    const s = limits.of('SUB-1');
    assert.equal(s.throttled, 1);
    assert.equal(s.namespaceWritesRemaining, 0);
    assert.deepEqual(s.namespaceWritesRefusedUntil, new Date('2026-03-02T10:30:00.000Z'));
    // A 429 on a child write (the write bucket) is counted but refuses no namespace write.
    limits.observe({
      method: 'PUT',
      url: NS.replace('?', '/hybridConnections/t?'),
      status: 429,
      headers: headers({ 'retry-after': '1' }),
    });
    assert.equal(limits.of('sub-1').throttled, 2);
  });

  it("keeps the delete operation's Retry-After as the next poll's hint until it completes", () => {
    const limits = new ArmRateLimits();
    const op = NS.replace('?', '/operationresults/ns1?');
    limits.observe({ method: 'GET', url: op, status: 202, headers: headers({ 'retry-after': '37' }) });
    assert.equal(limits.pollHint('NS1'), 37_000);
    limits.observe({ method: 'GET', url: op, status: 200, headers: headers({}) });
    assert.equal(limits.pollHint('ns1'), undefined);
  });
});
