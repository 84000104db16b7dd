// The shape of a benchmark and of the figures it reports (ARCHITECTURE.md section 10).

export interface Figure {
  /** One of the names in ARCHITECTURE.md section 10, or a supporting figure. */
  name: string;
  value: number;
  unit: string;
  goal?: string;
  /** The command that reproduces the figure. */
  command: string;
  /** Context: concurrency, sample size, machine notes. */
  note?: string;
}

export interface Benchmark {
  /** `npm run bench -- <name>` runs only this one. */
  name: string;
  description: string;
  /** `args`: the flags after the names (`npm run bench -- peak --quick` gives `['--quick']`). */
  run(log: (line: string) => void, args?: string[]): Promise<Figure[]>;
}

/** Percentile by nearest rank over an unsorted sample. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank];
}
