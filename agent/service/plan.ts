// A service install/uninstall as data: the steps (directories, files, commands) that `--dry-run`
// prints and that run otherwise, so what a device gets is reviewed and unit-tested as one list.
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { describeError } from '../../lib/errors';
import { CliError } from '../errors';

export type Step =
  | { kind: 'mkdir'; path: string; mode?: number }
  | { kind: 'copy'; from: string; to: string; mode?: number }
  /** `secret`: the content holds a credential; a dry run shows its path, not its content. */
  | { kind: 'write'; path: string; content: string; mode?: number; secret?: boolean }
  | { kind: 'remove'; path: string; recursive?: boolean }
  /** `mayFail`: a failure is reported and the plan goes on (e.g. stopping a service that is not running). */
  | { kind: 'run'; command: string[]; mayFail?: boolean; why: string };

export type Platform = 'linux' | 'windows';

export function currentPlatform(): Platform | undefined {
  if (process.platform === 'linux') return 'linux';
  if (process.platform === 'win32') return 'windows';
  return undefined;
}

function quote(arg: string): string {
  return /^[\w@%+=:,./\\-]+$/.test(arg) ? arg : `"${arg.replace(/(["\\$`])/g, '\\$1')}"`;
}

/** A Windows command as a person pastes it into cmd or PowerShell: quotes around spaces and parentheses. */
function quoteWindows(arg: string): string {
  return arg.length > 0 && !/[\s"()&|<>^;]/.test(arg) ? arg : `"${arg.replace(/"/g, '\\"')}"`;
}

/** One line per step, as a person reviews it (and as the docs show it). */
export function describeStep(step: Step): string {
  const mode = (m?: number): string => (m === undefined ? '' : ` (mode ${m.toString(8).padStart(4, '0')})`);
  switch (step.kind) {
    case 'mkdir':
      return `create directory ${step.path}${mode(step.mode)}`;
    case 'copy':
      return `copy ${step.from} -> ${step.to}${mode(step.mode)}`;
    case 'write':
      return step.secret
        ? `write ${step.path}${mode(step.mode)} (holds a credential: content not shown)`
        : `write ${step.path}${mode(step.mode)}:\n${step.content.replace(/^/gm, '    ')}`;
    case 'remove':
      return `remove ${step.path}${step.recursive ? ' (and everything in it)' : ''}`;
    case 'run':
      return `run ${step.command.map(/\.exe$/i.test(step.command[0] ?? '') ? quoteWindows : quote).join(' ')}    # ${step.why}`;
  }
}

export interface StepResult {
  step: Step;
  ok: boolean;
  detail?: string;
}

function runCommand(command: string[]): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile(command[0], command.slice(1), { windowsHide: true, timeout: 120_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, output: `${stdout}${stderr}`.trim() });
    });
  });
}

/** Runs the steps in order; stops at the first failure that may not fail (and says which). */
export async function executePlan(steps: Step[], onStep: (r: StepResult) => void): Promise<void> {
  for (const step of steps) {
    try {
      switch (step.kind) {
        case 'mkdir':
          await fs.mkdir(step.path, { recursive: true, mode: step.mode });
          if (step.mode !== undefined && process.platform !== 'win32') await fs.chmod(step.path, step.mode);
          break;
        case 'copy':
          await fs.mkdir(path.dirname(step.to), { recursive: true });
          await fs.copyFile(step.from, step.to);
          if (step.mode !== undefined && process.platform !== 'win32') await fs.chmod(step.to, step.mode);
          break;
        case 'write':
          // Created with its final mode: a credential is never readable by others, not even briefly.
          await fs.writeFile(step.path, step.content, { mode: step.mode ?? 0o644 });
          if (step.mode !== undefined && process.platform !== 'win32') await fs.chmod(step.path, step.mode);
          break;
        case 'remove':
          await fs.rm(step.path, { recursive: step.recursive ?? false, force: true });
          break;
        case 'run': {
          const r = await runCommand(step.command);
          if (r.code !== 0) {
            if (step.mayFail) {
              onStep({ step, ok: false, detail: `exit ${r.code} (ignored): ${r.output.split('\n')[0] ?? ''}` });
              continue;
            }
            throw new Error(`exit ${r.code}: ${r.output}`);
          }
          break;
        }
      }
      onStep({ step, ok: true });
    } catch (err) {
      throw new CliError({
        title: 'The service step failed',
        detail: `${describeStep(step).split('\n')[0]}: ${describeError(err)}`,
        hint: 'Run it as root (Linux) or from an elevated prompt (Windows); `--dry-run` prints every step.',
      });
    }
  }
}

/** The output of a status command (never fails: a missing service is an answer). */
export async function capture(command: string[]): Promise<{ code: number; output: string }> {
  try {
    return await runCommand(command);
  } catch (err) {
    return { code: 127, output: describeError(err) };
  }
}
