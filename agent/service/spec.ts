// What `agent service install` is asked to set up, independent of the service manager: how to run
// the CLI, the enrollment and the agent's options. The proxy URL may carry a password: it goes only
// into files that only the service and administrators can read.

export const DEFAULT_SERVICE_NAME = 'relay-broker';

export interface ServiceSpec {
  /** Service name (systemd unit / Windows service); also the virtual account `NT SERVICE\<name>`. */
  name: string;
  /**
   * How the CLI runs now: `[executable]` for the single-file build (copied into place by install),
   * or `[node, cli.js]` for an npm install (used where it is).
   */
  cli: { kind: 'single-file'; executable: string } | { kind: 'node'; node: string; script: string };
  /** The enrollment file the operator gave; install copies it into the protected location. */
  enrollmentFile: string;
  allow: number[];
  relayCaFile?: string;
  targetHost?: string;
  pollMs?: number;
  /** HTTP proxy (may hold user:password) and NO_PROXY, for all three channels. */
  proxy?: string;
  noProxy?: string;
}

/** The agent's arguments once installed, with the installed paths of the enrollment and CA. */
export function agentArgs(spec: ServiceSpec, enrollmentPath: string, relayCaPath?: string): string[] {
  return [
    '--json',
    'agent',
    '--enrollment',
    enrollmentPath,
    '--allow',
    [...spec.allow].sort((a, b) => a - b).join(','),
    ...(relayCaPath ? ['--relay-ca', relayCaPath] : []),
    ...(spec.targetHost && spec.targetHost !== '127.0.0.1' ? ['--target-host', spec.targetHost] : []),
    ...(spec.pollMs && spec.pollMs !== 1000 ? ['--poll-ms', String(spec.pollMs)] : []),
  ];
}

/** The environment of the service: the proxy settings, if any. */
export function serviceEnvironment(spec: ServiceSpec): Record<string, string> {
  return {
    ...(spec.proxy ? { HTTPS_PROXY: spec.proxy } : {}),
    ...(spec.noProxy ? { NO_PROXY: spec.noProxy } : {}),
  };
}
