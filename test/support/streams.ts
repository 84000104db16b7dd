// Byte helpers shared by the data-plane tests.
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';

export const sha256Hex = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Reads exactly `n` bytes (or what the stream has before it ends). */
export async function readBytes(stream: Readable, n: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let got = 0;
  for await (const chunk of stream) {
    chunks.push(chunk as Buffer);
    got += (chunk as Buffer).length;
    if (got >= n) break;
  }
  return Buffer.concat(chunks).subarray(0, n);
}
