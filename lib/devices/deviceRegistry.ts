// The device registry: a device is a row in `devices` plus its own queue `dev-<deviceId>` with a
// stored access policy. The device's queue credential is a SAS bound to that policy (read + process
// on its queue only), so replacing or removing the policy revokes it at once. Its API credential
// (`deviceKey`, for heartbeats and renewal) is issued with the enrollment and rotated with it; the
// row keeps only its sha256.
import { randomBytes } from 'node:crypto';
import {
  generateQueueSASQueryParameters,
  QueueServiceClient,
  RestError,
  StorageSharedKeyCredential,
} from '@azure/storage-queue';
import { z } from 'zod';
import type { Principal } from '../auth/principal';
import { DeviceBeingDeletedError, DeviceNotFoundError } from '../errors';
import { sha256Base64url } from '../sealing';
import { deviceIdSchema } from '../validation';
import { DeviceStore, type DeviceRecord } from './deviceStore';

export const registerDeviceSchema = z
  .object({
    deviceId: deviceIdSchema,
    displayName: z.string().trim().min(1).max(100).optional(),
    tags: z
      .record(z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'tag names: 1-64 letters, digits, _ . -'), z.string().max(256))
      .refine((t) => Object.keys(t).length <= 16, 'at most 16 tags')
      .optional(),
  })
  .strict();
export type RegisterDeviceInput = z.infer<typeof registerDeviceSchema>;

/** What the agent needs to start: written by `relay-broker devices add` to a 0600 file. */
export interface Enrollment {
  deviceId: string;
  apiUrl: string;
  queueUrl: string;
  queueSas: string;
  expiresAt: string;
  /**
   * The device credential (256 random bits) for POST /devices/{id}/heartbeat; only here, never
   * stored. Always issued; absent only in enrollment files written before device credentials.
   */
  deviceKey?: string;
}

/** What a device holds, as its agent last reported it. */
export interface HeldSession {
  sessionId: string;
  listener: 'starting' | 'online' | 'offline';
  /** The allowed target refused or failed the last connection (e.g. ECONNREFUSED 127.0.0.1:22). */
  targetError?: string;
}

export interface DeviceView {
  deviceId: string;
  displayName?: string;
  tags: Record<string, string>;
  queueName: string;
  createdAt: string;
  createdBy: string;
  rotatedAt?: string;
  enrollmentExpiresAt: string;
  /** `never`: no agent has reported (or it predates heartbeats); `offline`: stale or stopped. */
  presence: 'online' | 'offline' | 'never';
  lastSeenAt?: string;
  agentStartedAt?: string;
  sessions?: HeldSession[];
}

export interface DeviceRegistryOptions {
  store: DeviceStore;
  queueService: QueueServiceClient;
  /** Signs the queue SAS (Queue storage has no user-delegation SAS). */
  signer: StorageSharedKeyCredential;
  apiUrl: string;
  /** How long an enrollment (the queue SAS policy and the device credential) is valid. */
  enrollmentSeconds: number;
  /** Past this since lastSeenAt the device is offline (default 40 s). */
  offlineAfterMs?: number;
  now?: () => Date;
}

export function queueNameFor(deviceId: string): string {
  return `dev-${deviceId}`;
}

export class DeviceRegistry {
  private readonly now: () => Date;
  constructor(private readonly o: DeviceRegistryOptions) {
    this.now = o.now ?? (() => new Date());
  }

  /**
   * Registers a device: the row first (it claims the id: a second register gets 409), then the
   * queue and its policy. A failure after the row is written removes the row again.
   * Second run: 409 `device_exists`.
   */
  async register(principal: Principal, input: RegisterDeviceInput): Promise<Enrollment> {
    const now = this.now();
    const deviceKey = newDeviceKey();
    const record: DeviceRecord = {
      deviceId: input.deviceId,
      displayName: input.displayName,
      tags: input.tags ?? {},
      queueName: queueNameFor(input.deviceId),
      policyId: newPolicyId(),
      sasExpiresAt: this.expiryFrom(now),
      createdAt: now.toISOString(),
      createdBy: principal.id,
      credentialHash: sha256Base64url(deviceKey),
    };
    await this.o.store.insert(record);
    try {
      const queue = this.o.queueService.getQueueClient(record.queueName);
      try {
        await queue.createIfNotExists();
      } catch (err) {
        // Azure refuses to recreate a queue for ~30 s after deleting it.
        if (err instanceof RestError && err.statusCode === 409) {
          throw new DeviceBeingDeletedError(
            `Device ${input.deviceId} was deleted moments ago; its queue is still being removed. Retry in 30 s.`,
            {
              headers: { 'retry-after': '30' },
            },
          );
        }
        throw err;
      }
      await this.setPolicy(record);
      return this.enrollment(record, deviceKey);
    } catch (err) {
      await this.o.store.delete(record.deviceId).catch(() => undefined);
      throw err;
    }
  }

  async get(deviceId: string): Promise<DeviceView> {
    return this.view(await this.o.store.require(deviceId));
  }

  async list(): Promise<DeviceView[]> {
    return (await this.o.store.list()).map((d) => this.view(d));
  }

  /** Online, offline (stale or stopped) or never seen, at `now`. */
  presenceOf(d: Pick<DeviceRecord, 'lastSeenAt' | 'agentState'>): DeviceView['presence'] {
    if (!d.lastSeenAt) return 'never';
    if (d.agentState === 'stopped') return 'offline';
    const age = this.now().getTime() - Date.parse(d.lastSeenAt);
    return age < (this.o.offlineAfterMs ?? 40_000) ? 'online' : 'offline';
  }

