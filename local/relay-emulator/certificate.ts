// The emulator's TLS identity: a self-signed certificate valid for 127.0.0.1, localhost and the
// host name local mode advertises (RELAY_BROKER_PUBLIC_HOST). Clients trust it explicitly (a `ca`
// option or NODE_EXTRA_CA_CERTS), never globally off. `npm start` keeps it in the state folder, so a
// device that was handed the CA keeps trusting the emulator after a restart.
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import { isIP } from 'node:net';
import path from 'node:path';
import selfsigned from 'selfsigned';

export interface TlsIdentity {
  cert: string;
  key: string;
}

const DEFAULT_HOSTS = ['127.0.0.1', 'localhost'];

/** A fresh identity naming 127.0.0.1, localhost and `extraHosts` (IPs or DNS names), valid `days`. */
export async function generateTlsIdentity(extraHosts: readonly string[] = [], days = 7): Promise<TlsIdentity> {
  const notBeforeDate = new Date(Date.now() - 60_000);
  const notAfterDate = new Date(notBeforeDate.getTime() + days * 24 * 3600_000);
  const hosts = [...new Set([...DEFAULT_HOSTS, ...extraHosts])];
  const pems = await selfsigned.generate([{ name: 'commonName', value: 'relay-emulator.localhost' }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    notBeforeDate,
    notAfterDate,
    extensions: [
      { name: 'basicConstraints', cA: true },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, keyCertSign: true },
      { name: 'extKeyUsage', serverAuth: true },
      {
        name: 'subjectAltName',
        altNames: hosts.map((h) => (isIP(h) ? { type: 7, ip: h } : { type: 2, value: h })),
      },
    ],
  });
  return { cert: pems.cert, key: pems.private };
}

export const TLS_CERT_FILE = 'relay-tls-cert.pem';
export const TLS_KEY_FILE = 'relay-tls-key.pem';
/** A kept certificate is replaced this long before it expires. */
const RENEW_BEFORE_MS = 30 * 24 * 3600_000;

/**
 * The identity kept in `dir` (cert and key, 0600): reused while it names every host in
 * `extraHosts` and is valid for 30 more days; otherwise a new one (valid a year) replaces it, and
 * `replaced` says why, since devices that trusted the old CA must be given the new one.
 * A second call with the same hosts returns the same identity.
 */
export async function loadOrCreateTlsIdentity(
  dir: string,
  extraHosts: readonly string[] = [],
): Promise<{ identity: TlsIdentity; replaced?: string }> {
  const certFile = path.join(dir, TLS_CERT_FILE);
  const keyFile = path.join(dir, TLS_KEY_FILE);
  let replaced: string | undefined;
  try {
    const cert = fs.readFileSync(certFile, 'utf8');
    const key = fs.readFileSync(keyFile, 'utf8');
    const x509 = new X509Certificate(cert);
    const missing = [...DEFAULT_HOSTS, ...extraHosts].filter((h) =>
      isIP(h) ? x509.checkIP(h) === undefined : x509.checkHost(h) === undefined,
    );
    if (Date.parse(x509.validTo) - Date.now() < RENEW_BEFORE_MS) replaced = `it expires at ${x509.validTo}`;
    else if (missing.length > 0) replaced = `it does not name ${missing.join(', ')}`;
    else return { identity: { cert, key } };
  } catch (err) {
    if ((err as { code?: unknown }).code !== 'ENOENT') replaced = `it could not be read (${String(err)})`;
  }
  const identity = await generateTlsIdentity(extraHosts, 365);
  for (const [file, text] of [
    [keyFile, identity.key],
    [certFile, identity.cert],
  ] as const) {
    const tmp = `${file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, text, { mode: 0o600 });
    fs.renameSync(tmp, file);
  }
  return { identity, replaced };
}
