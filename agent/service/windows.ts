// The agent as a Windows service. Node cannot answer the Service Control Manager itself, so the
// service host is WinSW (the MIT-licensed wrapper Jenkins ships its own Windows service with): it
// starts the CLI, forwards stop as Ctrl+C, and rolls the logs by size. The service itself is
// registered with sc.exe, under the virtual account NT SERVICE\<name> (no password, no rights
// beyond a user's, its own SID for ACLs), restarting on failure. Everything lives under
// %ProgramData%\<name>, whose ACL lets only SYSTEM, Administrators and the service in.
import path from 'node:path';
import { agentArgs, serviceEnvironment, type ServiceSpec } from './spec';
import type { Step } from './plan';

const win = path.win32;
/** Well-known SIDs, so the ACL does not depend on the language of Windows. */
const SID_SYSTEM = '*S-1-5-18';
const SID_ADMINISTRATORS = '*S-1-5-32-544';

export interface WindowsLayout {
  dataDir: string;
  binDir: string;
  logDir: string;
  enrollment: string;
  relayCa: string;
  /** The single-file CLI, copied here (unused for an npm install). */
  cli: string;
  /** WinSW, renamed after the service; its XML sits next to it with the same base name. */
  wrapper: string;
  wrapperXml: string;
}

export function windowsLayout(name: string, programData = process.env.ProgramData ?? 'C:\\ProgramData'): WindowsLayout {
  const dataDir = win.join(programData, name);
  const binDir = win.join(dataDir, 'bin');
  return {
    dataDir,
    binDir,
    logDir: win.join(dataDir, 'logs'),
    enrollment: win.join(dataDir, 'enrollment.json'),
    relayCa: win.join(dataDir, 'relay-ca.pem'),
    cli: win.join(binDir, 'relay-broker.exe'),
    wrapper: win.join(binDir, `${name}-service.exe`),
    wrapperXml: win.join(binDir, `${name}-service.xml`),
  };
}

