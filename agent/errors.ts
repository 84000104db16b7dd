// What the CLI can fail with: a title, a detail and a hint of what to do, plus the exit code.
// Every failure reaches the user through one of these; a stack trace never does. Anything else
// thrown becomes text through lib/errors.ts `describeError` (one line, secrets redacted).

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

export interface CliProblem {
  title: string;
  detail: string;
  /** What to do about it. */
  hint?: string;
  /** The HTTP status and stable code when the API answered with a problem. */
  status?: number;
  code?: string;
  correlationId?: string;
  /** The answer's Retry-After header, as sent (seconds or an HTTP date). */
  retryAfter?: string;
}

export class CliError extends Error {
  readonly problem: CliProblem;
  constructor(
    problem: CliProblem,
    readonly exitCode: number = EXIT_FAILURE,
  ) {
    super(`${problem.title}: ${problem.detail}`);
    this.name = 'CliError';
    this.problem = problem;
  }
}

/** A usage error found after commander parsed the line (e.g. a flag combination): exit 2. */
export class UsageError extends CliError {
  constructor(detail: string, hint?: string) {
    super({ title: 'Invalid usage', detail, hint }, EXIT_USAGE);
    this.name = 'UsageError';
  }
}
