// `relay-broker agent doctor` against Azurite (the queue), the relay emulator (TLS) and a broker
// health endpoint: every line passes on a good setup; each broken piece fails with its fix.
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Enrollment } from '../../../lib/devices/deviceRegistry';
import { createDevice, startAgentTestEnv, type AgentTestEnv } from './agentTestEnv';
import { runCli } from './cliProcess';

interface Check {
  name: string;
  status: string;
  detail: string;
  fix?: string;
}

describe('agent doctor', () => {
  let env: AgentTestEnv;
  let dir: string;
  let caFile: string;
  let api: http.Server;
  let apiUrl: string;
  /** What the fake broker says the time is, relative to ours. */
  let apiClockOffsetMs = 0;

  before(async () => {
    env = await startAgentTestEnv();
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'rb-doctor-'));
    caFile = path.join(dir, 'relay-ca.pem');
    await fs.writeFile(caFile, env.emulator.caCertPem);
    // The broker's GET /api/health answer (functions/health.ts).
    api = http.createServer((req, res) => {
      if (req.url !== '/api/health') return res.writeHead(404).end();
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ status: 'ok', time: new Date(Date.now() + apiClockOffsetMs).toISOString() }));
    });
    await new Promise<void>((resolve) => api.listen(0, '127.0.0.1', resolve));
    apiUrl = `http://127.0.0.1:${(api.address() as net.AddressInfo).port}/api`;
  });
  after(async () => {
    await new Promise<void>((resolve) => api?.close(() => resolve()));
    await env?.close();
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  async function doctor(enrollment: Enrollment, extra: string[], allow = String(env.echoPort)) {
    const file = path.join(dir, `${enrollment.deviceId}.json`);
    await fs.writeFile(file, JSON.stringify(enrollment), { mode: 0o600 });
    const relayHost = new URL(env.emulator.armEndpoint).host;
    const args = ['agent', 'doctor', '--enrollment', file, '--allow', allow, '--relay-host', relayHost, ...extra];
    const json = await runCli(['--json', ...args], { timeoutMs: 30_000 });
    const text = await runCli(args, { timeoutMs: 30_000 });
    const doc = JSON.parse(json.stdout) as { ok: boolean; checks: Check[] };
    const by = (name: string): Check => {
      const c = doc.checks.find((x) => x.name === name);
      assert.ok(c, `a ${name} check in ${json.stdout}`);
      return c;
    };
    return { code: json.code, doc, by, text: text.stdout };
  }

  it('passes every line on a good setup, naming the relay CA', async () => {
    apiClockOffsetMs = 0;
    const enrollment = { ...(await createDevice(env)), apiUrl };
    const r = await doctor(enrollment, ['--relay-ca', caFile]);
    assert.equal(r.code, 0, JSON.stringify(r.doc, null, 2));
    for (const name of ['proxy', 'clock', 'api', 'queue', 'relay', `port ${env.echoPort}`])
      assert.equal(r.by(name).status, 'pass', `${name}: ${r.by(name).detail}`);
    // The test enrollment lives an hour: a warning (rotate soon), which does not fail the run.
    assert.equal(r.by('enrollment').status, 'warn');
    assert.match(r.by('enrollment').fix ?? '', /devices rotate/);
    assert.match(r.by('relay').detail, /verified against the CA given with --relay-ca; chain: /);
    assert.match(r.by('proxy').detail, /^none/);
    assert.match(r.text, /^PASS {2}queue/m);
    assert.match(r.text, /no check failed/);
    assert.match(r.text, /^WARN {2}enrollment/m);
  });

  it('fails each broken piece with its fix: a revoked SAS, an untrusted relay, a closed port, a skewed clock', async () => {
    apiClockOffsetMs = 10 * 60_000;
    const good = await createDevice(env);
    // A SAS with a wrong signature is what a rotated key looks like to the device.
    const enrollment = { ...good, apiUrl, queueSas: good.queueSas.replace(/sig=[^&]+/, 'sig=AAAA') };
    const r = await doctor(enrollment, [], `${env.echoPort},1`);
    assert.equal(r.code, 1);
    assert.equal(r.by('queue').status, 'fail');
    assert.match(r.by('queue').fix ?? '', /devices rotate/);
    assert.equal(r.by('relay').status, 'fail');
    assert.match(r.by('relay').detail, /SELF_SIGNED|UNABLE_TO|certificate/i);
    assert.equal(r.by('port 1').status, 'fail');
    assert.match(r.by('port 1').fix ?? '', /drop it from --allow/);
    assert.equal(r.by(`port ${env.echoPort}`).status, 'pass');
    assert.equal(r.by('clock').status, 'fail');
    assert.match(r.by('clock').detail, /^600\.\d s behind/);
    assert.match(r.text, /^FAIL {2}queue/m);
    assert.match(r.text, /fix: /);
  });

  it('says when the API cannot be reached, and that the clock was not checked', async () => {
    // A port nothing listens on (fetch refuses well-known ports such as 1 outright).
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as net.AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const enrollment = { ...(await createDevice(env)), apiUrl: `http://127.0.0.1:${port}/api` };
    const r = await doctor(enrollment, ['--relay-ca', caFile]);
    assert.equal(r.code, 1);
    assert.match(r.by('api').detail, /ECONNREFUSED/);
    assert.match(r.by('api').fix ?? '', /HTTPS_PROXY/);
    assert.equal(r.by('clock').status, 'warn');
  });
});
