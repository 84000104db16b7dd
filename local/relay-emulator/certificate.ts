// The emulator's TLS identity: a self-signed certificate generated at start, valid for 127.0.0.1
// and localhost. Clients trust it explicitly (a `ca` option or NODE_EXTRA_CA_CERTS), never globally off.
import selfsigned from 'selfsigned';

export interface TlsIdentity {
  cert: string;
  key: string;
}

export async function generateTlsIdentity(): Promise<TlsIdentity> {
  const notBeforeDate = new Date(Date.now() - 60_000);
  const notAfterDate = new Date(notBeforeDate.getTime() + 7 * 24 * 3600_000);
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
        altNames: [
          { type: 7, ip: '127.0.0.1' },
          { type: 2, value: 'localhost' },
        ],
      },
    ],
  });
  return { cert: pems.cert, key: pems.private };
}
