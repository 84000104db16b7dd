// Admin commands on the whole local stack, through the built binary: `grants list|add|rm` (an admin
// grants a device to an operator, the operator's next open is judged by that grant, the grant is taken
// back, mistakes are named), and the next step `devices add` prints, with the path as given.
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { LocalRuntime } from '../../local/runtime';
import { startLocalStack } from '../support/localStack';
import { runCli } from '../integration/agent/cliProcess';
import { assertProblem, call } from '../support/http';

describe('relay-broker admin commands (built binary on the local stack)', () => {
  let stateDir: string;
  let rt: LocalRuntime;
  let env: Record<string, string>;

  before(async () => {
    stateDir = await fs.mkdtemp(path.join(os.tmpdir(), 'rb-grants-e2e-'));
    ({ rt, env } = await startLocalStack(stateDir, { prefillNamespaces: 0 }));
  });

  after(async () => {
    await rt?.close();
    await fs.rm(stateDir, { recursive: true, force: true });
  });

  const openAs = async (token: string): Promise<Awaited<ReturnType<typeof call>>> =>
    call('POST', `${rt.apiUrl}/sessions`, { token, body: { deviceId: 'grant-dev-1', port: 22 } });

  it('an added grant lets the operator past the grant check; a removed one does not', async () => {
    const alice = await rt.token('operator', 'alice');
    assertProblem(await openAs(alice), 403, 'device_not_granted');

    const empty = await runCli(['grants', 'list'], { env });
    assert.equal(empty.code, 0, empty.stderr);
    assert.match(empty.stdout, /no grants/);

    const add = await runCli(['grants', 'add', 'alice', 'grant-dev-1'], { env });
    assert.equal(add.code, 0, add.stderr);
    assert.match(add.stdout, /granted grant-dev-1 to alice/);
    const again = await runCli(['--json', 'grants', 'add', 'alice', 'grant-dev-1'], { env });
    assert.equal(again.code, 0, again.stderr);
    assert.equal((JSON.parse(again.stdout) as { created: boolean }).created, false);
    const all = await runCli(['grants', 'add', 'bob', '*'], { env });
    assert.equal(all.code, 0, all.stderr);
    assert.match(all.stdout, /granted every device to bob/);

    // Past the grant check, the device lookup answers: the device does not exist.
    assertProblem(await openAs(alice), 404, 'device_not_found');

    const listed = await runCli(['--json', 'grants', 'list', '--principal', 'alice'], { env });
    assert.equal(listed.code, 0, listed.stderr);
    const grants = (JSON.parse(listed.stdout) as { grants: Array<{ principalId: string; deviceId: string }> }).grants;
    assert.deepEqual(
      grants.map((g) => `${g.principalId}/${g.deviceId}`),
      ['alice/grant-dev-1'],
    );
    const table = await runCli(['grants', 'list'], { env });
    assert.match(table.stdout, /PRINCIPAL\s+DEVICE/);
    assert.match(table.stdout, /bob\s+\*/);

    const rm = await runCli(['grants', 'rm', 'alice', 'grant-dev-1'], { env });
    assert.equal(rm.code, 0, rm.stderr);
    assertProblem(await openAs(alice), 403, 'device_not_granted');

    const rmAgain = await runCli(['grants', 'rm', 'alice', 'grant-dev-1'], { env });
    assert.equal(rmAgain.code, 1);
    assert.match(rmAgain.stderr, /grant/i);
    assert.doesNotMatch(rmAgain.stderr, /\n\s+at /);
  });

  it('refuses a malformed principal or device id before any call (exit 2)', async () => {
    const badPrincipal = await runCli(['grants', 'add', 'not a principal!', 'grant-dev-1'], { env });
    assert.equal(badPrincipal.code, 2);
    assert.match(badPrincipal.stderr, /principal id/);
    const badDevice = await runCli(['grants', 'add', 'alice', 'Bad_Device'], { env });
    assert.equal(badDevice.code, 2);
  });

  it('an operator cannot manage grants (403, role named)', async () => {
    const op = await rt.token('operator', 'mallory');
    const r = await runCli(['grants', 'add', 'mallory', '*'], {
      env: { ...env, RELAY_BROKER_URL: rt.apiUrl, RELAY_BROKER_TOKEN: op },
    });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /admin/i);
  });

  it('devices add --out into a folder suggests that path, and help shows readable defaults', async () => {
    const out = path.join('enrollments', 'site-a', 'hint-dev-1.json');
    await fs.mkdir(path.join(stateDir, 'enrollments', 'site-a'), { recursive: true });
    const add = await runCli(['devices', 'add', 'hint-dev-1', '--out', out], { env, cwd: stateDir });
    assert.equal(add.code, 0, add.stderr);
    assert.ok(add.stderr.includes(`--enrollment ${out} `) || add.stdout.includes(`--enrollment ${out} `), add.stderr);
    const help = await runCli(['connect', '--help'], { env });
    assert.match(help.stdout, /default: 127\.0\.0\.1:0/);
    assert.doesNotMatch(help.stdout, /\{"host"/);
  });
});
