import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { BrokerError, ForbiddenError, toProblem, UnauthenticatedError } from '../../../lib/errors';
import {
  APP_SERVICE_PRINCIPAL_HEADER,
  Authenticator,
  authenticatorFromConfig,
  requireRole,
} from '../../../lib/auth/authenticator';
import { LocalIssuer } from '../../../lib/auth/localIssuer';
import { containsSecret } from '../../../lib/auth/logRedaction';
import type { Principal } from '../../../lib/auth/principal';

const b64url = (value: unknown) =>
  Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
const nowSec = () => Math.floor(Date.now() / 1000);
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

function appServiceHeader(claims: Array<{ typ: string; val: string }>, extra: Record<string, unknown> = {}): string {
  return b64url({
    auth_typ: 'aad',
    name_typ: 'http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress',
    role_typ: 'http://schemas.microsoft.com/ws/2008/06/identity/claims/role',
    claims,
    ...extra,
  })
    .replace(/-/g, '+')
    .replace(/_/g, '/');
}

/** Runs `authenticate` and returns the error it must throw. */
async function rejection(auth: Authenticator, headers: Record<string, string>): Promise<BrokerError> {
  try {
    const p = await auth.authenticate(headers);
    assert.fail(`expected a rejection, got principal ${p.id}`);
  } catch (err) {
    assert.ok(err instanceof BrokerError, `expected a BrokerError, got ${String(err)}`);
    return err;
  }
}

