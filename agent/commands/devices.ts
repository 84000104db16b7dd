// `relay-broker devices add|list|show|rotate|rm`: the device registry over the HTTP API. The
// enrollment (it holds the queue SAS) goes to a 0600 file, never to the terminal.
import { constants, promises as fs } from 'node:fs';
import { describeError } from '../../lib/errors';
import path from 'node:path';
import type { Command } from 'commander';
import { z } from 'zod';
import { CliError } from '../errors';
import { collectTag, parseDeviceId } from '../options';
import { table } from '../output';
import { action, apiFor } from './context';

export const enrollmentSchema = z.object({
  deviceId: z.string(),
  apiUrl: z.string(),
  queueUrl: z.string(),
  queueSas: z.string(),
  expiresAt: z.string(),
  /** The device credential (heartbeats, renewal); absent in files from before it existed. */
  deviceKey: z.string().optional(),
});

const deviceSchema = z
  .object({
    deviceId: z.string(),
    displayName: z.string().optional(),
    tags: z.record(z.string(), z.string()).default({}),
    queueName: z.string().optional(),
    createdAt: z.string().optional(),
    createdBy: z.string().optional(),
    rotatedAt: z.string().optional(),
    enrollmentExpiresAt: z.string().optional(),
    presence: z.enum(['online', 'offline', 'never']).optional(),
    lastSeenAt: z.string().optional(),
    agentStartedAt: z.string().optional(),
    sessions: z
      .array(z.object({ sessionId: z.string(), listener: z.string(), targetError: z.string().optional() }))
      .optional(),
  })
  .loose();

/** online, offline (last seen …) or never seen, in words. */
function presenceText(d: z.infer<typeof deviceSchema>): string {
  if (d.presence === 'never') return 'never seen (no agent has reported)';
  if (!d.presence) return '';
  return `${d.presence}${d.lastSeenAt ? ` (last seen ${d.lastSeenAt})` : ''}`;
}

function parseAnswer<T>(schema: z.ZodType<T>, body: unknown, what: string): T {
  const r = schema.safeParse(body);
  if (!r.success)
    throw new CliError({
      title: 'Unexpected answer from the API',
      detail: `${what} did not have the expected shape.`,
      hint: 'Check that --api-url points at a relay-broker API.',
    });
  return r.data;
}

/** The file as the user can type it here: relative to the working folder when inside it, else absolute. */
function shownPath(file: string): string {
  const relative = path.relative(process.cwd(), file);
  return relative && !relative.startsWith('..') && !path.isAbsolute(relative) ? relative : file;
}

/** Fails before any API call if the file exists and --force was not given. */
async function checkWritable(file: string, force: boolean): Promise<void> {
  try {
    await fs.access(file, constants.F_OK);
  } catch {
    return;
  }
  if (!force) {
    throw new CliError({
      title: 'The enrollment file exists',
      detail: `${file} is already there.`,
      hint: 'Pass --force to overwrite it, or --out another file.',
    });
  }
}

/** Writes the enrollment with mode 0600 (created so; an overwritten file is chmod-ed first). */
async function writeEnrollment(
  file: string,
  enrollment: z.infer<typeof enrollmentSchema>,
  force: boolean,
): Promise<void> {
  const text = `${JSON.stringify(enrollment, null, 2)}\n`;
  try {
    if (force) {
      await fs.chmod(file, 0o600).catch(() => undefined);
      await fs.writeFile(file, text, { mode: 0o600, flag: 'w' });
      await fs.chmod(file, 0o600);
    } else {
      await fs.writeFile(file, text, { mode: 0o600, flag: 'wx' });
    }
  } catch (err) {
    throw new CliError({
      title: 'Could not write the enrollment',
      detail: `${file}: ${describeError(err)}`,
      hint: `The device is registered; get a fresh enrollment with \`relay-broker devices rotate ${enrollment.deviceId} --out <file>\`.`,
    });
  }
}

function describeDevice(d: z.infer<typeof deviceSchema>): string[] {
  const tags = Object.entries(d.tags)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
  return [
    `device:      ${d.deviceId}`,
    ...(d.displayName ? [`name:        ${d.displayName}`] : []),
    ...(tags ? [`tags:        ${tags}`] : []),
    ...(d.queueName ? [`queue:       ${d.queueName}`] : []),
    ...(d.createdAt ? [`created:     ${d.createdAt}${d.createdBy ? ` by ${d.createdBy}` : ''}`] : []),
    ...(d.rotatedAt ? [`rotated:     ${d.rotatedAt}`] : []),
    ...(d.enrollmentExpiresAt ? [`enrollment:  expires ${d.enrollmentExpiresAt}`] : []),
    ...(d.presence ? [`agent:       ${presenceText(d)}`] : []),
    ...(d.agentStartedAt && d.presence === 'online' ? [`started:     ${d.agentStartedAt}`] : []),
    ...(d.sessions ?? []).map(
      (s) =>
        `session:     ${s.sessionId} listener ${s.listener}${s.targetError ? `; target refused: ${s.targetError}` : ''}`,
    ),
  ];
}

