// The device registry: a device is a row in `devices` plus its own queue `dev-<deviceId>` with a
// stored access policy. The device's credential is a SAS bound to that policy (read + process on
// its queue only), so replacing or removing the policy revokes it at once.
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
}

export interface DeviceRegistryOptions {
  store: DeviceStore;
  queueService: QueueServiceClient;
  /** Signs the queue SAS (Queue storage has no user-delegation SAS). */
  signer: StorageSharedKeyCredential;
  apiUrl: string;
  sasDays: number;
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
    const record: DeviceRecord = {
      deviceId: input.deviceId,
      displayName: input.displayName,
      tags: input.tags ?? {},
      queueName: queueNameFor(input.deviceId),
      policyId: newPolicyId(),
      sasExpiresAt: new Date(now.getTime() + this.o.sasDays * 86_400_000).toISOString(),
      createdAt: now.toISOString(),
      createdBy: principal.id,
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
      return this.enrollment(record);
    } catch (err) {
      await this.o.store.delete(record.deviceId).catch(() => undefined);
      throw err;
    }
  }

  async get(deviceId: string): Promise<DeviceView> {
    return view(await this.o.store.require(deviceId));
  }

  async list(): Promise<DeviceView[]> {
    return (await this.o.store.list()).map(view);
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
    const next: DeviceRecord = {
      ...current,
      policyId: newPolicyId(),
      sasExpiresAt: new Date(now.getTime() + this.o.sasDays * 86_400_000).toISOString(),
      rotatedAt: now.toISOString(),
    };
    delete (next as Partial<typeof current>).etag;
    // A concurrent rotation or delete wins: ConcurrencyError (409 concurrent_update), the caller retries.
    await this.o.store.replace(next, current.etag);
    await this.setPolicy(next);
    return this.enrollment(next);
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

  private enrollment(record: DeviceRecord): Enrollment {
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
    };
  }
}

function newPolicyId(): string {
  // Policy ids are at most 64 characters; 128 random bits make them unguessable and unique.
  return `p-${randomBytes(16).toString('hex')}`;
}

function view(d: DeviceRecord): DeviceView {
  return {
    deviceId: d.deviceId,
    ...(d.displayName ? { displayName: d.displayName } : {}),
    tags: d.tags,
    queueName: d.queueName,
    createdAt: d.createdAt,
    createdBy: d.createdBy,
    ...(d.rotatedAt ? { rotatedAt: d.rotatedAt } : {}),
    enrollmentExpiresAt: d.sasExpiresAt,
  };
}
