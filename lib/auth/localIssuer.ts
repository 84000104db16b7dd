// The token issuer of local mode and the tests: a per-run signing key, a loopback JWKS endpoint so
// the same remote-JWKS validation runs as in Azure, and a 0600 key file that lets the
// `relay-broker local token` command mint tokens for the running `npm start`.
import { randomUUID } from 'node:crypto';
import { promises as fs } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import {
  calculateJwkThumbprint,
  exportJWK,
  generateKeyPair,
  importJWK,
  SignJWT,
  type JSONWebKeySet,
  type JWK,
  type JWTPayload,
  type KeyLike,
} from 'jose';
import { z } from 'zod';
import { PRINCIPAL_ID_PATTERN } from './authenticator';

export type LocalSigningAlg = 'ES256' | 'RS256';

export const DEFAULT_LOCAL_ISSUER = 'https://local-issuer.relay-broker.invalid';
export const DEFAULT_LOCAL_AUDIENCE = 'api://relay-broker-local';
/** Name of the key file inside the run-state folder. */
export const LOCAL_ISSUER_FILE = 'local-issuer.json';

export interface LocalIssuerOptions {
  issuer?: string;
  audience?: string;
  alg?: LocalSigningAlg;
}

export interface MintOptions {
  /** Principal id (the `sub` claim); 1-128 of [A-Za-z0-9._@-]. */
  sub: string;
  /** Goes into the `roles` claim as given (unknown roles are kept, the Authenticator ignores them). */
  roles?: readonly string[];
  name?: string;
  /** Validity from now (default 3600). */
  ttlSeconds?: number;
  /** Adds an `oid` claim, as Entra does. */
  oid?: string;
}

interface SigningKey {
  kid: string;
  privateKey: KeyLike;
  privateJwk: JWK;
  publicJwk: JWK;
}

type Status = 'closed' | 'starting' | 'running' | 'closing';

const MAX_TTL_SECONDS = 30 * 24 * 3600;

const keyFileSchema = z
  .object({
    version: z.literal(1),
    issuer: z.string().min(1),
    audience: z.string().min(1),
    alg: z.enum(['ES256', 'RS256']),
    jwksUrl: z.string().optional(),
    keys: z.array(z.record(z.string(), z.unknown())).min(1),
  })
  .strict();

/** Path of the key file a LocalIssuer saves into `dir`. */
export function localIssuerFile(dir: string): string {
  return path.join(dir, LOCAL_ISSUER_FILE);
}

export class LocalIssuer {
  private status: Status = 'closed';
  private server?: http.Server;
  private port = 0;
  private keysServed = 0;

  private constructor(
    readonly issuer: string,
    readonly audience: string,
    readonly alg: LocalSigningAlg,
    private keys: SigningKey[],
    private savedJwksUrl?: string,
  ) {}

  /** A new issuer with a fresh key pair (one per run: a token never outlives the run that issued it). */
  static async create(options: LocalIssuerOptions = {}): Promise<LocalIssuer> {
    const alg = options.alg ?? 'ES256';
    const key = await newSigningKey(alg);
    return new LocalIssuer(options.issuer ?? DEFAULT_LOCAL_ISSUER, options.audience ?? DEFAULT_LOCAL_AUDIENCE, alg, [
      key,
    ]);
  }

