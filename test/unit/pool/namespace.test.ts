// The namespace state machine, row by row: every allowed and every refused transition, and the
// entity schema's invariants.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidTransitionError } from '../../../lib/errors';
import {
  assertTransition,
  canTransition,
  NAMESPACE_STATES,
  NAMESPACE_TRANSITIONS,
  namespaceFromEntity,
  namespaceToEntity,
  type Namespace,
  type NamespaceState,
} from '../../../lib/pool/namespace';

// The expected table, written out independently of the module so a change to either is caught.
const ALLOWED: ReadonlyArray<[NamespaceState, NamespaceState]> = [
  ['creating', 'creating'],
  ['creating', 'available'],
  ['creating', 'quarantined'],
  ['creating', 'deleting'],
  ['available', 'leased'],
  ['available', 'recycling'],
  ['available', 'deleting'],
  ['leased', 'recycling'],
  ['recycling', 'recycling'],
  ['recycling', 'available'],
  ['recycling', 'quarantined'],
  ['quarantined', 'recycling'],
  ['quarantined', 'deleting'],
];
const isAllowed = (from: NamespaceState, to: NamespaceState) => ALLOWED.some(([f, t]) => f === from && t === to);
const ALL_PAIRS = NAMESPACE_STATES.flatMap((from) => NAMESPACE_STATES.map((to) => [from, to] as const));

describe('namespace state machine', () => {
  it('has exactly the expected table (36 pairs, 13 allowed)', () => {
    assert.equal(ALL_PAIRS.length, 36);
    const fromTable = NAMESPACE_STATES.flatMap((from) =>
      NAMESPACE_TRANSITIONS[from].map((to) => `${from}->${to}`),
    ).sort();
    assert.deepEqual(fromTable, ALLOWED.map(([f, t]) => `${f}->${t}`).sort());
  });

  for (const [from, to] of ALL_PAIRS.filter(([f, t]) => isAllowed(f, t))) {
    it(`allows ${from} → ${to}`, () => {
      assert.equal(canTransition(from, to), true);
      assert.doesNotThrow(() => assertTransition(from, to, 'rbk-test-1'));
    });
  }

  for (const [from, to] of ALL_PAIRS.filter(([f, t]) => !isAllowed(f, t))) {
    it(`refuses ${from} → ${to} with invalid_transition`, () => {
      assert.equal(canTransition(from, to), false);
      assert.throws(
        () => assertTransition(from, to, 'rbk-test-1'),
        (err: unknown) =>
          err instanceof InvalidTransitionError &&
          err.code === 'invalid_transition' &&
          err.message.includes(`${from} to ${to}`),
      );
    });
  }

  it('deleting is terminal', () => {
    assert.deepEqual(NAMESPACE_TRANSITIONS.deleting, []);
  });

  it('never lets leased or quarantined go straight back to available', () => {
    assert.equal(canTransition('leased', 'available'), false);
    assert.equal(canTransition('quarantined', 'available'), false);
  });
});

describe('namespace entity', () => {
  const t0 = new Date('2026-01-01T10:00:00.000Z');
  const leased: Namespace = {
    pool: 'default',
    name: 'rbk-abc123',
    state: 'leased',
    subscriptionId: 'sub-1',
    resourceGroup: 'rg',
    location: 'westeurope',
    endpoint: 'https://rbk-abc123.servicebus.windows.net:443/',
    hybridConnection: 'tunnel',
    sessionId: 's-1',
    leasedAt: t0,
    leaseExpiresAt: new Date(t0.getTime() + 3_600_000),
    lastLeasedAt: t0,
    generation: 3,
    createdAt: t0,
    stateChangedAt: t0,
    recycleFailures: 0,
  };

  it('round-trips through the table entity', () => {
    const entity = namespaceToEntity(leased);
    assert.equal(entity.partitionKey, 'default');
    assert.equal(entity.rowKey, 'rbk-abc123');
    assert.equal(entity.leasedAt, '2026-01-01T10:00:00.000Z');
    assert.deepEqual(namespaceFromEntity({ ...entity, etag: 'W/"x"', timestamp: 'ignored' }), {
      ...leased,
      etag: 'W/"x"',
    });
  });

  it('leaves cleared fields out of the entity (a Replace then removes them)', () => {
    const entity = namespaceToEntity({
      ...leased,
      state: 'recycling',
      sessionId: undefined,
      leasedAt: undefined,
      leaseExpiresAt: undefined,
    });
    assert.equal('sessionId' in entity, false);
    assert.equal('leasedAt' in entity, false);
  });

  it('refuses an unknown state read back', () => {
    assert.throws(() => namespaceFromEntity({ ...namespaceToEntity(leased), state: 'borrowed' }));
  });

  it('refuses a leased row without its session', () => {
    const { sessionId: _drop, ...entity } = namespaceToEntity(leased);
    assert.throws(() => namespaceFromEntity(entity), /sessionId/);
  });

  it('refuses an available row without endpoint', () => {
    assert.throws(
      () => namespaceToEntity({ ...leased, state: 'available', sessionId: undefined, endpoint: undefined }),
      /endpoint/,
    );
  });

  it('refuses a name that is not a valid namespace name', () => {
    assert.throws(() => namespaceToEntity({ ...leased, name: 'Bad_Name' }));
    assert.throws(() => namespaceToEntity({ ...leased, name: 'rbk-' }));
  });
});
