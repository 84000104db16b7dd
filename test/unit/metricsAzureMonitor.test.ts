// The Azure export path of lib/metrics.ts, offline: with APPLICATIONINSIGHTS_CONNECTION_STRING set,
// the instruments reach an Application Insights ingestion endpoint (here a local HTTPS stand-in
// that the child process trusts through NODE_EXTRA_CA_CERTS) as MetricData envelopes named after
// the instruments, with their attributes as properties.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { generateTlsIdentity } from '../../local/relay-emulator/certificate';

interface Envelope {
  name: string;
  iKey?: string;
  data: {
    baseType: string;
    baseData: { metrics: Array<{ name: string; value: number }>; properties?: Record<string, string> };
  };
}

describe('metrics to Application Insights (Azure Monitor exporter)', () => {
  it('exports the named instruments with their attributes to the ingestion endpoint of the connection string', async () => {
    const tls = await generateTlsIdentity();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'metrics-ai-'));
    const caFile = path.join(dir, 'ca.pem');
    fs.writeFileSync(caFile, tls.cert);
    const envelopes: Envelope[] = [];
    const server = https.createServer({ cert: tls.cert, key: tls.key }, (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        let body = Buffer.concat(chunks);
        if (req.headers['content-encoding'] === 'gzip') body = gunzipSync(body);
        if (req.url?.startsWith('/v2.1/track')) {
          const text = body.toString('utf8').trim();
          const items = (
            text.startsWith('[') ? JSON.parse(text) : text.split('\n').map((l): unknown => JSON.parse(l))
          ) as Envelope[];
          envelopes.push(...items);
        }
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ itemsReceived: 1, itemsAccepted: 1, errors: [] }));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as { port: number }).port;
    try {
      const metricsModule = path.join(__dirname, '..', '..', 'lib', 'metrics.js');
      const child = `
        const m = require(${JSON.stringify(metricsModule)});
        m.configureMetrics({
          azureMonitorConnectionString: 'InstrumentationKey=00000000-0000-0000-0000-000000000001;IngestionEndpoint=https://127.0.0.1:${port}/',
          exportIntervalMs: 500,
        });
        m.recordSessionOpen('ready', 640);
        m.recordArmCall('PUT', 429);
        m.recordMaintenanceRun('succeeded', 1500);
        m.recordDeviceHeartbeat();
        setTimeout(() => m.shutdownMetrics().then(() => process.exit(0)), 1500);
      `;
      await new Promise<void>((resolve, reject) =>
        execFile(
          process.execPath,
          ['-e', child],
          {
            env: {
              ...process.env,
              NODE_EXTRA_CA_CERTS: caFile,
              // No SDK self-telemetry to Microsoft from a test.
              APPLICATIONINSIGHTS_STATSBEAT_DISABLED: 'true',
              TMPDIR: dir,
            },
            timeout: 30_000,
          },
          (err, _stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve()),
        ),
      );
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      fs.rmSync(dir, { recursive: true, force: true });
    }
    const metrics = envelopes
      .filter((e) => e.data.baseType === 'MetricData')
      .flatMap((e) => e.data.baseData.metrics.map((m) => ({ ...m, properties: e.data.baseData.properties ?? {} })));
    const named = (name: string) => metrics.filter((m) => m.name === name);
    assert.ok(
      named('relay_broker.session.opens').some((m) => m.value === 1 && m.properties.outcome === 'ready'),
      JSON.stringify(metrics),
    );
    assert.ok(named('relay_broker.session.open.duration').some((m) => m.value === 640));
    assert.ok(named('relay_broker.arm.throttled').some((m) => m.value === 1 && m.properties.method === 'PUT'));
    assert.ok(named('relay_broker.pool.maintenance.runs').some((m) => m.properties.outcome === 'succeeded'));
    assert.ok(named('relay_broker.device.heartbeats').some((m) => m.value === 1));
  });
});
