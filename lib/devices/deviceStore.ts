// The `devices` table: one row per registered device (PK "device", RK deviceId). Holds the
// queue name and the id of the stored access policy its SAS is bound to; never the SAS itself, and
// only the sha256 of the device credential. Presence (lastSeenAt, what the agent holds) is merged in
// by heartbeats without touching the rest of the row.
import { odata, TableClient } from '@azure/data-tables';
import { z } from 'zod';
import { ConcurrencyError, DeviceExistsError, DeviceNotFoundError } from '../errors';
import { deleteIfExists, getOrUndefined, insertOrConflict, tableFault } from '../storage/tables';

export const DEVICE_PARTITION = 'device';

export const deviceRecordSchema = z.object({
  deviceId: z.string(),
  displayName: z.string().optional(),
  tags: z.record(z.string(), z.string()),
  queueName: z.string(),
  policyId: z.string(),
  sasExpiresAt: z.string(),
  createdAt: z.string(),
  createdBy: z.string(),
  rotatedAt: z.string().optional(),
  /** sha256 (base64url) of the device credential issued with the enrollment; absent on old rows. */
  credentialHash: z.string().optional(),
  /** The last heartbeat written (throttled: see DevicePresence). Absent: the agent never reported. */
  lastSeenAt: z.string().optional(),
  /** `stopped`: the agent said it stops (offline at once); `running` otherwise. */
  agentState: z.enum(['running', 'stopped']).optional(),
  agentStartedAt: z.string().optional(),
  /** What the agent last reported holding: [{sessionId, listener, targetError?}] as JSON. */
  heldJson: z.string().optional(),
  /** The agent's last refusal: {sessionId, detail, at} as JSON (the cause an open reports). */
  lastRefusalJson: z.string().optional(),
});
export type DeviceRecord = z.infer<typeof deviceRecordSchema>;

interface DeviceEntity {
  partitionKey: string;
  rowKey: string;
  displayName?: string;
  tagsJson: string;
  queueName: string;
  policyId: string;
  sasExpiresAt: string;
  createdAt: string;
  createdBy: string;
  rotatedAt?: string;
  credentialHash?: string;
  lastSeenAt?: string;
  agentState?: string;
  agentStartedAt?: string;
  heldJson?: string;
  lastRefusalJson?: string;
  etag?: string;
}

/** The presence columns, written by a heartbeat with a Merge (rotate/delete never race with them). */
export type DevicePresenceFields = Pick<
  DeviceRecord,
  'lastSeenAt' | 'agentState' | 'agentStartedAt' | 'heldJson' | 'lastRefusalJson'
>;
const PRESENCE_COLUMNS = ['lastSeenAt', 'agentState', 'agentStartedAt', 'heldJson', 'lastRefusalJson'] as const;

function toEntity(d: DeviceRecord): DeviceEntity {
  return {
    partitionKey: DEVICE_PARTITION,
    rowKey: d.deviceId,
    ...(d.displayName !== undefined ? { displayName: d.displayName } : {}),
    tagsJson: JSON.stringify(d.tags),
    queueName: d.queueName,
    policyId: d.policyId,
    sasExpiresAt: d.sasExpiresAt,
    createdAt: d.createdAt,
    createdBy: d.createdBy,
    ...(d.rotatedAt ? { rotatedAt: d.rotatedAt } : {}),
    ...(d.credentialHash ? { credentialHash: d.credentialHash } : {}),
    ...Object.fromEntries(PRESENCE_COLUMNS.filter((c) => d[c] !== undefined).map((c) => [c, d[c]])),
  };
}

function fromEntity(e: Record<string, unknown>): DeviceRecord & { etag: string } {
  const parsed = deviceRecordSchema.parse({
    deviceId: e.rowKey,
    displayName: e.displayName ?? undefined,
    tags: JSON.parse(typeof e.tagsJson === 'string' ? e.tagsJson : '{}') as unknown,
    queueName: e.queueName,
    policyId: e.policyId,
    sasExpiresAt: e.sasExpiresAt,
    createdAt: e.createdAt,
    createdBy: e.createdBy,
    rotatedAt: e.rotatedAt ?? undefined,
    credentialHash: e.credentialHash ?? undefined,
    lastSeenAt: e.lastSeenAt ?? undefined,
    agentState: e.agentState ?? undefined,
    agentStartedAt: e.agentStartedAt ?? undefined,
    heldJson: e.heldJson ?? undefined,
    lastRefusalJson: e.lastRefusalJson ?? undefined,
  });
  return { ...parsed, etag: typeof e.etag === 'string' ? e.etag : '' };
}

export class DeviceStore {
  constructor(private readonly table: TableClient) {}

  async ensureTable(): Promise<void> {
    await this.table.createTable();
  }

  /** Inserts a new device; a second insert of the same id is a ConflictError (`device_exists`). */
  async insert(d: DeviceRecord): Promise<void> {
    if ((await insertOrConflict(this.table, toEntity(d))) === 'conflict') {
      throw new DeviceExistsError(`Device ${d.deviceId} is already registered.`, {
        op: 'deviceStore.insert',
      });
    }
  }

  async get(deviceId: string): Promise<(DeviceRecord & { etag: string }) | undefined> {
    return getOrUndefined(this.table, DEVICE_PARTITION, deviceId, fromEntity);
  }

  async require(deviceId: string): Promise<DeviceRecord & { etag: string }> {
    const d = await this.get(deviceId);
    if (!d) throw new DeviceNotFoundError(`Device ${deviceId} is not registered.`);
    return d;
  }

  /** Replaces the row only if it still has the ETag that was read; ConcurrencyError if it changed since. */
  async replace(d: DeviceRecord, etag: string): Promise<void> {
    try {
      await this.table.updateEntity(toEntity(d), 'Replace', { etag });
    } catch (err) {
      if (tableFault(err) !== 'preconditionFailed') throw err;
      throw new ConcurrencyError(`Device ${d.deviceId} was changed concurrently; try again.`, {
        op: 'deviceStore.replace',
        cause: err,
      });
    }
  }

  /**
   * Merges the presence columns into the row (no ETag: the last heartbeat wins, and the other
   * columns are untouched). DeviceNotFoundError if the row is gone. Second run: the same values again.
   */
  async recordPresence(deviceId: string, fields: DevicePresenceFields): Promise<void> {
    try {
      await this.table.updateEntity({ partitionKey: DEVICE_PARTITION, rowKey: deviceId, ...fields }, 'Merge');
    } catch (err) {
      if (tableFault(err) !== 'notFound') throw err;
      throw new DeviceNotFoundError(`Device ${deviceId} is not registered.`);
    }
  }

  async list(): Promise<DeviceRecord[]> {
    const out: DeviceRecord[] = [];
    const iter = this.table.listEntities<Record<string, unknown>>({
      queryOptions: { filter: odata`PartitionKey eq ${DEVICE_PARTITION}` },
    });
    for await (const e of iter) {
      const { etag: _etag, ...record } = fromEntity(e);
      out.push(record);
    }
    return out;
  }

  /** Deletes the row; deleting an absent row is not an error (second run is a no-op). */
  async delete(deviceId: string): Promise<void> {
    await deleteIfExists(this.table, DEVICE_PARTITION, deviceId);
  }
}
