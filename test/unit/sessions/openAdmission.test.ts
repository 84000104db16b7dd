// Opens prepared at once, first come first served: never more than the limit in progress, turns in
// arrival order, and an open that gets no turn in time is refused (service_busy) without running.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { OpenAdmission } from '../../../lib/sessions/openAdmission';

describe('OpenAdmission', () => {
  it('runs at most `limit` at once, in arrival order, and releases every place', async () => {
    const gate = new OpenAdmission(3);
    let active = 0;
    let most = 0;
    const order: number[] = [];
    await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        gate.run(60_000, async () => {
          active++;
          most = Math.max(most, active);
          order.push(i);
          await new Promise((r) => setImmediate(r));
          active--;
        }),
      ),
    );
    assert.equal(most, 3);
    assert.deepEqual(
      order,
      Array.from({ length: 20 }, (_, i) => i),
    );
    assert.deepEqual(gate.load, { active: 0, waiting: 0 });
  });

  it('refuses with service_busy, without running it, an open that gets no turn within its wait', async () => {
    const gate = new OpenAdmission(1);
    let release!: () => void;
    const holding = gate.run(60_000, () => new Promise<void>((r) => (release = r)));
    let ran = false;
    await assert.rejects(
      gate.run(5, () => {
        ran = true;
        return Promise.resolve();
      }),
      { code: 'service_busy', status: 503 },
    );
    assert.equal(ran, false);
    release();
    await holding;
    assert.deepEqual(gate.load, { active: 0, waiting: 0 });
  });

  it('releases the place of a failed open', async () => {
    const gate = new OpenAdmission(1);
    await assert.rejects(gate.run(1000, () => Promise.reject(new Error('storage down'))));
    assert.equal(await gate.run(1000, () => Promise.resolve('next')), 'next');
  });
});
