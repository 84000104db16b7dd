import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { TableClient } from '@azure/data-tables';
import { type Azurite, startAzurite } from '../../../local/azurite';
import { ALL_DEVICES, authorizeSessionOpen, GrantStore, GRANTS_TABLE } from '../../../lib/auth/grantStore';
import type { Principal } from '../../../lib/auth/principal';
import { ForbiddenError, toProblem, ValidationError } from '../../../lib/errors';

describe('GrantStore on Azurite', () => {
  let azurite: Azurite;
  let grants: GrantStore;
  let table: TableClient;

  before(async () => {
    azurite = await startAzurite();
    table = TableClient.fromConnectionString(azurite.connectionString, GRANTS_TABLE, { allowInsecureConnection: true });
    grants = new GrantStore(table);
    await grants.ensureTable();
    await grants.ensureTable(); // a second start finds the table and carries on
  });
  after(async () => {
    await azurite.close();
  });

  it('puts a grant once: a second put keeps the first createdAt and createdBy', async () => {
    const first = await grants.put('op-1', 'dev-a', 'admin-1', new Date('2026-01-01T00:00:00Z'));
    assert.deepEqual(first, {
      created: true,
      grant: { principalId: 'op-1', deviceId: 'dev-a', createdAt: '2026-01-01T00:00:00.000Z', createdBy: 'admin-1' },
    });
    const again = await grants.put('op-1', 'dev-a', 'admin-2', new Date('2026-02-01T00:00:00Z'));
    assert.deepEqual(again, { created: false, grant: first.grant });
  });

  it('isGranted is true for the exact device only, or for any device through *', async () => {
    await grants.put('op-2', 'dev-b', 'admin-1');
    assert.equal(await grants.isGranted('op-2', 'dev-b'), true);
    assert.equal(await grants.isGranted('op-2', 'dev-c'), false);
    assert.equal(await grants.isGranted('someone-else', 'dev-b'), false);
    await grants.put('op-2', ALL_DEVICES, 'admin-1');
    assert.equal(await grants.isGranted('op-2', 'dev-c'), true);
  });

  it('deletes a grant once: the second delete reports it was not there', async () => {
    await grants.put('op-3', 'dev-d', 'admin-1');
    assert.equal(await grants.delete('op-3', 'dev-d'), true);
    assert.equal(await grants.delete('op-3', 'dev-d'), false);
    assert.equal(await grants.isGranted('op-3', 'dev-d'), false);
  });

  it('lists the grants of one principal, or all of them', async () => {
    await grants.put('op-4', 'dev-e', 'admin-1');
    await grants.put('op-4', 'dev-f', 'admin-1');
    const mine = await grants.list({ principalId: 'op-4' });
    assert.deepEqual(
      mine.map((g) => g.deviceId),
      ['dev-e', 'dev-f'],
    );
    const all = await grants.list();
    assert.ok(all.some((g) => g.principalId === 'op-1') && all.some((g) => g.principalId === 'op-4'));
    assert.equal((await grants.list({ limit: 2 })).length, 2);
  });

  it('a principal id made to look like a filter matches nothing (no OData injection)', async () => {
    await grants.put('op-5', 'dev-g', 'admin-1');
    // Quotes are not valid principal ids at all...
    await assert.rejects(grants.list({ principalId: "x' or PartitionKey ne 'y" }), ValidationError);
    // ...and valid ids that contain OData words are just values.
    assert.deepEqual(await grants.list({ principalId: 'or.PartitionKey.ne' }), []);
  });

  const badIds: Array<{ name: string; principalId: string; deviceId: string; path: string }> = [
    { name: 'a slash in the principal id', principalId: 'a/b', deviceId: 'dev-a', path: 'principalId' },
    { name: 'a # in the principal id', principalId: 'a#b', deviceId: 'dev-a', path: 'principalId' },
    { name: 'an empty principal id', principalId: '', deviceId: 'dev-a', path: 'principalId' },
    { name: 'a principal id of 129 characters', principalId: 'p'.repeat(129), deviceId: 'dev-a', path: 'principalId' },
    { name: 'an uppercase device id', principalId: 'op', deviceId: 'Dev-A', path: 'deviceId' },
    { name: 'a double hyphen', principalId: 'op', deviceId: 'dev--a', path: 'deviceId' },
    { name: 'a leading hyphen', principalId: 'op', deviceId: '-dev', path: 'deviceId' },
    { name: 'a device id of 2 characters', principalId: 'op', deviceId: 'ab', path: 'deviceId' },
    { name: 'a device id of 60 characters', principalId: 'op', deviceId: 'd'.repeat(60), path: 'deviceId' },
    { name: 'a question mark in the device id', principalId: 'op', deviceId: 'dev?x', path: 'deviceId' },
  ];
  for (const c of badIds) {
    it(`refuses ${c.name} with 400 before touching the table`, async () => {
      await assert.rejects(grants.put(c.principalId, c.deviceId, 'admin-1'), (err: unknown) => {
        assert.ok(err instanceof ValidationError);
        assert.equal(toProblem(err).status, 400);
        assert.deepEqual(
          err.fieldErrors.map((f) => f.path),
          [c.path],
        );
        return true;
      });
    });
  }

  it('accepts ids at the edges of the rules', async () => {
    const longest = 'p'.repeat(128);
    const device = `a${'-b'.repeat(29)}`; // 59 characters
    assert.equal(device.length, 59);
    assert.equal((await grants.put(longest, device, 'admin-1')).created, true);
    assert.equal(await grants.isGranted(longest, device), true);
    assert.equal((await grants.put('alice@contoso.com', 'abc', 'admin-1')).created, true);
  });

  describe('authorizeSessionOpen', () => {
    const admin: Principal = { id: 'admin-9', roles: ['admin'], via: 'jwt' };
    const operator: Principal = { id: 'op-9', roles: ['operator'], via: 'jwt' };
    const nobody: Principal = { id: 'nobody', roles: [], via: 'jwt' };

    before(async () => {
      await grants.put('op-9', 'dev-granted', 'admin-1');
    });

    it('lets an admin open a session to any device without a grant', async () => {
      await authorizeSessionOpen(admin, 'dev-anything', grants);
    });

    it('lets an operator open a session to a granted device', async () => {
      await authorizeSessionOpen(operator, 'dev-granted', grants);
    });

    it('refuses an operator an ungranted device with 403 device_not_granted', async () => {
      await assert.rejects(authorizeSessionOpen(operator, 'dev-other', grants), (err: unknown) => {
        assert.ok(err instanceof ForbiddenError);
        assert.equal(err.code, 'device_not_granted');
        assert.equal(toProblem(err).status, 403);
        return true;
      });
    });

    it('refuses a principal without a role even if a grant exists for it', async () => {
      await grants.put('nobody', 'dev-granted', 'admin-1');
      await assert.rejects(authorizeSessionOpen(nobody, 'dev-granted', grants), (err: unknown) => {
        assert.ok(err instanceof ForbiddenError);
        assert.equal(err.code, 'role_required');
        return true;
      });
    });
  });
});
