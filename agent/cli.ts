#!/usr/bin/env node
// The `relay-broker` command line: the device agent, the client bridge (connect) and the admin
// commands over the HTTP API. Exit codes: 0 ok, 1 failure, 2 usage. See docs/cli.md.
import { Command, CommanderError } from 'commander';
import { registerAgent } from './commands/agent';
import { registerAudit } from './commands/audit';
import { registerConnect } from './commands/connect';
import { exitState } from './commands/context';
import { registerDevices } from './commands/devices';
import { registerGrants } from './commands/grants';
import { registerLaunchers } from './commands/launch';
import { registerLocal } from './commands/local';
import { registerSessions } from './commands/sessions';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE } from './errors';

export const VERSION = '0.1.0';

export function buildProgram(): Command {
  const program = new Command('relay-broker');
  program
    .description('Tunnels to devices behind NAT through Azure Relay Hybrid Connections')
    .version(VERSION, '-V, --version')
    .option(
      '--json',
      'machine-readable output: one JSON document, or one JSON object per line for long-running commands',
    )
    .option('--api-url <url>', 'the broker API, e.g. https://<app>.azurewebsites.net/api (env RELAY_BROKER_URL)')
    .option('--token <token>', 'bearer token for the API (env RELAY_BROKER_TOKEN)')
    .option(
      '--proxy <url>',
      'HTTP proxy for every connection, http://[user:password@]host:port (default HTTPS_PROXY/HTTP_PROXY, minus NO_PROXY)',
    )
    .showHelpAfterError('(run with --help for usage)')
    // Settings inherited by every subcommand defined after this point.
    .exitOverride()
    .configureHelp({ sortSubcommands: false });
  registerAgent(program);
  registerConnect(program);
  registerLaunchers(program);
  registerDevices(program);
  registerGrants(program);
  registerSessions(program);
  registerAudit(program);
  registerLocal(program);
  return program;
}

/** Commander's own outcomes: help and version are success, everything else it reports is a usage error. */
function exitCodeOf(err: CommanderError): number {
  if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return EXIT_OK;
  if (err.code === 'commander.help') return err.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
  return EXIT_USAGE;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return exitState.code;
  } catch (err) {
    if (err instanceof CommanderError) return exitCodeOf(err);
    process.stderr.write(`error: ${err instanceof Error ? err.message : String(err)}\n`);
    return EXIT_FAILURE;
  }
}

if (require.main === module) {
  main(process.argv).then(
    // Exit explicitly: keep-alive sockets of fetch must not hold a finished command open.
    (code) => process.exit(code),
    () => process.exit(EXIT_FAILURE),
  );
}
