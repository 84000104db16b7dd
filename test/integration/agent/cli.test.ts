// The built `relay-broker` binary as a child process: usage errors exit 2, API problems print
// title/detail/hint and exit 1, --json gives one document, tokens are never printed, enrollment
// files are 0600, and local mode finds the API and mints its token from the state folder.
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { LocalIssuer } from '../../../lib/auth/localIssuer';
import { runCli, type CliResult } from './cliProcess';

interface Recorded {
  method: string;
  path: string;
  authorization?: string;
  body: unknown;
}
type Handler = (req: Recorded) => { status: number; body?: unknown; headers?: Record<string, string> };

const SESSION_ID = '6f1c2a9e-1b2c-4d3e-8f90-123456789abc';
const SECRET_SEND = 'SharedAccessSignature sr=http%3A%2F%2Fns%2Ftunnel%2F&sig=TOPSECRET&se=1&skn=client-send';
const SECRET_SAS = 'sv=2020&si=p-1&sig=QUEUESECRET';
const problem = (status: number, code: string, title: string, detail: string, headers?: Record<string, string>) => ({
  status,
  body: { type: `https://relay-broker.dev/problems/${code}`, title, status, detail, code },
  headers: { 'content-type': 'application/problem+json', ...headers },
});
const noStack = (r: CliResult): void => {
  assert.doesNotMatch(r.stderr, /\n\s+at .+\(.+:\d+:\d+\)/);
  assert.doesNotMatch(r.stdout + r.stderr, /TOPSECRET|QUEUESECRET/);
};

