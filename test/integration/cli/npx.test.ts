// `npx relay-broker` right after `npm install` in a clone. npm resolves the project's own bin through
// a link in npx's cache and runs the project's `prepare` (the build) first; `npm install` runs the
// same `prepare`, so the CLI is built before anyone calls it. The bin file is a committed launcher,
// so a link made before a build never points at a missing file.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';

const run = promisify(execFile);
const REPO = path.resolve(__dirname, '..', '..', '..', '..');

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

async function npx(cwd: string, cache: string, args: string[]): Promise<Result> {
  try {
    const r = await run('npx', ['--offline', 'relay-broker', ...args], {
      cwd,
      timeout: 120_000,
      // A cache of the test's own: the developer's npx cache must neither help nor hurt.
      // No lifecycle scripts: npx would run the project's `prepare` (a build) while other tests read
      // dist/; the build is `npm install`'s job, and this test is about resolving the bin.
      env: {
        ...process.env,
        npm_config_cache: cache,
        npm_config_update_notifier: 'false',
        npm_config_ignore_scripts: 'true',
      },
    });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

describe('npx relay-broker in a clone', () => {
  let tmp: string;
  before(async () => {
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'rb-npx-'));
  });
  after(async () => {
    await fs.rm(tmp, { recursive: true, force: true });
  });

  it('runs the CLI from the project folder with an empty npx cache', async () => {
    const pkg = JSON.parse(await fs.readFile(path.join(REPO, 'package.json'), 'utf8')) as { version: string };
    const r = await npx(REPO, path.join(tmp, 'cache-repo'), ['--version']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), pkg.version);
  });

  it('the launcher names the fix, without a stack trace, when the CLI is not built', async () => {
    const clone = path.join(tmp, 'clone');
    await fs.mkdir(path.join(clone, 'bin'), { recursive: true });
    await fs.copyFile(path.join(REPO, 'bin', 'relay-broker.js'), path.join(clone, 'bin', 'relay-broker.js'));
    const r = await run(process.execPath, [path.join(clone, 'bin', 'relay-broker.js'), '--version'], {
      cwd: clone,
    }).then(
      () => ({ code: 0, stderr: '' }),
      (err: { code?: number; stderr?: string }) => ({ code: err.code ?? -1, stderr: err.stderr ?? '' }),
    );
    assert.equal(r.code, 2);
    assert.match(r.stderr, /not built/);
    assert.match(r.stderr, /npm install|npm run build/);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  });
});
