// What every command shares: the global options (--json, --api-url, --token), the Output, the API
// client resolved from flags/env/local state, and the wrapper that turns failures into exit codes.
import type { Command } from 'commander';
import { describeError } from '../../lib/errors';
import { ApiClient } from '../apiClient';
import { resolveApiConfig, type ApiConfig } from '../config';
import { CliError, EXIT_FAILURE, EXIT_OK } from '../errors';
import { Output } from '../output';
import { fetchVia, proxyAgentFor, resolveProxySettings, type ProxySettings } from '../proxy';
import type { AgentForUrl } from '../../lib/relay/hybridConnection';

export interface GlobalOptions {
  json?: boolean;
  apiUrl?: string;
  token?: string;
  proxy?: string;
}

export function globalsOf(cmd: Command): GlobalOptions {
  return cmd.optsWithGlobals<GlobalOptions>();
}

export function outputFor(cmd: Command): Output {
  return new Output({ json: Boolean(globalsOf(cmd).json) });
}

export async function apiFor(cmd: Command, out: Output): Promise<{ api: ApiClient; config: ApiConfig }> {
  const g = globalsOf(cmd);
  const config = await resolveApiConfig({ apiUrl: g.apiUrl, token: g.token }, out);
  const fetch = fetchVia(proxyFor(cmd));
  return { api: new ApiClient({ apiUrl: config.apiUrl, token: config.token, fetch }), config };
}

/** The proxy settings in force for this command: --proxy, else the environment (agent/proxy.ts). */
export function proxyFor(cmd: Command): ProxySettings | undefined {
  return resolveProxySettings(globalsOf(cmd).proxy);
}

/** The agent for each relay WebSocket URL, through the proxy when one applies. */
export function relayAgentFor(cmd: Command): AgentForUrl | undefined {
  const settings = proxyFor(cmd);
  return settings ? (url) => proxyAgentFor(settings, url) : undefined;
}

/** The exit code the process ends with once the command returns (commander ignores return values). */
export const exitState = { code: EXIT_OK };

/**
 * Wraps a command's action: its return value is the exit code; a CliError is printed as a problem
 * (title, detail, hint) with its exit code; anything else as an unexpected error, never a stack
 * (unless RELAY_BROKER_DEBUG is set).
 */
export function action<A extends unknown[]>(fn: (cmd: Command, out: Output, ...args: A) => Promise<number | void>) {
  return async (...raw: unknown[]): Promise<void> => {
    const cmd = raw[raw.length - 1] as Command;
    const args = raw.slice(0, -2) as A;
    const out = outputFor(cmd);
    try {
      exitState.code = (await fn(cmd, out, ...args)) ?? EXIT_OK;
    } catch (err) {
      if (err instanceof CliError) {
        out.problem(err.problem);
        exitState.code = err.exitCode;
        return;
      }
      out.problem({
        title: 'Unexpected error',
        detail: describeError(err),
        hint: 'Set RELAY_BROKER_DEBUG=1 for details and report it.',
      });
      if (process.env.RELAY_BROKER_DEBUG && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
      exitState.code = EXIT_FAILURE;
    }
  };
}

/** Resolves on the first SIGINT or SIGTERM; the handlers are removed afterwards. */
export function untilSignal(signal?: AbortSignal): Promise<NodeJS.Signals | 'aborted'> {
  return new Promise((resolve) => {
    const done = (s: NodeJS.Signals | 'aborted'): void => {
      process.off('SIGINT', onInt);
      process.off('SIGTERM', onTerm);
      signal?.removeEventListener('abort', onAbort);
      resolve(s);
    };
    const onInt = (): void => done('SIGINT');
    const onTerm = (): void => done('SIGTERM');
    const onAbort = (): void => done('aborted');
    process.once('SIGINT', onInt);
    process.once('SIGTERM', onTerm);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
