// Benchmark `reliability`: how long until the API's status equals the wire's when something fails.
// Each scenario lives in bench/reliability/<part>.ts and exports one measuring function; this file
// runs them in turn (docs/reliability.md has the table and what each figure means).
import fs from 'node:fs';
import path from 'node:path';
import type { Benchmark, Figure } from '../figures';

/** [file in bench/reliability, exported function]: ending, device presence and restarts, clients. */
const PARTS: Array<[string, string]> = [
  ['end', 'measureEndedToWireDead'],
  ['presence', 'measurePresence'],
  ['client', 'measureClientGone'],
];

type Measure = (log: (line: string) => void) => Promise<Figure[]>;

export const benchmark: Benchmark = {
  name: 'reliability',
  description: 'time until the API says what the wire does: ended, device offline, agent restart, client gone',
  async run(log) {
    const figures: Figure[] = [];
    for (const [file, fn] of PARTS) {
      const compiled = path.join(__dirname, '..', 'reliability', `${file}.js`);
      if (!fs.existsSync(compiled)) {
        log(`${file}: not present in this build (bench/reliability/${file}.ts)`);
        continue;
      }
      // The parts are optional modules of this folder: loaded by path, so a missing one is reported.
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const measure = (require(compiled) as Record<string, Measure | undefined>)[fn];
      if (typeof measure !== 'function') throw new Error(`bench/reliability/${file}.ts does not export ${fn}`);
      log(`-- ${file}`);
      figures.push(...(await measure((line) => log(`  ${line}`))));
    }
    return figures;
  },
};