const xmlEscape = (s: string): string =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** One Windows command-line argument (CommandLineToArgvW rules). */
export function windowsArg(arg: string): string {
  if (arg.length > 0 && !/[\s"]/.test(arg)) return arg;
  return `"${arg.replace(/(\\*)"/g, '$1$1\\"').replace(/(\\+)$/, '$1$1')}"`;
}

/** WinSW's configuration (v2 XML): what to run, the proxy environment, rolling logs, restart. */
export function winswXml(spec: ServiceSpec, layout: WindowsLayout): string {
  const program = spec.cli.kind === 'single-file' ? layout.cli : spec.cli.node;
  const args = [
    ...(spec.cli.kind === 'node' ? [spec.cli.script] : []),
    ...agentArgs(spec, layout.enrollment, spec.relayCaFile ? layout.relayCa : undefined),
  ];
  const env = Object.entries(serviceEnvironment(spec)).map(
    ([k, v]) => `  <env name="${xmlEscape(k)}" value="${xmlEscape(v)}"/>`,
  );
  return [
    '<!-- Written by `relay-broker agent service install`; the service is registered with sc.exe. -->',
    '<service>',
    `  <id>${xmlEscape(spec.name)}</id>`,
    `  <name>${xmlEscape(spec.name)} device agent</name>`,
    '  <description>Tunnels to allowed local ports through Azure Relay (relay-broker).</description>',
    `  <executable>${xmlEscape(program)}</executable>`,
    `  <arguments>${xmlEscape(args.map(windowsArg).join(' '))}</arguments>`,
    ...env,
    `  <logpath>${xmlEscape(layout.logDir)}</logpath>`,
    '  <log mode="roll-by-size">',
    '    <sizeThreshold>10240</sizeThreshold>',
    '    <keepFiles>8</keepFiles>',
    '  </log>',
    // The agent ends non-zero only on a fault: WinSW then reports a failure and the SCM's actions apply.
    '  <onfailure action="restart" delay="10 sec"/>',
    '  <onfailure action="restart" delay="30 sec"/>',
    '  <onfailure action="restart" delay="60 sec"/>',
    '  <resetfailure>1 hour</resetfailure>',
    '  <stoptimeout>30 sec</stoptimeout>',
    '</service>',
    '',
  ].join('\r\n');
}

export function windowsInstallPlan(
  spec: ServiceSpec,
  wrapperSource: string,
  layout = windowsLayout(spec.name),
): Step[] {
  const account = `NT SERVICE\\${spec.name}`;
  const hasSecretEnv = Boolean(spec.proxy);
  return [
    // A reinstall replaces files the running service holds open: stop it first (absent is fine).
    { kind: 'run', command: ['sc.exe', 'stop', spec.name], mayFail: true, why: 'stop a previous install' },
    { kind: 'mkdir', path: layout.binDir },
    { kind: 'mkdir', path: layout.logDir },
    { kind: 'copy', from: spec.enrollmentFile, to: layout.enrollment },
    ...(spec.relayCaFile ? [{ kind: 'copy' as const, from: spec.relayCaFile, to: layout.relayCa }] : []),
    ...(spec.cli.kind === 'single-file' ? [{ kind: 'copy' as const, from: spec.cli.executable, to: layout.cli }] : []),
    { kind: 'copy', from: wrapperSource, to: layout.wrapper },
    { kind: 'write', path: layout.wrapperXml, content: winswXml(spec, layout), secret: hasSecretEnv },
    {
      kind: 'run',
      command: [
        'sc.exe',
        'create',
        spec.name,
        'binPath=',
        windowsArg(layout.wrapper),
        'start=',
        'delayed-auto',
        'obj=',
        account,
        'DisplayName=',
        `${spec.name} device agent`,
      ],
      mayFail: true, // exists already on a reinstall; the config step below sets it either way
      why: 'register the service under its virtual account',
    },
    {
      kind: 'run',
      command: [
        'sc.exe',
        'config',
        spec.name,
        'binPath=',
        windowsArg(layout.wrapper),
        'start=',
        'delayed-auto',
        'obj=',
        account,
      ],
      why: 'the same settings on a reinstall',
    },
    {
      kind: 'run',
      command: [
        'sc.exe',
        'description',
        spec.name,
        'relay-broker device agent: tunnels to allowed local ports through Azure Relay',
      ],
      why: 'say what it is in services.msc',
    },
    { kind: 'run', command: ['sc.exe', 'sidtype', spec.name, 'unrestricted'], why: 'a service SID for the ACL' },
    {
      kind: 'run',
      command: [
        'sc.exe',
        'failure',
        spec.name,
        'reset=',
        '86400',
        'actions=',
        'restart/10000/restart/30000/restart/60000',
      ],
      why: 'restart on failure: 10 s, 30 s, then every 60 s; the count resets after a day',
    },
    {
      kind: 'run',
      command: ['sc.exe', 'failureflag', spec.name, '1'],
      why: 'a non-zero exit counts as a failure too',
    },
    // Only SYSTEM, Administrators and the service: no inheritance from ProgramData (where Users read).
    {
      kind: 'run',
      command: [
        'icacls.exe',
        layout.dataDir,
        '/inheritance:r',
        '/grant:r',
        `${SID_SYSTEM}:(OI)(CI)F`,
        `${SID_ADMINISTRATORS}:(OI)(CI)F`,
        `${account}:(OI)(CI)RX`,
      ],
      why: 'only the service and administrators can read the enrollment',
    },
    {
      kind: 'run',
      command: ['icacls.exe', layout.logDir, '/grant:r', `${account}:(OI)(CI)M`],
      why: 'the service writes its rolling logs here',
    },
    { kind: 'run', command: ['sc.exe', 'start', spec.name], why: 'start it now' },
  ];
}

export function windowsUninstallPlan(name: string, purge: boolean, layout = windowsLayout(name)): Step[] {
  return [
    { kind: 'run', command: ['sc.exe', 'stop', name], mayFail: true, why: 'stop it' },
    { kind: 'run', command: ['sc.exe', 'delete', name], mayFail: true, why: 'unregister it' },
    { kind: 'remove', path: layout.binDir, recursive: true },
    ...(purge ? [{ kind: 'remove' as const, path: layout.dataDir, recursive: true }] : []),
  ];
}

export function windowsStatusCommand(name: string): string[] {
  return ['sc.exe', 'queryex', name];
}
