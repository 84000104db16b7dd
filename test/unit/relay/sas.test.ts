// SAS tokens: known vector, round trip, tampering, expiry, audience prefix rules, the hyco-ws flavour.
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, it } from 'node:test';
import {
  createSasToken,
  normalizeResourceUri,
  parseSasToken,
  relayAudience,
  verifySasToken,
} from '../../../lib/relay/sas';

const KEY = 'k7x3n9Q2vYp8sL4mR6tW1zA5cE0bH3jK9uN2qF7gD4s=';
const OTHER_KEY = 'Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5';
const AUDIENCE = 'http://contoso.servicebus.windows.net/tunnel/';
const FUTURE = new Date('2030-01-01T00:00:00Z');
const NOW = new Date('2029-06-01T00:00:00Z');

describe('createSasToken', () => {
  it('matches a vector computed independently (openssl HMAC keyed with the key text)', () => {
    const token = createSasToken({
      resourceUri: 'https://contoso.servicebus.windows.net:443/tunnel',
      keyName: 'device-listen',
      key: KEY,
      expiresAt: new Date(1_700_000_000_000),
    });
    assert.equal(
      token,
      'SharedAccessSignature sr=http%3A%2F%2Fcontoso.servicebus.windows.net%2Ftunnel%2F' +
        '&sig=tN%2Bqg4ZhxjeOjM1CWV26EGpZWDkmE9ZCwAEjWiVMHHM%3D&se=1700000000&skn=device-listen',
    );
  });

  it('normalizes scheme, port, query, $hc and the trailing slash', () => {
    assert.equal(
      normalizeResourceUri('wss://NS.servicebus.windows.net:443/$hc/tunnel?sb-hc-action=listen'),
      AUDIENCE.replace('contoso', 'ns'),
    );
    assert.equal(normalizeResourceUri('sb://ns.servicebus.windows.net'), 'http://ns.servicebus.windows.net/');
  });

  it('relayAudience names the hybrid connection under the endpoint host', () => {
    assert.equal(relayAudience('https://127.0.0.1:4431/', 'tunnel'), 'http://127.0.0.1/tunnel/');
    assert.equal(relayAudience('sb://contoso.servicebus.windows.net/', 'tunnel'), AUDIENCE);
  });

  it('parses back what it minted', () => {
    const token = createSasToken({ resourceUri: AUDIENCE, keyName: 'client-send', key: KEY, expiresAt: FUTURE });
    const parsed = parseSasToken(token);
    assert.ok(parsed);
    assert.equal(parsed.resourceUri, AUDIENCE);
    assert.equal(parsed.keyName, 'client-send');
    assert.equal(parsed.expiresAtSeconds, FUTURE.getTime() / 1000);
  });
});

