// The process's one watcher of waiting opens: one list read per tick for every waiter (not one
// read per waiter), point reads only for sessions that left the running list, and wake-ups from a
// store another instance writes.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { InstanceState } from '../../../lib/sessions/orchestrations';
import { SessionReadyWatcher } from '../../../lib/sessions/sessionReadyWatcher';
import { FakeOrchestrations } from './fakes';

/** An orchestration store with the list read: what every instance's durable client reads. */
class ListingOrchestrations extends FakeOrchestrations {
  listReads = 0;
  onListRead?: (reads: number) => void;
  listRunningSince(createdFrom: Date): Promise<Map<string, InstanceState>> {
    this.listReads++;
    this.onListRead?.(this.listReads);
    const out = new Map<string, InstanceState>();
    for (const [id, st] of this.instances) {
      const created = Date.parse((st.input as { createdAt?: string } | undefined)?.createdAt ?? '');
      if ((st.runtimeStatus === 'Running' || st.runtimeStatus === 'Pending') && created >= createdFrom.getTime())
        out.set(id, st);
    }
    return Promise.resolve(out);
  }
}

const settledWhenNotPending = (st: InstanceState | undefined) =>
  (st?.customStatus as { status?: string } | undefined)?.status !== 'pending';

function start(store: ListingOrchestrations, n: number, createdAtMs: number): string[] {
  return Array.from({ length: n }, (_, i) => {
    const id = `s-${i}`;
    store.instances.set(id, {
      runtimeStatus: 'Running',
      customStatus: { status: 'pending' },
      input: { createdAt: new Date(createdAtMs).toISOString() },
    });
    return id;
  });
}

describe('SessionReadyWatcher', () => {
  it('wakes 200 waiting opens with one list read per tick, not one read per open', async () => {
    const store = new ListingOrchestrations();
    const now = Date.now();
    const ids = start(store, 200, now);
    // Made ready by "another instance" after the watcher's first read: the second read sees them.
    store.onListRead = (reads) => {
      if (reads === 2) for (const id of ids) store.set(id, { customStatus: { status: 'ready' } });
    };
    const watcher = new SessionReadyWatcher({ intervalMs: 1 });
    const states = await Promise.all(
      ids.map((id) => watcher.wait(store, id, now, now + 60_000, settledWhenNotPending)),
    );
    assert.ok(states.every((s) => (s?.customStatus as { status: string }).status === 'ready'));
    assert.equal(store.listReads, 2, 'one read per tick for all 200 waiters');
    assert.equal(store.statusReads, 0, 'no per-session read while they are running');
    assert.equal(watcher.waiting, 0);
  });

  it('a nudged session is read alone at once: its open answers without waiting for the next list read', async () => {
    const store = new ListingOrchestrations();
    const now = Date.now();
    const ids = start(store, 50, now);
    // The list read comes once a minute here: only the nudge can wake the waiter in time.
    const watcher = new SessionReadyWatcher({ intervalMs: 60_000, hotIntervalMs: 5 });
    const waits = ids.map((id) => watcher.wait(store, id, now, now + 30_000, settledWhenNotPending));
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(store.listReads, 1);
    // The device's ready call reached this instance; its orchestration takes the event a little later.
    watcher.nudge(ids[7]);
    setTimeout(() => store.set(ids[7], { customStatus: { status: 'ready' } }), 30);
    const st = await waits[7];
    assert.equal((st?.customStatus as { status: string }).status, 'ready');
    assert.equal(store.listReads, 1, 'no list read in between');
    assert.ok(store.statusReads >= 1, 'read alone');
    assert.equal(watcher.waiting, 49, 'the others still wait');
    // A nudge for a session nobody waits for here costs nothing.
    const reads = store.statusReads;
    watcher.nudge('s-elsewhere');
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(store.statusReads, reads);
    watcher.close();
    await Promise.all(waits);
  });

  it('a slow list read (storage busy) does not hold back a nudged session', async () => {
    const store = new ListingOrchestrations();
    const now = Date.now();
    const ids = start(store, 20, now);
    // The second list read hangs until the test lets it go: the nudged session must not wait for it.
    let letListGo!: () => void;
    const hung = new Promise<void>((r) => (letListGo = r));
    const list = store.listRunningSince.bind(store);
    store.listRunningSince = async (from: Date) => {
      const out = await list(from);
      if (store.listReads === 2) await hung;
      return out;
    };
    const watcher = new SessionReadyWatcher({ intervalMs: 1, hotIntervalMs: 5 });
    const waits = ids.map((id) => watcher.wait(store, id, now, now + 30_000, settledWhenNotPending));
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(store.listReads, 2, 'the second list read is in flight');
    watcher.nudge(ids[3]);
    store.set(ids[3], { customStatus: { status: 'ready' } });
    const st = await waits[3];
    assert.equal((st?.customStatus as { status: string }).status, 'ready');
    assert.equal(store.listReads, 2, 'answered while the list read was still in flight');
    letListGo();
    watcher.close();
    await Promise.all(waits);
  });

  it('reads a session alone once it has left the running list (failed before ready)', async () => {
    const store = new ListingOrchestrations();
    const now = Date.now();
    const [id] = start(store, 1, now);
    store.set(id, { runtimeStatus: 'Completed', customStatus: { status: 'failed', reason: 'pool_exhausted' } });
    const watcher = new SessionReadyWatcher({ intervalMs: 1 });
    const st = await watcher.wait(store, id, now, now + 60_000, settledWhenNotPending);
    assert.equal((st?.customStatus as { reason: string }).reason, 'pool_exhausted');
    assert.equal(store.statusReads, 1);
  });

  it('hands back the last state seen when the deadline passes, and keeps ticking for the others', async () => {
    const store = new ListingOrchestrations();
    const now = Date.now();
    const [slow, late] = start(store, 2, now);
    const watcher = new SessionReadyWatcher({ intervalMs: 1 });
    const first = await watcher.wait(store, slow, now, now + 30, settledWhenNotPending);
    assert.equal((first?.customStatus as { status: string }).status, 'pending');
    const second = watcher.wait(store, late, now, now + 60_000, settledWhenNotPending);
    store.set(late, { customStatus: { status: 'ready' } });
    assert.equal(((await second)?.customStatus as { status: string }).status, 'ready');
  });

  it('keeps its waiters through a failed read (storage busy) and reads again', async () => {
    const store = new ListingOrchestrations();
    const now = Date.now();
    const [id] = start(store, 1, now);
    const errors: unknown[] = [];
    store.onListRead = (reads) => {
      if (reads === 1) throw new Error('503 Server Busy');
      store.set(id, { customStatus: { status: 'ready' } });
    };
    const watcher = new SessionReadyWatcher({ intervalMs: 1, onError: (e) => errors.push(e) });
    const st = await watcher.wait(store, id, now, now + 60_000, settledWhenNotPending);
    assert.equal((st?.customStatus as { status: string }).status, 'ready');
    assert.equal(errors.length, 1);
  });
});
