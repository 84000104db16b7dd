// "A pool at its cap says so" (issue 15 item 7) on the whole local stack: an exhausted pool below
// POOL_CAP answers pool_exhausted saying it grows; the same pool once it holds POOL_CAP namespaces
// answers that it is at its cap and names the setting; GET /pool, `relay-broker pool` and the
// CLI's hint say the same. Opens to a device without an agent hold their namespace (pending).
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { assertProblem, call } from '../support/http';
import { startLocalStack, type LocalStack } from '../support/localStack';
import { runCli } from '../integration/agent/cliProcess';

const DEVICE = 'cap-dev';

describe('a pool at its cap says so', () => {
  let stateDir: string;
  let stack: LocalStack;
  let admin: string;

  before(async () => {
    stateDir = await fs.mkdtemp(path.join(os.tmpdir(), 'relay-broker-cap-'));
    stack = await startLocalStack(stateDir, {
      prefillNamespaces: 1,
      // The pending opens must keep their namespaces for the whole test.
      settings: { POOL_CAP: '2', POOL_FLOOR: '0', SESSION_READY_TIMEOUT_MS: '300000' },
    });
    admin = await stack.rt.token('admin');
    const r = await call('POST', `${stack.rt.apiUrl}/devices`, { token: admin, body: { deviceId: DEVICE } });
    assert.equal(r.status, 201, r.text);
  });
  after(async () => {
    await stack?.rt.close();
    await fs.rm(stateDir, { recursive: true, force: true });
  });

  const open = () =>
    call('POST', `${stack.rt.apiUrl}/sessions`, { token: admin, body: { deviceId: DEVICE, port: 22 } });
  const pool = async () =>
    (
      await call<{ total: number; growth: { state: string; setting?: string; detail: string; cap: number } }>(
        'GET',
        `${stack.rt.apiUrl}/pool`,
        { token: admin },
      )
    ).body;
  const cliOpen = () =>
    runCli(['connect', DEVICE, '--port', '22'], {
      env: { ...stack.env, RELAY_BROKER_URL: stack.rt.apiUrl, RELAY_BROKER_TOKEN: admin },
      timeoutMs: 60_000,
    });

  it('below the cap: exhausted, and growing', async () => {
    assert.equal((await open()).status, 202, 'the one namespace is held by a pending session');
    const refused = await open();
    assertProblem(refused, 503, 'pool_exhausted');
    const body = refused.body;
    assert.equal(body.poolGrowth, 'growing');
    assert.equal(body.setting, undefined);
    assert.match(String(body.detail), /below its cap \(1 of POOL_CAP 2/);
    const p = await pool();
    assert.equal(p.growth.state, 'growing');
    assert.equal(p.growth.cap, 2);
    const cli = await cliOpen();
    assert.equal(cli.code, 1, cli.stderr);
    assert.match(cli.stderr, /the pool is growing/);
    assert.doesNotMatch(cli.stderr, /POOL_CAP \(/);
  });

  it('at the cap: exhausted, at its cap, naming POOL_CAP', async () => {
    await stack.rt.prefill(1);
    assert.equal((await open()).status, 202, 'the second namespace is held too');
    const refused = await open();
    assertProblem(refused, 503, 'pool_exhausted');
    const body = refused.body;
    assert.equal(body.poolGrowth, 'at_cap');
    assert.equal(body.setting, 'POOL_CAP');
    assert.match(String(body.detail), /at its cap \(2 namespaces, POOL_CAP 2\).*Raise POOL_CAP/);
    assert.doesNotMatch(String(body.detail), /growing/);
    const p = await pool();
    assert.equal(p.total, 2);
    assert.equal(p.growth.state, 'at_cap');
    assert.equal(p.growth.setting, 'POOL_CAP');
    const cli = await cliOpen();
    assert.equal(cli.code, 1, cli.stderr);
    assert.match(cli.stderr, /at its cap: an admin can raise POOL_CAP/);
    assert.doesNotMatch(cli.stderr, /growing/);
    const shown = await runCli(['pool'], { env: { ...stack.env, RELAY_BROKER_TOKEN: admin } });
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, /at_cap: The pool is at its cap .* \(raise POOL_CAP to grow it\)/);
  });
});
