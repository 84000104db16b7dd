// Every setting of the control plane, parsed and validated once from app settings (environment
// variables with the same names locally and in Azure). A missing or invalid setting fails at start
// with a message that names it.
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { ConfigError } from './errors';

const intSetting = (min: number, max: number, dflt: number) =>
  z
    .string()
    .trim()
    .regex(/^-?\d+$/, 'must be an integer')
    .transform(Number)
    .pipe(z.number().int().min(min).max(max))
    .optional()
    .transform((v) => v ?? dflt);

const numberSetting = (min: number, max: number, dflt: number) =>
  z
    .string()
    .trim()
    .regex(/^-?\d+(\.\d+)?$/, 'must be a number')
    .transform(Number)
    .pipe(z.number().min(min).max(max))
    .optional()
    .transform((v) => v ?? dflt);

const jsonSetting = <T extends z.ZodTypeAny>(schema: T) =>
  z
    .string()
    .transform((s, ctx) => {
      try {
        return JSON.parse(s) as unknown;
      } catch {
        ctx.addIssue({ code: 'custom', message: 'must be valid JSON' });
        return z.NEVER;
      }
    })
    .pipe(schema);

export const subscriptionSchema = z
  .object({
    subscriptionId: z.string().min(1),
    resourceGroup: z.string().min(1).max(90),
    location: z.string().min(1),
    quota: z.number().int().min(1).max(10_000).default(100),
  })
  .strict();
export type PoolSubscription = z.infer<typeof subscriptionSchema>;

const hourProfileSchema = z
  .array(z.number().int().min(0).max(100_000))
  .length(24, 'must list 24 numbers, the expected concurrent sessions for each UTC hour 0..23');

/**
 * The catalogue of settings. `azure: 'required'` settings must be present in the Bicep app
 * settings (checked by test/unit/infra/settings.test.ts); `local` ones exist only for the offline runtime.
 */
