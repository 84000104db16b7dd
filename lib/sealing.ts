// Secrets at rest: relay rule keys in the namespaces table and a session's send token in its
// orchestration status are stored sealed (AES-256-GCM with the app's sealing key), never in
// clear. The same key derives each session's readyToken, so a retried activity reproduces it
// and nothing but its hash needs to be kept.
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createHmac,
  hkdfSync,
  randomBytes,
  timingSafeEqual,
} from 'node:crypto';
import { SealedDataError } from './errors';

const VERSION = 'v1';

// In lib/errors.ts with every other code; re-exported for existing importers.
export { SealedDataError };

export class Sealer {
  private readonly encKey: Buffer;
  private readonly tokenKey: Buffer;

  /** `key`: at least 32 bytes of secret material (SEALING_KEY, base64). */
  constructor(key: Buffer) {
    if (key.length < 32) throw new Error('The sealing key must be at least 32 bytes');
    this.encKey = Buffer.from(hkdfSync('sha256', key, Buffer.alloc(0), 'relay-broker seal v1', 32));
    this.tokenKey = Buffer.from(hkdfSync('sha256', key, Buffer.alloc(0), 'relay-broker ready-token v1', 32));
  }

  /** Encrypts `plaintext`, bound to `context` (e.g. the namespace name) so a sealed value cannot be moved. */
  seal(plaintext: string, context: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.encKey, iv);
    cipher.setAAD(Buffer.from(context, 'utf8'));
    const ct = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return `${VERSION}.${iv.toString('base64url')}.${Buffer.concat([ct, cipher.getAuthTag()]).toString('base64url')}`;
  }

  open(sealed: string, context: string): string {
    const [version, ivText, body] = sealed.split('.');
    if (version !== VERSION || !ivText || !body) throw new SealedDataError('A stored secret has an unknown format.');
    const data = Buffer.from(body, 'base64url');
    if (data.length < 16) throw new SealedDataError('A stored secret is truncated.');
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.encKey, Buffer.from(ivText, 'base64url'));
      decipher.setAAD(Buffer.from(context, 'utf8'));
      decipher.setAuthTag(data.subarray(data.length - 16));
      return Buffer.concat([decipher.update(data.subarray(0, data.length - 16)), decipher.final()]).toString('utf8');
    } catch {
      throw new SealedDataError('A stored secret could not be opened (wrong sealing key or tampered data).');
    }
  }

  /** The session's readyToken: 256 bits, unpredictable without the key, the same on every retry. */
  readyToken(sessionId: string): string {
    return createHmac('sha256', this.tokenKey).update(`ready:${sessionId}`).digest('base64url');
  }
}

export function sha256Base64url(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('base64url');
}

/** Compares a presented token with a stored sha256 hash in constant time. */
export function tokenMatchesHash(presented: string, expectedHash: string): boolean {
  const a = Buffer.from(sha256Base64url(presented), 'utf8');
  const b = Buffer.from(expectedHash, 'utf8');
  return a.length === b.length && timingSafeEqual(a, b);
}
