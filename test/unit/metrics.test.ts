// lib/metrics.ts without servers: the named instruments as the Prometheus text shows them, the ARM
// policy's counting of answers and 429s, and the settings that choose the exporters.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig } from '../../lib/config';
import {
  armMetricsPolicy,
  prometheusText,
  recordDeviceHeartbeat,
  recordMaintenanceRun,
  recordPoolCounts,
  recordSessionOpen,
} from '../../lib/metrics';
import { countNamespaces } from '../../lib/pool/namespace';

const line = (text: string, prefix: string) => text.split('\n').find((l) => l.startsWith(prefix));

describe('lib/metrics', () => {
  it('device heartbeats are counted in one series', async () => {
    recordDeviceHeartbeat();
    recordDeviceHeartbeat();
    const text = await prometheusText();
    assert.match(
      line(text, 'relay_broker_device_heartbeats_total') ?? '',
      /^relay_broker_device_heartbeats_total\{otel_scope_name="relay-broker"\} 2$/,
    );
  });

  it('an open is one count and one latency sample under its outcome', async () => {
    recordSessionOpen('pool_exhausted', 120);
    const text = await prometheusText();
    assert.match(text, /relay_broker_session_opens_total\{outcome="pool_exhausted",[^}]*\} 1\n/);
    assert.match(text, /relay_broker_session_open_duration_bucket\{outcome="pool_exhausted",[^}]*le="250"\} 1\n/);
    assert.match(text, /relay_broker_session_open_duration_bucket\{outcome="pool_exhausted",[^}]*le="100"\} 0\n/);
  });

  it('maintenance runs by outcome, and the pool gauges by subscription and state from the last counts', async () => {
    recordMaintenanceRun('partial', 4200);
    recordPoolCounts(
      'p1',
      countNamespaces([
        { subscriptionId: 'sub-a', state: 'available' },
        { subscriptionId: 'sub-a', state: 'leased' },
        { subscriptionId: 'sub-b', state: 'leased' },
      ]),
    );
    const text = await prometheusText();
    assert.match(text, /relay_broker_pool_maintenance_runs_total\{outcome="partial",[^}]*\} 1\n/);
    assert.match(text, /relay_broker_pool_namespaces\{pool="p1",subscription="sub-a",state="available",[^}]*\} 1\n/);
    assert.match(text, /relay_broker_pool_namespaces\{pool="p1",subscription="sub-b",state="available",[^}]*\} 0\n/);
    assert.match(text, /relay_broker_sessions_live\{pool="p1",[^}]*\} 2\n/);
  });

  it('the ARM policy counts every answer by method and status, 429s also as throttled, and failures without an answer', async () => {
    const send = (status: number) =>
      armMetricsPolicy.sendRequest({ method: 'PATCH' }, () => Promise.resolve({ status }));
    await send(200);
    await send(429);
    await send(429);
    await assert.rejects(
      armMetricsPolicy.sendRequest({ method: 'PATCH' }, () => Promise.reject(new Error('socket hang up'))),
      /socket hang up/,
    );
    const text = await prometheusText();
    assert.match(text, /relay_broker_arm_calls_total\{method="PATCH",status="200",[^}]*\} 1\n/);
    assert.match(text, /relay_broker_arm_calls_total\{method="PATCH",status="429",[^}]*\} 2\n/);
    assert.match(text, /relay_broker_arm_calls_total\{method="PATCH",status="none",[^}]*\} 1\n/);
    assert.match(text, /relay_broker_arm_throttled_total\{method="PATCH",[^}]*\} 2\n/);
  });
});

describe('metrics and console settings', () => {
  const base = {
    RELAY_BROKER_MODE: 'local',
    AzureWebJobsStorage: 'UseDevelopmentStorage=true',
    AUTH_MODE: 'entra',
    AUTH_ISSUER: 'https://login.microsoftonline.com/tenant-1/v2.0',
    AUTH_AUDIENCE: 'api://relay-broker',
    AUTH_JWKS_URL: 'https://login.microsoftonline.com/tenant-1/discovery/v2.0/keys',
  };

  it('the console authority and scope default from the API audience and issuer', () => {
    const c = loadConfig({ ...base, CONSOLE_CLIENT_ID: 'spa-client' });
    assert.deepEqual(c.console, {
      clientId: 'spa-client',
      authority: 'https://login.microsoftonline.com/tenant-1',
      apiScope: 'api://relay-broker/.default',
    });
    assert.equal(c.metrics.azureMonitorConnectionString, undefined);
  });

  it('Application Insights settings choose the Azure Monitor export with Entra ingestion', () => {
    const c = loadConfig({
      ...base,
      APPLICATIONINSIGHTS_CONNECTION_STRING: 'InstrumentationKey=00000000-0000-0000-0000-000000000000',
      APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD',
      CONSOLE_API_SCOPE: 'api://relay-broker/access_as_user',
    });
    assert.equal(c.metrics.azureMonitorConnectionString, 'InstrumentationKey=00000000-0000-0000-0000-000000000000');
    assert.equal(c.metrics.entraIngestion, true);
    assert.equal(c.console.apiScope, 'api://relay-broker/access_as_user');
  });

  it('an authority that is not a URL is refused, naming the setting', () => {
    assert.throws(() => loadConfig({ ...base, CONSOLE_AUTHORITY: 'not a url' }), /CONSOLE_AUTHORITY/);
  });
});