  /**
   * Reads an issuer saved by `save(dir)`, e.g. in the CLI that mints a token for a running broker.
   * Refuses a key file other users can read.
   */
  static async load(dir: string): Promise<LocalIssuer> {
    const file = localIssuerFile(dir);
    let text: string;
    try {
      const stat = await fs.stat(file);
      if (process.platform !== 'win32' && (stat.mode & 0o077) !== 0) {
        throw new Error(`${file} is readable by other users (mode ${(stat.mode & 0o777).toString(8)}); expected 600`);
      }
      text = await fs.readFile(file, 'utf8');
    } catch (err) {
      if ((err as { code?: unknown }).code === 'ENOENT') {
        throw new Error(`No local issuer in ${dir}: is the local broker running (npm start)?`, { cause: err });
      }
      throw err;
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new Error(`${file} is not valid JSON`);
    }
    const parsed = keyFileSchema.safeParse(json);
    if (!parsed.success) throw new Error(`${file} is not a local issuer key file`);
    const data = parsed.data;
    const keys: SigningKey[] = [];
    for (const raw of data.keys) {
      const privateJwk = raw as unknown as JWK;
      const privateKey = await importJWK(privateJwk, data.alg);
      if (privateKey instanceof Uint8Array) throw new Error(`${file} holds a symmetric key; expected ${data.alg}`);
      const publicJwk = publicPart(privateJwk);
      keys.push({
        kid: String(privateJwk.kid ?? (await calculateJwkThumbprint(publicJwk))),
        privateKey,
        privateJwk,
        publicJwk,
      });
    }
    return new LocalIssuer(data.issuer, data.audience, data.alg, keys, data.jwksUrl);
  }

  /**
   * Writes the private keys to `<dir>/local-issuer.json` with mode 0600 (folder 0700), atomically,
   * and returns the file path. The lead's start script chooses `dir` (a run-state folder).
   */
  async save(dir: string): Promise<string> {
    await fs.mkdir(dir, { recursive: true, mode: 0o700 });
    const file = localIssuerFile(dir);
    const body = {
      version: 1,
      issuer: this.issuer,
      audience: this.audience,
      alg: this.alg,
      ...(this.status === 'running' ? { jwksUrl: this.jwksUrl } : {}),
      keys: this.keys.map((k) => k.privateJwk),
    };
    const tmp = `${file}.${process.pid}.${randomUUID()}.tmp`;
    await fs.writeFile(tmp, JSON.stringify(body), { mode: 0o600, flag: 'wx' });
    try {
      await fs.rename(tmp, file);
    } catch (err) {
      await fs.rm(tmp, { force: true });
      throw err;
    }
    return file;
  }

  /** The kid of the key that signs new tokens. */
  get currentKid(): string {
    return this.keys[this.keys.length - 1].kid;
  }

  /** Public keys (every key still trusted), as served on /keys. */
  jwks(): JSONWebKeySet {
    return { keys: this.keys.map((k) => ({ ...k.publicJwk })) };
  }

  /** A signed access token shaped like an Entra one: iss, aud, sub, roles, iat, nbf, exp. */
  async mint(options: MintOptions): Promise<string> {
    if (!PRINCIPAL_ID_PATTERN.test(options.sub)) throw new Error('sub must be 1-128 of [A-Za-z0-9._@-]');
    const ttl = options.ttlSeconds ?? 3600;
    if (!Number.isInteger(ttl) || ttl < 1 || ttl > MAX_TTL_SECONDS)
      throw new Error(`ttlSeconds must be an integer in 1..${MAX_TTL_SECONDS}`);
    const now = Math.floor(Date.now() / 1000);
    return this.signClaims({
      iss: this.issuer,
      aud: this.audience,
      sub: options.sub,
      ...(options.oid ? { oid: options.oid } : {}),
      ...(options.roles ? { roles: [...options.roles] } : {}),
      ...(options.name ? { name: options.name } : {}),
      iat: now,
      nbf: now,
      exp: now + ttl,
    });
  }

  /**
   * Signs exactly the given claims (no defaults added) with the current key, or with the key named by
   * `kid`. For tests that need tokens which are wrong on purpose.
   */
  async signClaims(payload: JWTPayload, options: { kid?: string } = {}): Promise<string> {
    const key = options.kid ? this.keys.find((k) => k.kid === options.kid) : this.keys[this.keys.length - 1];
    if (!key) throw new Error('no such key');
    return new SignJWT(payload).setProtectedHeader({ alg: this.alg, typ: 'JWT', kid: key.kid }).sign(key.privateKey);
  }

