// `relay-broker rdp <device>` and `relay-broker ssh <device> [-- ssh args]`: open the session as
// `connect` does, start the native client on the local port, and end the session when the client
// exits (as `az network bastion rdp` and `tsh ssh` do). The client is found on PATH, or given with
// --client; the launch plan is a pure function so each platform's command line is tested.
import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Command } from 'commander';
import { CliError, EXIT_FAILURE } from '../errors';
import { parseDeviceId } from '../options';
import type { Output } from '../output';
import { action } from './context';
import { runTunnel, tunnelOptions, type TunnelLauncher, type TunnelOptions } from './connect';

export type Platform = 'win32' | 'darwin' | 'linux';

/** What to start: a program, its arguments, and an .rdp file to write first (Windows, macOS). */
export interface LaunchPlan {
  program: string;
  args: string[];
  rdpFile?: { path: string; text: string };
}

/**
 * The .rdp file mstsc and the Windows App open: the local end of the tunnel, credentials asked by
 * the client (never written here), and the device's name in the window title.
 */
export function rdpFileText(address: { host: string; port: number }, deviceId: string, user?: string): string {
  return [
    `full address:s:${address.host}:${address.port}`,
    `alternate full address:s:${address.host}:${address.port}`,
    'prompt for credentials:i:1',
    'authentication level:i:2',
    'screen mode id:i:1',
    ...(user ? [`username:s:${user}`] : []),
    `session bpp:i:32`,
    `remoteapplicationname:s:${deviceId}`,
    '',
  ].join('\r\n');
}

export function planRdp(
  platform: Platform,
  address: { host: string; port: number },
  deviceId: string,
  options: { client?: string; user?: string; tmpDir: string; extraArgs?: string[] },
): LaunchPlan {
  const rdpPath = path.join(options.tmpDir, `relay-broker-${deviceId}.rdp`);
  const extra = options.extraArgs ?? [];
  if (platform === 'win32') {
    return {
      program: options.client ?? 'mstsc',
      args: [rdpPath, ...extra],
      rdpFile: { path: rdpPath, text: rdpFileText(address, deviceId, options.user) },
    };
  }
  if (platform === 'darwin') {
    // The Windows App (formerly Microsoft Remote Desktop) opens .rdp files; `open -W` waits for it.
    return {
      program: options.client ?? 'open',
      args: options.client ? [rdpPath, ...extra] : ['-W', rdpPath, ...extra],
      rdpFile: { path: rdpPath, text: rdpFileText(address, deviceId, options.user) },
    };
  }
  const client = options.client ?? 'xfreerdp';
  if (path.basename(client).startsWith('remmina')) {
    return {
      program: client,
      args: ['-c', `rdp://${options.user ? `${options.user}@` : ''}${address.host}:${address.port}`, ...extra],
    };
  }
  // FreeRDP: the device's certificate is accepted on first use and remembered (per local port, so
  // it is asked again on the next session; the tunnel's own TLS is what authenticates the relay).
  return {
    program: client,
    args: [
      `/v:${address.host}:${address.port}`,
      '/cert:tofu',
      `/title:${deviceId} (relay-broker)`,
      ...(options.user ? [`/u:${options.user}`] : []),
      ...extra,
    ],
  };
}

export function planSsh(
  address: { host: string; port: number },
  deviceId: string,
  options: { client?: string; user: string; extraArgs?: string[] },
): LaunchPlan {
  return {
    program: options.client ?? 'ssh',
    args: [
      '-p',
      String(address.port),
      // Host keys are remembered per device, not per random local port: the first session asks, the
      // next ones check, and a device whose key changes is caught.
      '-o',
      `HostKeyAlias=relay-broker-${deviceId}`,
      `${options.user}@${address.host}`,
      ...(options.extraArgs ?? []),
    ],
  };
}

/** Starts the plan's client; ends the session when it exits. */
class NativeClient implements TunnelLauncher {
  private child?: ChildProcess;
  private code = 0;

  constructor(
    private readonly out: Output,
    private readonly name: string,
    private readonly plan: (address: { host: string; port: number }) => LaunchPlan,
    /** ssh: the remote command's exit code is the command's; RDP clients' codes mean little. */
    private readonly propagateExitCode: boolean,
  ) {}

