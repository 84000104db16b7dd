// `relay-broker grants list|add|rm`: which operator may open sessions to which device (admin), over
// the HTTP API's /grants routes. `*` grants every device.
import { InvalidArgumentError, type Command } from 'commander';
import { z } from 'zod';
import { CliError } from '../errors';
import { parseDeviceId } from '../options';
import { table } from '../output';
import { action, apiFor } from './context';

const grantSchema = z
  .object({
    principalId: z.string(),
    deviceId: z.string(),
    createdAt: z.string().optional(),
    createdBy: z.string().optional(),
  })
  .loose();

const PRINCIPAL_ID = /^[A-Za-z0-9._@-]{1,128}$/;

function parsePrincipal(v: string): string {
  if (!PRINCIPAL_ID.test(v))
    throw new InvalidArgumentError(
      'a principal id is 1-128 of A-Z a-z 0-9 . _ @ - (the token subject, e.g. an Entra object id)',
    );
  return v;
}

/** A device id, or `*` for every device. */
function parseGrantDevice(v: string): string {
  return v === '*' ? v : parseDeviceId(v);
}

function parseGrants(body: unknown): z.infer<typeof grantSchema>[] {
  const r = z
    .object({ grants: z.array(grantSchema) })
    .loose()
    .safeParse(body);
  if (!r.success)
    throw new CliError({
      title: 'Unexpected answer from the API',
      detail: 'The grant list did not have the expected shape.',
      hint: 'Check that --api-url points at a relay-broker API.',
    });
  return r.data.grants;
}

const grantPath = (principalId: string, deviceId: string): string =>
  `/grants/${encodeURIComponent(principalId)}/${encodeURIComponent(deviceId)}`;

export function registerGrants(program: Command): void {
  const grants = program
    .command('grants')
    .description('who may open sessions to which device (admin); operators need a grant, admins do not');

  grants
    .command('list')
    .description('list grants, newest principal first as the API returns them')
    .option('--principal <principalId>', 'only this principal', parsePrincipal)
    .action(
      action(async (cmd, out) => {
        const o = cmd.opts<{ principal?: string }>();
        const { api } = await apiFor(cmd, out);
        const res = await api.get(o.principal ? `/grants?principalId=${encodeURIComponent(o.principal)}` : '/grants');
        const list = parseGrants(res.body);
        out.result(res.body, () =>
          list.length === 0
            ? ['no grants; add one with `relay-broker grants add <principalId> <deviceId|*>`']
            : table(
                ['PRINCIPAL', 'DEVICE', 'CREATED', 'BY'],
                list.map((g) => [g.principalId, g.deviceId, g.createdAt ?? '', g.createdBy ?? '']),
              ),
        );
      }),
    );

  grants
    .command('add')
    .description('let a principal open sessions to a device (`*`: every device); adding it again changes nothing')
    .argument('<principalId>', 'the operator: its token subject (Entra object id)', parsePrincipal)
    .argument('<deviceId>', 'device id, or * for every device (quote it in the shell)', parseGrantDevice)
    .action(
      action(async (cmd, out, principalId: string, deviceId: string) => {
        const { api } = await apiFor(cmd, out);
        const res = await api.put(grantPath(principalId, deviceId), undefined);
        const created = res.status === 201;
        out.result({ principalId, deviceId, created }, () => [
          created
            ? `granted ${deviceId === '*' ? 'every device' : deviceId} to ${principalId}`
            : `${principalId} already held the grant of ${deviceId === '*' ? 'every device' : deviceId}; nothing changed`,
        ]);
      }),
    );

  grants
    .command('rm')
    .description('take a grant back (sessions already open keep running until they end)')
    .argument('<principalId>', 'the operator', parsePrincipal)
    .argument('<deviceId>', 'device id, or * (quote it in the shell)', parseGrantDevice)
    .action(
      action(async (cmd, out, principalId: string, deviceId: string) => {
        const { api } = await apiFor(cmd, out);
        await api.delete(grantPath(principalId, deviceId));
        out.result({ principalId, deviceId, removed: true }, () => [
          `removed the grant of ${deviceId === '*' ? 'every device' : deviceId} to ${principalId}`,
        ]);
      }),
    );
}
