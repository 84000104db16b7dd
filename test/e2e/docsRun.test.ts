// Docs that run (issue 19 item 7): every ```sh block of README.md and docs/*.md is executed, file by
// file and in order, with bash against a local stack this test starts (a fresh one per file), the way
// README "Contributing" says: `relay-broker` and `npx relay-broker` are the built CLI, `npm start`
// stands for the stack, `agent` and `connect` stay running in the background (the command returns
// once they are ready), and $API_URL, $TOKEN, $POOL and `<printed port>` are filled in.
// ```sh azure and ```sh norun blocks are counted, not run (test/unit/docs/docs.test.ts checks the
// marking). Reports how many commands ran.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { promises as fs, readFileSync, readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { LocalRuntime } from '../../local/runtime';
import { CLI_PATH } from '../integration/agent/cliProcess';
import { commandsOf, fencesOf } from '../unit/docs/fences';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const DOCS = [
  'README.md',
  ...readdirSync(path.join(ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
];

/** The stand-ins of README "Contributing", sourced before the blocks. */
const PRELUDE = readFileSync(path.join(ROOT, 'test', 'e2e', 'docsRunPrelude.sh'), 'utf8');

interface Run {
  file: string;
  commands: number;
  blocks: number;
}

async function runFile(file: string, blocks: { line: number; body: string }[]): Promise<Run> {
  const stateDir = await fs.mkdtemp(path.join(os.tmpdir(), 'rb-docs-state-'));
  const work = await fs.mkdtemp(path.join(os.tmpdir(), 'rb-docs-cwd-'));
  const bin = path.join(work, '.bin');
  await fs.mkdir(bin);
  // For commands that exec relay-broker themselves (xargs): the built CLI on PATH.
  await fs.writeFile(path.join(bin, 'relay-broker'), `#!/bin/sh\nexec "${process.execPath}" "${CLI_PATH}" "$@"\n`, {
    mode: 0o755,
  });
  const pids = path.join(work, '.pids');
  await fs.writeFile(pids, '');
  const rt = new LocalRuntime({
    stateDir,
    disableTimers: true,
    prefillNamespaces: 3,
    logSink: () => {},
    relayOptions: { createDelayMs: 0 },
  });
  await rt.start();
  let commands = 0;
  try {
    await fs.writeFile(path.join(stateDir, 'local.json'), JSON.stringify(rt.localState()), { mode: 0o600 });
    let script = PRELUDE;
    for (const b of blocks) {
      const cmds = commandsOf(b.body);
      commands += cmds.length;
      script += `\necho "=== ${file}:${b.line}" >&2\n${b.body.replace(/<printed port>/g, '"$PRINTED_PORT"')}\n`;
    }
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      PATH: `${bin}${path.delimiter}${process.env.PATH ?? ''}`,
      RELAY_BROKER_STATE_DIR: stateDir,
      RELAY_BROKER_URL: undefined,
      RELAY_BROKER_TOKEN: undefined,
      RELAY_BROKER_RELAY_CA: undefined,
      NO_COLOR: '1',
      API_URL: rt.apiUrl,
      TOKEN: await rt.token('admin', 'docs-admin'),
      POOL: 'default',
      CLI_JS: CLI_PATH,
      DOCS_TMP: work,
      DOCS_PIDS: pids,
    };
    for (const k of Object.keys(env)) if (env[k] === undefined) delete env[k];
    const result = await new Promise<{ code: number | null; out: string }>((resolve, reject) => {
      const child = spawn('bash', ['-c', script], { cwd: work, env, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (c: Buffer) => (out += c.toString()));
      child.stderr.on('data', (c: Buffer) => (out += c.toString()));
      const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
      child.on('error', reject);
      child.on('close', (code) => {
        clearTimeout(timer);
        resolve({ code, out });
      });
    });
    assert.equal(result.code, 0, `the sh blocks of ${file} failed:\n${result.out.slice(-4000)}`);
  } finally {
    // Background agents and bridges: connect ends its session on SIGINT, the agent stops on SIGTERM.
    const lines = (await fs.readFile(pids, 'utf8')).split('\n').filter(Boolean);
    for (const [what, pid] of lines.map((l) => l.split(' '))) {
      try {
        process.kill(Number(pid), what === 'connect' ? 'SIGINT' : 'SIGTERM');
      } catch {
        // already gone
      }
    }
    for (const [, pid] of lines.map((l) => l.split(' '))) {
      for (let i = 0; i < 100; i++) {
        try {
          process.kill(Number(pid), 0);
        } catch {
          break;
        }
        await new Promise((r) => setTimeout(r, 100));
        if (i === 99) process.kill(Number(pid), 'SIGKILL');
      }
    }
    await rt.close();
    await fs.rm(stateDir, { recursive: true, force: true });
    await fs.rm(work, { recursive: true, force: true });
  }
  return { file, commands, blocks: blocks.length };
}

describe('docs that run: every sh block of README.md and docs/*.md against the local stack', () => {
  const runs: Run[] = [];
  const skipped = { azure: 0, norun: 0 };

  after(() => {
    const total = runs.reduce((n, r) => n + r.commands, 0);
    const summary =
      `docs run: ${total} commands in ${runs.reduce((n, r) => n + r.blocks, 0)} sh blocks of ${runs.length} files ` +
      `(${runs.map((r) => `${r.file} ${r.commands}`).join(', ')}); not run: ${skipped.azure} sh azure, ${skipped.norun} sh norun blocks`;
    console.log(summary);
  });

  for (const file of DOCS) {
    const fences = fencesOf(readFileSync(path.join(ROOT, file), 'utf8'));
    for (const f of fences) if (f.shell === 'azure' || f.shell === 'norun') skipped[f.shell]++;
    const blocks = fences.filter((f) => f.shell === 'run');
    if (blocks.length === 0) continue;
    it(`${file}: ${blocks.length} sh block(s) run and exit 0`, async (t) => {
      const run = await runFile(file, blocks);
      t.diagnostic(`${file}: ${run.commands} commands run`);
      runs.push(run);
      assert.ok(run.commands > 0);
    });
  }
});
