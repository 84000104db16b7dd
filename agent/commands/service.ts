// `relay-broker agent service install|uninstall|status`: the agent as a systemd service (Linux) or
// a Windows service (WinSW host, sc.exe, virtual account). `--dry-run` prints every step instead.
import { realpathSync } from 'node:fs';
import { InvalidArgumentError, type Command } from 'commander';
import { CliError, EXIT_FAILURE, EXIT_OK, UsageError } from '../errors';
import { parseAllowList, parsePositiveInt } from '../options';
import type { Output } from '../output';
import { resolveProxySettings } from '../proxy';
import { capture, currentPlatform, describeStep, executePlan, type Platform, type Step } from '../service/plan';
import { DEFAULT_SERVICE_NAME, type ServiceSpec } from '../service/spec';
import { linuxInstallPlan, linuxStatusCommand, linuxUninstallPlan } from '../service/systemd';
import { windowsInstallPlan, windowsStatusCommand, windowsUninstallPlan } from '../service/windows';
import { action, globalsOf } from './context';

const SERVICE_NAME = /^[a-z][a-z0-9-]{0,39}$/;

function parseServiceName(value: string): string {
  if (!SERVICE_NAME.test(value))
    throw new InvalidArgumentError(`"${value}" is not a service name: lowercase letters, digits, hyphens.`);
  return value;
}

function parsePlatform(value: string): Platform {
  if (value !== 'linux' && value !== 'windows')
    throw new InvalidArgumentError(`--platform is linux or windows, got "${value}".`);
  return value;
}

/** How this CLI runs now: the single-file build, or node with the script (npm install or checkout). */
function currentCli(): ServiceSpec['cli'] {
  let single: boolean;
  try {
    // node:sea exists from Node 20.12; isSea() is true inside a single executable application.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    single = (require('node:sea') as { isSea(): boolean }).isSea();
  } catch {
    single = false;
  }
  if (single) return { kind: 'single-file', executable: process.execPath };
  return { kind: 'node', node: process.execPath, script: realpathSync(process.argv[1] ?? '') };
}

function platformFor(flag: Platform | undefined, dryRun: boolean): Platform {
  const here = currentPlatform();
  if (flag && flag !== here && !dryRun)
    throw new UsageError(`--platform ${flag} can only be printed here (--dry-run): this is ${process.platform}.`);
  const p = flag ?? here;
  if (!p) throw new CliError({ title: 'Unsupported system', detail: `No service support on ${process.platform}.` });
  return p;
}

function requireAdmin(platform: Platform): void {
  if (platform === 'linux' && typeof process.getuid === 'function' && process.getuid() !== 0) {
    throw new CliError({
      title: 'Needs root',
      detail: 'Installing a systemd service writes /etc and runs systemctl.',
      hint: 'Run it with sudo, or add --dry-run to see the steps.',
    });
  }
}

async function runOrPrint(steps: Step[], dryRun: boolean, out: Output): Promise<void> {
  if (dryRun) {
    out.result({ dryRun: true, steps }, () => steps.map(describeStep));
    return;
  }
  await executePlan(steps, (r) =>
    out.event(
      'service.step',
      { ok: r.ok, step: describeStep(r.step).split('\n')[0], ...(r.detail ? { detail: r.detail } : {}) },
      `${r.ok ? 'done' : 'skipped'}: ${describeStep(r.step).split('\n')[0]}${r.detail ? ` (${r.detail})` : ''}`,
    ),
  );
}

