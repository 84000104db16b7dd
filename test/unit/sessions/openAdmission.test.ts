// The open gate: a few opens at a time, in arrival order; one still queued at its deadline is
// refused (503 service_busy, Retry-After) and leaves the queue.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ServiceBusyError, toProblem } from '../../../lib/errors';
import { OpenAdmission } from '../../../lib/sessions/openAdmission';

const far = () => Date.now() + 60_000;
const tick = () => new Promise((r) => setImmediate(r));

describe('OpenAdmission', () => {
  it('admits at most `concurrency` at once and the rest in arrival order', async () => {
    const gate = new OpenAdmission({ concurrency: 2 });
    const order: number[] = [];
    const releases = new Map<number, () => void>();
    const entries = [0, 1, 2, 3, 4].map((i) =>
      gate.enter(far()).then((release) => {
        order.push(i);
        releases.set(i, release);
      }),
    );
    await tick();
    assert.deepEqual(order, [0, 1]);
    assert.equal(gate.active, 2);
    assert.equal(gate.waiting, 3);
    releases.get(1)!();
    await tick();
    assert.deepEqual(order, [0, 1, 2]);
    // A new arrival while others wait goes behind them, even when a slot frees at the same moment.
    const late = gate.enter(far()).then((release) => {
      order.push(5);
      releases.set(5, release);
    });
    releases.get(0)!();
    releases.get(2)!();
    await tick();
    assert.deepEqual(order, [0, 1, 2, 3, 4]);
    assert.equal(gate.active, 2);
    releases.get(3)!();
    await Promise.all([...entries, late]);
    assert.deepEqual(order, [0, 1, 2, 3, 4, 5]);
    assert.equal(gate.waiting, 0);
  });

  it('a release called twice frees one slot', async () => {
    const gate = new OpenAdmission({ concurrency: 1 });
    const first = await gate.enter(far());
    let second: (() => void) | undefined;
    let third: (() => void) | undefined;
    const waits = [gate.enter(far()).then((r) => (second = r)), gate.enter(far()).then((r) => (third = r))];
    first();
    first();
    await tick();
    assert.ok(second);
    assert.equal(third, undefined, 'the second release of the same slot admitted another open');
    assert.equal(gate.active, 1);
    second();
    await Promise.all(waits);
    third!();
    assert.equal(gate.active, 0);
  });

  it('refuses an open still queued at its deadline with 503 and Retry-After, and drops it from the queue', async () => {
    const gate = new OpenAdmission({ concurrency: 1 });
    const held = await gate.enter(far());
    const started = Date.now();
    const err = await gate.enter(Date.now() + 30).then(
      () => assert.fail('admitted although the only slot was held'),
      (e: unknown) => e,
    );
    assert.ok(Date.now() - started >= 25, 'refused before its deadline');
    assert.ok(err instanceof ServiceBusyError);
    const problem = toProblem(err);
    assert.equal(problem.status, 503);
    assert.equal(problem.body.code, 'service_busy');
    assert.equal(problem.body.openQueue, 0);
    assert.equal(problem.body.openConcurrency, 1);
    assert.match(problem.headers['retry-after'], /^[1-9]\d*$/);
    assert.equal(gate.waiting, 0);
    // The slot it never took is not counted: the next open gets the slot once it is released.
    held();
    const next = await gate.enter(far());
    assert.equal(gate.active, 1);
    next();
    assert.equal(gate.active, 0);
  });

  it('refuses a concurrency that is not a positive integer', () => {
    assert.throws(() => new OpenAdmission({ concurrency: 0 }), RangeError);
    assert.throws(() => new OpenAdmission({ concurrency: 1.5 }), RangeError);
  });
});