export const SETTINGS = {
  RELAY_BROKER_MODE: {
    azure: 'required',
    doc: '`azure` in Azure; `local` for the offline runtime (local issuer, emulators).',
  },
  AzureWebJobsStorage: {
    azure: 'optional',
    doc: 'Storage connection string (local: Azurite). In Azure use AzureWebJobsStorage__accountName with the managed identity.',
  },
  AzureWebJobsStorage__accountName: {
    azure: 'required',
    doc: 'Storage account of the host, Durable Functions and the tables, reached with the managed identity.',
  },
  DEVICE_QUEUE_ACCOUNT_NAME: {
    azure: 'required',
    doc: 'Storage account of the device queues dev-<id>, apart from the host account so that device polling (~2.6 M requests per device-month) does not eat its request budget. Default: the AzureWebJobsStorage account.',
  },
  STORAGE_TABLE_ENDPOINT: {
    azure: 'optional',
    doc: 'Table endpoint override (default https://<account>.table.core.windows.net).',
  },
  STORAGE_QUEUE_ENDPOINT: {
    azure: 'optional',
    doc: 'Device queue endpoint override (default https://<DEVICE_QUEUE_ACCOUNT_NAME>.queue.core.windows.net).',
  },
  STORAGE_ACCOUNT_KEY: {
    azure: 'required',
    doc: 'Key of the device queue account: signs the per-device queue SAS (Queue storage has no user-delegation SAS) and manages the queues. A Key Vault reference in Azure.',
  },
  SEALING_KEY: {
    azure: 'required',
    doc: 'Base64 of at least 32 random bytes: seals relay keys and send tokens at rest and derives readyTokens. A Key Vault reference in Azure.',
  },
  PUBLIC_API_URL: {
    azure: 'required',
    doc: 'Public base URL of the API, e.g. https://<app>.azurewebsites.net/api; used in enrollment documents and readyUrl.',
  },
  POOL_NAME: {
    azure: 'required',
    doc: 'Name of the namespace pool (partition key of the namespaces table; tag value on namespaces).',
  },
  POOL_SUBSCRIPTIONS: {
    azure: 'required',
    doc: 'JSON array of {subscriptionId, resourceGroup, location, quota} the pool may create namespaces in.',
  },
  POOL_NAMESPACE_PREFIX: {
    azure: 'required',
    doc: 'Prefix of generated namespace names (globally unique DNS labels).',
  },
  POOL_FLOOR: { azure: 'required', doc: 'Namespaces kept available at least, whatever the load.' },
  POOL_CAP: { azure: 'required', doc: 'Global cap on namespaces in the pool, across subscriptions.' },
  POOL_HOUR_PROFILE: {
    azure: 'optional',
    doc: 'JSON array of 24 expected concurrent sessions per UTC hour; sizes the pool ahead of known peaks.',
  },
  POOL_HEADROOM: { azure: 'optional', doc: 'Multiplier on expected demand kept available (default 1.25).' },
  POOL_CREATE_SECONDS: {
    azure: 'optional',
    doc: 'Expected namespace creation time used by the sizing policy (default 45).',
  },
  POOL_STUCK_MINUTES: {
    azure: 'optional',
    doc: 'A namespace in creating or recycling for longer is retried by reconcile (default 30).',
  },
  POOL_MAX_RECYCLE_FAILURES: {
    azure: 'optional',
    doc: 'Failed recycles before a namespace is quarantined (default 3).',
  },
  POOL_SHRINK_IDLE_MINUTES: {
    azure: 'optional',
    doc: 'Minutes the pool must stay above target before it shrinks (default 30).',
  },
  POOL_NAME_REUSE_HOURS: {
    azure: 'optional',
    doc: 'Hours before a deleted namespace name may be used again (default 24).',
  },
  RELAY_ARM_ENDPOINT: {
    azure: 'optional',
    doc: 'ARM endpoint (default https://management.azure.com); the relay emulator locally.',
  },
  RELAY_ARM_CA_FILE: {
    azure: 'local',
    doc: "PEM file of a CA to trust for the ARM endpoint (the emulator's certificate).",
  },
  SESSION_OPEN_BUDGET_MS: {
    azure: 'optional',
    doc: 'How long POST /sessions waits for the session to be ready before answering 202 (default 8000).',
  },
  SESSION_OPEN_CONCURRENCY: {
    azure: 'optional',
    doc: 'How many opens one instance works on at once (checks, record, lease, the device message), in arrival order; an open still waiting for a slot when its budget runs out gets 503 service_busy with Retry-After, and nothing is created (default 16).',
  },
  SESSION_READY_TIMEOUT_MS: {
    azure: 'optional',
    doc: 'How long the device has to report ready; also the TTL of the session.open message (default 7000).',
  },
  SESSION_DEFAULT_LIFETIME_MINUTES: { azure: 'optional', doc: 'Lifetime when the request gives none (default 60).' },
  SESSION_MAX_LIFETIME_MINUTES: { azure: 'optional', doc: 'Longest lifetime a request may ask for (default 720).' },
  SESSION_RATE_LIMIT_PER_MINUTE: { azure: 'optional', doc: 'POST /sessions per principal per minute (default 30).' },
  SESSION_CLIENT_GONE_SECONDS: {
    azure: 'optional',
    doc: 'A session whose client (connect, rdp, ssh) has heartbeated and then stays silent this long ends with reason `client_gone` (default 120; 0: never). Clients heartbeat every quarter of it.',
  },
  SESSION_IDLE_MINUTES: {
    azure: 'optional',
    doc: 'A ready session with no connection through it for this long ends with reason `idle` (default 15; 0: never). A request may set its own `idleMinutes`.',
  },
  SESSION_MAX_PER_PRINCIPAL: {
    azure: 'optional',
    doc: 'Most sessions one operator may hold open (pending, ready or ending) at once; more answer 429 `too_many_sessions` (default 10; 0: no cap; admins are not capped).',
  },
  AUDIT_RETENTION_DAYS: {
    azure: 'optional',
    doc: 'Days the audit table keeps its rows; an hourly timer deletes older ones (default 400).',
  },
  COST_LISTENER_HOUR_USD: {
    azure: 'optional',
    doc: 'Relay price of one listener-hour in USD for cost estimates (default 0.0134, list price of 2026-12-03, see docs/deploy.md).',
  },
  COST_GB_USD: {
    azure: 'optional',
    doc: 'Relay price of one GB beyond the included 5 GB per listener-month, in USD (default 1.00, list price of 2026-12-03).',
  },
  COST_PRICES_DATE: {
    azure: 'optional',
    doc: 'The date the two prices above were read, shown with every estimate (default 2026-12-03).',
  },
  DEVICE_SAS_DAYS: { azure: 'optional', doc: 'Validity of a device enrollment (queue SAS) in days (default 365).' },
  DEVICE_ENROLLMENT_SECONDS: {
    azure: 'local',
    doc: 'Validity of a device enrollment in seconds, overriding DEVICE_SAS_DAYS (tests of renewal).',
  },
  DEVICE_OFFLINE_AFTER_SECONDS: {
    azure: 'optional',
    doc: "A device whose agent has not reported for this long is offline; opens to it fail at once with device_offline (default 40; more than DEVICE_SEEN_WRITE_SECONDS plus the agent's heartbeat interval).",
  },
  DEVICE_SEEN_WRITE_SECONDS: {
    azure: 'optional',
    doc: "How often a heartbeat with nothing new writes the device's lastSeenAt (default 15): the table-write cost of presence.",
  },
  AUTH_MODE: {
    azure: 'required',
    doc: '`entra` (validate bearer JWTs), `appservice` (trust x-ms-client-principal behind App Service Authentication) or `local`.',
  },
  AUTH_ISSUER: { azure: 'required', doc: 'Expected JWT issuer, e.g. https://login.microsoftonline.com/<tenant>/v2.0.' },
  AUTH_AUDIENCE: {
    azure: 'required',
    doc: "Expected JWT audience (the API app registration's client id or Application ID URI).",
  },
  AUTH_JWKS_URL: {
    azure: 'required',
    doc: 'JWKS URL of the issuer, e.g. https://login.microsoftonline.com/<tenant>/discovery/v2.0/keys.',
  },
  RELAY_BROKER_BIND: {
    azure: 'local',
    doc: '`npm start` only: the address the API, the device queue and the relay data plane listen on (default 127.0.0.1; 0.0.0.0 lets a device on another machine in).',
  },
  RELAY_BROKER_PUBLIC_HOST: {
    azure: 'local',
    doc: "`npm start` only: the host name or address devices reach this machine by; it goes into the API URL, the queue URL, the relays' endpoints and the emulator's certificate (default 127.0.0.1, or this machine's host name when RELAY_BROKER_BIND is not loopback).",
  },
  RELAY_BROKER_RELAY_PORTS: {
    azure: 'local',
    doc: "`npm start` only: the port range the relay emulator serves namespaces on, one port each, kept across restarts (default PORT+29..PORT+128, i.e. 7100-7199); open or forward it with the API's and the queue's (PORT, PORT+1).",
  },
  APPLICATIONINSIGHTS_CONNECTION_STRING: {
    azure: 'optional',
    doc: 'Application Insights connection string: the OpenTelemetry metrics of lib/metrics.ts go there (Azure Monitor exporter, every 60 s). Set by infra/main.bicep; unset locally, where GET /api/metrics serves them.',
  },
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: {
    azure: 'optional',
    doc: '`Authorization=AAD`: the metrics exporter authenticates with the managed identity (Monitoring Metrics Publisher).',
  },
  CONSOLE_CLIENT_ID: {
    azure: 'optional',
    doc: "Client id of the web console's Entra app registration (a single-page application; redirect URI <app>/api/console/). Empty: the console offers only token paste.",
  },
  CONSOLE_AUTHORITY: {
    azure: 'optional',
    doc: 'MSAL authority of the console sign-in, e.g. https://login.microsoftonline.com/<tenant> (default: derived from AUTH_ISSUER).',
  },
  CONSOLE_API_SCOPE: {
    azure: 'optional',
    doc: 'Scope the console asks for to call the API, e.g. api://<api-client-id>/access_as_user (default: <AUTH_AUDIENCE>/.default).',
  },
} as const satisfies Record<string, { azure: 'required' | 'optional' | 'local'; doc: string }>;