export function registerService(agent: Command): void {
  const service = agent
    .command('service')
    .description('run the agent as a service: systemd on Linux, a Windows service on Windows (docs/agent.md)');

  service
    .command('install')
    .description('install (or reinstall) and start the agent service; --proxy is kept for the service')
    .requiredOption('--enrollment <file>', 'the enrollment file; copied where only the service can read it')
    .requiredOption('--allow <ports>', 'ports sessions may reach on this device, e.g. 3389,22', parseAllowList)
    .option('--relay-ca <file>', 'PEM of a CA to trust for the relay (the local emulator only)')
    .option('--target-host <host>', 'where the allowed ports are served', '127.0.0.1')
    .option('--poll-ms <ms>', 'queue poll interval', parsePositiveInt('--poll-ms', 60_000), 1000)
    .option('--proxy-bypass <hosts>', 'NO_PROXY for the service: hosts reached without the proxy')
    .option('--wrapper <WinSW.exe>', 'Windows: the WinSW service host (WinSW-x64.exe 2.12) to install with it')
    .option('--name <name>', 'service name', parseServiceName, DEFAULT_SERVICE_NAME)
    .option('--platform <linux|windows>', 'with --dry-run: print the steps for that system', parsePlatform)
    .option('--dry-run', 'print the steps, change nothing')
    .action(
      action(async (cmd, out) => {
        const o = cmd.opts<{
          enrollment: string;
          allow: Set<number>;
          relayCa?: string;
          targetHost: string;
          pollMs: number;
          proxyBypass?: string;
          wrapper?: string;
          name: string;
          platform?: Platform;
          dryRun?: boolean;
        }>();
        const dryRun = Boolean(o.dryRun);
        const platform = platformFor(o.platform, dryRun);
        const proxy = globalsOf(cmd).proxy;
        if (proxy) resolveProxySettings(proxy); // a bad URL fails here, not in the service
        const cli = currentCli();
        const spec: ServiceSpec = {
          name: o.name,
          cli:
            platform === 'windows' && currentPlatform() !== 'windows'
              ? { kind: 'single-file', executable: 'relay-broker-win-x64.exe' }
              : cli,
          enrollmentFile: o.enrollment,
          allow: [...o.allow],
          relayCaFile: o.relayCa,
          targetHost: o.targetHost,
          pollMs: o.pollMs,
          proxy,
          noProxy: o.proxyBypass,
        };
        if (platform === 'windows' && !o.wrapper && !dryRun) {
          throw new UsageError(
            'Windows needs --wrapper <WinSW-x64.exe>: Node cannot talk to the Service Control Manager itself.',
            'Download WinSW-x64.exe 2.12.0 from the WinSW project (jenkinsci/winsw) releases, check its SHA-256, and pass its path.',
          );
        }
        if (!dryRun) requireAdmin(platform);
        const steps =
          platform === 'linux' ? linuxInstallPlan(spec) : windowsInstallPlan(spec, o.wrapper ?? '<WinSW-x64.exe>');
        await runOrPrint(steps, dryRun, out);
        if (!dryRun) {
          out.event(
            'service.installed',
            { name: o.name, platform },
            `service ${o.name} installed and started; check it with \`relay-broker agent service status\``,
          );
        }
        return EXIT_OK;
      }),
    );

  service
    .command('uninstall')
    .description('stop and remove the agent service (the enrollment stays unless --purge)')
    .option('--purge', 'also delete the enrollment, the proxy settings and the logs')
    .option('--name <name>', 'service name', parseServiceName, DEFAULT_SERVICE_NAME)
    .option('--platform <linux|windows>', 'with --dry-run: print the steps for that system', parsePlatform)
    .option('--dry-run', 'print the steps, change nothing')
    .action(
      action(async (cmd, out) => {
        const o = cmd.opts<{ purge?: boolean; name: string; platform?: Platform; dryRun?: boolean }>();
        const dryRun = Boolean(o.dryRun);
        const platform = platformFor(o.platform, dryRun);
        if (!dryRun) requireAdmin(platform);
        const purge = Boolean(o.purge);
        const steps = platform === 'linux' ? linuxUninstallPlan(o.name, purge) : windowsUninstallPlan(o.name, purge);
        await runOrPrint(steps, dryRun, out);
        if (!dryRun) out.event('service.uninstalled', { name: o.name, purge }, `service ${o.name} removed`);
        return EXIT_OK;
      }),
    );

  service
    .command('status')
    .description("the service's state (exit 0 when it runs, 1 otherwise)")
    .option('--name <name>', 'service name', parseServiceName, DEFAULT_SERVICE_NAME)
    .action(
      action(async (cmd, out) => {
        const o = cmd.opts<{ name: string }>();
        const platform = platformFor(undefined, false);
        const command = platform === 'linux' ? linuxStatusCommand(o.name) : windowsStatusCommand(o.name);
        const r = await capture(command);
        const running =
          platform === 'linux' ? /^ActiveState=active$/m.test(r.output) : /STATE\s*:\s*4\s+RUNNING/.test(r.output);
        const installed =
          platform === 'linux' ? !/^LoadState=not-found$/m.test(r.output) && r.code === 0 : r.code === 0;
        out.result({ name: o.name, platform, installed, running, detail: r.output }, () => [
          `${o.name}: ${!installed ? 'not installed' : running ? 'running' : 'installed, not running'}`,
          ...r.output.split('\n').map((l) => `  ${l}`),
          ...(installed && !running
            ? [
                platform === 'linux'
                  ? `  logs: journalctl -u ${o.name} -n 50`
                  : `  logs: %ProgramData%\\${o.name}\\logs`,
              ]
            : []),
        ]);
        return running ? EXIT_OK : EXIT_FAILURE;
      }),
    );
}
