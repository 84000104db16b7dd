// `npm run bench [-- name ...]`: runs the benchmarks in bench/benchmarks/, prints a table and
// merges the figures into bench/results.json (git-ignored; docs/benchmarks.md quotes them).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Benchmark, Figure } from './figures';

const ROOT = path.resolve(__dirname, '..', '..');
const RESULTS = path.join(ROOT, 'bench', 'results.json');

function loadBenchmarks(): Benchmark[] {
  const dir = path.join(__dirname, 'benchmarks');
  if (!fs.existsSync(dir)) return [];
  return (
    fs
      .readdirSync(dir)
      .filter((f) => f.endsWith('.js'))
      .sort()
      // Every compiled file in bench/benchmarks/ registers one benchmark: a dynamic list, so require.
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      .map((f) => (require(path.join(dir, f)) as { benchmark: Benchmark }).benchmark)
      .filter(Boolean)
  );
}

async function main(): Promise<void> {
  // Names first, then flags for the benchmarks (`peak --quick --peak 200`): a flag and its value
  // are not names.
  const argv = process.argv.slice(2);
  const firstFlag = argv.findIndex((a) => a.startsWith('--'));
  const wanted = firstFlag < 0 ? argv : argv.slice(0, firstFlag);
  const flags = firstFlag < 0 ? [] : argv.slice(firstFlag);
  const all = loadBenchmarks();
  const unknown = wanted.filter((w) => !all.some((b) => b.name === w));
  if (unknown.length) {
    console.error(`unknown benchmark(s): ${unknown.join(', ')}; known: ${all.map((b) => b.name).join(', ')}`);
    process.exit(2);
  }
  const selected = wanted.length ? all.filter((b) => wanted.includes(b.name)) : all;
  const previous = fs.existsSync(RESULTS)
    ? (JSON.parse(fs.readFileSync(RESULTS, 'utf8')) as Record<string, unknown>)
    : {};
  const results: Record<string, unknown> = { ...previous };
  const figures: Figure[] = [];
  for (const b of selected) {
    console.log(`\n== ${b.name}: ${b.description}`);
    const started = Date.now();
    const out = await b.run((line) => console.log(`   ${line}`), flags);
    console.log(`   (${((Date.now() - started) / 1000).toFixed(1)} s)`);
    for (const f of out) {
      figures.push(f);
      results[f.name] = {
        value: f.value,
        unit: f.unit,
        goal: f.goal,
        command: f.command,
        note: f.note,
        measuredAt: new Date().toISOString(),
      };
    }
  }
  results._machine = {
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model,
    memGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
  };
  fs.writeFileSync(RESULTS, JSON.stringify(results, null, 2) + '\n');
  const rows = figures.map((f) => [f.name, fmt(f.value), f.unit, f.goal ?? '', f.command]);
  const widths = [0, 1, 2, 3].map((i) => Math.max(...rows.map((r) => r[i].length), 6));
  console.log(
    '\nfigure'.padEnd(widths[0] + 1) + ' ' + 'value'.padStart(widths[1]) + ' unit'.padEnd(widths[2] + 1) + '  goal',
  );
  for (const r of rows)
    console.log(`${r[0].padEnd(widths[0])} ${r[1].padStart(widths[1])} ${r[2].padEnd(widths[2])}  ${r[3]}`);
  console.log(`\nwritten to ${path.relative(process.cwd(), RESULTS)}`);
}

function fmt(v: number): string {
  return Number.isInteger(v) ? String(v) : v.toFixed(Math.abs(v) < 10 ? 3 : 1);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