  /**
   * Starts signing with a new key; the previous public keys stay in the JWKS (`keepPrevious`, default
   * 1) so tokens already handed out keep validating, as with Entra's key rollover.
   */
  async rotate(keepPrevious = 1): Promise<string> {
    const key = await newSigningKey(this.alg);
    this.keys = [...this.keys.slice(Math.max(0, this.keys.length - keepPrevious)), key];
    return key.kid;
  }

  /** Serves discovery and JWKS on 127.0.0.1 (port 0 = a free port). */
  async start(port = 0): Promise<this> {
    if (this.status !== 'closed') throw new Error(`Cannot start the local issuer in status ${this.status}`);
    this.status = 'starting';
    const server = http.createServer((req, res) => this.handle(req, res));
    // JWKS clients (jose uses the keep-alive global agent) would otherwise hold close() open.
    server.keepAliveTimeout = 1000;
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, '127.0.0.1', () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      this.status = 'closed';
      throw err;
    }
    this.server = server;
    this.port = (server.address() as AddressInfo).port;
    this.status = 'running';
    return this;
  }

  async close(): Promise<void> {
    if (this.status !== 'running' || !this.server) return;
    this.status = 'closing';
    const server = this.server;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    await closed;
    this.server = undefined;
    this.status = 'closed';
  }

  /** Base URL of the running server (also the discovery document's base). */
  get url(): string {
    if (this.status !== 'running') throw new Error('The local issuer is not serving; call start() first');
    return `http://127.0.0.1:${this.port}`;
  }

  /** The JWKS URL: of this running server, or the one recorded in the key file this issuer was loaded from. */
  get jwksUrl(): string {
    if (this.status === 'running') return `${this.url}/keys`;
    if (this.savedJwksUrl) return this.savedJwksUrl;
    throw new Error('The local issuer is not serving; call start() first');
  }

  /** How many times /keys was fetched (lets tests show a cache hit or a refetch). */
  get jwksRequestCount(): number {
    return this.keysServed;
  }

  /** The settings an Authenticator needs to validate this issuer's tokens. */
  authenticatorOptions(): { mode: 'local'; issuer: string; audience: string; jwksUrl: string } {
    return { mode: 'local', issuer: this.issuer, audience: this.audience, jwksUrl: this.jwksUrl };
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const pathname = new URL(req.url ?? '/', 'http://127.0.0.1').pathname;
    const send = (status: number, body: unknown) => {
      const text = JSON.stringify(body);
      res.writeHead(status, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(text),
        'cache-control': 'no-store',
      });
      res.end(text);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, { error: 'method not allowed' });
    if (pathname === '/keys') {
      this.keysServed++;
      return send(200, this.jwks());
    }
    if (pathname === '/.well-known/openid-configuration') {
      return send(200, {
        issuer: this.issuer,
        jwks_uri: `${this.url}/keys`,
        id_token_signing_alg_values_supported: [this.alg],
        response_types_supported: ['token'],
        subject_types_supported: ['public'],
      });
    }
    send(404, { error: 'not found' });
  }
}

async function newSigningKey(alg: LocalSigningAlg): Promise<SigningKey> {
  const { privateKey } = await generateKeyPair(alg, {
    extractable: true,
    ...(alg === 'RS256' ? { modulusLength: 2048 } : {}),
  });
  const exported = await exportJWK(privateKey);
  const kid = await calculateJwkThumbprint(publicPart(exported));
  const privateJwk: JWK = { ...exported, kid, alg, use: 'sig' };
  return { kid, privateKey, privateJwk, publicJwk: publicPart(privateJwk) };
}

/** The public members of an EC or RSA JWK (drops d, p, q, dp, dq, qi). */
function publicPart(jwk: JWK): JWK {
  const { kty, crv, x, y, n, e, kid, alg, use } = jwk;
  const pub: JWK = { kty };
  for (const [k, v] of Object.entries({ crv, x, y, n, e, kid, alg, use })) {
    if (v !== undefined) (pub as unknown as Record<string, unknown>)[k] = v;
  }
  return pub;
}
