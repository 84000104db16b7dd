// `relay-broker agent doctor`: checks a device's setup the way the agent will use it (same
// enrollment, same proxy, same CA) and says for each check what passed or what to fix.
import net from 'node:net';
import tls from 'node:tls';
import { RestError } from '@azure/storage-queue';
import type { Enrollment } from '../lib/devices/deviceRegistry';
import { describeError } from '../lib/errors';
import { queueClientFor } from './deviceAgent';
import { connectThroughProxy, fetchVia, proxyFor, redactProxyUrl, type ProxySettings } from './proxy';

export type CheckStatus = 'pass' | 'fail' | 'warn';
export interface Check {
  name: string;
  status: CheckStatus;
  detail: string;
  /** What to do, when it did not pass. */
  fix?: string;
}

export interface DoctorOptions {
  enrollment: Enrollment;
  allowPorts: number[];
  targetHost: string;
  proxy?: ProxySettings;
  relayCa?: string;
  /** host[:port] of a relay namespace to try TLS with (the pool's namespaces are per session). */
  relayHost?: string;
  /** Clock skew beyond this fails (default 5 minutes: SAS start/expiry times stop making sense). */
  maxSkewMs?: number;
  timeoutMs?: number;
  now?: () => number;
}

const days = (ms: number): string => `${Math.floor(ms / 86_400_000)} days`;

function codeOf(err: unknown): string {
  const e = err as { cause?: { code?: unknown; message?: unknown }; code?: unknown };
  if (typeof e.cause?.code === 'string') return e.cause.code;
  if (typeof e.cause?.message === 'string') return e.cause.message;
  if (typeof e.code === 'string') return e.code;
  return describeError(err);
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms / 1000} s`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

const proxyHint = (proxy?: ProxySettings): string =>
  proxy
    ? 'Check that the proxy allows CONNECT to this host on port 443 and that its credentials are right.'
    : 'If this network only lets traffic out through a proxy, pass --proxy or set HTTPS_PROXY.';

function checkEnrollment(o: DoctorOptions, now: number): Check {
  const left = Date.parse(o.enrollment.expiresAt) - now;
  const sasExpiry = new URLSearchParams(o.enrollment.queueSas.replace(/^\?/, '')).get('se');
  const sasLeft = sasExpiry ? Date.parse(sasExpiry) - now : left;
  const soonest = Math.min(left, sasLeft);
  const detail = `device ${o.enrollment.deviceId}, expires ${o.enrollment.expiresAt}`;
  const fix = `Rotate it: \`relay-broker devices rotate ${o.enrollment.deviceId}\` and replace the file.`;
  if (!(soonest > 0)) return { name: 'enrollment', status: 'fail', detail: `${detail}: expired`, fix };
  if (soonest < 7 * 86_400_000)
    return { name: 'enrollment', status: 'warn', detail: `${detail} (${days(soonest)} left)`, fix };
  return { name: 'enrollment', status: 'pass', detail: `${detail} (${days(soonest)} left)` };
}

async function checkProxy(o: DoctorOptions, timeoutMs: number): Promise<Check> {
  if (!o.proxy)
    return {
      name: 'proxy',
      status: 'pass',
      detail: 'none: direct connections (no --proxy, HTTPS_PROXY or HTTP_PROXY)',
    };
  const via = `${redactProxyUrl(o.proxy.url)} (from ${o.proxy.source})`;
  const bypass = o.proxy.noProxy.length ? `, not for ${o.proxy.noProxy.join(', ')}` : '';
  const port = Number(o.proxy.url.port || (o.proxy.url.protocol === 'https:' ? 443 : 80));
  try {
    await withTimeout(
      new Promise<void>((resolve, reject) => {
        const s = net.connect({ host: o.proxy!.url.hostname, port }, () => {
          s.destroy();
          resolve();
        });
        s.on('error', reject);
      }),
      timeoutMs,
      'the proxy',
    );
    return { name: 'proxy', status: 'pass', detail: `${via}${bypass}: reachable` };
  } catch (err) {
    return {
      name: 'proxy',
      status: 'fail',
      detail: `${via}: ${codeOf(err)}`,
      fix: 'Check the proxy host and port (ask the network team), or remove the setting if there is no proxy.',
    };
  }
}

