// Byte helpers shared by the data-plane tests.
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
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

/** Sends `payload` to 127.0.0.1:`port` and reads as many bytes back. */
export async function echoThrough(port: number, payload: Buffer): Promise<Buffer> {
  const socket = net.connect(port, '127.0.0.1');
  socket.on('error', () => undefined);
  await once(socket, 'connect');
  const chunks: Buffer[] = [];
  let got = 0;
  const done = new Promise<Buffer>((resolve, reject) => {
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      got += c.length;
      if (got >= payload.length) resolve(Buffer.concat(chunks));
    });
    socket.once('close', () =>
      got >= payload.length
        ? resolve(Buffer.concat(chunks))
        : reject(new Error(`closed after ${got} of ${payload.length} bytes`)),
    );
  });
  socket.write(payload);
  try {
    return await done;
  } finally {
    socket.destroy();
  }
}