  onReady(address: { host: string; port: number }, stop: (why: string) => void): void {
    const plan = this.plan(address);
    void (async () => {
      if (plan.rdpFile) await fs.writeFile(plan.rdpFile.path, plan.rdpFile.text, { mode: 0o600 });
      this.out.event(
        'client.started',
        { program: plan.program, args: plan.args },
        `starting ${this.name}: ${[plan.program, ...plan.args].join(' ')}`,
      );
      const child = spawn(plan.program, plan.args, { stdio: 'inherit' });
      this.child = child;
      child.once('error', (err: NodeJS.ErrnoException) => {
        this.code = EXIT_FAILURE;
        this.out.warn(
          err.code === 'ENOENT'
            ? `${plan.program} was not found: install it, or name your client with --client <path>`
            : `${plan.program} could not start: ${err.message}`,
        );
        stop(`${this.name} could not start`);
      });
      child.once('exit', (code, signal) => {
        if (this.propagateExitCode) this.code = code ?? (signal ? EXIT_FAILURE : 0);
        if (plan.rdpFile) void fs.rm(plan.rdpFile.path, { force: true });
        this.out.event(
          'client.exited',
          { program: plan.program, code, signal },
          `${this.name} exited${code !== null ? ` (${code})` : signal ? ` (${signal})` : ''}`,
        );
        stop(`${this.name} exited`);
      });
    })().catch((err: unknown) => {
      this.code = EXIT_FAILURE;
      this.out.warn(`could not start ${this.name}: ${err instanceof Error ? err.message : String(err)}`);
      stop(`${this.name} could not start`);
    });
  }

  onEnded(): void {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
  }

  exitCode(): number {
    return this.code;
  }
}

function currentPlatform(): Platform {
  const p = process.platform;
  if (p === 'win32' || p === 'darwin') return p;
  return 'linux';
}

export function registerLaunchers(program: Command): void {
  tunnelOptions(
    program
      .command('rdp')
      .description(
        'open a session to a device and start the RDP client on it (mstsc, the Windows App, xfreerdp); ends with the client',
      )
      .argument('<deviceId>', 'the device to reach', parseDeviceId)
      .argument('[clientArgs...]', 'extra arguments for the RDP client (after --)'),
    3389,
  )
    .option('--client <program>', 'the RDP client to start (default: mstsc, open, xfreerdp; remmina works too)')
    .action(
      action(async (cmd, out, deviceId: string, clientArgs: string[]) => {
        const o = cmd.opts<TunnelOptions & { client?: string }>();
        const userGiven = cmd.getOptionValueSource('user') === 'cli' ? o.user : undefined;
        const launcher = new NativeClient(
          out,
          'the RDP client',
          (address) =>
            planRdp(currentPlatform(), address, deviceId, {
              client: o.client,
              user: userGiven,
              tmpDir: os.tmpdir(),
              extraArgs: clientArgs,
            }),
          false,
        );
        return runTunnel(cmd, out, deviceId, o, launcher);
      }),
    );

  tunnelOptions(
    program
      .command('ssh')
      .description("open a session to a device and start ssh on it; ends with ssh (its exit code is the command's)")
      .argument('<deviceId>', 'the device to reach', parseDeviceId)
      .argument('[sshArgs...]', 'extra arguments for ssh, e.g. -- -i key.pem uptime'),
    22,
  )
    .option('--client <program>', 'the ssh client to start (default: ssh)')
    .action(
      action(async (cmd, out, deviceId: string, sshArgs: string[]) => {
        const o = cmd.opts<TunnelOptions & { client?: string }>();
        if (!o.user)
          throw new CliError({ title: 'No user name', detail: 'ssh needs a user name.', hint: 'Pass --user <name>.' });
        const launcher = new NativeClient(
          out,
          'ssh',
          (address) => planSsh(address, deviceId, { client: o.client, user: o.user, extraArgs: sshArgs }),
          true,
        );
        return runTunnel(cmd, out, deviceId, o, launcher);
      }),
    );
}