/** API reachable (GET /health) and the clock against the API's. */
async function checkApiAndClock(o: DoctorOptions, timeoutMs: number, now: () => number): Promise<Check[]> {
  const url = `${o.enrollment.apiUrl.replace(/\/+$/, '')}/health`;
  const through = proxyFor(o.proxy, url) ? ' through the proxy' : '';
  const sent = now();
  let res: Response;
  try {
    res = await fetchVia(o.proxy)(url, { signal: AbortSignal.timeout(timeoutMs) });
  } catch (err) {
    return [
      {
        name: 'api',
        status: 'fail',
        detail: `cannot reach ${url}${through}: ${codeOf(err)}`,
        fix: `Check that the device can resolve and reach ${new URL(url).host}. ${proxyHint(o.proxy)}`,
      },
      { name: 'clock', status: 'warn', detail: 'not checked: the API did not answer', fix: 'Fix the API check first.' },
    ];
  }
  const received = now();
  const text = await res.text().catch(() => '');
  const checks: Check[] = [];
  checks.push(
    res.ok
      ? { name: 'api', status: 'pass', detail: `${url}${through} answered ${res.status}` }
      : {
          name: 'api',
          status: 'fail',
          detail: `${url}${through} answered ${res.status}`,
          fix:
            res.status === 407
              ? 'The proxy wants credentials: http://user:password@host:port.'
              : "Check the enrollment's apiUrl: is it this broker?",
        },
  );
  let serverTime = Number.NaN;
  try {
    serverTime = Date.parse(String((JSON.parse(text) as { time?: unknown }).time));
  } catch {
    /* not JSON: fall back to the Date header */
  }
  if (!Number.isFinite(serverTime)) serverTime = Date.parse(res.headers.get('date') ?? '');
  if (!Number.isFinite(serverTime)) {
    checks.push({
      name: 'clock',
      status: 'warn',
      detail: 'not checked: the API sent no time',
      fix: 'Compare the clock with a time server.',
    });
  } else {
    const skew = serverTime - (sent + received) / 2;
    const max = o.maxSkewMs ?? 5 * 60_000;
    const detail = `${(Math.abs(skew) / 1000).toFixed(1)} s ${skew > 0 ? 'behind' : 'ahead of'} the API's clock`;
    checks.push(
      Math.abs(skew) <= max
        ? { name: 'clock', status: 'pass', detail }
        : {
            name: 'clock',
            status: 'fail',
            detail,
            fix: 'Sync the clock: `w32tm /resync` (Windows) or `timedatectl set-ntp true` (Linux); tokens are time-bound.',
          },
    );
  }
  return checks;
}

async function checkQueue(o: DoctorOptions, timeoutMs: number): Promise<Check> {
  const queue = queueClientFor(o.enrollment, o.proxy);
  const where = new URL(o.enrollment.queueUrl).host;
  try {
    await queue.getProperties({ abortSignal: AbortSignal.timeout(timeoutMs) });
    return { name: 'queue', status: 'pass', detail: `the queue SAS is accepted by ${where}` };
  } catch (err) {
    if (err instanceof RestError && err.statusCode === 403) {
      return {
        name: 'queue',
        status: 'fail',
        detail: `${where} refused the queue SAS (403): rotated, revoked or expired`,
        fix: `Get a new enrollment: \`relay-broker devices rotate ${o.enrollment.deviceId}\`.`,
      };
    }
    if (err instanceof RestError && err.statusCode === 404) {
      return {
        name: 'queue',
        status: 'fail',
        detail: `the device's queue does not exist (404): the device was removed`,
        fix: 'Register it again with `relay-broker devices add` and install the new enrollment.',
      };
    }
    const status = err instanceof RestError && err.statusCode ? `HTTP ${err.statusCode}` : codeOf(err);
    return {
      name: 'queue',
      status: 'fail',
      detail: `cannot reach ${where}: ${status}`,
      fix: `The device must reach ${where} on port 443. ${proxyHint(o.proxy)}`,
    };
  }
}

/** The chain's names, leaf issuer to root, for "which CA". */
function chainOf(cert: tls.DetailedPeerCertificate): string[] {
  const names: string[] = [];
  let c: tls.DetailedPeerCertificate | undefined = cert;
  const seen = new Set<string>();
  while (c && c.issuer && !seen.has(c.fingerprint256)) {
    seen.add(c.fingerprint256);
    const issuer = c.issuer as unknown as Record<string, string | string[] | undefined>;
    const cn = issuer.CN ?? issuer.O;
    names.push(Array.isArray(cn) ? cn.join(' ') : (cn ?? '?'));
    c = c.issuerCertificate === c ? undefined : c.issuerCertificate;
  }
  return [...new Set(names)];
}

