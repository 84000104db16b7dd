// `relay-broker agent`: runs the device agent until Ctrl-C/SIGTERM, then closes every session and exits 0.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { describeError } from '../../lib/errors';
import type { Command } from 'commander';
import { resolveRelayCa } from '../config';
import { CliError, EXIT_OK, UsageError } from '../errors';
import { parseAllowList, parsePositiveInt } from '../options';
import type { Output } from '../output';
import { redactProxyUrl } from '../proxy';
import { action, proxyFor, untilSignal } from './context';
import { registerDoctor } from './doctor';
import { registerService } from './service';
import { enrollmentSchema } from './devices';

export async function readEnrollment(file: string, out: Output) {
  let text: string;
  try {
    const stat = await fs.stat(file);
    if (process.platform !== 'win32' && (stat.mode & 0o077) !== 0) {
      out.warn(
        `${file} is readable by other users (mode ${(stat.mode & 0o777).toString(8)}); it holds a credential: chmod 600 it`,
      );
    }
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    throw new CliError({
      title: 'Cannot read the enrollment',
      detail: `${file}: ${describeError(err)}`,
      hint: 'Create it with `relay-broker devices add <id> --out <file>` and copy it to the device.',
    });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new CliError({
      title: 'The enrollment is not valid JSON',
      detail: file,
      hint: 'Get a fresh one with `relay-broker devices rotate <id>`.',
    });
  }
  const r = enrollmentSchema.safeParse(json);
  if (!r.success) {
    throw new CliError({
      title: 'The enrollment is not valid',
      detail: `${file}: missing or wrong ${r.error.issues.map((i) => i.path.join('.')).join(', ')}`,
      hint: 'Get a fresh one with `relay-broker devices rotate <id>`.',
    });
  }
  const expiresAt = Date.parse(r.data.expiresAt);
  if (Number.isFinite(expiresAt) && expiresAt <= Date.now()) {
    throw new CliError({
      title: 'The enrollment has expired',
      detail: `${file} expired at ${r.data.expiresAt}.`,
      hint: `Get a new one with \`relay-broker devices rotate ${r.data.deviceId}\`.`,
    });
  }
  if (Number.isFinite(expiresAt) && expiresAt - Date.now() < 7 * 86_400_000)
    out.warn(`the enrollment expires at ${r.data.expiresAt}; rotate it soon`);
  return r.data;
}

/**
 * The agent's own files. Without a state directory they sit next to the enrollment file, and
 * renewal writes the enrollment file itself; with one (a service: the enrollment is read-only),
 * the sessions and the renewed enrollment go there.
 */
export function agentFiles(enrollmentFile: string, stateDir?: string): { stateFile: string; renewalFile?: string } {
  if (!stateDir) return { stateFile: `${enrollmentFile}.state.json` };
  return { stateFile: path.join(stateDir, 'sessions.json'), renewalFile: path.join(stateDir, 'enrollment.json') };
}

/**
 * The enrollment to start with: the renewed copy when it is the same enrollment (same device
 * credential) with a later expiry; the given file otherwise (a rotated file wins over a renewed copy).
 */
export async function newestEnrollment(enrollmentFile: string, renewalFile: string | undefined): Promise<string> {
  if (!renewalFile) return enrollmentFile;
  const read = async (f: string) => {
    try {
      return enrollmentSchema.safeParse(JSON.parse(await fs.readFile(f, 'utf8'))).data;
    } catch {
      return undefined;
    }
  };
  const [given, renewed] = await Promise.all([read(enrollmentFile), read(renewalFile)]);
  if (!given?.deviceKey || !renewed || renewed.deviceKey !== given.deviceKey) return enrollmentFile;
  return Date.parse(renewed.expiresAt) > Date.parse(given.expiresAt) ? renewalFile : enrollmentFile;
}

export function registerAgent(program: Command): void {
  const agent = program
    .command('agent')
    .description('the device agent: run it (the default), as a service, or check the setup (doctor)');
  // `agent --enrollment ... --allow ...` runs it: `run` is the default subcommand, so `agent service
  // install --enrollment ...` keeps its own options (a parent's options would swallow them).
  agent
    .command('run', { isDefault: true })
    .description('run the device agent: serve sessions to the allowed local ports through the relay')
    .requiredOption('--enrollment <file>', 'the enrollment file from `relay-broker devices add`')
    .requiredOption('--allow <ports>', 'ports sessions may reach on this device, e.g. 3389,22', parseAllowList)
    .option('--poll-ms <ms>', 'queue poll interval', parsePositiveInt('--poll-ms', 60_000), 1000)
    .option('--relay-ca <file>', 'PEM of a CA to trust for the relay (the local emulator)')
    .option('--target-host <host>', 'where the allowed ports are served', '127.0.0.1')
    .option(
      '--heartbeat-ms <ms>',
      'how often the agent reports to the broker (0: never)',
      (v: string) => {
        const n = Number(v);
        if (!Number.isInteger(n) || n < 0 || n > 600_000) throw new UsageError(`--heartbeat-ms: ${v} is not 0..600000`);
        return n;
      },
      5000,
    )
    .option(
      '--state-dir <dir>',
      "where it keeps the sessions it serves (so a restart takes them back) and a renewed enrollment when the enrollment file is read-only (default: systemd's $STATE_DIRECTORY, else next to the enrollment file)",
    )
    .action(
      action(async (cmd, out) => {
        const o = cmd.opts<{
          enrollment: string;
          allow: Set<number>;
          pollMs: number;
          relayCa?: string;
          targetHost: string;
          heartbeatMs: number;
          stateDir?: string;
        }>();
        const files = agentFiles(o.enrollment, o.stateDir ?? process.env.STATE_DIRECTORY);
        const enrollment = await readEnrollment(await newestEnrollment(o.enrollment, files.renewalFile), out);
        const relayCa = await resolveRelayCa(o.relayCa, enrollment.apiUrl);
        const proxy = proxyFor(cmd);
        if (proxy) {
          const via = redactProxyUrl(proxy.url);
          out.event(
            'agent.proxy',
            { proxy: via, source: proxy.source, noProxy: proxy.noProxy },
            `using the proxy ${via} (from ${proxy.source})${proxy.noProxy.length ? `, not for ${proxy.noProxy.join(', ')}` : ''}`,
          );
        }
        // Loaded here: the storage SDK is heavy and only this command needs it.
        const { DeviceAgent } = await import('../deviceAgent');
        const agent = new DeviceAgent({
          enrollment,
          allowPorts: o.allow,
          pollIntervalMs: o.pollMs,
          relayCa,
          targetHost: o.targetHost,
          proxy,
          heartbeatIntervalMs: o.heartbeatMs,
          enrollmentFile: o.enrollment,
          ...files,
          onFatal: () => fatal.abort(),
          log: (event, fields, human) => out.event(event, fields, human),
        });
        // The device removed (the API says so): stop with a non-zero exit, so a service manager
        // that restarts on failure shows it failing rather than serving nothing quietly.
        const fatal = new AbortController();
        const stopped = untilSignal(fatal.signal);
        agent.start();
        const signal = await stopped;
        if (signal === 'aborted') {
          await agent.close('the device was removed');
          throw new CliError({
            title: 'The device was removed',
            detail: `The broker no longer knows device ${enrollment.deviceId} (devices rm); the agent stopped.`,
            hint: 'Register it again with `relay-broker devices add` and install the new enrollment, or uninstall the agent.',
          });
        }
        out.event('agent.stopping', { signal }, `${signal}: closing every session`);
        await agent.close();
        return EXIT_OK;
      }),
    );
  registerService(agent);
  registerDoctor(agent);
}
