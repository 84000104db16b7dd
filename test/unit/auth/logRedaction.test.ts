import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { containsSecret, findSecretKinds, REDACTED, redactSecrets } from '../../../lib/auth/logRedaction';

// Fake secrets shaped like the real ones (none of them grants anything).
const JWT =
  'eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsInJvbGVzIjpbImFkbWluIl19.' +
  'MEUCIQDf7s0XhQ2n1kTqk6b8J3i0Zk9cJmH4l1gGQ1s2X3yZ4AIgVq6lq8Qz9o7N5m4L3k2J1h0G9f8E7d6C5b4A3z2Y1x0';
const UNSIGNED_JWT = 'eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJtYWxsb3J5In0.';
const SIG = 'Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdoaWo%3D';
const RELAY_SAS = `SharedAccessSignature sr=https%3A%2F%2Frbk-0001.servicebus.windows.net%2Fhc&sig=${SIG}&se=1767225600&skn=send`;
const ACCOUNT_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';
const READY = 'q3Jx0m8rT1u6cVwY2bZ9kL4aH7sD5fG0eR1tY8uI3oP';

const cases: Array<{ name: string; text: string; secret: string; kept?: string }> = [
  { name: 'a JWT in a sentence', text: `validated token ${JWT} for alice`, secret: JWT, kept: 'for alice' },
  { name: 'an unsigned JWT', text: `got ${UNSIGNED_JWT} from client`, secret: UNSIGNED_JWT },
  { name: 'an Authorization header', text: `authorization: Bearer ${JWT}`, secret: JWT, kept: 'Bearer' },
  {
    name: 'an opaque bearer token',
    text: 'Authorization: Bearer 0123456789abcdefghijKLMNOP',
    secret: '0123456789abcdefghijKLMNOP',
  },
  { name: 'a relay SAS token', text: `listener opened with ${RELAY_SAS} ok`, secret: SIG, kept: 'ok' },
  {
    name: 'a relay SAS token in JSON',
    text: JSON.stringify({ sendToken: RELAY_SAS, sessionId: 's-1' }),
    secret: SIG,
    kept: '"sessionId":"s-1"',
  },
  {
    name: 'a queue SAS URL',
    text: `GET https://acct.queue.core.windows.net/dev-x/messages?sv=2024-08-04&si=p1&sig=${SIG}&sp=rp`,
    secret: SIG,
    kept: 'sp=rp',
  },
  {
    name: 'a relay WebSocket URL',
    text: `wss://ns.servicebus.windows.net/$hc/hc?sb-hc-action=listen&sb-hc-token=${encodeURIComponent(RELAY_SAS)}&id=1`,
    secret: SIG,
    kept: '&id=1',
  },
  {
    name: 'a storage connection string',
    text: `AzureWebJobsStorage=DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=${ACCOUNT_KEY};QueueEndpoint=http://127.0.0.1:1/x`,
    secret: ACCOUNT_KEY,
    kept: 'AccountName=devstoreaccount1',
  },
  {
    name: 'a storage connection string SAS member',
    text: `BlobEndpoint=x;SharedAccessSignature=sv=2024&sig=${SIG}`,
    secret: SIG,
  },
  {
    name: 'a relay connection string',
    text: 'Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=S3cr3tKeyValue0123456789abcdefABCDEF=;EntityPath=hc',
    secret: 'S3cr3tKeyValue0123456789abcdefABCDEF=',
    kept: 'EntityPath=hc',
  },
  {
    name: 'a readyToken in JSON',
    text: JSON.stringify({ type: 'session.open', readyToken: READY, port: 3389 }),
    secret: READY,
    kept: '"port":3389',
  },
  {
    name: 'a readyToken in inspect output',
    text: `{ readyToken: '${READY}', deviceId: 'dev-1' }`,
    secret: READY,
    kept: "deviceId: 'dev-1'",
  },
  { name: 'a readyToken as a query parameter', text: `readyToken=${READY}&x=1`, secret: READY },
  {
    name: 'an ARM listKeys answer',
    text: JSON.stringify({ primaryKey: ACCOUNT_KEY, secondaryKey: READY, keyName: 'send' }),
    secret: ACCOUNT_KEY,
    kept: '"keyName":"send"',
  },
  { name: 'a JSON field with escaped quotes', text: '{"listenToken":"abc\\"def ghi"}', secret: 'def ghi' },
];

describe('redactSecrets', () => {
  for (const c of cases) {
    it(`masks ${c.name} and keeps the rest`, () => {
      assert.equal(containsSecret(c.text), true, 'the raw text is detected');
      const out = redactSecrets(c.text);
      assert.ok(!out.includes(c.secret), `secret still present in: ${out}`);
      assert.ok(out.includes(REDACTED));
      if (c.kept) assert.ok(out.includes(c.kept), `lost "${c.kept}" in: ${out}`);
      assert.equal(containsSecret(out), false, `still flagged (${findSecretKinds(out).join(', ')}): ${out}`);
      assert.equal(redactSecrets(out), out, 'redacting twice changes nothing');
    });
  }

  const clean = [
    'session s-1 for device dev-1 is ready after 812 ms',
    'WWW-Authenticate: Bearer error="invalid_token"',
    'Bearer authentication failed: The token has expired.',
    'uses SharedAccessSignature tokens minted from rule keys',
    'readyTokenSha256 stored',
    'signature verification failed; signed by an unknown key',
    JSON.stringify({
      sessionId: '7c1e',
      status: 'ready',
      relay: { namespace: 'rbk-0001', expiresAt: '2026-01-01T00:00:00Z' },
    }),
  ];
  for (const text of clean) {
    it(`leaves ordinary text alone: ${text.slice(0, 50)}`, () => {
      assert.equal(containsSecret(text), false, findSecretKinds(text).join(', '));
      assert.equal(redactSecrets(text), text);
    });
  }

  it('names the kinds it found without returning the secret', () => {
    const kinds = findSecretKinds(`${JWT} AccountKey=${ACCOUNT_KEY}`);
    assert.ok(kinds.includes('jwt') && kinds.includes('connection string key'), kinds.join(', '));
    assert.ok(!kinds.join(' ').includes(ACCOUNT_KEY.slice(0, 10)));
  });
});