describe('relay-broker CLI (built binary)', () => {
  let server: http.Server;
  let apiUrl: string;
  let tmp: string;
  const routes = new Map<string, Handler>();
  const requests: Recorded[] = [];
  /** Flags that point the CLI at the fake API. */
  const api = (): string[] => ['--api-url', apiUrl, '--token', 'test-token'];
  const noState = (): Record<string, string> => ({ RELAY_BROKER_STATE_DIR: path.join(tmp, 'no-state') });

  before(async () => {
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'rb-cli-'));
    server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const url = new URL(req.url ?? '/', 'http://x');
        const text = Buffer.concat(chunks).toString();
        const rec: Recorded = {
          method: req.method ?? '',
          path: url.pathname + url.search,
          authorization: req.headers.authorization,
          body: text ? (JSON.parse(text) as unknown) : undefined,
        };
        requests.push(rec);
        const handler = routes.get(`${rec.method} ${url.pathname}`);
        const answer = handler ? handler(rec) : problem(404, 'not_found', 'Not found', `No route ${url.pathname}.`);
        res.writeHead(answer.status, { 'content-type': 'application/json', ...answer.headers });
        res.end(answer.body === undefined ? '' : JSON.stringify(answer.body));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    apiUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await fs.rm(tmp, { recursive: true, force: true });
  });

  describe('usage errors exit 2', () => {
    it('for unknown commands, missing or bad options and arguments', async () => {
      const cases: Array<[string, string[]]> = [
        ['an unknown command', ['bogus']],
        ['agent without --enrollment/--allow', ['agent']],
        ['a port out of range in --allow', ['agent', '--enrollment', 'x.json', '--allow', '3389,70000']],
        ['a device id of the wrong shape', ['connect', 'Not_A_Device']],
        ['a bad --listen', ['connect', 'plc-7', '--listen', 'nowhere']],
        ['an unknown option', ['devices', 'list', '--colour']],
        ['a bad session id', ['sessions', 'show', '42']],
        ['a bad role', ['local', 'token', '--role', 'root']],
      ];
      const results = await Promise.all(cases.map(([, args]) => runCli(args, { env: noState() })));
      results.forEach((r, i) => {
        assert.equal(r.code, 2, `${cases[i][0]}: ${r.stderr}`);
        assert.match(r.stderr, /error: /, cases[i][0]);
        noStack(r);
      });
    });
    it('while --help and --version exit 0', async () => {
      const help = await runCli(['--help']);
      assert.equal(help.code, 0);
      assert.match(help.stdout, /agent .*\n(.*\n)*.*connect/);
      assert.equal((await runCli(['--version'])).code, 0);
      const sub = await runCli(['connect', '--help']);
      assert.equal(sub.code, 0);
      assert.match(sub.stdout, /--listen <host:port>/);
    });
  });

  describe('API problems', () => {
    it('print the title, the detail and a hint, and exit 1', async () => {
      routes.set('GET /api/devices/plc-7', () =>
        problem(404, 'device_not_found', 'Not found', 'Device plc-7 is not registered.'),
      );
      const r = await runCli(['devices', 'show', 'plc-7', ...api()]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /error: Not found/);
      assert.match(r.stderr, /Device plc-7 is not registered\./);
      assert.match(r.stderr, /hint: .*devices list/);
      assert.equal(r.stdout, '');
      noStack(r);
      assert.equal(requests.at(-1)?.authorization, 'Bearer test-token');
    });
    it('are one JSON document on stdout with --json', async () => {
      routes.set('GET /api/pool', () =>
        problem(503, 'pool_exhausted', 'Pool exhausted', 'Every namespace is in use.', { 'retry-after': '30' }),
      );
      const r = await runCli(['--json', 'pool', ...api()]);
      assert.equal(r.code, 1);
      const doc = JSON.parse(r.stdout) as { error: Record<string, unknown> };
      assert.equal(doc.error.title, 'Pool exhausted');
      assert.equal(doc.error.detail, 'Every namespace is in use.');
      assert.equal(doc.error.status, 503);
      assert.equal(doc.error.code, 'pool_exhausted');
      assert.match(String(doc.error.hint), /Retry in 30 s/);
    });
    it('a 500 shows its correlation id; an unreachable API says where it looked', async () => {
      routes.set('GET /api/devices', () => ({
        status: 500,
        body: {
          title: 'Internal error',
          status: 500,
          detail: 'Something failed.',
          code: 'internal_error',
          correlationId: 'corr-123',
        },
      }));
      const r = await runCli(['devices', 'list', ...api()]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /correlation id: corr-123/);
      const down = await runCli(['devices', 'list', '--api-url', 'http://127.0.0.1:9/api', '--token', 't']);
      assert.equal(down.code, 1);
      assert.match(down.stderr, /Cannot reach the API/);
      assert.match(down.stderr, /127\.0\.0\.1:9/);
      noStack(down);
    });
    it('without any configuration, says how to configure', async () => {
      const r = await runCli(['devices', 'list'], { env: noState() });
      assert.equal(r.code, 1);
      assert.match(r.stderr, /No API configured/);
      assert.match(r.stderr, /--api-url|RELAY_BROKER_URL/);
    });
  });

  describe('admin commands', () => {
    it('devices add writes the enrollment with mode 0600, never prints its SAS, and refuses to overwrite', async () => {
      routes.set('POST /api/devices', (req) => ({
        status: 201,
        body: {
          deviceId: (req.body as { deviceId: string }).deviceId,
          apiUrl,
          queueUrl: 'http://127.0.0.1:10001/devstoreaccount1/dev-plc-7',
          queueSas: SECRET_SAS,
          expiresAt: '2031-01-01T00:00:00.000Z',
        },
      }));
      const out = path.join(tmp, 'plc-7.json');
      const r = await runCli([
        'devices',
        'add',
        'plc-7',
        '--name',
        'Line 3 PLC',
        '--tag',
        'site=lyon',
        '--tag',
        'line=3',
        '--out',
        out,
        ...api(),
      ]);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(requests.at(-1)?.body, {
        deviceId: 'plc-7',
        displayName: 'Line 3 PLC',
        tags: { site: 'lyon', line: '3' },
      });
      const stat = await fs.stat(out);
      assert.equal(stat.mode & 0o777, 0o600);
      const written = JSON.parse(await fs.readFile(out, 'utf8')) as { queueSas: string };
      assert.equal(written.queueSas, SECRET_SAS);
      assert.match(r.stdout, /enrollment written to .*plc-7\.json \(mode 600/);
      noStack(r);

      const before = requests.length;
      const again = await runCli(['devices', 'add', 'plc-7', '--out', out, ...api()]);
      assert.equal(again.code, 1);
      assert.match(again.stderr, /exists/);
      assert.match(again.stderr, /--force/);
      assert.equal(requests.length, before, 'no API call when the file would not be written');

      const forced = await runCli(['--json', 'devices', 'add', 'plc-7', '--out', out, '--force', ...api()]);
      assert.equal(forced.code, 0);
      assert.deepEqual(JSON.parse(forced.stdout), {
        deviceId: 'plc-7',
        enrollmentFile: out,
        expiresAt: '2031-01-01T00:00:00.000Z',
      });
      assert.equal((await fs.stat(out)).mode & 0o777, 0o600);
      noStack(forced);
    });

    it('devices list prints a table, or the API document with --json', async () => {
      const doc = {
        devices: [
          {
            deviceId: 'plc-7',
            displayName: 'Line 3',
            tags: { site: 'lyon' },
            queueName: 'dev-plc-7',
            createdAt: '2030-01-01T00:00:00Z',
            createdBy: 'admin',
            enrollmentExpiresAt: '2031-01-01T00:00:00Z',
          },
        ],
      };
      routes.set('GET /api/devices', () => ({ status: 200, body: doc }));
      const human = await runCli(['devices', 'list', ...api()]);
      assert.equal(human.code, 0);
      assert.match(human.stdout, /^DEVICE\s+NAME\s+TAGS/);
      assert.match(human.stdout, /plc-7\s+Line 3\s+site=lyon/);
      const json = await runCli(['devices', 'list', '--json', ...api()]);
      assert.deepEqual(JSON.parse(json.stdout), doc);
    });

    it('sessions show never prints the send token, in either output', async () => {
      routes.set(`GET /api/sessions/${SESSION_ID}`, () => ({
        status: 200,
        body: {
          sessionId: SESSION_ID,
          deviceId: 'plc-7',
          status: 'ready',
          port: 3389,
          createdAt: '2030-01-01T00:00:00Z',
          expiresAt: '2030-01-01T01:00:00Z',
          relay: {
            namespace: 'ns',
            endpoint: 'https://ns/',
            hybridConnection: 'tunnel',
            sendToken: SECRET_SEND,
            expiresAt: '2030-01-01T01:00:00Z',
          },
        },
      }));
      const human = await runCli(['sessions', 'show', SESSION_ID, ...api()]);
      assert.equal(human.code, 0);
      assert.match(human.stdout, /status:\s+ready/);
      noStack(human);
      const json = await runCli(['--json', 'sessions', 'show', SESSION_ID, ...api()]);
      const doc = JSON.parse(json.stdout) as { relay: Record<string, unknown> };
      assert.equal(doc.relay.namespace, 'ns');
      assert.equal(doc.relay.sendToken, undefined);
      noStack(json);
    });

    it('sessions list passes its filters; sessions end and devices rm call DELETE', async () => {
      routes.set('GET /api/sessions', () => ({ status: 200, body: { sessions: [] } }));
      const list = await runCli(['sessions', 'list', '--device', 'plc-7', '--status', 'ready', ...api()]);
      assert.equal(list.code, 0);
      assert.equal(requests.at(-1)?.path, '/api/sessions?deviceId=plc-7&status=ready');
      routes.set(`DELETE /api/sessions/${SESSION_ID}`, () => ({
        status: 202,
        body: { sessionId: SESSION_ID, status: 'ending' },
      }));
      const end = await runCli(['sessions', 'end', SESSION_ID, ...api()]);
      assert.equal(end.code, 0);
      assert.match(end.stdout, /is ending/);
      routes.set('DELETE /api/devices/plc-7', () => ({ status: 204 }));
      const rm = await runCli(['--json', 'devices', 'rm', 'plc-7', ...api()]);
      assert.equal(rm.code, 0);
      assert.deepEqual(JSON.parse(rm.stdout), { deviceId: 'plc-7', removed: true });
    });
  });

  describe('connect', () => {
    it('shows progress while it waits, then explains a refused session and exits 1', async () => {
      routes.set('POST /api/sessions', () => ({
        status: 202,
        body: { sessionId: SESSION_ID, status: 'pending' },
        headers: { location: `${apiUrl}/sessions/${SESSION_ID}` },
      }));
      let polls = 0;
      routes.set(`GET /api/sessions/${SESSION_ID}`, () => {
        polls++;
        return {
          status: 200,
          body: {
            sessionId: SESSION_ID,
            deviceId: 'plc-7',
            status: polls < 2 ? 'pending' : 'failed',
            ...(polls < 2 ? {} : { reason: 'device_refused' }),
            port: 5900,
            createdAt: '2030-01-01T00:00:00Z',
            expiresAt: '2030-01-01T01:00:00Z',
          },
        };
      });
      const r = await runCli(['connect', 'plc-7', '--port', '5900', ...api()]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /waiting for device… \d+\.\d s/);
      assert.match(r.stderr, /The session could not be opened/);
      assert.match(r.stderr, /the device refused it/);
      assert.match(r.stderr, /hint: .*--allow/);
      assert.deepEqual(requests.find((q) => q.method === 'POST' && q.path === '/api/sessions')?.body, {
        deviceId: 'plc-7',
        port: 5900,
        maxLifetimeMinutes: 60,
      });
      noStack(r);
    });
    it('asks again after a 503 service_busy (nothing was created), after its Retry-After, and says so', async () => {
      let posts = 0;
      const postedAt: number[] = [];
      routes.set('POST /api/sessions', () => {
        postedAt.push(Date.now());
        if (++posts <= 2)
          return problem(
            503,
            'service_busy',
            'The service is busy; try again shortly',
            'Its budget ran out before its turn; nothing was created.',
            {
              'retry-after': '1',
            },
          );
        return problem(504, 'device_not_ready', 'Device not ready', 'The device did not report ready in time.');
      });
      const r = await runCli(['connect', 'plc-7', ...api()]);
      assert.equal(r.code, 1);
      assert.equal(posts, 3);
      assert.ok(
        postedAt[1] - postedAt[0] >= 950,
        `asked again ${postedAt[1] - postedAt[0]} ms later, before its Retry-After`,
      );
      assert.equal(
        (r.stderr.match(/the control plane is busy opening other sessions; asking again in \d+\.\d s/g) ?? []).length,
        2,
      );
      assert.match(r.stderr, /did not report ready/);
      noStack(r);
    });
    it('does not ask again after any other 503', async () => {
      let posts = 0;
      routes.set('POST /api/sessions', () => {
        posts++;
        return problem(503, 'pool_exhausted', 'Pool exhausted', 'Every namespace is in use.', { 'retry-after': '1' });
      });
      const r = await runCli(['connect', 'plc-7', ...api()]);
      assert.equal(r.code, 1);
      assert.equal(posts, 1);
      noStack(r);
    });
    it('with --json, waits with progress events and ends with an error document', async () => {
      routes.set('POST /api/sessions', () =>
        problem(504, 'device_not_ready', 'Device not ready', 'The device did not report ready in time.'),
      );
      const r = await runCli(['--json', 'connect', 'plc-7', ...api()]);
      assert.equal(r.code, 1);
      const lines = r.stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      assert.equal(lines[0].event, 'progress');
      const last = lines.at(-1) as { error: { code: string; hint: string } };
      assert.equal(last.error.code, 'device_not_ready');
      assert.match(last.error.hint, /relay-broker agent/);
    });
  });

  describe('local mode', () => {
    let stateDir: string;
    before(async () => {
      stateDir = path.join(tmp, 'state');
      const issuer = await LocalIssuer.create();
      await issuer.save(path.join(stateDir, 'issuer'));
      await fs.writeFile(
        path.join(stateDir, 'local.json'),
        JSON.stringify({
          apiUrl,
          issuerDir: path.join(stateDir, 'issuer'),
          relayCaFile: path.join(stateDir, 'relay-ca.pem'),
          pid: 1,
        }),
      );
    });
    it('takes the API from the state file and mints an admin token, saying so', async () => {
      routes.set('GET /api/devices', () => ({ status: 200, body: { devices: [] } }));
      const r = await runCli(['devices', 'list'], { env: { RELAY_BROKER_STATE_DIR: stateDir } });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /local mode: API http:\/\/127\.0\.0\.1:\d+\/api, admin token from the local issuer/);
      const auth = requests.at(-1)?.authorization ?? '';
      const payload = JSON.parse(Buffer.from(auth.replace('Bearer ', '').split('.')[1], 'base64url').toString()) as {
        roles: string[];
        sub: string;
      };
      assert.deepEqual(payload.roles, ['admin']);
      assert.doesNotMatch(r.stdout + r.stderr, /eyJ/);
    });
    it('env configuration wins over the state file', async () => {
      await runCli(['devices', 'list'], {
        env: { RELAY_BROKER_STATE_DIR: stateDir, RELAY_BROKER_URL: apiUrl, RELAY_BROKER_TOKEN: 'env-token' },
      });
      assert.equal(requests.at(-1)?.authorization, 'Bearer env-token');
    });
    it('local token mints a token for the given role and subject', async () => {
      const r = await runCli(['local', 'token', '--role', 'operator', '--sub', 'alice', '--ttl', '600'], {
        env: { RELAY_BROKER_STATE_DIR: stateDir },
      });
      assert.equal(r.code, 0, r.stderr);
      const token = r.stdout.trim();
      const payload = JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString()) as {
        roles: string[];
        sub: string;
        exp: number;
        iat: number;
      };
      assert.equal(payload.sub, 'alice');
      assert.deepEqual(payload.roles, ['operator']);
      assert.equal(payload.exp - payload.iat, 600);
      const none = await runCli(['local', 'token', '--role', 'admin'], { env: noState() });
      assert.equal(none.code, 1);
      assert.match(none.stderr, /Local mode is not running/);
    });
  });
});
