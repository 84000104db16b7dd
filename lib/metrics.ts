// The product's metrics: one OpenTelemetry meter (`relay-broker`) and its named instruments, and
// the record* functions the rest of lib/ and functions/ call. Export is decided once per process by
// configureMetrics: to Application Insights with the Azure Monitor exporter in Azure, and always
// to an in-process Prometheus reader that GET /api/metrics serializes in local mode.
//
// Instruments are built on first use, after the provider exists: the OpenTelemetry metrics API has
// no proxy, so an instrument taken from the global no-op provider would stay a no-op for ever.
import type { Attributes, Histogram, Counter, Meter, ObservableResult } from '@opentelemetry/api';
import { PrometheusExporter, PrometheusSerializer } from '@opentelemetry/exporter-prometheus';
import { MeterProvider, PeriodicExportingMetricReader, type MetricReader } from '@opentelemetry/sdk-metrics';
import { NAMESPACE_STATES, type PoolCounts } from './pool/namespace';

export const METER_NAME = 'relay-broker';

/** The instruments' names, as they appear in Application Insights (customMetrics) and in Prometheus (dots → underscores). */
export const METRIC_NAMES = {
  openLatency: 'relay_broker.session.open.duration',
  opens: 'relay_broker.session.opens',
  sessionsLive: 'relay_broker.sessions.live',
  poolNamespaces: 'relay_broker.pool.namespaces',
  armCalls: 'relay_broker.arm.calls',
  armThrottled: 'relay_broker.arm.throttled',
  maintenanceRuns: 'relay_broker.pool.maintenance.runs',
  maintenanceDuration: 'relay_broker.pool.maintenance.duration',
  deviceHeartbeats: 'relay_broker.device.heartbeats',
} as const;

export interface MetricsOptions {
  /** APPLICATIONINSIGHTS_CONNECTION_STRING: export to Application Insights every `exportIntervalMs`. */
  azureMonitorConnectionString?: string;
  /** A token credential for Entra-authenticated ingestion (APPLICATIONINSIGHTS_AUTHENTICATION_STRING=Authorization=AAD). */
  azureMonitorCredential?: unknown;
  exportIntervalMs?: number;
}

interface Instruments {
  provider: MeterProvider;
  prometheus: PrometheusExporter;
  openLatency: Histogram;
  opens: Counter;
  armCalls: Counter;
  armThrottled: Counter;
  maintenanceRuns: Counter;
  maintenanceDuration: Histogram;
  deviceHeartbeats: Counter;
}

let options: MetricsOptions = {};
let instruments: Instruments | undefined;
/** The last pool counts seen (by plan or GET /pool): what the pool and sessions-live gauges report. */
let poolSnapshot: { pool: string; counts: PoolCounts } | undefined;

/**
 * Chooses the exporters; call before the first record (the app's start hook does). A second call
 * with the same options does nothing; with other options it rebuilds the provider (tests).
 */
export function configureMetrics(next: MetricsOptions): void {
  if (
    instruments &&
    next.azureMonitorConnectionString === options.azureMonitorConnectionString &&
    next.exportIntervalMs === options.exportIntervalMs
  )
    return;
  options = next;
  if (instruments) void shutdownMetrics();
}

/** Flushes and stops the exporters (the app's terminate hook). Second call: nothing to stop. */
export async function shutdownMetrics(): Promise<void> {
  const current = instruments;
  instruments = undefined;
  if (current) await current.provider.shutdown().catch(() => undefined);
}

