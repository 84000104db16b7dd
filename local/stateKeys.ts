// Secrets the local stack keeps in its state folder, each in its own 0600 file: the host's system
// key (fresh every run, like the real host's master/system keys, which the host generates) and the
// sealing key (32 random bytes made once per state folder, in place of SEALING_KEY's Key Vault
// reference in Azure; never derived from anything public such as Azurite's well-known key).
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { newSystemKey } from './host/frontDoor';

export const SYSTEM_KEY_FILE = 'host-system-key';
export const SEALING_KEY_FILE = 'sealing-key';

/** Writes a fresh system key to `<dir>/host-system-key` (0600) and returns it. */
export function writeSystemKey(dir: string): { key: string; file: string } {
  const file = path.join(dir, SYSTEM_KEY_FILE);
  const key = newSystemKey();
  fs.rmSync(file, { force: true });
  fs.writeFileSync(file, key, { mode: 0o600, flag: 'wx' });
  return { key, file };
}

/** The system key a parent process wrote (hostProcess reads it from the file it is given). */
export function readSystemKey(file: string): string {
  const key = fs.readFileSync(file, 'utf8').trim();
  if (key.length < 32) throw new Error(`${file} does not hold a system key`);
  return key;
}

/**
 * The state folder's sealing key: read when `<dir>/sealing-key` exists, else 32 random bytes made
 * now and kept there with mode 0600. A second call (a restart on the same folder) returns the
 * same key, so what was sealed stays readable.
 */
export function loadOrCreateSealingKey(dir: string): Buffer {
  const file = path.join(dir, SEALING_KEY_FILE);
  try {
    fs.writeFileSync(file, randomBytes(32), { mode: 0o600, flag: 'wx' });
  } catch (err) {
    if ((err as { code?: unknown }).code !== 'EEXIST') throw err;
  }
  const key = fs.readFileSync(file);
  if (key.length < 32) throw new Error(`${file} holds ${key.length} bytes; a sealing key is 32`);
  return key;
}
