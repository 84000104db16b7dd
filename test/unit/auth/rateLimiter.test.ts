import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { RateLimiter } from '../../../lib/auth/rateLimiter';
import { RateLimitedError, toProblem } from '../../../lib/errors';

describe('RateLimiter', () => {
  it('lets a burst of perMinute through, then refuses with the seconds until the next token', () => {
    const limiter = new RateLimiter({ perMinute: 6 });
    const t0 = 1_000_000;
    for (let i = 0; i < 6; i++) assert.deepEqual(limiter.take('alice', t0), { ok: true }, `take ${i}`);
    // One token every 10 s.
    assert.deepEqual(limiter.take('alice', t0), { ok: false, retryAfterSeconds: 10 });
    assert.deepEqual(limiter.take('alice', t0 + 4_000), { ok: false, retryAfterSeconds: 6 });
    assert.deepEqual(limiter.take('alice', t0 + 10_000), { ok: true });
    assert.equal(limiter.take('alice', t0 + 10_000).ok, false);
  });

  it('keeps principals apart', () => {
    const limiter = new RateLimiter({ perMinute: 1 });
    assert.equal(limiter.take('alice', 0).ok, true);
    assert.equal(limiter.take('alice', 0).ok, false);
    assert.equal(limiter.take('bob', 0).ok, true);
  });

  it('refills no further than the burst size after a long idle time', () => {
    const limiter = new RateLimiter({ perMinute: 60, burst: 3 });
    const results = Array.from({ length: 5 }, () => limiter.take('alice', 3_600_000).ok);
    assert.deepEqual(results, [true, true, true, false, false]);
  });

  it('never adds tokens when the clock steps back', () => {
    const limiter = new RateLimiter({ perMinute: 1 });
    assert.equal(limiter.take('alice', 120_000).ok, true);
    assert.equal(limiter.take('alice', 0).ok, false);
  });

  it('enforce throws RateLimitedError that maps to 429 with Retry-After', () => {
    const limiter = new RateLimiter({ perMinute: 2 });
    limiter.enforce('alice', 0);
    limiter.enforce('alice', 0);
    assert.throws(
      () => limiter.enforce('alice', 0),
      (err: unknown) => {
        assert.ok(err instanceof RateLimitedError);
        const problem = toProblem(err);
        assert.equal(problem.status, 429);
        assert.equal(problem.body.code, 'rate_limited');
        assert.equal(problem.headers['retry-after'], '30');
        return true;
      },
    );
  });

  it('stays bounded: idle principals are forgotten first, active ones keep their state', () => {
    const limiter = new RateLimiter({ perMinute: 1, maxPrincipals: 100 });
    limiter.take('busy', 0); // empty bucket for a minute
    for (let i = 0; i < 1000; i++) limiter.take(`p${i}`, 0);
    assert.ok(limiter.size <= 100, `size ${limiter.size}`);
    // Sixty seconds later everyone else has refilled (idle, dropped losslessly); 'busy' just has its token back.
    for (let i = 0; i < 1000; i++) limiter.take(`q${i}`, 60_000);
    assert.ok(limiter.size <= 100, `size ${limiter.size}`);
  });

  it('makes room by forgetting a refilled principal, not an exhausted one', () => {
    const limiter = new RateLimiter({ perMinute: 1, maxPrincipals: 3 });
    limiter.take('a', 0); // refilled again by 60 s: idle
    limiter.take('busy', 60_000);
    limiter.take('b', 60_000);
    limiter.take('c', 60_000); // full: the idle 'a' goes, although 'busy' is not the most recent
    assert.equal(limiter.size, 3);
    assert.equal(limiter.take('busy', 60_000).ok, false, 'busy is still limited');
  });

  it('when every tracked principal is active, forgets the least recently used one', () => {
    const limiter = new RateLimiter({ perMinute: 1, maxPrincipals: 2 });
    limiter.take('old', 0);
    limiter.take('recent', 0);
    limiter.take('new', 0);
    assert.equal(limiter.size, 2);
    assert.equal(limiter.take('recent', 0).ok, false, 'recent is still limited');
    assert.equal(limiter.take('old', 0).ok, true, 'old was forgotten and starts over');
  });

  it('rejects nonsense settings', () => {
    assert.throws(() => new RateLimiter({ perMinute: 0 }), /perMinute/);
    assert.throws(() => new RateLimiter({ perMinute: 5, burst: 0 }), /burst/);
  });
});
