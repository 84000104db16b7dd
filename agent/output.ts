// How the CLI speaks: human lines by default, JSON with --json (one document for one-shot commands,
// one object per line for the events of long-running ones), progress on stderr while something waits.
import type { CliProblem } from './errors';

export interface OutputStreams {
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
}

export interface Progress {
  /** Stops the progress display; the final line (human mode) is left as is or replaced by `finalLine`. */
  stop(finalLine?: string): void;
  readonly elapsedMs: number;
}

export type EventFields = Record<string, unknown>;

export class Output {
  readonly json: boolean;
  private readonly color: boolean;
  constructor(
    options: { json: boolean },
    private readonly streams: OutputStreams = { stdout: process.stdout, stderr: process.stderr },
  ) {
    this.json = options.json;
    this.color = Boolean(streams.stderr.isTTY) && !process.env.NO_COLOR;
  }

  /** A line of the human output (stdout); nothing in JSON mode. */
  line(text = ''): void {
    if (!this.json) this.streams.stdout.write(`${text}\n`);
  }

  /** A side remark on stderr, dimmed on a terminal (where the config came from, next steps). */
  note(text: string): void {
    this.streams.stderr.write(this.color ? `\x1b[2m${text}\x1b[0m\n` : `${text}\n`);
  }

  /** A warning on stderr in both modes (it is not part of the result). */
  warn(text: string): void {
    this.streams.stderr.write(this.color ? `\x1b[33mwarning:\x1b[0m ${text}\n` : `warning: ${text}\n`);
  }

  /** One event of a long-running command: a JSON line, or a time-stamped human line. */
  event(name: string, fields: EventFields, human: string): void {
    const time = new Date().toISOString();
    if (this.json) this.streams.stdout.write(`${JSON.stringify({ time, event: name, ...fields })}\n`);
    else this.streams.stdout.write(`${time.slice(11, 23)} ${human}\n`);
  }

  /** The result of a one-shot command: the JSON document, or the human lines. */
  result(document: unknown, human: () => string[] | string): void {
    if (this.json) {
      this.streams.stdout.write(`${JSON.stringify(document, null, 2)}\n`);
      return;
    }
    const lines = human();
    for (const l of Array.isArray(lines) ? lines : [lines]) this.streams.stdout.write(`${l}\n`);
  }

  /** The failure of the command: stderr for humans; a `{ "error": ... }` document on stdout for scripts. */
  problem(problem: CliProblem): void {
    if (this.json) {
      this.streams.stdout.write(`${JSON.stringify({ error: problem })}\n`);
      return;
    }
    const red = (s: string): string => (this.color ? `\x1b[31m${s}\x1b[0m` : s);
    const lines = [`${red('error:')} ${problem.title}`];
    if (problem.detail) lines.push(`  ${problem.detail}`);
    if (problem.correlationId) lines.push(`  correlation id: ${problem.correlationId}`);
    if (problem.hint) lines.push(`  hint: ${problem.hint}`);
    this.streams.stderr.write(`${lines.join('\n')}\n`);
  }

  /**
   * "label… 1.2 s" while something waits: rewritten in place on a terminal, one line a second
   * otherwise, and a `progress` event a second in JSON mode.
   */
  progress(label: string, fields: EventFields = {}): Progress {
    const started = Date.now();
    const tty = !this.json && Boolean(this.streams.stderr.isTTY);
    const elapsed = (): number => Date.now() - started;
    const text = (): string => `${label}… ${(elapsed() / 1000).toFixed(1)} s`;
    let lastWholeSecond = -1;
    const tick = (): void => {
      if (tty) {
        this.streams.stderr.write(`\r\x1b[2K${text()}`);
        return;
      }
      const second = Math.floor(elapsed() / 1000);
      if (second === lastWholeSecond) return;
      lastWholeSecond = second;
      if (this.json)
        this.streams.stdout.write(
          `${JSON.stringify({ time: new Date().toISOString(), event: 'progress', label, elapsedMs: elapsed(), ...fields })}\n`,
        );
      else this.streams.stderr.write(`${text()}\n`);
    };
    tick();
    const timer = setInterval(tick, tty ? 100 : 250);
    let stopped = false;
    return {
      get elapsedMs() {
        return elapsed();
      },
      stop: (finalLine?: string) => {
        if (stopped) return;
        stopped = true;
        clearInterval(timer);
        if (tty) this.streams.stderr.write(`\r\x1b[2K${finalLine ?? text()}\n`);
        else if (finalLine && !this.json) this.streams.stderr.write(`${finalLine}\n`);
      },
    };
  }
}

/** Fixed-width columns for list output. */
export function table(headers: string[], rows: string[][]): string[] {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const fmt = (cells: string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  return [fmt(headers), ...rows.map(fmt)];
}
