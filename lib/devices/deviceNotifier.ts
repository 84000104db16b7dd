// Sends the device its messages on its own queue: JSON, base64-encoded as the Functions queue
// binding writes it, with a time-to-live so a device that wakes up late never acts on a stale one.
import { QueueServiceClient } from '@azure/storage-queue';
import { z } from 'zod';
import { queueNameFor } from './deviceRegistry';

export const sessionOpenMessageSchema = z.object({
  type: z.literal('session.open'),
  version: z.literal(1),
  sessionId: z.string(),
  deviceId: z.string(),
  port: z.number().int().min(1).max(65535),
  relay: z.object({
    namespace: z.string(),
    endpoint: z.string(),
    hybridConnection: z.string(),
    listenToken: z.string(),
    expiresAt: z.string(),
  }),
  readyUrl: z.string(),
  readyToken: z.string(),
  notAfter: z.string(),
});
export type SessionOpenMessage = z.infer<typeof sessionOpenMessageSchema>;

export const sessionCloseMessageSchema = z.object({
  type: z.literal('session.close'),
  version: z.literal(1),
  sessionId: z.string(),
  deviceId: z.string(),
  reason: z.string(),
});
export type SessionCloseMessage = z.infer<typeof sessionCloseMessageSchema>;

export const deviceMessageSchema = z.discriminatedUnion('type', [sessionOpenMessageSchema, sessionCloseMessageSchema]);
export type DeviceMessage = z.infer<typeof deviceMessageSchema>;

export function encodeDeviceMessage(m: DeviceMessage): string {
  return Buffer.from(JSON.stringify(m), 'utf8').toString('base64');
}

/** Decodes a queue message text (base64 JSON); throws a ZodError or SyntaxError on anything else. */
export function decodeDeviceMessage(text: string): DeviceMessage {
  return deviceMessageSchema.parse(JSON.parse(Buffer.from(text, 'base64').toString('utf8')));
}

export class DeviceNotifier {
  constructor(private readonly queues: QueueServiceClient) {}

  /** Second run: a second copy of the message (the agent ignores a session it already handles). */
  async send(deviceId: string, message: DeviceMessage, ttlSeconds: number): Promise<void> {
    await this.queues.getQueueClient(queueNameFor(deviceId)).sendMessage(encodeDeviceMessage(message), {
      messageTimeToLive: Math.max(1, Math.ceil(ttlSeconds)),
    });
  }
}