describe('Authenticator (bearer JWT against a real JWKS over HTTP)', () => {
  let issuer: LocalIssuer;
  let stranger: LocalIssuer;
  let auth: Authenticator;

  before(async () => {
    issuer = await (await LocalIssuer.create()).start();
    // Same issuer and audience names, its own key: only the signature gives it away.
    stranger = await LocalIssuer.create();
    auth = new Authenticator(issuer.authenticatorOptions());
  });
  after(async () => {
    await issuer.close();
  });

  const claims = (over: Record<string, unknown> = {}) => ({
    iss: issuer.issuer,
    aud: issuer.audience,
    sub: 'alice',
    roles: ['operator'],
    iat: nowSec(),
    nbf: nowSec(),
    exp: nowSec() + 600,
    ...over,
  });

  const badTokens: Array<{ name: string; token: () => Promise<string>; detail: RegExp }> = [
    {
      name: 'expired',
      token: () => issuer.signClaims(claims({ iat: nowSec() - 7200, nbf: nowSec() - 7200, exp: nowSec() - 3600 })),
      detail: /expired/,
    },
    {
      name: 'not yet valid',
      token: () => issuer.signClaims(claims({ nbf: nowSec() + 3600, exp: nowSec() + 7200 })),
      detail: /not yet valid/,
    },
    {
      name: 'wrong audience',
      token: () => issuer.signClaims(claims({ aud: 'api://someone-else' })),
      detail: /wrong audience/,
    },
    {
      name: 'wrong issuer',
      token: () => issuer.signClaims(claims({ iss: 'https://login.microsoftonline.com/other/v2.0' })),
      detail: /wrong issuer/,
    },
    { name: 'no expiry', token: () => issuer.signClaims(claims({ exp: undefined })), detail: /no expiry/ },
    {
      name: 'unsigned (alg none)',
      token: async () => `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url(claims({ roles: ['admin'] }))}.`,
      detail: /algorithm is not allowed/,
    },
    {
      name: 'signed by an unknown key',
      token: () => stranger.mint({ sub: 'mallory', roles: ['admin'] }),
      detail: /unknown key/,
    },
    {
      name: 'signed by an unknown key that claims a known kid',
      token: async () => {
        const forged = await stranger.signClaims(claims({ roles: ['admin'] }));
        const [, payload, signature] = forged.split('.');
        return `${b64url({ alg: 'ES256', typ: 'JWT', kid: issuer.currentKid })}.${payload}.${signature}`;
      },
      detail: /bad signature/,
    },
    {
      name: 'tampered payload',
      token: async () => {
        const [header, , signature] = (await issuer.mint({ sub: 'alice', roles: ['operator'] })).split('.');
        return `${header}.${b64url(claims({ roles: ['admin'] }))}.${signature}`;
      },
      detail: /bad signature/,
    },
    {
      name: 'HS256 signed with the public key',
      token: async () => {
        const publicJwk = issuer.jwks().keys[0];
        const head = `${b64url({ alg: 'HS256', typ: 'JWT', kid: issuer.currentKid })}.${b64url(claims({ roles: ['admin'] }))}`;
        const sig = createHmac('sha256', JSON.stringify(publicJwk)).update(head).digest('base64url');
        return `${head}.${sig}`;
      },
      detail: /algorithm is not allowed/,
    },
    {
      name: 'a forged payload that is not even JSON (the signature is checked before the payload is read)',
      token: async () => `${b64url({ alg: 'ES256', kid: issuer.currentKid })}.${b64url('not json')}.AAAA`,
      detail: /bad signature/,
    },
    {
      name: 'subject with a character table keys forbid',
      token: () => issuer.signClaims(claims({ sub: 'a/b' })),
      detail: /not a valid principal id/,
    },
    { name: 'no subject at all', token: () => issuer.signClaims(claims({ sub: undefined })), detail: /no oid or sub/ },
  ];

  for (const c of badTokens) {
    it(`rejects a token that is ${c.name} with 401 problem+json that does not echo it`, async () => {
      const token = await c.token();
      const err = await rejection(auth, bearer(token));
      assert.ok(err instanceof UnauthenticatedError, `${c.name}: ${err.constructor.name} ${err.message}`);
      assert.match(err.message, c.detail);
      const problem = toProblem(err);
      assert.equal(problem.status, 401);
      assert.equal(problem.headers['content-type'], 'application/problem+json');
      assert.match(problem.headers['www-authenticate'], /^Bearer error="invalid_token"/);
      const rendered = JSON.stringify(problem);
      assert.ok(
        !rendered.includes(token.split('.')[1]) && !rendered.includes(token),
        'problem must not echo the token',
      );
      assert.equal(containsSecret(rendered), false);
    });
  }

  const badHeaders: Array<{ name: string; headers: Record<string, string>; detail: RegExp; challenge: RegExp }> = [
    { name: 'no Authorization header', headers: {}, detail: /No bearer token/, challenge: /^Bearer$/ },
    {
      name: 'an empty Authorization header',
      headers: { authorization: '  ' },
      detail: /No bearer token/,
      challenge: /^Bearer$/,
    },
    {
      name: 'a Basic scheme',
      headers: { authorization: 'Basic YWxpY2U6cGFzcw==' },
      detail: /malformed/,
      challenge: /invalid_token/,
    },
    {
      name: 'a bearer value that is not a JWT',
      headers: { authorization: 'Bearer not-a-jwt' },
      detail: /malformed/,
      challenge: /invalid_token/,
    },
    {
      name: 'a JWT of garbage segments',
      headers: { authorization: 'Bearer abc.def.ghi' },
      detail: /malformed/,
      challenge: /invalid_token/,
    },
    {
      name: 'a token far too long',
      headers: { authorization: `Bearer ${'a'.repeat(20_000)}.b.c` },
      detail: /too long/,
      challenge: /invalid_token/,
    },
  ];
  for (const c of badHeaders) {
    it(`rejects ${c.name} with 401 and a WWW-Authenticate challenge`, async () => {
      const err = await rejection(auth, c.headers);
      assert.ok(err instanceof UnauthenticatedError);
      assert.match(err.message, c.detail);
      assert.match(toProblem(err).headers['www-authenticate'], c.challenge);
    });
  }

  it('maps a valid token to a principal: sub as id, roles, name, via local', async () => {
    const token = await issuer.mint({ sub: 'alice', roles: ['admin'], name: 'Alice' });
    assert.deepEqual(await auth.authenticate(bearer(token)), {
      id: 'alice',
      roles: ['admin'],
      name: 'Alice',
      via: 'local',
    });
  });

  it('prefers oid over sub, takes preferred_username as name, keeps only known roles', async () => {
    const token = await issuer.signClaims(
      claims({
        oid: '7f1c0d2e-1111-4222-8333-944455556666',
        sub: 'pairwise-sub',
        roles: ['Reader', 'operator', 'admin', 42],
        preferred_username: 'bob@contoso.com',
      }),
    );
    const p = await auth.authenticate(bearer(token));
    assert.deepEqual(p, {
      id: '7f1c0d2e-1111-4222-8333-944455556666',
      roles: ['admin', 'operator'],
      name: 'bob@contoso.com',
      via: 'local',
    });
  });

  it('gives a token without roles a principal with no roles, which requireRole refuses with 403', async () => {
    const token = await issuer.mint({ sub: 'carol' });
    const p = await auth.authenticate(bearer(token));
    assert.deepEqual(p.roles, []);
    assert.throws(
      () => requireRole(p, 'operator', 'admin'),
      (err: unknown) => {
        assert.ok(err instanceof ForbiddenError);
        const problem = toProblem(err);
        assert.equal(problem.status, 403);
        assert.equal(problem.body.code, 'role_required');
        return true;
      },
    );
  });

  it('requireRole lets through a principal holding any of the roles', () => {
    const operator: Principal = { id: 'o', roles: ['operator'], via: 'jwt' };
    assert.doesNotThrow(() => requireRole(operator, 'admin', 'operator'));
    assert.throws(() => requireRole(operator, 'admin'), ForbiddenError);
  });

  it('reads headers from a Fetch Headers object and from a record in any letter case', async () => {
    const token = await issuer.mint({ sub: 'dave', roles: ['operator'] });
    assert.equal((await auth.authenticate(new Headers({ Authorization: `Bearer ${token}` }))).id, 'dave');
    assert.equal((await auth.authenticate({ AUTHORIZATION: `bearer ${token}` })).id, 'dave');
  });

  it('refuses a repeated Authorization header instead of picking one', async () => {
    const token = await issuer.mint({ sub: 'dave', roles: ['operator'] });
    const err = await rejection(auth, { authorization: `Bearer ${token}`, Authorization: `Bearer ${token}` });
    assert.ok(err instanceof UnauthenticatedError);
    assert.match(err.message, /more than once/);
  });

  it('never trusts x-ms-client-principal outside appservice mode', async () => {
    const forged = appServiceHeader([
      { typ: 'http://schemas.microsoft.com/identity/claims/objectidentifier', val: 'mallory' },
      { typ: 'roles', val: 'admin' },
    ]);
    const alone = await rejection(auth, { [APP_SERVICE_PRINCIPAL_HEADER]: forged });
    assert.ok(alone instanceof UnauthenticatedError);
    const token = await issuer.mint({ sub: 'erin', roles: ['operator'] });
    const p = await auth.authenticate({ ...bearer(token), [APP_SERVICE_PRINCIPAL_HEADER]: forged });
    assert.deepEqual({ id: p.id, roles: p.roles }, { id: 'erin', roles: ['operator'] });
  });

  it('answers 502 auth_keys_unavailable, not 401, when the JWKS cannot be fetched', async () => {
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const offline = new Authenticator({
      mode: 'entra',
      issuer: issuer.issuer,
      audience: issuer.audience,
      jwksUrl: `http://127.0.0.1:${port}/keys`,
    });
    const err = await rejection(offline, bearer(await issuer.mint({ sub: 'alice', roles: ['admin'] })));
    assert.equal(err.status, 502);
    assert.equal(err.code, 'auth_keys_unavailable');
  });

  it('accepts any of several comma-separated audiences from config, and marks entra principals via jwt', async () => {
    const entra = authenticatorFromConfig({
      mode: 'entra',
      issuer: issuer.issuer,
      audience: `api://other, ${issuer.audience}`,
      jwksUrl: issuer.jwksUrl,
    });
    const p = await entra.authenticate(bearer(await issuer.mint({ sub: 'frank', roles: ['admin'] })));
    assert.deepEqual({ id: p.id, via: p.via }, { id: 'frank', via: 'jwt' });
  });

  it('refuses to build an entra authenticator without issuer, audience or JWKS URL', () => {
    assert.throws(() => new Authenticator({ mode: 'entra', issuer: 'x', audience: 'y' }), /jwksUrl/);
    assert.throws(() => new Authenticator({ mode: 'local', jwksUrl: 'http://127.0.0.1:1/keys' }), /issuer, audience/);
  });
});

