// The docs a newcomer follows hold: every relative link and every repository path they quote exists,
// no doc points outside the repository (a machine path, the steering folder), and every setting the
// code reads is in docs/settings.md; every fenced block of README.md and docs/*.md is marked (a shell
// block runs in test/e2e/docsRun.test.ts unless it says `azure` or `norun`, with the reason).
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { SETTINGS } from '../../../lib/config';
import { fencesOf, markingProblem } from './fences';

const ROOT = path.resolve(__dirname, '..', '..', '..', '..');
const SKIP_DIRS = new Set(['node_modules', 'dist', '.git', '.relay-broker', 'bin', 'obj']);

/** Paths the docs quote that a build, a run or a benchmark makes (not in a clone). */
const GENERATED = [
  /^bench\/results\.json$/,
  /^\.relay-broker\//,
  /^dist\//,
  /\.js$/, // compiled output named by its .js path
  /^infra\/.*\.json$/,
];

function markdownFiles(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    if (SKIP_DIRS.has(name)) continue;
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) markdownFiles(full, out);
    else if (name.endsWith('.md')) out.push(full);
  }
  return out;
}

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens. */
function anchorsOf(markdown: string): Set<string> {
  const anchors = new Set<string>();
  for (const m of markdown.matchAll(/^#{1,6}\s+(.+)$/gm)) {
    anchors.add(
      m[1]
        .trim()
        .toLowerCase()
        .replace(/[^\p{L}\p{N} _-]/gu, '')
        .replace(/ /g, '-'),
    );
  }
  return anchors;
}

const docs = markdownFiles(ROOT);
const text = new Map(docs.map((f) => [f, readFileSync(f, 'utf8')]));
const rel = (f: string): string => path.relative(ROOT, f);

describe('docs', () => {
  it('finds the docs it checks', () => {
    for (const must of ['README.md', 'docs/api.md', 'docs/cli.md', 'docs/settings.md'])
      assert.ok(docs.map(rel).includes(must), `${must} is checked`);
  });

  it('every relative link resolves, anchors included', (t) => {
    const broken: string[] = [];
    let checked = 0;
    for (const [file, md] of text) {
      for (const m of md.matchAll(/\[[^\]]*\]\(([^)\s]+)\)/g)) {
        const target = m[1];
        if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // https:, mailto:
        checked++;
        const [p, anchor] = target.split('#');
        const resolved = p ? path.resolve(path.dirname(file), p) : file;
        if (!existsSync(resolved)) {
          broken.push(`${rel(file)}: ${target}`);
          continue;
        }
        if (anchor && resolved.endsWith('.md') && !anchorsOf(readFileSync(resolved, 'utf8')).has(anchor))
          broken.push(`${rel(file)}: ${target} (no such heading)`);
      }
    }
    t.diagnostic(`${checked} relative links checked in ${docs.length} files`);
    assert.deepEqual(broken, []);
  });

  it('every repository path a doc quotes exists (or is made by a build or a run)', (t) => {
    const missing: string[] = [];
    let checked = 0;
    for (const [file, md] of text) {
      for (const m of md.matchAll(
        /`((?:\.{1,2}\/)?(?:[A-Za-z0-9_.-]+\/)+[A-Za-z0-9_.-]+\.(?:ts|md|json|bicep|js|mjs|sh|cs|csproj))`/g,
      )) {
        const quoted = m[1];
        checked++;
        if (GENERATED.some((g) => g.test(quoted))) continue;
        const candidates = [path.resolve(path.dirname(file), quoted), path.resolve(ROOT, quoted)];
        if (!candidates.some((c) => existsSync(c))) missing.push(`${rel(file)}: ${quoted}`);
      }
    }
    t.diagnostic(`${checked} quoted paths checked`);
    assert.deepEqual(missing, []);
  });

  it('no doc points outside the repository', () => {
    const outside: string[] = [];
    for (const [file, md] of text) {
      for (const pattern of [/\/work\//, /\/root\//, /\.\.\/shared\//, /ARCHITECTURE\.md/, /CONVENTIONS\.md/])
        if (pattern.test(md)) outside.push(`${rel(file)}: ${pattern.source}`);
    }
    assert.deepEqual(outside, []);
  });

  it('every fenced block in README.md and docs/*.md names its language; shell blocks say whether they run', (t) => {
    const problems: string[] = [];
    const counts = { run: 0, azure: 0, norun: 0, other: 0 };
    for (const [file, md] of text) {
      const name = rel(file);
      if (name !== 'README.md' && !/^docs\/[^/]+\.md$/.test(name)) continue;
      for (const fence of fencesOf(md)) {
        const problem = markingProblem(fence);
        if (problem) problems.push(`${name}:${fence.line}: ${problem}`);
        counts[fence.shell ?? 'other']++;
      }
    }
    t.diagnostic(
      `fenced blocks: ${counts.run} sh (run by test/e2e/docsRun.test.ts), ${counts.azure} sh azure, ${counts.norun} sh norun, ${counts.other} other`,
    );
    assert.deepEqual(problems, []);
    assert.ok(counts.run > 0, 'some shell blocks run');
  });

  it('docs/settings.md lists every setting the server reads', () => {
    const settingsDoc = readFileSync(path.join(ROOT, 'docs', 'settings.md'), 'utf8');
    const missing = Object.keys(SETTINGS).filter((name) => !settingsDoc.includes(`| \`${name}\` |`));
    assert.deepEqual(missing, [], 'add them to docs/settings.md');
  });
});
