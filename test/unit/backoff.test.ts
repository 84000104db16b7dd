// The one backoff: exact delays with a fake random, the budget with a fake clock, Retry-After.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { Backoff, delayFor, parseRetryAfter, sleep, type BackoffPolicy } from '../../lib/backoff';
import { durableRetry } from '../../functions/shared/durable';
import { HybridConnectionListener, type ListenerOfflineEvent } from '../../lib/relay/hybridConnection';

const policy = (jitter: BackoffPolicy['jitter']): BackoffPolicy => ({ baseMs: 100, capMs: 1000, jitter });

describe('delayFor', () => {
  it('doubles from the base and stops at the cap', () => {
    assert.deepEqual(
      [0, 1, 2, 3, 4, 10, 1000].map((a) => delayFor(a, policy('none'))),
      [100, 200, 400, 800, 1000, 1000, 1000],
    );
  });
  it('with equal jitter stays between half the step and the step', () => {
    assert.deepEqual(
      [0, 0.5, 0.999].map((r) => delayFor(2, policy('equal'), () => r)),
      [200, 300, 400],
    );
  });
  it('with full jitter spreads between 0 and the step', () => {
    assert.deepEqual(
      [0, 0.5].map((r) => delayFor(3, policy('full'), () => r)),
      [0, 400],
    );
  });
  it('gives two callers with different random draws different delays', () => {
    assert.notEqual(
      delayFor(1, policy('equal'), () => 0.1),
      delayFor(1, policy('equal'), () => 0.9),
    );
  });
});

describe('Backoff', () => {
  it('gives up once the attempts are spent (the first attempt counts)', () => {
    const b = new Backoff({ ...policy('none'), maxAttempts: 3 });
    assert.deepEqual([b.next(), b.next(), b.next()], [100, 200, undefined]);
    assert.equal(b.failures, 3);
  });
  it('honours Retry-After instead of its own step', () => {
    const b = new Backoff({ ...policy('equal'), random: () => 0 });
    assert.deepEqual([b.next(3000), b.next()], [3000, 100]);
  });
  it('gives up when the delay would pass the deadline, on its injected clock', () => {
    let now = 1_000_000;
    const b = new Backoff({ ...policy('none'), deadlineMs: 500, now: () => now });
    assert.equal(b.next(), 100);
    now += 250;
    assert.equal(b.remainingMs(), 250);
    assert.equal(b.next(), 200);
    now += 200;
    assert.equal(b.next(), undefined, '400 ms left 50');
  });
  it('starts over after reset', () => {
    let now = 0;
    const b = new Backoff({ ...policy('none'), deadlineMs: 1000, now: () => now });
    b.next();
    b.next();
    now = 900;
    b.reset();
    assert.deepEqual([b.failures, b.remainingMs(), b.next()], [0, 1000, 100]);
  });
});

describe('durableRetry', () => {
  it('gives the Durable engine the same doubling, capped, and no jitter (its delays must replay)', () => {
    const r = durableRetry({ baseMs: 2000, capMs: 30_000, maxAttempts: 4 });
    assert.deepEqual(
      [
        r.firstRetryIntervalInMilliseconds,
        r.maxNumberOfAttempts,
        r.backoffCoefficient,
        r.maxRetryIntervalInMilliseconds,
      ],
      [2000, 4, 2, 30_000],
    );
  });
});

describe('parseRetryAfter', () => {
  it('reads seconds and HTTP dates, and ignores the unreadable', () => {
    const now = Date.parse('2026-12-01T00:00:00Z');
    assert.equal(parseRetryAfter('3', now), 3000);
    assert.equal(parseRetryAfter('1.5', now), 1500);
    assert.equal(parseRetryAfter('Tue, 01 Dec 2026 00:00:10 GMT', now), 10_000);
    assert.equal(parseRetryAfter('Mon, 30 Nov 2026 00:00:00 GMT', now), 0);
    assert.equal(parseRetryAfter('soon', now), undefined);
    assert.equal(parseRetryAfter(undefined, now), undefined);
  });
});

describe('sleep', () => {
  it('wakes at once when its signal aborts', async () => {
    const abort = new AbortController();
    const slept = sleep(60_000, abort.signal);
    abort.abort();
    await slept; // would hold the test for a minute without the signal
    await sleep(1, AbortSignal.abort());
  });
});

describe('the listener re-listens on the shared backoff', () => {
  it('jitters the re-listen delay by its random source, so two listeners do not retry in step', async () => {
    // A relay that refuses every handshake with 503: the listener schedules a re-listen.
    const server = http.createServer((_req, res) => res.writeHead(404).end());
    server.on('upgrade', (_req, socket) => socket.end('HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const firstOffline = async (random: () => number): Promise<ListenerOfflineEvent> => {
      const listener = new HybridConnectionListener({
        endpoint: `http://127.0.0.1:${port}/`,
        hybridConnection: 'tunnel',
        token: 'SharedAccessSignature sr=x&sig=y&se=1&skn=listen',
        reconnectInitialDelayMs: 1000,
        reconnectMaxDelayMs: 30_000,
        random,
      });
      const offline = new Promise<ListenerOfflineEvent>((resolve) => listener.once('offline', resolve));
      listener.start().catch(() => undefined);
      try {
        return await offline;
      } finally {
        await listener.close();
      }
    };
    try {
      const [a, b] = [await firstOffline(() => 0), await firstOffline(() => 0.999)];
      assert.equal(a.statusCode, 503);
      assert.deepEqual([a.retryInMs, b.retryInMs], [500, 1000]);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
