import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Sealer, sha256Base64url, tokenMatchesHash } from '../../lib/sealing';

describe('sealing', () => {
  const sealer = new Sealer(randomBytes(32));

  it('opens what it sealed, in the same context only', () => {
    const sealed = sealer.seal('SharedAccessSignature sr=x&sig=y', 'session-1');
    assert.doesNotMatch(sealed, /SharedAccessSignature|sig=/);
    assert.equal(sealer.open(sealed, 'session-1'), 'SharedAccessSignature sr=x&sig=y');
    assert.throws(() => sealer.open(sealed, 'session-2'), { code: 'sealed_data_invalid' });
  });

  it('refuses tampered data and another key', () => {
    const sealed = sealer.seal('secret', 'c');
    const parts = sealed.split('.');
    const body = Buffer.from(parts[2], 'base64url');
    body[0] ^= 1;
    assert.throws(() => sealer.open(`${parts[0]}.${parts[1]}.${body.toString('base64url')}`, 'c'));
    assert.throws(() => new Sealer(randomBytes(32)).open(sealed, 'c'));
    assert.throws(() => sealer.open('v2.x.y', 'c'));
  });

  it('seals the same text differently each time', () => {
    assert.notEqual(sealer.seal('a', 'c'), sealer.seal('a', 'c'));
  });

  it('derives a 256-bit readyToken per session, stable for retries, different across sessions and keys', () => {
    const t1 = sealer.readyToken('s1');
    assert.equal(Buffer.from(t1, 'base64url').length, 32);
    assert.equal(sealer.readyToken('s1'), t1);
    assert.notEqual(sealer.readyToken('s2'), t1);
    assert.notEqual(new Sealer(randomBytes(32)).readyToken('s1'), t1);
  });

  it('compares a presented token with a stored hash', () => {
    const t = sealer.readyToken('s1');
    assert.equal(tokenMatchesHash(t, sha256Base64url(t)), true);
    assert.equal(tokenMatchesHash(t + 'x', sha256Base64url(t)), false);
    assert.equal(tokenMatchesHash('', sha256Base64url(t)), false);
  });

  it('refuses a short key', () => {
    assert.throws(() => new Sealer(randomBytes(16)));
  });
});