describe('verifySasToken', () => {
  const keys = [
    { keyName: 'device-listen', key: OTHER_KEY },
    { keyName: 'device-listen', key: KEY },
  ];
  const mint = (over: Partial<Parameters<typeof createSasToken>[0]> = {}): string =>
    createSasToken({ resourceUri: AUDIENCE, keyName: 'device-listen', key: KEY, expiresAt: FUTURE, ...over });

  it('accepts a token signed by the secondary key and says which key matched', () => {
    const result = verifySasToken(mint(), { audience: AUDIENCE, keys, now: NOW });
    assert.deepEqual(result, { ok: true, keyName: 'device-listen', keyIndex: 1, expiresAt: FUTURE });
  });

  it('refuses a tampered signature, expiry, audience or key name', () => {
    const token = mint();
    const tamper = (from: RegExp, to: string): string => token.replace(from, to);
    const check = (t: string): unknown => verifySasToken(t, { audience: AUDIENCE, keys, now: NOW });
    assert.deepEqual(check(tamper(/sig=./, 'sig=A')), { ok: false, reason: 'invalid_signature' });
    assert.deepEqual(check(tamper(/se=\d+/, `se=${FUTURE.getTime() / 1000 + 1}`)), {
      ok: false,
      reason: 'invalid_signature',
    });
    assert.deepEqual(check(tamper(/skn=device-listen/, 'skn=client-send')), { ok: false, reason: 'invalid_signature' });
    assert.deepEqual(check(tamper(/tunnel/, 'tunnel2')), { ok: false, reason: 'audience_path_mismatch' });
  });

  it('refuses a token signed by a key it does not hold (e.g. after a regenerate)', () => {
    const result = verifySasToken(mint({ key: 'rotated-away-key-000000000000000000000000000=' }), {
      audience: AUDIENCE,
      keys,
      now: NOW,
    });
    assert.deepEqual(result, { ok: false, reason: 'invalid_signature' });
  });

  it('refuses an expired token, at and after se', () => {
    const token = mint({ expiresAt: new Date(NOW.getTime() - 1000) });
    assert.deepEqual(verifySasToken(token, { audience: AUDIENCE, keys, now: NOW }), { ok: false, reason: 'expired' });
    const atExpiry = mint({ expiresAt: NOW });
    assert.deepEqual(verifySasToken(atExpiry, { audience: AUDIENCE, keys, now: NOW }), {
      ok: false,
      reason: 'expired',
    });
  });

  it('treats the audience as a prefix of the resource, ignoring scheme, port and trailing slash', () => {
    const nsWide = mint({ resourceUri: 'https://contoso.servicebus.windows.net:443/' });
    assert.equal(verifySasToken(nsWide, { audience: AUDIENCE, keys, now: NOW }).ok, true);
    const sibling = mint({ resourceUri: 'http://contoso.servicebus.windows.net/tunnelx' });
    assert.deepEqual(verifySasToken(sibling, { audience: AUDIENCE, keys, now: NOW }), {
      ok: false,
      reason: 'audience_path_mismatch',
    });
    const deeper = mint({ resourceUri: 'http://contoso.servicebus.windows.net/tunnel/sub' });
    assert.deepEqual(verifySasToken(deeper, { audience: AUDIENCE, keys, now: NOW }), {
      ok: false,
      reason: 'audience_path_mismatch',
    });
    const otherHost = mint({ resourceUri: 'http://fabrikam.servicebus.windows.net/tunnel' });
    assert.deepEqual(verifySasToken(otherHost, { audience: AUDIENCE, keys, now: NOW }), {
      ok: false,
      reason: 'audience_host_mismatch',
    });
  });

  it('goes through the constant-time compare for signatures of any length without throwing', () => {
    const token = mint();
    for (const sig of ['', 'x', 'A'.repeat(44), 'A'.repeat(400)]) {
      const forged = token.replace(/sig=[^&]*/, `sig=${encodeURIComponent(sig)}`);
      const result = verifySasToken(forged, { audience: AUDIENCE, keys, now: NOW });
      assert.equal(result.ok, false);
    }
    assert.deepEqual(verifySasToken(token, { audience: AUDIENCE, keys: [], now: NOW }), {
      ok: false,
      reason: 'invalid_signature',
    });
  });

  it('refuses malformed tokens', () => {
    for (const t of [
      '',
      'Bearer x',
      'SharedAccessSignature sr=a&sig=b&se=notanumber&skn=c',
      'SharedAccessSignature sr=a&sig=b&se=1',
    ]) {
      assert.deepEqual(verifySasToken(t, { audience: AUDIENCE, keys, now: NOW }), { ok: false, reason: 'malformed' });
    }
  });

  it('accepts a token minted the hyco-ws way (port kept in the audience, no trailing slash)', () => {
    const sr = encodeURIComponent('http://contoso.servicebus.windows.net:443/tunnel');
    const se = FUTURE.getTime() / 1000;
    const sig = encodeURIComponent(createHmac('sha256', KEY).update(`${sr}\n${se}`).digest('base64'));
    const token = `SharedAccessSignature sr=${sr}&sig=${sig}&se=${se}&skn=device-listen`;
    assert.equal(verifySasToken(token, { audience: AUDIENCE, keys, now: NOW }).ok, true);
  });
});