async function checkRelay(o: DoctorOptions, timeoutMs: number): Promise<Check> {
  if (!o.relayHost) {
    return {
      name: 'relay',
      status: 'warn',
      detail: 'not checked: sessions get their relay namespace when they open',
      fix: 'Pass --relay-host <namespace>.servicebus.windows.net (any namespace of the pool) to check TLS to the relay.',
    };
  }
  const m = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(o.relayHost);
  const host = (m?.[1] ?? o.relayHost).replace(/^\[|\]$/g, '');
  const port = Number(m?.[2] ?? 443);
  const target = `wss://${host}:${port}/`;
  const proxy = proxyFor(o.proxy, target);
  const trust = o.relayCa ? 'the CA given with --relay-ca' : "the system's trusted roots";
  try {
    const cert = await withTimeout(
      (async () => {
        const raw = proxy ? await connectThroughProxy(proxy, host, port, { timeoutMs }) : undefined;
        return new Promise<tls.DetailedPeerCertificate>((resolve, reject) => {
          const s = tls.connect(
            { host, port, socket: raw, servername: net.isIP(host) ? undefined : host, ca: o.relayCa },
            () => {
              const c = s.getPeerCertificate(true);
              s.destroy();
              resolve(c);
            },
          );
          s.on('error', reject);
        });
      })(),
      timeoutMs,
      'the relay',
    );
    return {
      name: 'relay',
      status: 'pass',
      detail: `TLS to ${host}:${port}${proxy ? ' through the proxy' : ''} verified against ${trust}; chain: ${chainOf(cert).join(' <- ')}`,
    };
  } catch (err) {
    const code = codeOf(err);
    const tlsProblem = /CERT|SELF_SIGNED|UNABLE_TO|certificate/i.test(code);
    return {
      name: 'relay',
      status: 'fail',
      detail: `TLS to ${host}:${port}${proxy ? ' through the proxy' : ''}: ${code}`,
      fix: tlsProblem
        ? 'A TLS-inspecting proxy or a missing root: add its CA to NODE_EXTRA_CA_CERTS, or exempt *.servicebus.windows.net from inspection.'
        : `The device must reach ${host} on port ${port}. ${proxyHint(o.proxy)}`,
    };
  }
}

async function checkPort(host: string, port: number, timeoutMs: number): Promise<Check> {
  try {
    await withTimeout(
      new Promise<void>((resolve, reject) => {
        const s = net.connect({ host, port }, () => {
          s.destroy();
          resolve();
        });
        s.on('error', reject);
      }),
      timeoutMs,
      `${host}:${port}`,
    );
    return { name: `port ${port}`, status: 'pass', detail: `something listens on ${host}:${port}` };
  } catch (err) {
    return {
      name: `port ${port}`,
      status: 'fail',
      detail: `nothing listens on ${host}:${port} (${codeOf(err)})`,
      fix:
        port === 3389
          ? 'Enable Remote Desktop on this device, or drop 3389 from --allow.'
          : port === 22
            ? 'Start the SSH server (sshd), or drop 22 from --allow.'
            : `Start the service that should listen on ${port}, or drop it from --allow.`,
    };
  }
}

/** Every check, in a fixed order; they run concurrently, each bounded by `timeoutMs`. */
export async function runDoctor(o: DoctorOptions): Promise<Check[]> {
  const timeoutMs = o.timeoutMs ?? 10_000;
  const now = o.now ?? Date.now;
  const [proxy, apiClock, queue, relay, ...ports] = await Promise.all([
    checkProxy(o, timeoutMs),
    checkApiAndClock(o, timeoutMs, now),
    checkQueue(o, timeoutMs),
    checkRelay(o, timeoutMs),
    ...[...o.allowPorts].sort((a, b) => a - b).map((p) => checkPort(o.targetHost, p, Math.min(timeoutMs, 3000))),
  ]);
  const [api, clock] = apiClock;
  return [checkEnrollment(o, now()), proxy, clock, api, queue, relay, ...ports];
}
