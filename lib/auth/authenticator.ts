// Turns the credentials of an HTTP request into a Principal: bearer JWTs validated against the
// issuer's JWKS (Entra ID in Azure, the local issuer locally: the same code), or the
// x-ms-client-principal header when, and only when, the app runs behind App Service Authentication.
import { createRemoteJWKSet, errors as joseErrors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { z } from 'zod';
import { AuthKeysUnavailableError, RoleRequiredError, UnauthenticatedError } from '../errors';
import { type Principal, type Role, ROLES } from './principal';

export type AuthMode = 'entra' | 'appservice' | 'local';

/** Asymmetric algorithms only: never `none`, never HS* (an HMAC "signed" with a public key is a classic forgery). */
export const ALLOWED_JWT_ALGORITHMS = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
] as const;

export const APP_SERVICE_PRINCIPAL_HEADER = 'x-ms-client-principal';

/** Principal ids are grants partition keys: bounded, and free of the characters table keys forbid. */
export const PRINCIPAL_ID_PATTERN = /^[A-Za-z0-9._@-]{1,128}$/;

/** Entra access tokens are a few KB; anything far larger is not a token we issued. */
const MAX_TOKEN_CHARS = 16 * 1024;
const MAX_APP_SERVICE_HEADER_CHARS = 64 * 1024;
const MAX_NAME_CHARS = 256;

const OID_CLAIM_URI = 'http://schemas.microsoft.com/identity/claims/objectidentifier';
const NAME_IDENTIFIER_CLAIM_URI = 'http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier';
const ROLE_CLAIM_URI = 'http://schemas.microsoft.com/ws/2008/06/identity/claims/role';

export interface JwksFetchOptions {
  /** How long one JWKS download may take (default 5000 ms). */
  timeoutMs?: number;
  /**
   * Minimum time between two downloads triggered by an unknown `kid` (default 30000 ms): a flood
   * of tokens with made-up key ids costs at most one fetch per cooldown.
   */
  cooldownMs?: number;
  /** Keys are refetched after this age even when every `kid` is known (default 10 min). */
  cacheMaxAgeMs?: number;
}

export interface AuthenticatorOptions {
  mode: AuthMode;
  /** Expected `iss`; a list accepts any of them (e.g. Entra v1 and v2 issuers). Required for entra/local. */
  issuer?: string | readonly string[];
  /** Expected `aud`; a list accepts any of them (client id and Application ID URI). Required for entra/local. */
  audience?: string | readonly string[];
  /** JWKS of the issuer, fetched and cached. Required for entra/local unless `keyResolver` is given. */
  jwksUrl?: string;
  /** Clock skew tolerated on exp/nbf/iat (default 60 s). */
  clockToleranceSec?: number;
  jwks?: JwksFetchOptions;
  /** Replaces the remote JWKS (tests, or a key set already in hand). */
  keyResolver?: JWTVerifyGetKey;
}

/** Minimal view of request headers: the Fetch `Headers` of @azure/functions, or a plain Node header object. */
export type HeaderSource =
  { get(name: string): string | null } | Record<string, string | readonly string[] | undefined>;

/** Validates request credentials; one instance per process so the JWKS cache is shared. */
export class Authenticator {
  readonly mode: AuthMode;
  private readonly issuer?: string | string[];
  private readonly audience?: string | string[];
  private readonly clockToleranceSec: number;
  private readonly getKey?: JWTVerifyGetKey;

  constructor(options: AuthenticatorOptions) {
    this.mode = options.mode;
    this.clockToleranceSec = options.clockToleranceSec ?? 60;
    if (options.mode === 'appservice') return;
    const missing: string[] = (['issuer', 'audience'] as const).filter((k) => !hasValue(options[k]));
    if (!options.keyResolver && !options.jwksUrl) missing.push('jwksUrl');
    if (missing.length > 0) {
      throw new Error(`Authenticator in ${options.mode} mode needs ${missing.join(', ')}`);
    }
    this.issuer = toList(options.issuer);
    this.audience = toList(options.audience);
    this.getKey =
      options.keyResolver ??
      createRemoteJWKSet(new URL(options.jwksUrl!), {
        timeoutDuration: options.jwks?.timeoutMs ?? 5000,
        cooldownDuration: options.jwks?.cooldownMs ?? 30_000,
        cacheMaxAge: options.jwks?.cacheMaxAgeMs ?? 10 * 60_000,
      });
  }

  /**
   * The caller of a request, or UnauthenticatedError (401) saying what is wrong with its credentials.
   * Throws UpstreamError (502) when the issuer's keys cannot be fetched: that is our fault, not the
   * caller's, and a 401 would make a client throw away a good token.
   */
  async authenticate(headers: HeaderSource): Promise<Principal> {
    if (this.mode === 'appservice')
      return principalFromAppServiceHeader(readHeader(headers, APP_SERVICE_PRINCIPAL_HEADER));
    // In every other mode x-ms-client-principal is ignored: anybody can send it.
    const token = bearerToken(readHeader(headers, 'authorization'));
    return this.verifyToken(token);
  }

