// `relay-broker local token`: a dev token from the issuer of the running local stack (`npm start`).
// Printing the token is this command's purpose, so it goes to stdout alone (for `$(...)`).
import { InvalidArgumentError, type Command } from 'commander';
import { mintLocalToken, readLocalState } from '../config';
import { CliError } from '../errors';
import { parsePositiveInt } from '../options';
import { action } from './context';

export function registerLocal(program: Command): void {
  const local = program.command('local').description('local mode helpers (the stack `npm start` runs)');
  local
    .command('token')
    .description('mint a dev token from the local issuer')
    .requiredOption('--role <role>', 'admin or operator', (v: string) => {
      if (v !== 'admin' && v !== 'operator') throw new InvalidArgumentError('role must be admin or operator');
      return v;
    })
    .option('--sub <principal>', 'principal id (the token subject): 1-128 of A-Z a-z 0-9 . _ @ -', (v: string) => {
      if (!/^[A-Za-z0-9._@-]{1,128}$/.test(v))
        throw new InvalidArgumentError('the subject is 1-128 of A-Z a-z 0-9 . _ @ -');
      return v;
    })
    .option('--ttl <seconds>', 'validity in seconds (default 3600)', parsePositiveInt('--ttl', 30 * 24 * 3600))
    .action(
      action(async (cmd, out) => {
        const o = cmd.opts<{ role: 'admin' | 'operator'; sub?: string; ttl?: number }>();
        const state = await readLocalState();
        if (!state) {
          throw new CliError({
            title: 'Local mode is not running',
            detail: 'No local state was found (.relay-broker/local.json or RELAY_BROKER_STATE_DIR).',
            hint: 'Start the local stack with `npm start`.',
          });
        }
        const minted = await mintLocalToken(state, { role: o.role, sub: o.sub, ttlSeconds: o.ttl });
        out.result(
          { token: minted.token, sub: minted.sub, roles: [o.role], expiresAt: minted.expiresAt, apiUrl: state.apiUrl },
          () => minted.token,
        );
        if (!out.json)
          out.note(`token for ${minted.sub} (${o.role}), valid until ${minted.expiresAt}; API ${state.apiUrl}`);
      }),
    );
}