export function registerDevices(program: Command): void {
  const devices = program.command('devices').description('register and manage devices (admin)');

  devices
    .command('add')
    .description('register a device and write its enrollment file (mode 0600) for `relay-broker agent`')
    .argument('<deviceId>', 'device id: 3-59 lowercase letters, digits and single hyphens', parseDeviceId)
    .option('--name <displayName>', 'display name')
    .option('--tag <name=value>', 'a tag (repeatable)', collectTag)
    .option('--out <file>', 'where to write the enrollment (default ./<deviceId>.json)')
    .option('--force', 'overwrite the enrollment file if it exists', false)
    .action(
      action(async (cmd, out, deviceId: string) => {
        const o = cmd.opts<{ name?: string; tag?: Record<string, string>; out?: string; force: boolean }>();
        const file = path.resolve(o.out ?? `${deviceId}.json`);
        await checkWritable(file, o.force);
        const { api } = await apiFor(cmd, out);
        const res = await api.post('/devices', {
          deviceId,
          ...(o.name ? { displayName: o.name } : {}),
          ...(o.tag ? { tags: o.tag } : {}),
        });
        const enrollment = parseAnswer(enrollmentSchema, res.body, 'The enrollment');
        await writeEnrollment(file, enrollment, o.force);
        out.result({ deviceId, enrollmentFile: file, expiresAt: enrollment.expiresAt }, () => [
          `device ${deviceId} registered`,
          `enrollment written to ${file} (mode 600, expires ${enrollment.expiresAt}); it is a credential: copy it to the device only`,
        ]);
        if (!out.json)
          out.note(
            `next, copy it to the device and run there: relay-broker agent --enrollment ${shownPath(file)} --allow 3389`,
          );
      }),
    );

  devices
    .command('list')
    .description('list registered devices')
    .action(
      action(async (cmd, out) => {
        const { api } = await apiFor(cmd, out);
        const res = await api.get('/devices');
        const list = parseAnswer(z.object({ devices: z.array(deviceSchema) }).loose(), res.body, 'The device list');
        out.result(res.body, () =>
          list.devices.length === 0
            ? ['no devices registered; add one with `relay-broker devices add <id>`']
            : table(
                ['DEVICE', 'NAME', 'TAGS', 'AGENT', 'LAST SEEN', 'ENROLLMENT EXPIRES'],
                list.devices.map((d) => [
                  d.deviceId,
                  d.displayName ?? '',
                  Object.entries(d.tags)
                    .map(([k, v]) => `${k}=${v}`)
                    .join(','),
                  d.presence ?? '',
                  d.lastSeenAt ?? '',
                  d.enrollmentExpiresAt ?? '',
                ]),
              ),
        );
      }),
    );

  devices
    .command('show')
    .description('show one device')
    .argument('<deviceId>', 'device id', parseDeviceId)
    .action(
      action(async (cmd, out, deviceId: string) => {
        const { api } = await apiFor(cmd, out);
        const res = await api.get(`/devices/${encodeURIComponent(deviceId)}`);
        const d = parseAnswer(deviceSchema, res.body, 'The device');
        out.result(res.body, () => describeDevice(d));
      }),
    );

  devices
    .command('rotate')
    .description('issue a new enrollment (the previous one stops working at once) and write it (mode 0600)')
    .argument('<deviceId>', 'device id', parseDeviceId)
    .option('--out <file>', 'where to write the enrollment (default ./<deviceId>.json)')
    .option('--force', 'overwrite the enrollment file if it exists', false)
    .action(
      action(async (cmd, out, deviceId: string) => {
        const o = cmd.opts<{ out?: string; force: boolean }>();
        const file = path.resolve(o.out ?? `${deviceId}.json`);
        await checkWritable(file, o.force);
        const { api } = await apiFor(cmd, out);
        const res = await api.post(`/devices/${encodeURIComponent(deviceId)}/rotate`);
        const enrollment = parseAnswer(enrollmentSchema, res.body, 'The enrollment');
        await writeEnrollment(file, enrollment, o.force);
        out.result({ deviceId, enrollmentFile: file, expiresAt: enrollment.expiresAt }, () => [
          `enrollment of ${deviceId} rotated: the previous one no longer works`,
          `new enrollment written to ${file} (mode 600, expires ${enrollment.expiresAt}); restart the agent with it`,
        ]);
      }),
    );

  devices
    .command('rm')
    .alias('remove')
    .description('remove a device: revokes its enrollment, deletes its queue and ends its sessions')
    .argument('<deviceId>', 'device id', parseDeviceId)
    .action(
      action(async (cmd, out, deviceId: string) => {
        const { api } = await apiFor(cmd, out);
        await api.delete(`/devices/${encodeURIComponent(deviceId)}`);
        out.result(
          { deviceId, removed: true },
          () => `device ${deviceId} removed: its enrollment is revoked and its sessions are ending`,
        );
      }),
    );
}
