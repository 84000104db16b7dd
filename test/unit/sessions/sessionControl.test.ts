// Reading, ending and readying sessions, and removing a device, without servers: a fake
// orchestration port and an in-memory sessions table.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { Principal } from '../../../lib/auth/principal';
import { Sealer } from '../../../lib/sealing';
import { SESSION_EVENTS } from '../../../lib/sessions/session';
import { SessionControl } from '../../../lib/sessions/sessionControl';
import type { SessionRecord } from '../../../lib/sessions/sessionStore';
import { FakeOrchestrations, MemorySessionStore, SAMPLE_RECORD } from './fakes';

const alice: Principal = { id: 'alice', roles: ['operator'], via: 'jwt' };
const bob: Principal = { id: 'bob', roles: ['operator'], via: 'jwt' };
const admin: Principal = { id: 'root', roles: ['admin'], via: 'jwt' };
const ID = '6f1c2d1e-8a55-4a55-9d55-0a0b0c0d0e0f';
const record: SessionRecord = { ...SAMPLE_RECORD, sessionId: ID };

async function setup(r: SessionRecord = record) {
  const sealer = new Sealer(randomBytes(32));
  const orchestrations = new FakeOrchestrations();
  const sessions = new MemorySessionStore();
  await sessions.insert(r);
  orchestrations.set(r.sessionId, { runtimeStatus: 'Running', customStatus: { status: 'pending' } });
  const deleted: string[] = [];
  const control = new SessionControl({
    sessions,
    orchestrations,
    devices: {
      requireRecord: () => Promise.resolve({} as never),
      delete: (d) => {
        deleted.push(d);
        return Promise.resolve();
      },
    },
    sealer,
  });
  const ready = {
    status: 'ready',
    readyAt: '2026-11-25T10:00:02.000Z',
    relay: {
      namespace: 'rbk-ns-1',
      endpoint: 'https://rbk-ns-1.servicebus.windows.net/',
      hybridConnection: 'tunnel',
      sealedSendToken: sealer.seal('SharedAccessSignature sr=a&sig=b&se=1&skn=send', ID),
      expiresAt: record.expiresAt,
    },
  };
  return { control, orchestrations, sessions, sealer, ready, deleted };
}