  /** Validates a compact JWT (already taken out of its header) and maps its claims. */
  async verifyToken(token: string): Promise<Principal> {
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, this.getKey!, {
        issuer: this.issuer,
        audience: this.audience,
        algorithms: [...ALLOWED_JWT_ALGORITHMS],
        clockTolerance: this.clockToleranceSec,
        requiredClaims: ['exp'],
      }));
    } catch (err) {
      throw mapVerifyError(err);
    }
    return principalFromClaims(payload, this.mode === 'local' ? 'local' : 'jwt');
  }
}

/** Builds the process's Authenticator from `Config['auth']`; issuer and audience may list several values, comma-separated. */
export function authenticatorFromConfig(
  auth: { mode: AuthMode; issuer?: string; audience?: string; jwksUrl?: string },
  extra: Pick<AuthenticatorOptions, 'clockToleranceSec' | 'jwks' | 'keyResolver'> = {},
): Authenticator {
  const split = (v?: string) =>
    v
      ?.split(',')
      .map((s) => s.trim())
      .filter((s) => s.length > 0);
  return new Authenticator({
    ...extra,
    mode: auth.mode,
    issuer: split(auth.issuer),
    audience: split(auth.audience),
    jwksUrl: auth.jwksUrl,
  });
}

/** Throws ForbiddenError (403, code `role_required`) unless the principal holds at least one of `roles`. */
export function requireRole(principal: Principal, ...roles: Role[]): void {
  if (roles.some((r) => principal.roles.includes(r))) return;
  throw new RoleRequiredError(`This call needs the role ${roles.join(' or ')}.`);
}

function hasValue(v: string | readonly string[] | undefined): boolean {
  return typeof v === 'string' ? v.length > 0 : Array.isArray(v) && v.length > 0;
}

function toList(v: string | readonly string[] | undefined): string | string[] | undefined {
  return typeof v === 'string' || v === undefined ? v : [...v];
}

/** Reads one header case-insensitively; a repeated header counts as malformed, never as "first wins". */
function readHeader(headers: HeaderSource, name: string): string | undefined {
  if (typeof (headers as { get?: unknown }).get === 'function') {
    return (headers as { get(name: string): string | null }).get(name) ?? undefined;
  }
  const record = headers as Record<string, string | readonly string[] | undefined>;
  let found: string | readonly string[] | undefined;
  for (const [key, value] of Object.entries(record)) {
    if (key.toLowerCase() !== name || value === undefined) continue;
    if (found !== undefined) throw unauthenticated(`The ${name} header is given more than once.`);
    found = value;
  }
  if (found === undefined || typeof found === 'string') return found;
  if (found.length === 1) return found[0];
  throw unauthenticated(`The ${name} header is given more than once.`);
}

function unauthenticated(detail: string): UnauthenticatedError {
  return new UnauthenticatedError(detail, { op: 'auth.authenticate' });
}

const BEARER = /^Bearer +([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*) *$/i;

function bearerToken(header: string | undefined): string {
  if (header === undefined || header.trim() === '') {
    // RFC 6750 §3.1: a request without credentials gets the challenge without an error code.
    throw new UnauthenticatedError('No bearer token: send Authorization: Bearer <token>.', {
      op: 'auth.authenticate',
      headers: { 'www-authenticate': 'Bearer' },
    });
  }
  if (header.length > MAX_TOKEN_CHARS + 7) throw unauthenticated('The bearer token is malformed (too long).');
  const m = BEARER.exec(header);
  if (!m) throw unauthenticated('The Authorization header is malformed: expected "Bearer <JWT>".');
  return m[1];
}

/** Translates jose's errors into details the caller can act on; never includes the token or its claims. */
function mapVerifyError(err: unknown): Error {
  if (err instanceof joseErrors.JWTExpired) return unauthenticated('The token has expired.');
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    switch (err.claim) {
      case 'nbf':
        return unauthenticated('The token is not yet valid (nbf is in the future).');
      case 'iat':
        return unauthenticated('The token is not valid (iat is in the future).');
      case 'iss':
        return unauthenticated('The token has the wrong issuer.');
      case 'aud':
        return unauthenticated('The token has the wrong audience.');
      case 'exp':
        return unauthenticated(
          err.reason === 'missing' ? 'The token has no expiry (exp).' : 'The token has an invalid expiry (exp).',
        );
      default:
        return unauthenticated(`The token's ${safeClaimName(err.claim)} claim is invalid.`);
    }
  }
  if (err instanceof joseErrors.JOSEAlgNotAllowed) {
    return unauthenticated(
      `The token's signing algorithm is not allowed (allowed: ${ALLOWED_JWT_ALGORITHMS.join(', ')}).`,
    );
  }
  if (err instanceof joseErrors.JWSSignatureVerificationFailed)
    return unauthenticated('The token has a bad signature.');
  if (err instanceof joseErrors.JWKSNoMatchingKey || err instanceof joseErrors.JWKSMultipleMatchingKeys) {
    return unauthenticated('The token is signed by an unknown key.');
  }
  if (
    err instanceof joseErrors.JWSInvalid ||
    err instanceof joseErrors.JWTInvalid ||
    err instanceof joseErrors.JOSENotSupported
  ) {
    return unauthenticated('The token is malformed.');
  }
  if (err instanceof joseErrors.JWKInvalid) return unauthenticated('The token is signed by an unknown key.');
  if (
    err instanceof joseErrors.JWKSTimeout ||
    err instanceof joseErrors.JWKSInvalid ||
    err instanceof joseErrors.JOSEError ||
    isNetworkError(err)
  ) {
    // The JWKS could not be fetched or read: keep the cause (no token in it) for the logs.
    return new AuthKeysUnavailableError(
      'The signing keys of the token issuer could not be fetched; try again shortly.',
      {
        op: 'auth.jwks',
        cause: err,
      },
    );
  }
  // jose surfaces a few structural problems (e.g. a non-object payload) as plain TypeErrors.
  if (err instanceof TypeError) return unauthenticated('The token is malformed.');
  return err instanceof Error ? err : new Error(String(err));
}

