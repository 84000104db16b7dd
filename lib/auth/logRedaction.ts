// Masks credentials in text bound for logs (JWTs, SAS tokens and signatures, account and rule keys,
// readyTokens), and detects them for the log-scan test. A safety net: code should not log secrets at all.

export const REDACTED = '[REDACTED]';

/** Values never start with the mask, so redacting twice changes nothing and masked text is clean. */
const NOT_MASKED = '(?!\\[REDACTED\\])';

/** Field names whose values are secrets wherever they appear as `name=value` or `"name": "value"`. */
const SECRET_FIELDS = [
  'readyToken',
  'sendToken',
  'listenToken',
  'queueSas',
  'deviceKey',
  'primaryKey',
  'secondaryKey',
  'primaryConnectionString',
  'secondaryConnectionString',
  'accountKey',
  'sharedAccessKey',
  'STORAGE_ACCOUNT_KEY',
  'access_token',
  'id_token',
  'refresh_token',
  'client_secret',
];

interface Rule {
  name: string;
  pattern: RegExp;
  replace: (match: string, ...groups: string[]) => string;
}

const RULES: Rule[] = [
  {
    // `"readyToken":"..."`, `readyToken: '...'`, `sendToken=...` (JSON, JS inspect output, query strings).
    name: 'secret field',
    pattern: new RegExp(
      `(["']?\\b(?:${SECRET_FIELDS.join('|')})\\b["']?\\s*[:=]\\s*)` +
        `(?:"${NOT_MASKED}(?:\\\\.|[^"\\\\])+"|'${NOT_MASKED}[^']+'|${NOT_MASKED}[^"'\\s,;&}]+)`,
      'gi',
    ),
    replace: (match: string, prefix: string) => {
      const quote = match[prefix.length] === '"' || match[prefix.length] === "'" ? match[prefix.length] : '';
      return `${prefix}${quote}${REDACTED}${quote}`;
    },
  },
  {
    // Relay and Storage SAS tokens as a whole: `SharedAccessSignature sr=..&sig=..&se=..&skn=..`,
    // and the `SharedAccessSignature=` member of a connection string.
    name: 'shared access signature',
    // The value must hold an `=` (sr=, sig=, ...), so prose that merely names the scheme is left alone.
    pattern: new RegExp(`(SharedAccessSignature[ =])${NOT_MASKED}(?=[^\\s"';,]*=)[^\\s"';,]+`, 'g'),
    replace: (_m, prefix: string) => `${prefix}${REDACTED}`,
  },
  {
    // The relay token in a WebSocket URL (`sb-hc-token=<url-encoded SAS>`).
    name: 'relay token parameter',
    pattern: new RegExp(`(\\bsb-hc-token=)${NOT_MASKED}[^\\s&"';,]+`, 'gi'),
    replace: (_m, prefix: string) => `${prefix}${REDACTED}`,
  },
  {
    // Any SAS signature on its own (a storage or queue SAS URL).
    name: 'sas signature',
    pattern: new RegExp(`((?:^|[?&;\\s"'])sig=)${NOT_MASKED}[^&\\s"';,]+`, 'gi'),
    replace: (_m, prefix: string) => `${prefix}${REDACTED}`,
  },
  {
    // Keys in connection strings: `AccountKey=...;`, `SharedAccessKey=...;`.
    name: 'connection string key',
    pattern: new RegExp(`(\\b(?:AccountKey|SharedAccessKey)=)${NOT_MASKED}[^;\\s"']+`, 'gi'),
    replace: (_m, prefix: string) => `${prefix}${REDACTED}`,
  },
  {
    // A JWT anywhere (header and payload are base64url JSON objects, so they start with "ey").
    name: 'jwt',
    pattern: /\bey[A-Za-z0-9_-]{8,}\.ey[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*/g,
    replace: () => REDACTED,
  },
  {
    // Opaque bearer tokens (`Authorization: Bearer <anything>`).
    name: 'bearer token',
    // At least 20 characters with a digit, so prose such as "Bearer authentication" is left alone.
    pattern: new RegExp(`(\\bBearer\\s+)${NOT_MASKED}(?=[A-Za-z._~+/=-]*[0-9])[A-Za-z0-9._~+/=-]{20,}`, 'g'),
    replace: (_m, prefix: string) => `${prefix}${REDACTED}`,
  },
];

/** The text with every recognised secret replaced by `[REDACTED]` (the field or parameter name is kept). */
export function redactSecrets(text: string): string {
  let out = text;
  for (const rule of RULES) out = out.replace(rule.pattern, rule.replace);
  return out;
}

/** Names of the kinds of secret found in `text` (empty when clean). Never returns the secret itself. */
export function findSecretKinds(text: string): string[] {
  return RULES.filter((rule) => {
    rule.pattern.lastIndex = 0;
    const found = rule.pattern.test(text);
    rule.pattern.lastIndex = 0;
    return found;
  }).map((rule) => rule.name);
}

/** True if `text` holds a JWT, a SAS token or signature, a key, or a readyToken-like field value. */
export function containsSecret(text: string): boolean {
  return findSecretKinds(text).length > 0;
}