describe('SessionControl', () => {
  it('reads a session by id alone, with credentials for its opener only', async () => {
    const t = await setup();
    t.orchestrations.set(ID, { customStatus: t.ready });
    const mine = await t.control.get(alice, ID);
    assert.equal(mine.status, 'ready');
    assert.equal(mine.relay?.sendToken, 'SharedAccessSignature sr=a&sig=b&se=1&skn=send');
    const asAdmin = await t.control.get(admin, ID);
    assert.equal(asAdmin.relay, undefined);
    assert.equal(asAdmin.openedBy, 'alice');
    await assert.rejects(t.control.get(bob, ID), { status: 404, code: 'session_not_found' });
  });

  it('still answers once the orchestration’s history is purged', async () => {
    const t = await setup({ ...record, status: 'ended', reason: 'requested', endedAt: '2026-11-25T10:05:00.000Z' });
    t.orchestrations.instances.clear();
    const v = await t.control.get(admin, ID);
    assert.equal(v.status, 'ended');
    assert.equal(v.reason, 'requested');
    assert.equal(v.endedAt, '2026-11-25T10:05:00.000Z');
  });

  it('answers 404 for an id it does not know, to anyone', async () => {
    const t = await setup();
    await assert.rejects(t.control.get(admin, '00000000-0000-4000-8000-000000000000'), { status: 404 });
    await assert.rejects(t.control.end(admin, '00000000-0000-4000-8000-000000000000'), { status: 404 });
  });

  it('ends a ready session: the event to its orchestration, the record ending until the recycle is done', async () => {
    const t = await setup({ ...record, status: 'ready' });
    t.orchestrations.set(ID, { customStatus: t.ready });
    assert.deepEqual(await t.control.end(alice, ID), {
      sessionId: ID,
      status: 'ending',
      reason: 'requested',
      changed: true,
    });
    assert.equal(t.sessions.records.get(ID)?.endedBy, 'alice', 'the record says who ended it');
    assert.deepEqual(t.orchestrations.raised, [
      { sessionId: ID, eventName: SESSION_EVENTS.endSession, data: { reason: 'requested', by: 'alice' } },
    ]);
    assert.equal(t.sessions.records.get(ID)?.status, 'ending');
    // Before the orchestration takes the event up, a read already says ending, without credentials.
    const v = await t.control.get(alice, ID);
    assert.equal(v.status, 'ending');
    assert.equal(v.relay, undefined);
  });

  it('answers the end a session already has, and signals nothing', async () => {
    const t = await setup({ ...record, status: 'failed', reason: 'device_not_ready' });
    assert.deepEqual(await t.control.end(admin, ID), {
      sessionId: ID,
      status: 'failed',
      reason: 'device_not_ready',
      changed: false,
    });
    const u = await setup();
    u.orchestrations.set(ID, { runtimeStatus: 'Completed', customStatus: { status: 'ended', reason: 'lifetime' } });
    assert.deepEqual(await u.control.end(admin, ID), {
      sessionId: ID,
      status: 'ended',
      reason: 'lifetime',
      changed: false,
    });
    assert.equal(t.orchestrations.raised.length + u.orchestrations.raised.length, 0);
  });

  it('leaves a session already ending for another reason as it is', async () => {
    const t = await setup({ ...record, status: 'ready' });
    t.orchestrations.set(ID, { customStatus: { status: 'ending', reason: 'lifetime' } });
    assert.deepEqual(await t.control.end(alice, ID), {
      sessionId: ID,
      status: 'ending',
      reason: 'lifetime',
      changed: false,
    });
    assert.equal(t.orchestrations.raised.length, 0);
    assert.equal(t.sessions.records.get(ID)?.status, 'ready', 'the orchestration records the end with its reason');
    assert.equal((await t.control.get(alice, ID)).reason, 'lifetime');
  });

  it('answers how it stands when the orchestration finished between the read and the event', async () => {
    const t = await setup({ ...record, status: 'ready' });
    t.orchestrations.set(ID, { customStatus: t.ready });
    t.orchestrations.raiseEvent = () => {
      t.orchestrations.set(ID, { runtimeStatus: 'Completed', customStatus: { status: 'ended', reason: 'lifetime' } });
      return Promise.resolve(false);
    };
    assert.deepEqual(await t.control.end(alice, ID), {
      sessionId: ID,
      status: 'ended',
      reason: 'lifetime',
      changed: false,
    });
    assert.equal(t.sessions.records.get(ID)?.status, 'ready', 'no ending written for an end it did not cause');
  });

  it('hides a session from other operators on end too', async () => {
    const t = await setup();
    await assert.rejects(t.control.end(bob, ID), { status: 404, code: 'session_not_found' });
    assert.equal(t.orchestrations.raised.length, 0);
  });

  it('takes the device’s ready answer only with the session’s readyToken and only while pending', async () => {
    const t = await setup();
    const readyToken = t.sealer.readyToken(ID);
    await assert.rejects(t.control.deviceReady(ID, { readyToken: 'x'.repeat(43), status: 'ready' }), {
      status: 403,
      code: 'invalid_ready_token',
    });
    await t.control.deviceReady(ID, { readyToken, status: 'refused', detail: 'port 22 is not allowed' });
    assert.deepEqual(t.orchestrations.raised, [
      {
        sessionId: ID,
        eventName: SESSION_EVENTS.deviceReady,
        data: { status: 'refused', detail: 'port 22 is not allowed' },
      },
    ]);
    t.orchestrations.set(ID, { customStatus: t.ready });
    // The same ready again (its first call timed out at the device after it was taken): the same answer, no second event.
    await t.control.deviceReady(ID, { readyToken, status: 'ready' });
    assert.equal(t.orchestrations.raised.length, 1);
    // A refusal for a session that is ready already is not taken.
    await assert.rejects(t.control.deviceReady(ID, { readyToken, status: 'refused' }), {
      status: 409,
      code: 'session_not_pending',
    });
    t.orchestrations.set(ID, { runtimeStatus: 'Completed', customStatus: { ...t.ready, status: 'ended' } });
    await assert.rejects(t.control.deviceReady(ID, { readyToken, status: 'ready' }), {
      status: 409,
      code: 'session_not_pending',
    });
    t.orchestrations.instances.clear();
    await assert.rejects(t.control.deviceReady(ID, { readyToken, status: 'ready' }), {
      status: 404,
      code: 'session_not_found',
    });
  });

  it('ends every open session of a device before deleting it, and a failed signal does not stop the deletion', async () => {
    const t = await setup();
    const other = { ...record, sessionId: '7f1c2d1e-8a55-4a55-9d55-0a0b0c0d0e0f', status: 'ready' as const };
    const done = { ...record, sessionId: '8f1c2d1e-8a55-4a55-9d55-0a0b0c0d0e0f', status: 'ended' as const };
    await t.sessions.insert(other);
    await t.sessions.insert(done);
    t.orchestrations.set(other.sessionId, { runtimeStatus: 'Running' });
    const failing = t.orchestrations.raiseEvent.bind(t.orchestrations);
    t.orchestrations.raiseEvent = (id, name, data) =>
      id === other.sessionId ? Promise.reject(new Error('hub unavailable')) : failing(id, name, data);
    const errors: string[] = [];
    const n = await t.control.deleteDevice('plc-1', (id) => errors.push(id));
    assert.equal(n, 2);
    assert.deepEqual(t.orchestrations.raised, [
      { sessionId: ID, eventName: SESSION_EVENTS.endSession, data: { reason: 'device_deleted' } },
    ]);
    assert.deepEqual(errors, [other.sessionId]);
    assert.deepEqual(t.deleted, ['plc-1']);
  });
});