const bindSetting = z
  .string()
  .trim()
  .regex(/^[A-Za-z0-9.:-]{1,253}$/, 'must be an IP address or a host name');
// Goes into URLs and certificates as is: an IPv4 address or a DNS name (an IPv6 literal would need brackets).
const publicHostSetting = z
  .string()
  .trim()
  .regex(/^[A-Za-z0-9.-]{1,253}$/, 'must be a host name or an IPv4 address');

const localNetworkSchema = z.object({
  PORT: intSetting(1, 65_535 - 128, 7071),
  RELAY_BROKER_BIND: bindSetting.optional(),
  RELAY_BROKER_PUBLIC_HOST: publicHostSetting.optional(),
  RELAY_BROKER_RELAY_PORTS: z
    .string()
    .trim()
    .regex(/^\d{1,5}-\d{1,5}$/, 'must be a port range such as 7100-7199')
    .transform((v) => v.split('-').map(Number) as [number, number])
    .refine(([first, last]) => first >= 1 && last <= 65_535 && first <= last, 'must be a range of ports, low-high')
    .optional(),
});

/** Where `npm start` listens and what it tells devices (the local-only settings above). */
export interface LocalNetwork {
  apiPort: number;
  queuePort: number;
  relayPorts: { first: number; last: number };
  bind: string;
  publicHost: string;
}

