// The agent as a hardened systemd service: a dynamic user (no account to manage, no file it can
// write outside its own state), the enrollment handed over as a systemd credential (a 0600 root file
// the service reads through $CREDENTIALS_DIRECTORY), restart on failure, logs to the journal.
import path from 'node:path';
import { agentArgs, serviceEnvironment, type ServiceSpec } from './spec';
import type { Step } from './plan';

export interface LinuxLayout {
  unitFile: string;
  configDir: string;
  enrollment: string;
  relayCa: string;
  envFile: string;
  /** Where the single-file executable is copied (unused for an npm install). */
  binary: string;
}

export function linuxLayout(name: string, root = '/'): LinuxLayout {
  const configDir = path.posix.join(root, 'etc', name);
  return {
    unitFile: path.posix.join(root, 'etc', 'systemd', 'system', `${name}.service`),
    configDir,
    enrollment: path.posix.join(configDir, 'enrollment.json'),
    relayCa: path.posix.join(configDir, 'relay-ca.pem'),
    envFile: path.posix.join(configDir, 'agent.env'),
    binary: path.posix.join(root, 'usr', 'local', 'lib', name, 'relay-broker'),
  };
}

/** systemd's quoting for one ExecStart word: double quotes when needed, `%` and `$` escaped. */
function systemdWord(arg: string): string {
  const escaped = arg.replace(/%/g, '%%').replace(/\$/g, '$$$$');
  return /^[\w@+=:,./-]+$/.test(escaped) && !escaped.startsWith('%')
    ? escaped
    : `"${escaped.replace(/(["\\])/g, '\\$1')}"`;
}

/** The unit file. `%d` is the credentials directory: the enrollment is read from there, never from /etc. */
export function systemdUnit(spec: ServiceSpec, layout: LinuxLayout): string {
  const program = spec.cli.kind === 'single-file' ? [layout.binary] : [spec.cli.node, spec.cli.script];
  const args = agentArgs(spec, 'ENROLLMENT', spec.relayCaFile ? 'RELAYCA' : undefined);
  const exec = [...program, ...args]
    .map((a) => (a === 'ENROLLMENT' ? '%d/enrollment' : a === 'RELAYCA' ? '%d/relay-ca' : systemdWord(a)))
    .join(' ');
  const hasEnv = Object.keys(serviceEnvironment(spec)).length > 0;
  return [
    '# Written by `relay-broker agent service install`; remove with `relay-broker agent service uninstall`.',
    '[Unit]',
    'Description=relay-broker device agent (tunnels to allowed local ports through Azure Relay)',
    'Wants=network-online.target',
    'After=network-online.target',
    // Keep trying however often it fails: a device offline for a day must come back by itself.
    'StartLimitIntervalSec=0',
    '',
    '[Service]',
    'Type=simple',
    `ExecStart=${exec}`,
    // Handed over by systemd as root-owned credentials: the files in /etc stay 0600 root.
    `LoadCredential=enrollment:${layout.enrollment}`,
    ...(spec.relayCaFile ? [`LoadCredential=relay-ca:${layout.relayCa}`] : []),
    ...(hasEnv ? [`EnvironmentFile=${layout.envFile}`] : []),
    // Its only writable place (/var/lib/<name>, $STATE_DIRECTORY): the sessions it serves, taken back
    // after a restart, and the renewed enrollment (the credential copy is read-only).
    `StateDirectory=${path.posix.basename(layout.configDir)}`,
    'StateDirectoryMode=0700',
    'Restart=on-failure',
    'RestartSec=5s',
    'TimeoutStopSec=30s',
    'KillSignal=SIGTERM',
    // Least privilege: a transient user, nothing writable, no privilege to gain.
    'DynamicUser=yes',
    'NoNewPrivileges=yes',
    'CapabilityBoundingSet=',
    'AmbientCapabilities=',
    'ProtectSystem=strict',
    'ProtectHome=yes',
    'PrivateTmp=yes',
    'PrivateDevices=yes',
    'PrivateUsers=yes',
    'ProtectKernelTunables=yes',
    'ProtectKernelModules=yes',
    'ProtectKernelLogs=yes',
    'ProtectControlGroups=yes',
    'ProtectClock=yes',
    'ProtectHostname=yes',
    'ProtectProc=invisible',
    'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX',
    'RestrictNamespaces=yes',
    'RestrictRealtime=yes',
    'RestrictSUIDSGID=yes',
    'LockPersonality=yes',
    'RemoveIPC=yes',
    'SystemCallArchitectures=native',
    'SystemCallFilter=@system-service',
    'SystemCallFilter=~@privileged',
    // A refused call fails with EPERM instead of killing the agent (Node raises RLIMIT_NOFILE at start).
    'SystemCallErrorNumber=EPERM',
    'UMask=0077',
    // Not MemoryDenyWriteExecute: V8's JIT needs writable+executable pages.
    '',
    '[Install]',
    'WantedBy=multi-user.target',
    '',
  ].join('\n');
}

