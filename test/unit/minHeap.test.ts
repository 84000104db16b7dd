import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MinHeap } from '../../lib/minHeap';

describe('MinHeap', () => {
  it('pops items in key order, whatever the push order', () => {
    const h = new MinHeap<number>((n) => n);
    const values = Array.from({ length: 200 }, (_, i) => (i * 7919) % 211);
    for (const v of values) h.push(v);
    assert.equal(h.size, 200);
    const out: number[] = [];
    while (h.size) out.push(h.pop()!);
    assert.deepEqual(
      out,
      [...values].sort((a, b) => a - b),
    );
    assert.equal(h.pop(), undefined);
    assert.equal(h.peek(), undefined);
  });
  it('peeks without removing', () => {
    const h = new MinHeap<{ due: number }>((t) => t.due);
    h.push({ due: 5 });
    h.push({ due: 2 });
    assert.equal(h.peek()!.due, 2);
    assert.equal(h.size, 2);
  });
});