/**
 * Reads `npm start`'s network settings. `defaultHostName` is this machine's name, advertised when
 * the bind address is not loopback and no public host is set.
 */
export function loadLocalNetwork(env: NodeJS.ProcessEnv, defaultHostName: string): LocalNetwork {
  const r = localNetworkSchema.safeParse(env);
  if (!r.success) {
    const lines = r.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`);
    throw new ConfigError(`Invalid configuration:\n${lines.join('\n')}`);
  }
  const e = r.data;
  const bind = e.RELAY_BROKER_BIND ?? '127.0.0.1';
  const loopback = bind === '127.0.0.1' || bind === 'localhost' || bind === '::1';
  const [first, last] = e.RELAY_BROKER_RELAY_PORTS ?? [e.PORT + 29, e.PORT + 128];
  return {
    apiPort: e.PORT,
    queuePort: e.PORT + 1,
    relayPorts: { first, last },
    bind,
    publicHost: e.RELAY_BROKER_PUBLIC_HOST ?? (loopback ? '127.0.0.1' : defaultHostName),
  };
}

export type SettingName = keyof typeof SETTINGS;

const envSchema = z
  .object({
    RELAY_BROKER_MODE: z.enum(['azure', 'local']).default('azure'),
    AzureWebJobsStorage: z.string().min(1).optional(),
    AzureWebJobsStorage__accountName: z
      .string()
      .regex(/^[a-z0-9]{3,24}$/, 'must be a storage account name')
      .optional(),
    DEVICE_QUEUE_ACCOUNT_NAME: z
      .string()
      .regex(/^[a-z0-9]{3,24}$/, 'must be a storage account name')
      .optional(),
    STORAGE_TABLE_ENDPOINT: z.url().optional(),
    STORAGE_QUEUE_ENDPOINT: z.url().optional(),
    STORAGE_ACCOUNT_KEY: z.string().min(1).optional(),
    SEALING_KEY: z
      .string()
      .refine(
        (v) => /^[A-Za-z0-9+/=_-]+$/.test(v) && Buffer.from(v, 'base64').length >= 32,
        'must be base64 of at least 32 bytes',
      )
      .optional(),
    PUBLIC_API_URL: z.url().optional(),
    POOL_NAME: z
      .string()
      .regex(/^[a-z0-9-]{1,40}$/, 'lowercase letters, digits and hyphens, at most 40')
      .default('default'),
    POOL_SUBSCRIPTIONS: jsonSetting(
      z.array(subscriptionSchema).min(1, 'must list at least one subscription'),
    ).optional(),
    POOL_NAMESPACE_PREFIX: z
      .string()
      .regex(/^[a-z][a-z0-9-]{2,20}$/, 'a letter, then 2-20 lowercase letters, digits or hyphens')
      .default('rbk'),
    POOL_FLOOR: intSetting(0, 100_000, 5),
    POOL_CAP: intSetting(1, 100_000, 600),
    POOL_HOUR_PROFILE: jsonSetting(hourProfileSchema).optional(),
    POOL_HEADROOM: numberSetting(1, 10, 1.25),
    POOL_CREATE_SECONDS: intSetting(1, 3600, 45),
    POOL_STUCK_MINUTES: intSetting(1, 24 * 60, 30),
    POOL_MAX_RECYCLE_FAILURES: intSetting(1, 100, 3),
    POOL_SHRINK_IDLE_MINUTES: intSetting(0, 24 * 60, 30),
    POOL_NAME_REUSE_HOURS: intSetting(0, 24 * 365, 24),
    RELAY_ARM_ENDPOINT: z.url().optional(),
    RELAY_ARM_CA_FILE: z.string().min(1).optional(),
    SESSION_OPEN_BUDGET_MS: intSetting(500, 120_000, 8000),
    SESSION_READY_TIMEOUT_MS: intSetting(500, 600_000, 7000),
    SESSION_OPEN_CONCURRENCY: intSetting(1, 1000, 16),
    SESSION_DEFAULT_LIFETIME_MINUTES: intSetting(1, 720, 60),
    SESSION_MAX_LIFETIME_MINUTES: intSetting(1, 720, 720),
    SESSION_RATE_LIMIT_PER_MINUTE: intSetting(1, 100_000, 30),
    SESSION_CLIENT_GONE_SECONDS: intSetting(0, 86_400, 120).refine((v) => v === 0 || v >= 5, 'must be 0 or at least 5'),
    SESSION_IDLE_MINUTES: intSetting(0, 720, 15),
    SESSION_MAX_PER_PRINCIPAL: intSetting(0, 100_000, 10),
    AUDIT_RETENTION_DAYS: intSetting(1, 36_500, 400),
    COST_LISTENER_HOUR_USD: numberSetting(0, 1000, 0.0134),
    COST_GB_USD: numberSetting(0, 1000, 1),
    COST_PRICES_DATE: z.iso.date().default('2026-12-03'),
    DEVICE_SAS_DAYS: intSetting(1, 3650, 365),
    DEVICE_ENROLLMENT_SECONDS: intSetting(10, 3650 * 86_400, 0),
    DEVICE_OFFLINE_AFTER_SECONDS: intSetting(2, 86_400, 40),
    DEVICE_SEEN_WRITE_SECONDS: intSetting(1, 3600, 15),
    AUTH_MODE: z.enum(['entra', 'appservice', 'local']).default('entra'),
    AUTH_ISSUER: z.string().min(1).optional(),
    AUTH_AUDIENCE: z.string().min(1).optional(),
    AUTH_JWKS_URL: z.url().optional(),
    APPLICATIONINSIGHTS_CONNECTION_STRING: z.string().min(1).optional(),
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING: z.string().min(1).optional(),
    CONSOLE_CLIENT_ID: z.string().min(1).max(100).optional(),
    CONSOLE_AUTHORITY: z.url().optional(),
    CONSOLE_API_SCOPE: z.string().min(1).max(500).optional(),
  })
  .superRefine((env, ctx) => {
    const need = (name: keyof typeof env, why: string) => {
      if (env[name] === undefined) ctx.addIssue({ code: 'custom', path: [name], message: `is required ${why}` });
    };
    if (!env.AzureWebJobsStorage && !env.AzureWebJobsStorage__accountName) {
      ctx.addIssue({
        code: 'custom',
        path: ['AzureWebJobsStorage__accountName'],
        message: 'or AzureWebJobsStorage is required',
      });
    }
    if (env.AzureWebJobsStorage__accountName && !env.AzureWebJobsStorage)
      need('STORAGE_ACCOUNT_KEY', 'to sign device queue SAS');
    if (env.AUTH_MODE !== 'appservice') {
      need('AUTH_ISSUER', `when AUTH_MODE=${env.AUTH_MODE}`);
      need('AUTH_AUDIENCE', `when AUTH_MODE=${env.AUTH_MODE}`);
      need('AUTH_JWKS_URL', `when AUTH_MODE=${env.AUTH_MODE}`);
    }
    if (env.AUTH_MODE === 'local' && env.RELAY_BROKER_MODE !== 'local') {
      ctx.addIssue({
        code: 'custom',
        path: ['AUTH_MODE'],
        message: 'local is allowed only with RELAY_BROKER_MODE=local',
      });
    }
    if (env.RELAY_BROKER_MODE === 'azure') {
      need('PUBLIC_API_URL', 'in azure mode');
      need('SEALING_KEY', 'in azure mode');
    }
    if (env.SESSION_DEFAULT_LIFETIME_MINUTES > env.SESSION_MAX_LIFETIME_MINUTES) {
      ctx.addIssue({
        code: 'custom',
        path: ['SESSION_DEFAULT_LIFETIME_MINUTES'],
        message: 'must not exceed SESSION_MAX_LIFETIME_MINUTES',
      });
    }
    if (env.POOL_FLOOR > env.POOL_CAP)
      ctx.addIssue({ code: 'custom', path: ['POOL_FLOOR'], message: 'must not exceed POOL_CAP' });
  });

export interface StorageConfig {
  /** Connection string (local, Azurite) or undefined when the managed identity is used. */
  connectionString?: string;
  accountName: string;
  /** The account of the device queues (its key signs device SAS); the same account locally. */
  queueAccountName: string;
  accountKey?: string;
  tableEndpoint: string;
  queueEndpoint: string;
}

export interface Config {
  mode: 'azure' | 'local';
  storage: StorageConfig;
  /** Key material for lib/sealing.ts. Locally derived from the storage key when not set. */
  sealingKey: Buffer;
  publicApiUrl: string;
  pool: {
    name: string;
    subscriptions: PoolSubscription[];
    namespacePrefix: string;
    floor: number;
    cap: number;
    hourProfile?: number[];
    headroom: number;
    createSeconds: number;
    stuckMinutes: number;
    maxRecycleFailures: number;
    shrinkIdleMinutes: number;
    nameReuseHours: number;
  };
  relay: { armEndpoint: string; armCaFile?: string };
  sessions: {
    openBudgetMs: number;
    readyTimeoutMs: number;
    /** Opens one instance works on at once (lib/sessions/openAdmission.ts). */
    openConcurrency: number;
    defaultLifetimeMinutes: number;
    maxLifetimeMinutes: number;
    rateLimitPerMinute: number;
    /** 0: clients are never declared gone. */
    clientGoneSeconds: number;
    /** Default idle limit (0: never). */
    idleMinutes: number;
    /** 0: no cap. */
    maxPerPrincipal: number;
  };
  audit: { retentionDays: number };
  /** Relay prices for estimates, and the day they were read. */
  cost: { listenerHourUsd: number; gbUsd: number; pricesDate: string };
  devices: { enrollmentSeconds: number; offlineAfterSeconds: number; seenWriteSeconds: number };
  auth: { mode: 'entra' | 'appservice' | 'local'; issuer?: string; audience?: string; jwksUrl?: string };
  metrics: { azureMonitorConnectionString?: string; entraIngestion: boolean };
  /** What the web console's page is told (public values only: MSAL needs no secret). */
  console: { clientId?: string; authority?: string; apiScope?: string };
}

/** Parses `AccountName=..;AccountKey=..;TableEndpoint=..` connection strings (and UseDevelopmentStorage=true). */
export function parseConnectionString(cs: string): StorageConfig {
  const parts = new Map<string, string>();
  for (const segment of cs.split(';')) {
    const i = segment.indexOf('=');
    if (i > 0) parts.set(segment.slice(0, i).trim().toLowerCase(), segment.slice(i + 1).trim());
  }
  if (parts.get('usedevelopmentstorage') === 'true') {
    return parseConnectionString(
      'DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;' +
        'AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;' +
        'QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;',
    );
  }
  const accountName = parts.get('accountname');
  if (!accountName)
    throw new ConfigError('Invalid setting AzureWebJobsStorage: the connection string has no AccountName');
  const protocol = parts.get('defaultendpointsprotocol') ?? 'https';
  const suffix = parts.get('endpointsuffix') ?? 'core.windows.net';
  return {
    connectionString: cs,
    accountName,
    queueAccountName: accountName,
    accountKey: parts.get('accountkey'),
    tableEndpoint: parts.get('tableendpoint') ?? `${protocol}://${accountName}.table.${suffix}`,
    queueEndpoint: parts.get('queueendpoint') ?? `${protocol}://${accountName}.queue.${suffix}`,
  };
}

