// Shared Access Signature tokens for Azure Relay: mint, parse and verify (pure, no I/O).
// Format and rules from the Relay protocol guide and service-bus-sas.md; tokens are secrets: never log them.
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

export const SAS_PREFIX = 'SharedAccessSignature ';

export interface CreateSasTokenInput {
  /** The resource the token grants access to: a namespace endpoint or a hybrid connection URI, any scheme. */
  resourceUri: string;
  /** The authorization rule name (`skn`). */
  keyName: string;
  /** The rule's key exactly as ARM returns it (base64 text; the HMAC is keyed with its UTF-8 bytes). */
  key: string;
  expiresAt: Date;
}

export interface ParsedSasToken {
  /** `sr` decoded: the audience URI as signed. */
  resourceUri: string;
  /** `sr` as it appears in the token (URL-encoded); the signature covers this exact text. */
  encodedResourceUri: string;
  signature: string;
  /** `se`: expiry, seconds since the epoch. */
  expiresAtSeconds: number;
  keyName: string;
}

/**
 * The canonical audience for a resource: `http://host/path/` with the scheme set to http, the port,
 * query and fragment dropped, a `$hc/` segment removed and a trailing slash (as the .NET client does).
 */
export function normalizeResourceUri(resourceUri: string): string {
  const url = new URL(resourceUri);
  let path = url.pathname.replace(/^\/\$hc(?=\/|$)/i, '');
  if (!path.endsWith('/')) path += '/';
  return `http://${url.hostname.toLowerCase()}${path}`;
}

/** The audience of a hybrid connection reached through `endpoint` (a namespace's serviceBusEndpoint). */
export function relayAudience(endpoint: string, hybridConnection: string): string {
  const url = new URL(endpoint);
  const base = url.pathname.replace(/\/+$/, '');
  return normalizeResourceUri(`${url.protocol}//${url.host}${base}/${encodeURIComponent(hybridConnection)}`);
}

function sign(encodedResourceUri: string, expiresAtSeconds: number, key: string): string {
  return createHmac('sha256', Buffer.from(key, 'utf8'))
    .update(`${encodedResourceUri}\n${expiresAtSeconds}`)
    .digest('base64');
}

export function createSasToken(input: CreateSasTokenInput): string {
  const expiresAtSeconds = Math.floor(input.expiresAt.getTime() / 1000);
  if (!Number.isFinite(expiresAtSeconds)) throw new TypeError('expiresAt is not a valid date');
  if (!input.keyName || !input.key) throw new TypeError('keyName and key are required');
  const sr = encodeURIComponent(normalizeResourceUri(input.resourceUri));
  const sig = encodeURIComponent(sign(sr, expiresAtSeconds, input.key));
  return `${SAS_PREFIX}sr=${sr}&sig=${sig}&se=${expiresAtSeconds}&skn=${encodeURIComponent(input.keyName)}`;
}

/** Parses a token; undefined when it is not a well-formed SAS token (the reason is never secret-bearing). */
export function parseSasToken(token: string): ParsedSasToken | undefined {
  if (typeof token !== 'string' || !token.startsWith(SAS_PREFIX)) return undefined;
  const fields = new Map<string, string>();
  for (const pair of token.slice(SAS_PREFIX.length).split('&')) {
    const eq = pair.indexOf('=');
    if (eq <= 0) return undefined;
    const name = pair.slice(0, eq);
    if (fields.has(name)) return undefined;
    fields.set(name, pair.slice(eq + 1));
  }
  const sr = fields.get('sr');
  const sig = fields.get('sig');
  const se = fields.get('se');
  const skn = fields.get('skn');
  if (!sr || !sig || !se || !skn || !/^\d{1,12}$/.test(se)) return undefined;
  try {
    return {
      resourceUri: decodeURIComponent(sr),
      encodedResourceUri: sr,
      signature: decodeURIComponent(sig),
      expiresAtSeconds: Number(se),
      keyName: decodeURIComponent(skn),
    };
  } catch {
    return undefined;
  }
}

export interface SasKey {
  keyName: string;
  key: string;
}

export interface VerifySasOptions {
  /** The resource being accessed, e.g. `relayAudience(endpoint, hc)`; the token's audience must be a prefix of it. */
  audience: string;
  /** Candidate keys (every key of every rule that may sign for this resource). */
  keys: readonly SasKey[];
  now?: Date;
}

export type SasRejection =
  'malformed' | 'expired' | 'audience_host_mismatch' | 'audience_path_mismatch' | 'invalid_signature';

export type SasVerification =
  | { ok: true; keyName: string; /** index in `keys` of the key that matched */ keyIndex: number; expiresAt: Date }
  | { ok: false; reason: SasRejection };

function audienceParts(uri: string): { host: string; segments: string[] } | undefined {
  try {
    const url = new URL(uri);
    const path = url.pathname.replace(/^\/\$hc(?=\/|$)/i, '');
    const segments = path
      .split('/')
      .filter((s) => s.length > 0)
      .map((s) => decodeURIComponent(s).toLowerCase());
    return { host: url.hostname.toLowerCase(), segments };
  } catch {
    return undefined;
  }
}

/**
 * Verifies a token the way the service does: well formed, not expired, audience host equal and
 * audience path a prefix of the resource (scheme, port and trailing slash ignored), signed by one
 * of `keys` with the name `skn`. Every candidate key is checked, each with a constant-time compare.
 */
export function verifySasToken(token: string, options: VerifySasOptions): SasVerification {
  const parsed = parseSasToken(token);
  if (!parsed) return { ok: false, reason: 'malformed' };
  const nowSeconds = (options.now ?? new Date()).getTime() / 1000;
  if (parsed.expiresAtSeconds <= nowSeconds) return { ok: false, reason: 'expired' };
  const granted = audienceParts(parsed.resourceUri);
  const wanted = audienceParts(options.audience);
  if (!granted || !wanted) return { ok: false, reason: 'malformed' };
  if (granted.host !== wanted.host) return { ok: false, reason: 'audience_host_mismatch' };
  if (granted.segments.length > wanted.segments.length || granted.segments.some((s, i) => s !== wanted.segments[i])) {
    return { ok: false, reason: 'audience_path_mismatch' };
  }
  // Compare digests of the signatures so both sides always have the same length.
  const given = createHash('sha256').update(parsed.signature, 'utf8').digest();
  let matched = -1;
  options.keys.forEach((candidate, index) => {
    const expected = createHash('sha256')
      .update(sign(parsed.encodedResourceUri, parsed.expiresAtSeconds, candidate.key), 'utf8')
      .digest();
    const equal = timingSafeEqual(expected, given);
    if (equal && matched < 0 && candidate.keyName === parsed.keyName) matched = index;
  });
  if (matched < 0) return { ok: false, reason: 'invalid_signature' };
  return { ok: true, keyName: parsed.keyName, keyIndex: matched, expiresAt: new Date(parsed.expiresAtSeconds * 1000) };
}