function build(): Instruments {
  // Never serves a port of its own: GET /api/metrics serializes what it collects.
  const prometheus = new PrometheusExporter({ preventServerStart: true });
  const readers: MetricReader[] = [prometheus];
  if (options.azureMonitorConnectionString) {
    // Loaded only in Azure, so local runs never pay for the exporter's dependency tree.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { AzureMonitorMetricExporter } = require('@azure/monitor-opentelemetry-exporter') as {
      AzureMonitorMetricExporter: new (o: { connectionString: string; credential?: unknown }) => never;
    };
    readers.push(
      new PeriodicExportingMetricReader({
        exporter: new AzureMonitorMetricExporter({
          connectionString: options.azureMonitorConnectionString,
          ...(options.azureMonitorCredential ? { credential: options.azureMonitorCredential } : {}),
        }),
        exportIntervalMillis: options.exportIntervalMs ?? 60_000,
      }),
    );
  }
  const provider = new MeterProvider({ readers });
  const meter: Meter = provider.getMeter(METER_NAME);
  const n = METRIC_NAMES;
  meter
    .createObservableGauge(n.poolNamespaces, {
      description: 'Namespaces in the pool by state and subscription, as last counted by maintenance or GET /pool.',
    })
    .addCallback((result: ObservableResult) => {
      if (!poolSnapshot) return;
      const { pool, counts } = poolSnapshot;
      for (const [subscription, byState] of Object.entries(counts.bySubscription)) {
        for (const state of NAMESPACE_STATES) result.observe(byState[state] ?? 0, { pool, subscription, state });
      }
    });
  meter
    .createObservableGauge(n.sessionsLive, {
      description: 'Sessions holding a namespace (one leased namespace per live session), as last counted.',
    })
    .addCallback((result: ObservableResult) => {
      if (poolSnapshot) result.observe(poolSnapshot.counts.byState.leased, { pool: poolSnapshot.pool });
    });
  return {
    provider,
    prometheus,
    openLatency: meter.createHistogram(n.openLatency, {
      description: 'POST /sessions: from the request to its answer, by outcome (ready, pending, or the problem code).',
      unit: 'ms',
      advice: { explicitBucketBoundaries: [50, 100, 250, 500, 1000, 2000, 4000, 8000, 16000] },
    }),
    opens: meter.createCounter(n.opens, { description: 'POST /sessions answers by outcome.' }),
    armCalls: meter.createCounter(n.armCalls, {
      description: 'HTTP requests to Azure Resource Manager for Relay, by method and status.',
    }),
    armThrottled: meter.createCounter(n.armThrottled, { description: 'ARM answers 429 (throttled).' }),
    maintenanceRuns: meter.createCounter(n.maintenanceRuns, {
      description: 'Pool maintenance runs by outcome (succeeded, partial, failed).',
    }),
    maintenanceDuration: meter.createHistogram(n.maintenanceDuration, {
      description: 'Pool maintenance run duration by outcome.',
      unit: 'ms',
      advice: { explicitBucketBoundaries: [1000, 5000, 15000, 30000, 60000, 120000, 300000] },
    }),
    deviceHeartbeats: meter.createCounter(n.deviceHeartbeats, { description: 'Device heartbeats received.' }),
  };
}

function get(): Instruments {
  instruments ??= build();
  return instruments;
}

/** One POST /sessions answer: `outcome` is `ready`, `pending` (202) or the problem's code. */
export function recordSessionOpen(outcome: string, durationMs: number): void {
  const attrs: Attributes = { outcome };
  get().openLatency.record(Math.max(0, durationMs), attrs);
  get().opens.add(1, attrs);
}

/** The pool's counts as a plan or GET /pool read them: feeds the pool and sessions-live gauges. */
export function recordPoolCounts(pool: string, counts: PoolCounts): void {
  poolSnapshot = { pool, counts };
}

/** One HTTP answer from ARM (every attempt, LRO polls included). */
export function recordArmCall(method: string, status: number | undefined): void {
  get().armCalls.add(1, { method, status: status === undefined ? 'none' : String(status) });
  if (status === 429) get().armThrottled.add(1, { method });
}

/** A finished maintenance run (its stored record's outcome and duration). */
export function recordMaintenanceRun(outcome: string, durationMs: number): void {
  get().maintenanceRuns.add(1, { outcome });
  get().maintenanceDuration.record(Math.max(0, durationMs), { outcome });
}

/**
 * A device's heartbeat (called by the device-presence feature). No device id as an attribute:
 * hundreds of devices would make hundreds of series; per-device presence is the API's job.
 */
export function recordDeviceHeartbeat(): void {
  get().deviceHeartbeats.add(1);
}

/**
 * A core-rest-pipeline policy (structurally typed, so lib/ needs no new import) that counts every
 * ARM answer and its 429s, retries included: the SDK clients of createRelayApiFactory carry it.
 */
export const armMetricsPolicy = {
  name: 'relayBrokerArmMetrics',
  async sendRequest<Req extends { method: string }, Res extends { status: number }>(
    request: Req,
    next: (request: Req) => Promise<Res>,
  ): Promise<Res> {
    try {
      const response = await next(request);
      recordArmCall(request.method, response.status);
      return response;
    } catch (err) {
      const status = (err as { statusCode?: unknown }).statusCode;
      recordArmCall(request.method, typeof status === 'number' ? status : undefined);
      throw err;
    }
  },
};

/** Every instrument's current value in the Prometheus text format (GET /api/metrics in local mode). */
export async function prometheusText(): Promise<string> {
  const { resourceMetrics, errors } = await get().prometheus.collect();
  if (errors.length) throw new Error(`metrics collection failed: ${errors.map(String).join('; ')}`);
  return new PrometheusSerializer().serialize(resourceMetrics);
}
