// The instance registry against real table storage (Azurite): what a reload after a commit
// conflict puts back into memory.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { type Azurite, startAzurite } from '../../../local/azurite';
import { historyBlobs, Instance, type InstanceState, messageBlob, stateBlob } from '../../../local/durable/instance';
import { EventType } from '../../../local/durable/protocol';
import { InstanceRegistry } from '../../../local/durable/registry';
import { newExecState } from '../../../local/durable/replay';
import { DurableStore } from '../../../local/durable/store';

describe('instance registry', () => {
  let azurite: Azurite;
  let store: DurableStore;

  before(async () => {
    azurite = await startAzurite();
    store = new DurableStore(azurite.connectionString, 'RegistryHub');
    await store.init();
  });
  after(async () => {
    await azurite?.close();
  });

  it('reloads only inbox and work rows as the instance bookkeeping, never its state or history', async () => {
    const now = new Date().toISOString();
    const state: InstanceState = {
      instanceId: 'reload-1',
      name: 'Orch',
      status: 'Running',
      createdTime: now,
      lastUpdatedTime: now,
      gen: 0,
      historyCount: 2,
      episode: 2,
      exec: newExecState('ex1'),
    };
    const event = { EventType: EventType.EventRaised, EventId: -1, IsPlayed: false, Timestamp: now, Name: 'go' };
    await store.commit({
      instanceId: state.instanceId,
      etag: undefined,
      state: stateBlob(state),
      upserts: [
        ...historyBlobs(0, 0, [event, event], 2),
        messageBlob({ key: 'm-e-1', kind: 'event', due: Date.now(), ord: 1, event }, 2),
        { rowKey: 'w-a-ex1-0', text: '{}', ep: 2, props: {} },
        // Staged by an episode that never committed: not part of the instance.
        messageBlob({ key: 'm-e-2', kind: 'event', due: Date.now(), ord: 2, event }, 3),
      ],
      deletes: [],
    });
    const registry = new InstanceRegistry(store);
    const inst = new Instance({ ...state, episode: 1 }, undefined);
    assert.equal(await registry.reload(inst), false, 'a running instance is not finished');
    assert.equal(inst.state.episode, 2);
    assert.deepEqual([...inst.rowKeys.keys()].sort(), ['m-e-1', 'w-a-ex1-0']);
    assert.deepEqual([...inst.messages.keys()], ['m-e-1']);
    // Retiring the instance deletes what rowKeys holds: its state and history must survive that.
    await store.deleteRows(inst.id, [...inst.rowKeys.values()].flat());
    assert.equal((await registry.readState(inst.id))?.state.status, 'Running');
    assert.equal((await registry.loadHistory(inst.state)).length, 2);
  });
});