/** Parses and validates settings from an environment; throws ConfigError naming every bad setting. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const input: Record<string, string | undefined> = {};
  const unresolved: string[] = [];
  for (const name of Object.keys(SETTINGS)) {
    const value = env[name];
    input[name] = value === undefined || value.trim() === '' ? undefined : value;
    // App Service hands over the reference text itself when a Key Vault reference cannot be resolved.
    if (value?.trim().startsWith('@Microsoft.KeyVault(')) unresolved.push(name);
  }
  if (unresolved.length) {
    throw new ConfigError(
      `Invalid configuration:\n${unresolved.map((n) => `  ${n}: is an unresolved Key Vault reference (check the app's identity has Key Vault Secrets User and the secret exists)`).join('\n')}`,
    );
  }
  const parsed = envSchema.safeParse(input);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => {
      const name = String(i.path[0] ?? 'settings');
      // Never echo a value back: some settings are secrets.
      return `  ${name}: ${i.message}`;
    });
    throw new ConfigError(`Invalid configuration:\n${lines.join('\n')}`);
  }
  const e = parsed.data;
  const storage: StorageConfig = e.AzureWebJobsStorage
    ? parseConnectionString(e.AzureWebJobsStorage)
    : {
        accountName: e.AzureWebJobsStorage__accountName!,
        queueAccountName: e.AzureWebJobsStorage__accountName!,
        accountKey: e.STORAGE_ACCOUNT_KEY,
        tableEndpoint: `https://${e.AzureWebJobsStorage__accountName}.table.core.windows.net`,
        queueEndpoint: `https://${e.AzureWebJobsStorage__accountName}.queue.core.windows.net`,
      };
  // Device queues in an account of their own: its endpoint, and its key signs the device SAS.
  // Only with the managed identity: a connection string names one account (locally, Azurite's).
  if (e.DEVICE_QUEUE_ACCOUNT_NAME && e.DEVICE_QUEUE_ACCOUNT_NAME !== storage.accountName) {
    if (storage.connectionString) {
      throw new ConfigError(
        'Invalid configuration:\n  DEVICE_QUEUE_ACCOUNT_NAME: another account than the AzureWebJobsStorage connection string names; use AzureWebJobsStorage__accountName to split the accounts',
      );
    }
    storage.queueAccountName = e.DEVICE_QUEUE_ACCOUNT_NAME;
    storage.queueEndpoint = `https://${e.DEVICE_QUEUE_ACCOUNT_NAME}.queue.core.windows.net`;
  }
  if (e.STORAGE_TABLE_ENDPOINT) storage.tableEndpoint = e.STORAGE_TABLE_ENDPOINT;
  if (e.STORAGE_QUEUE_ENDPOINT) storage.queueEndpoint = e.STORAGE_QUEUE_ENDPOINT;
  if (e.STORAGE_ACCOUNT_KEY) storage.accountKey = e.STORAGE_ACCOUNT_KEY;
  if (!storage.accountKey) {
    throw new ConfigError('Invalid configuration:\n  STORAGE_ACCOUNT_KEY: is required to sign device queue SAS');
  }
  const sealingKey = e.SEALING_KEY
    ? Buffer.from(e.SEALING_KEY, 'base64')
    : createHash('sha256').update(`relay-broker local sealing key:${storage.accountKey}`).digest();
  const config: Config = {
    mode: e.RELAY_BROKER_MODE,
    storage,
    sealingKey,
    publicApiUrl: (
      e.PUBLIC_API_URL ?? `http://${env.WEBSITE_HOSTNAME ?? `127.0.0.1:${env.PORT ?? '7071'}`}/api`
    ).replace(/\/+$/, ''),
    pool: {
      name: e.POOL_NAME,
      subscriptions: e.POOL_SUBSCRIPTIONS ?? [
        {
          subscriptionId: '00000000-0000-0000-0000-000000000000',
          resourceGroup: 'relay-broker-pool',
          location: 'local',
          quota: 100,
        },
      ],
      namespacePrefix: e.POOL_NAMESPACE_PREFIX,
      floor: e.POOL_FLOOR,
      cap: e.POOL_CAP,
      hourProfile: e.POOL_HOUR_PROFILE,
      headroom: e.POOL_HEADROOM,
      createSeconds: e.POOL_CREATE_SECONDS,
      stuckMinutes: e.POOL_STUCK_MINUTES,
      maxRecycleFailures: e.POOL_MAX_RECYCLE_FAILURES,
      shrinkIdleMinutes: e.POOL_SHRINK_IDLE_MINUTES,
      nameReuseHours: e.POOL_NAME_REUSE_HOURS,
    },
    relay: { armEndpoint: e.RELAY_ARM_ENDPOINT ?? 'https://management.azure.com', armCaFile: e.RELAY_ARM_CA_FILE },
    sessions: {
      openBudgetMs: e.SESSION_OPEN_BUDGET_MS,
      readyTimeoutMs: e.SESSION_READY_TIMEOUT_MS,
      openConcurrency: e.SESSION_OPEN_CONCURRENCY,
      defaultLifetimeMinutes: e.SESSION_DEFAULT_LIFETIME_MINUTES,
      maxLifetimeMinutes: e.SESSION_MAX_LIFETIME_MINUTES,
      rateLimitPerMinute: e.SESSION_RATE_LIMIT_PER_MINUTE,
      clientGoneSeconds: e.SESSION_CLIENT_GONE_SECONDS,
      idleMinutes: e.SESSION_IDLE_MINUTES,
      maxPerPrincipal: e.SESSION_MAX_PER_PRINCIPAL,
    },
    audit: { retentionDays: e.AUDIT_RETENTION_DAYS },
    cost: { listenerHourUsd: e.COST_LISTENER_HOUR_USD, gbUsd: e.COST_GB_USD, pricesDate: e.COST_PRICES_DATE },
    devices: {
      enrollmentSeconds: e.DEVICE_ENROLLMENT_SECONDS || e.DEVICE_SAS_DAYS * 86_400,
      offlineAfterSeconds: e.DEVICE_OFFLINE_AFTER_SECONDS,
      seenWriteSeconds: e.DEVICE_SEEN_WRITE_SECONDS,
    },
    auth: { mode: e.AUTH_MODE, issuer: e.AUTH_ISSUER, audience: e.AUTH_AUDIENCE, jwksUrl: e.AUTH_JWKS_URL },
    metrics: {
      azureMonitorConnectionString: e.APPLICATIONINSIGHTS_CONNECTION_STRING,
      entraIngestion: /authorization=aad/i.test(e.APPLICATIONINSIGHTS_AUTHENTICATION_STRING ?? ''),
    },
    console: {
      clientId: e.CONSOLE_CLIENT_ID,
      // login.microsoftonline.com/<tenant>/v2.0 is the issuer; MSAL wants the authority without /v2.0.
      authority: e.CONSOLE_AUTHORITY ?? e.AUTH_ISSUER?.replace(/\/v2\.0\/?$/, ''),
      apiScope:
        e.CONSOLE_API_SCOPE ?? (e.AUTH_AUDIENCE ? `${e.AUTH_AUDIENCE.replace(/\/+$/, '')}/.default` : undefined),
    },
  };
  if (config.mode === 'azure' && !e.POOL_SUBSCRIPTIONS) {
    throw new ConfigError('Invalid configuration:\n  POOL_SUBSCRIPTIONS: is required in azure mode');
  }
  return deepFreeze(config);
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Buffer.isBuffer(value)) {
    for (const v of Object.values(value as Record<string, unknown>)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

let cached: Config | undefined;
/** The process-wide configuration, loaded on first use. */
export function getConfig(): Config {
  cached ??= loadConfig();
  return cached;
}
/** For tests that change the environment between cases. */
export function resetConfigForTests(): void {
  cached = undefined;
}
