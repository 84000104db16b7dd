// Per-device grants: which operator may open sessions to which device (`grants` table, PK =
// principal id, RK = deviceId or `*`), and the one authorization rule for opening a session.
import { odata, type TableClient } from '@azure/data-tables';
import { z } from 'zod';
import { DeviceNotGrantedError, RoleRequiredError, ValidationError } from '../errors';
import { deleteIfExists, getOrUndefined, insertOrConflict } from '../storage/tables';
import { DEVICE_ID_PATTERN } from '../validation';
import { PRINCIPAL_ID_PATTERN } from './authenticator';
import { isAdmin, type Principal } from './principal';

export const GRANTS_TABLE = 'grants';
/** Row key of a grant that covers every device. */
export const ALL_DEVICES = '*';

/** Same rule as device ids everywhere (section 3), so that `dev-<deviceId>` is a valid queue name. */

export const principalIdSchema = z.string().regex(PRINCIPAL_ID_PATTERN, 'must be 1-128 of letters, digits and . _ @ -');
export const grantDeviceIdSchema = z
  .string()
  .refine(
    (v) => v === ALL_DEVICES || DEVICE_ID_PATTERN.test(v),
    'must be * or 3-59 lowercase letters, digits and single hyphens, starting and ending with a letter or digit',
  );

export interface Grant {
  principalId: string;
  /** A device id, or `*` for every device. */
  deviceId: string;
  createdAt: string;
  createdBy: string;
}

const grantEntitySchema = z.object({
  partitionKey: principalIdSchema,
  rowKey: grantDeviceIdSchema,
  createdAt: z.string().min(1),
  createdBy: z.string(),
});

interface GrantEntity {
  partitionKey: string;
  rowKey: string;
  createdAt: string;
  createdBy: string;
}

function toGrant(entity: unknown): Grant {
  const e = grantEntitySchema.parse(entity);
  return { principalId: e.partitionKey, deviceId: e.rowKey, createdAt: e.createdAt, createdBy: e.createdBy };
}

function validIds(principalId: string, deviceId?: string): void {
  const errors: Array<{ path: string; message: string }> = [];
  const p = principalIdSchema.safeParse(principalId);
  if (!p.success) errors.push({ path: 'principalId', message: p.error.issues[0].message });
  if (deviceId !== undefined) {
    const d = grantDeviceIdSchema.safeParse(deviceId);
    if (!d.success) errors.push({ path: 'deviceId', message: d.error.issues[0].message });
  }
  if (errors.length > 0) throw new ValidationError(`Invalid ${errors.map((e) => e.path).join(' and ')}.`, errors);
}

export interface PutGrantResult {
  grant: Grant;
  /** false when the grant existed already (PUT is idempotent and keeps the first createdAt/createdBy). */
  created: boolean;
}

export class GrantStore {
  constructor(private readonly table: TableClient) {}

  /** Creates the table when missing; safe to call on every start. */
  async ensureTable(): Promise<void> {
    await this.table.createTable();
  }

  /**
   * Grants `principalId` the device (or `*`). A second run finds the grant and returns it unchanged
   * with `created: false`.
   */
  async put(principalId: string, deviceId: string, by: string, now: Date = new Date()): Promise<PutGrantResult> {
    validIds(principalId, deviceId);
    const entity: GrantEntity = {
      partitionKey: principalId,
      rowKey: deviceId,
      createdAt: now.toISOString(),
      createdBy: by,
    };
    if ((await insertOrConflict(this.table, entity)) !== 'conflict') return { grant: toGrant(entity), created: true };
    const existing = await this.get(principalId, deviceId);
    // Deleted between our conflict and our read: the caller's intent still holds, so write it.
    if (!existing) {
      await this.table.upsertEntity(entity, 'Replace');
      return { grant: toGrant(entity), created: true };
    }
    return { grant: existing, created: false };
  }

  async get(principalId: string, deviceId: string): Promise<Grant | undefined> {
    validIds(principalId, deviceId);
    return getOrUndefined(this.table, principalId, deviceId, toGrant);
  }

  /** Removes a grant; true if it existed. A second run returns false. */
  async delete(principalId: string, deviceId: string): Promise<boolean> {
    validIds(principalId, deviceId);
    return deleteIfExists(this.table, principalId, deviceId);
  }

  /** Grants of one principal, or all grants; at most `limit` (default 1000), ordered by principal then device. */
  async list(options: { principalId?: string; limit?: number } = {}): Promise<Grant[]> {
    const limit = options.limit ?? 1000;
    if (options.principalId !== undefined) validIds(options.principalId);
    const filter = options.principalId !== undefined ? odata`PartitionKey eq ${options.principalId}` : undefined;
    const grants: Grant[] = [];
    const pages = this.table
      .listEntities({ queryOptions: filter ? { filter } : {} })
      .byPage({ maxPageSize: Math.min(limit, 1000) });
    for await (const page of pages) {
      for (const entity of page) {
        grants.push(toGrant(entity));
        if (grants.length >= limit) return grants;
      }
    }
    return grants;
  }

  /** True if the principal holds a grant for exactly this device or for `*`: one query. */
  async isGranted(principalId: string, deviceId: string): Promise<boolean> {
    if (deviceId === ALL_DEVICES)
      throw new ValidationError('Invalid deviceId.', [{ path: 'deviceId', message: 'must name one device' }]);
    validIds(principalId, deviceId);
    const filter = odata`PartitionKey eq ${principalId} and (RowKey eq ${deviceId} or RowKey eq ${ALL_DEVICES})`;
    const pages = this.table.listEntities({ queryOptions: { filter, select: ['RowKey'] } }).byPage({ maxPageSize: 2 });
    for await (const page of pages) {
      if (page.length > 0) return true;
    }
    return false;
  }
}

/**
 * The rule for POST /sessions: an admin may open a session to any device, an operator only to a
 * device it is granted (exactly or through `*`). Anyone else is refused before any grant lookup.
 */
export async function authorizeSessionOpen(
  principal: Principal,
  deviceId: string,
  grants: Pick<GrantStore, 'isGranted'>,
): Promise<void> {
  if (isAdmin(principal)) return;
  if (!principal.roles.includes('operator')) {
    throw new RoleRequiredError('Opening a session needs the role operator or admin.');
  }
  if (!(await grants.isGranted(principal.id, deviceId))) {
    throw new DeviceNotGrantedError(`You are not granted access to device ${deviceId}.`);
  }
}