describe('Authenticator key rotation', () => {
  let issuer: LocalIssuer;
  before(async () => {
    issuer = await (await LocalIssuer.create()).start();
  });
  after(async () => {
    await issuer.close();
  });

  it('refetches the JWKS once when a token names an unknown kid, then serves from the cache', async () => {
    const auth = new Authenticator({ ...issuer.authenticatorOptions(), jwks: { cooldownMs: 0 } });
    const start = issuer.jwksRequestCount;
    assert.equal(
      (await auth.authenticate(bearer(await issuer.mint({ sub: 'before', roles: ['admin'] })))).id,
      'before',
    );
    assert.equal(issuer.jwksRequestCount, start + 1);
    const oldKid = issuer.currentKid;
    const newKid = await issuer.rotate();
    assert.notEqual(newKid, oldKid);
    assert.equal((await auth.authenticate(bearer(await issuer.mint({ sub: 'after', roles: ['admin'] })))).id, 'after');
    assert.equal(issuer.jwksRequestCount, start + 2, 'the unknown kid triggered exactly one refetch');
    // Both keys are now cached: neither a new-key nor an old-key token fetches again.
    await auth.authenticate(bearer(await issuer.mint({ sub: 'again', roles: ['admin'] })));
    await auth.authenticate(
      bearer(
        await issuer.signClaims(
          { iss: issuer.issuer, aud: issuer.audience, sub: 'old', exp: nowSec() + 60 },
          { kid: oldKid },
        ),
      ),
    );
    assert.equal(issuer.jwksRequestCount, start + 2);
  });

  it('within the cooldown an unknown kid is refused without another fetch (no refetch flood)', async () => {
    const auth = new Authenticator({ ...issuer.authenticatorOptions(), jwks: { cooldownMs: 60_000 } });
    await auth.authenticate(bearer(await issuer.mint({ sub: 'first', roles: ['operator'] })));
    const fetched = issuer.jwksRequestCount;
    await issuer.rotate();
    const err = await rejection(auth, bearer(await issuer.mint({ sub: 'second', roles: ['operator'] })));
    assert.match(err.message, /unknown key/);
    assert.equal(issuer.jwksRequestCount, fetched);
  });
});