function envFileContent(spec: ServiceSpec): string {
  return (
    Object.entries(serviceEnvironment(spec))
      .map(([k, v]) => `${k}=${v}`)
      .join('\n') + '\n'
  );
}

export function linuxInstallPlan(spec: ServiceSpec, layout = linuxLayout(spec.name)): Step[] {
  const hasEnv = Object.keys(serviceEnvironment(spec)).length > 0;
  return [
    { kind: 'mkdir', path: layout.configDir, mode: 0o700 },
    { kind: 'copy', from: spec.enrollmentFile, to: layout.enrollment, mode: 0o600 },
    ...(spec.relayCaFile ? [{ kind: 'copy' as const, from: spec.relayCaFile, to: layout.relayCa, mode: 0o644 }] : []),
    ...(hasEnv
      ? [{ kind: 'write' as const, path: layout.envFile, content: envFileContent(spec), mode: 0o600, secret: true }]
      : [{ kind: 'remove' as const, path: layout.envFile }]),
    ...(spec.cli.kind === 'single-file'
      ? [
          { kind: 'mkdir' as const, path: path.posix.dirname(layout.binary), mode: 0o755 },
          { kind: 'copy' as const, from: spec.cli.executable, to: layout.binary, mode: 0o755 },
        ]
      : []),
    { kind: 'write', path: layout.unitFile, content: systemdUnit(spec, layout), mode: 0o644 },
    { kind: 'run', command: ['systemctl', 'daemon-reload'], why: 'load the unit' },
    { kind: 'run', command: ['systemctl', 'enable', '--now', `${spec.name}.service`], why: 'start now and at boot' },
    // A reinstall (new enrollment, new ports) must take effect now, not at the next boot.
    { kind: 'run', command: ['systemctl', 'restart', `${spec.name}.service`], why: 'pick up a changed setup' },
  ];
}

export function linuxUninstallPlan(name: string, purge: boolean, layout = linuxLayout(name)): Step[] {
  return [
    {
      kind: 'run',
      command: ['systemctl', 'disable', '--now', `${name}.service`],
      mayFail: true,
      why: 'stop it and drop it from boot',
    },
    { kind: 'remove', path: layout.unitFile },
    { kind: 'run', command: ['systemctl', 'daemon-reload'], why: 'forget the unit' },
    { kind: 'remove', path: path.posix.dirname(layout.binary), recursive: true },
    ...(purge ? [{ kind: 'remove' as const, path: layout.configDir, recursive: true }] : []),
  ];
}

export function linuxStatusCommand(name: string): string[] {
  return [
    'systemctl',
    'show',
    `${name}.service`,
    '--property=LoadState,ActiveState,SubState,MainPID,NRestarts,ExecMainStartTimestamp',
  ];
}
