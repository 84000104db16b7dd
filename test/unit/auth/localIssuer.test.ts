import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Authenticator } from '../../../lib/auth/authenticator';
import { LocalIssuer, localIssuerFile } from '../../../lib/auth/localIssuer';

describe('LocalIssuer', () => {
  let issuer: LocalIssuer;
  let dir: string;
  before(async () => {
    issuer = await (await LocalIssuer.create()).start();
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'rb-issuer-'));
  });
  after(async () => {
    await issuer.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('serves a discovery document that points at its JWKS, and a JWKS without private members', async () => {
    const discovery = (await (await fetch(`${issuer.url}/.well-known/openid-configuration`)).json()) as Record<
      string,
      unknown
    >;
    assert.equal(discovery.issuer, issuer.issuer);
    assert.equal(discovery.jwks_uri, issuer.jwksUrl);
    const jwks = (await (await fetch(issuer.jwksUrl)).json()) as { keys: Array<Record<string, unknown>> };
    assert.equal(jwks.keys.length, 1);
    assert.equal(jwks.keys[0].kid, issuer.currentKid);
    assert.equal(jwks.keys[0].d, undefined, 'the private scalar must never be served');
    assert.equal((await fetch(`${issuer.url}/nope`)).status, 404);
  });

  it('saves its key with mode 0600 and a loaded copy mints tokens the running issuer validates', async () => {
    const file = await issuer.save(dir);
    assert.equal(file, localIssuerFile(dir));
    if (process.platform !== 'win32') assert.equal((await fs.stat(file)).mode & 0o777, 0o600);
    const loaded = await LocalIssuer.load(dir);
    assert.equal(loaded.jwksUrl, issuer.jwksUrl);
    assert.equal(loaded.currentKid, issuer.currentKid);
    const token = await loaded.mint({ sub: 'cli-user', roles: ['operator'], ttlSeconds: 60 });
    const auth = new Authenticator(issuer.authenticatorOptions());
    assert.deepEqual(await auth.authenticate({ authorization: `Bearer ${token}` }), {
      id: 'cli-user',
      roles: ['operator'],
      via: 'local',
    });
  });

  it('refuses to load a key file other users can read', { skip: process.platform === 'win32' }, async () => {
    const other = await fs.mkdtemp(path.join(os.tmpdir(), 'rb-issuer-open-'));
    try {
      const file = await issuer.save(other);
      await fs.chmod(file, 0o644);
      await assert.rejects(LocalIssuer.load(other), /readable by other users/);
    } finally {
      await fs.rm(other, { recursive: true, force: true });
    }
  });

  it('says what to do when no key file exists', async () => {
    await assert.rejects(LocalIssuer.load(path.join(dir, 'missing')), /npm start/);
  });

  it('refuses a sub that is not a valid principal id and a ttl out of range', async () => {
    await assert.rejects(issuer.mint({ sub: 'a/b' }), /sub must be/);
    await assert.rejects(issuer.mint({ sub: 'ok', ttlSeconds: 0 }), /ttlSeconds/);
  });

  it('refuses to start twice and closes idempotently', async () => {
    await assert.rejects(issuer.start(), /status running/);
    const other = await (await LocalIssuer.create({ alg: 'RS256' })).start();
    await other.close();
    await other.close();
    assert.throws(() => other.url, /not serving/);
  });
});