describe('Authenticator in appservice mode', () => {
  const auth = new Authenticator({ mode: 'appservice' });

  it('maps x-ms-client-principal: objectidentifier as id, role_typ and roles claims, name_typ as name', async () => {
    const header = appServiceHeader([
      {
        typ: 'http://schemas.microsoft.com/identity/claims/objectidentifier',
        val: '0b1e2c3d-4444-4555-8666-777788889999',
      },
      { typ: 'http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress', val: 'gina@contoso.com' },
      { typ: 'http://schemas.microsoft.com/ws/2008/06/identity/claims/role', val: 'operator' },
      { typ: 'roles', val: 'admin' },
      { typ: 'roles', val: 'Contributor' },
      { typ: 'sub', val: 'pairwise' },
    ]);
    assert.deepEqual(await auth.authenticate({ [APP_SERVICE_PRINCIPAL_HEADER]: header }), {
      id: '0b1e2c3d-4444-4555-8666-777788889999',
      roles: ['admin', 'operator'],
      name: 'gina@contoso.com',
      via: 'appservice',
    });
  });

  it('falls back to sub and gives no roles when none are present', async () => {
    const header = appServiceHeader([{ typ: 'sub', val: 'henry' }]);
    assert.deepEqual(await auth.authenticate({ [APP_SERVICE_PRINCIPAL_HEADER]: header }), {
      id: 'henry',
      roles: [],
      via: 'appservice',
    });
  });

  const bad: Array<{ name: string; headers: Record<string, string>; detail: RegExp }> = [
    {
      name: 'no header (a bearer token alone is not read)',
      headers: { authorization: 'Bearer a.b.c' },
      detail: /Not signed in/,
    },
    {
      name: 'a header that is not base64',
      headers: { [APP_SERVICE_PRINCIPAL_HEADER]: '{not base64}' },
      detail: /malformed/,
    },
    {
      name: 'base64 of something not JSON',
      headers: { [APP_SERVICE_PRINCIPAL_HEADER]: b64url('hello') },
      detail: /malformed/,
    },
    {
      name: 'JSON without claims',
      headers: { [APP_SERVICE_PRINCIPAL_HEADER]: b64url({ auth_typ: 'aad' }) },
      detail: /malformed/,
    },
    {
      name: 'claims without a subject',
      headers: { [APP_SERVICE_PRINCIPAL_HEADER]: appServiceHeader([{ typ: 'roles', val: 'admin' }]) },
      detail: /no objectidentifier/,
    },
  ];
  for (const c of bad) {
    it(`rejects ${c.name} with 401`, async () => {
      const err = await rejection(auth, c.headers);
      assert.ok(err instanceof UnauthenticatedError);
      assert.match(err.message, c.detail);
      assert.equal(toProblem(err).status, 401);
    });
  }
});
