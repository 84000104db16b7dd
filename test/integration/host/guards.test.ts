// The local stack as guarded as Azure: the system key on /admin and the durable webhooks, the
// state folder's keys, the catch-all's problem documents and the API's body rules (docs/api.md).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LocalRuntime } from '../../../local/runtime';
import { loadOrCreateSealingKey, SEALING_KEY_FILE, SYSTEM_KEY_FILE, writeSystemKey } from '../../../local/stateKeys';

describe('the local stack refuses what Azure refuses', () => {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'relay-broker-guards-'));
  const rt = new LocalRuntime({ disableTimers: true, relay: false, stateDir, logSink: () => {} });
  let admin: string;

  before(async () => {
    await rt.start();
    admin = await rt.token('admin');
  });
  after(async () => {
    await rt.close();
    fs.rmSync(stateDir, { recursive: true, force: true });
  });

  const problem = async (res: Response, status: number, code: string) => {
    assert.equal(res.status, status);
    assert.equal(res.headers.get('content-type'), 'application/problem+json');
    assert.equal(((await res.json()) as { code: string }).code, code);
  };

  it('refuses keyless admin and durable calls with 401, and serves keyed ones', async () => {
    const timer = `${rt.baseUrl}/admin/functions/poolMaintenanceTimer`;
    const webhook = `${rt.baseUrl}/runtime/webhooks/durabletask/instances/`;
    await problem(await fetch(timer, { method: 'POST' }), 401, 'unauthenticated');
    await problem(await fetch(webhook), 401, 'unauthenticated');
    await problem(
      await fetch(`${rt.baseUrl}/runtime/webhooks/durabletask/orchestrators/x`, { method: 'POST' }),
      401,
      'unauthenticated',
    );
    await problem(await fetch(webhook, { headers: { 'x-functions-key': 'guess' } }), 401, 'unauthenticated');
    const key = { 'x-functions-key': rt.systemKey };
    assert.equal((await fetch(timer, { method: 'POST', headers: key })).status, 202);
    assert.equal((await fetch(webhook, { headers: key })).status, 200);
    assert.equal((await fetch(`${webhook}?code=${encodeURIComponent(rt.systemKey)}`)).status, 200);
  });

  it('keeps a fresh system key and a random sealing key in the state folder, each 0600', () => {
    const keyFile = path.join(stateDir, SYSTEM_KEY_FILE);
    assert.equal(fs.readFileSync(keyFile, 'utf8'), rt.systemKey);
    assert.equal(fs.statSync(keyFile).mode & 0o777, 0o600);
    assert.equal(rt.localState().systemKeyFile, keyFile);
    const sealingFile = path.join(stateDir, SEALING_KEY_FILE);
    assert.equal(fs.statSync(sealingFile).mode & 0o777, 0o600);
    const sealing = fs.readFileSync(sealingFile);
    assert.equal(sealing.length, 32);
    assert.equal(rt.settings.SEALING_KEY, sealing.toString('base64'), 'the app seals with the folder key');
    assert.deepEqual(loadOrCreateSealingKey(stateDir), sealing, 'the same folder keeps its key');
    const other = fs.mkdtempSync(path.join(os.tmpdir(), 'relay-broker-guards-'));
    try {
      assert.notDeepEqual(loadOrCreateSealingKey(other), sealing, 'another folder gets another key');
      assert.notEqual(writeSystemKey(other).key, rt.systemKey, 'every run gets another system key');
    } finally {
      fs.rmSync(other, { recursive: true, force: true });
    }
  });

  it('answers unmatched routes and methods with a problem document from the catch-all', async () => {
    await problem(await fetch(`${rt.apiUrl}/no/such/thing`), 404, 'not_found');
    await problem(await fetch(`${rt.apiUrl}/health`, { method: 'DELETE' }), 404, 'not_found');
    await problem(await fetch(`${rt.apiUrl}/sessions`, { method: 'PUT', body: '{}' }), 404, 'not_found');
    assert.equal((await fetch(`${rt.apiUrl}/health`)).status, 200, 'a matched route still wins');
  });

  it('refuses a body on an operation that takes none, and any body over 16 KiB, before the handler runs', async () => {
    const auth = { authorization: `Bearer ${admin}`, 'content-type': 'application/json' };
    await problem(
      await fetch(`${rt.apiUrl}/devices/plc-9`, { method: 'DELETE', headers: auth, body: '{"x":1}' }),
      413,
      'payload_too_large',
    );
    await problem(
      await fetch(`${rt.apiUrl}/devices/plc-9/rotate`, {
        method: 'POST',
        headers: auth,
        body: JSON.stringify({ pad: 'x'.repeat(17 * 1024) }),
      }),
      413,
      'payload_too_large',
    );
    // The CLI's empty object on a body-less POST stays accepted (the device does not exist: 404).
    await problem(
      await fetch(`${rt.apiUrl}/devices/plc-9/rotate`, { method: 'POST', headers: auth, body: '{}' }),
      404,
      'device_not_found',
    );
  });
});