function safeClaimName(claim: string): string {
  return /^[A-Za-z0-9_]{1,32}$/.test(claim) ? claim : 'a';
}

function isNetworkError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^(E[A-Z]+|UND_ERR_.*)$/.test(code);
}

function isRole(v: string): v is Role {
  return (ROLES as readonly string[]).includes(v);
}

/** Keeps the known roles, in a stable order, ignoring anything else a tenant may assign. */
function knownRoles(values: readonly unknown[]): Role[] {
  const set = new Set(values.filter((v): v is string => typeof v === 'string').filter(isRole));
  return ROLES.filter((r) => set.has(r));
}

function boundedName(...candidates: unknown[]): string | undefined {
  for (const c of candidates) {
    if (typeof c === 'string' && c.trim() !== '') return c.trim().slice(0, MAX_NAME_CHARS);
  }
  return undefined;
}

function principalFromClaims(payload: JWTPayload, via: 'jwt' | 'local'): Principal {
  const id = typeof payload.oid === 'string' && payload.oid !== '' ? payload.oid : payload.sub;
  if (typeof id !== 'string' || id === '') throw unauthenticated('The token names no subject (no oid or sub claim).');
  if (!PRINCIPAL_ID_PATTERN.test(id)) throw unauthenticated('The token subject (oid/sub) is not a valid principal id.');
  const roles = Array.isArray(payload.roles) ? knownRoles(payload.roles) : [];
  const name = boundedName(payload.name, payload.preferred_username);
  return { id, roles, via, ...(name ? { name } : {}) };
}

const appServicePrincipalSchema = z.object({
  auth_typ: z.string().optional(),
  name_typ: z.string().optional(),
  role_typ: z.string().optional(),
  claims: z.array(z.object({ typ: z.string(), val: z.string() })).max(1000),
});

/**
 * Maps the header App Service Authentication injects after it validated the caller. The platform
 * strips a client-sent copy of this header, which is why it is trusted only in `appservice` mode.
 */
export function principalFromAppServiceHeader(header: string | undefined): Principal {
  if (header === undefined || header.trim() === '') {
    throw new UnauthenticatedError('Not signed in: App Service Authentication passed no client principal.', {
      op: 'auth.authenticate',
      headers: { 'www-authenticate': 'Bearer' },
    });
  }
  if (header.length > MAX_APP_SERVICE_HEADER_CHARS || !/^[A-Za-z0-9+/=_-]+$/.test(header.trim())) {
    throw unauthenticated(`The ${APP_SERVICE_PRINCIPAL_HEADER} header is malformed.`);
  }
  let decoded: unknown;
  try {
    decoded = JSON.parse(Buffer.from(header.trim(), 'base64').toString('utf8'));
  } catch {
    throw unauthenticated(`The ${APP_SERVICE_PRINCIPAL_HEADER} header is malformed (not base64 JSON).`);
  }
  const parsed = appServicePrincipalSchema.safeParse(decoded);
  if (!parsed.success) throw unauthenticated(`The ${APP_SERVICE_PRINCIPAL_HEADER} header is malformed.`);
  const { claims, role_typ, name_typ } = parsed.data;
  const first = (...types: string[]) =>
    types.map((t) => claims.find((c) => c.typ === t)?.val).find((v) => v !== undefined && v !== '');
  const id = first(OID_CLAIM_URI, 'oid', 'sub', NAME_IDENTIFIER_CLAIM_URI);
  if (id === undefined)
    throw unauthenticated('The client principal names no subject (no objectidentifier, oid or sub claim).');
  if (!PRINCIPAL_ID_PATTERN.test(id))
    throw unauthenticated('The client principal subject is not a valid principal id.');
  const roleTypes = new Set(['roles', ROLE_CLAIM_URI, ...(role_typ ? [role_typ] : [])]);
  const roles = knownRoles(claims.filter((c) => roleTypes.has(c.typ)).map((c) => c.val));
  const name = boundedName(...[name_typ, 'name', 'preferred_username'].map((t) => (t ? first(t) : undefined)));
  return { id, roles, via: 'appservice', ...(name ? { name } : {}) };
}