  /** The record as stored (for the notifier and sessions); NotFoundError if absent. */
  async requireRecord(deviceId: string): Promise<DeviceRecord> {
    return this.o.store.require(deviceId);
  }

  /**
   * Replaces the stored access policy with a new id: every SAS bound to the old one stops working.
   * Second run: another new policy (the previous enrollment is revoked too).
   */
  async rotate(deviceId: string): Promise<Enrollment> {
    const current = await this.o.store.require(deviceId);
    const now = this.now();
    const deviceKey = newDeviceKey();
    const next: DeviceRecord = {
      ...current,
      policyId: newPolicyId(),
      sasExpiresAt: this.expiryFrom(now),
      rotatedAt: now.toISOString(),
      credentialHash: sha256Base64url(deviceKey),
    };
    delete (next as Partial<typeof current>).etag;
    // A concurrent rotation or delete wins: ConcurrencyError (409 concurrent_update), the caller retries.
    await this.o.store.replace(next, current.etag);
    await this.setPolicy(next);
    return this.enrollment(next, deviceKey);
  }

  /**
   * Extends the enrollment: the same policy id with a later expiry, so the SAS the device holds
   * keeps working and only its expiry moves (no file copy, no dropped poll). The device credential
   * stays the same. Answers the new expiry. Second run: a later expiry again (harmless).
   */
  async renew(current: DeviceRecord & { etag: string }): Promise<{ expiresAt: string }> {
    const next: DeviceRecord = { ...current, sasExpiresAt: this.expiryFrom(this.now()) };
    delete (next as Partial<typeof current>).etag;
    await this.o.store.replace(next, current.etag);
    await this.setPolicy(next);
    return { expiresAt: next.sasExpiresAt };
  }

  /** When an enrollment issued or renewed at `now` expires. */
  private expiryFrom(now: Date): string {
    return new Date(now.getTime() + this.o.enrollmentSeconds * 1000).toISOString();
  }

  get enrollmentSeconds(): number {
    return this.o.enrollmentSeconds;
  }

  /**
   * Revokes the SAS (empties the policy list), deletes the queue, then the row.
   * Second run: NotFoundError once the row is gone.
   */
  async delete(deviceId: string): Promise<void> {
    const record = await this.o.store.get(deviceId);
    if (!record) throw new DeviceNotFoundError(`Device ${deviceId} is not registered.`);
    const queue = this.o.queueService.getQueueClient(record.queueName);
    try {
      await queue.setAccessPolicy([]);
    } catch (err) {
      if (!(err instanceof RestError && err.statusCode === 404)) throw err;
    }
    await queue.deleteIfExists();
    await this.o.store.delete(deviceId);
  }

  private async setPolicy(record: DeviceRecord): Promise<void> {
    const queue = this.o.queueService.getQueueClient(record.queueName);
    await queue.setAccessPolicy([
      {
        id: record.policyId,
        accessPolicy: {
          permissions: 'rp',
          // Five minutes of clock skew tolerance for devices.
          startsOn: new Date(new Date(record.createdAt).getTime() - 5 * 60_000),
          expiresOn: new Date(record.sasExpiresAt),
        },
      },
    ]);
  }

  private enrollment(record: DeviceRecord, deviceKey: string): Enrollment {
    const queueUrl = this.o.queueService.getQueueClient(record.queueName).url;
    const sas = generateQueueSASQueryParameters(
      { queueName: record.queueName, identifier: record.policyId },
      this.o.signer,
    ).toString();
    return {
      deviceId: record.deviceId,
      apiUrl: this.o.apiUrl,
      queueUrl,
      queueSas: sas,
      expiresAt: record.sasExpiresAt,
      deviceKey,
    };
  }

  private view(d: DeviceRecord): DeviceView {
    const presence = this.presenceOf(d);
    return {
      deviceId: d.deviceId,
      ...(d.displayName ? { displayName: d.displayName } : {}),
      tags: d.tags,
      queueName: d.queueName,
      createdAt: d.createdAt,
      createdBy: d.createdBy,
      ...(d.rotatedAt ? { rotatedAt: d.rotatedAt } : {}),
      enrollmentExpiresAt: d.sasExpiresAt,
      presence,
      ...(d.lastSeenAt ? { lastSeenAt: d.lastSeenAt } : {}),
      ...(d.agentStartedAt ? { agentStartedAt: d.agentStartedAt } : {}),
      ...(presence === 'online' && d.heldJson ? { sessions: parseHeld(d.heldJson) } : {}),
    };
  }
}

/** The held sessions read back; an unreadable value is shown as none rather than failing a listing. */
export function parseHeld(json: string | undefined): HeldSession[] {
  if (!json) return [];
  try {
    const parsed = heldSessionsSchema.safeParse(JSON.parse(json));
    return parsed.success ? parsed.data : [];
  } catch {
    return [];
  }
}

export const heldSessionsSchema = z
  .array(
    z
      .object({
        sessionId: z.uuid(),
        listener: z.enum(['starting', 'online', 'offline']),
        targetError: z.string().max(300).optional(),
      })
      .strict(),
  )
  .max(256);

function newDeviceKey(): string {
  return `dk_${randomBytes(32).toString('base64url')}`;
}

function newPolicyId(): string {
  // Policy ids are at most 64 characters; 128 random bits make them unguessable and unique.
  return `p-${randomBytes(16).toString('hex')}`;
}
