import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { QueueClient, QueueServiceClient, RestError } from '@azure/storage-queue';
import { LocalRuntime } from '../../../local/runtime';
import { assertProblem, call } from '../../support/http';

interface Enrollment {
  deviceId: string;
  apiUrl: string;
  queueUrl: string;
  queueSas: string;
  expiresAt: string;
}

/** The device side: the real queue client with nothing but the enrollment's SAS. */
function deviceQueue(e: Enrollment, queueUrl = e.queueUrl): QueueClient {
  return new QueueClient(`${queueUrl}?${e.queueSas}`);
}

async function refused(p: Promise<unknown>): Promise<number> {
  try {
    await p;
  } catch (err) {
    if (err instanceof RestError) return err.statusCode ?? 0;
    throw err;
  }
  return 200;
}

describe('device registry over HTTP', () => {
  const rt = new LocalRuntime({ disableTimers: true, logSink: () => {} });
  let admin: string;
  let operator: string;
  let owner: QueueServiceClient;

  before(async () => {
    await rt.start();
    admin = await rt.token('admin');
    operator = await rt.token('operator');
    owner = QueueServiceClient.fromConnectionString(rt.azurite!.connectionString);
  });
  after(async () => {
    await rt.close();
  });

  const register = (deviceId: string, extra: Record<string, unknown> = {}) =>
    call<Enrollment>('POST', `${rt.apiUrl}/devices`, { token: admin, body: { deviceId, ...extra } });

  it('registers a device whose SAS can receive from its own queue and nothing else', async () => {
    const r = await register('plc-0001', { displayName: 'Line 1 PLC', tags: { site: 'lyon' } });
    assert.equal(r.status, 201);
    const e = r.body;
    assert.equal(e.deviceId, 'plc-0001');
    assert.equal(e.apiUrl, rt.apiUrl);
    assert.match(e.queueUrl, /\/dev-plc-0001$/);
    assert.match(e.queueSas, /(^|&)si=p-[0-9a-f]{32}(&|$)/, 'bound to a stored access policy');
    assert.doesNotMatch(e.queueSas, /(^|&)sp=/, 'permissions live in the policy, not the SAS');
    assert.ok(Date.parse(e.expiresAt) > Date.now() + 300 * 86_400_000);

    await owner.getQueueClient('dev-plc-0001').sendMessage(Buffer.from('{"hello":1}').toString('base64'));
    const got = await deviceQueue(e).receiveMessages({ numberOfMessages: 1 });
    assert.equal(got.receivedMessageItems.length, 1);
    assert.equal(Buffer.from(got.receivedMessageItems[0].messageText, 'base64').toString(), '{"hello":1}');
    await deviceQueue(e).deleteMessage(got.receivedMessageItems[0].messageId, got.receivedMessageItems[0].popReceipt);

    assert.equal(await refused(deviceQueue(e).sendMessage('forged')), 403, 'the SAS cannot send');
    const other = await register('plc-0002');
    const otherQueueUrl = other.body.queueUrl;
    assert.equal(
      await refused(deviceQueue(e, otherQueueUrl).receiveMessages()),
      403,
      "cannot read another device's queue",
    );
  });

  it('refuses a second registration of the same id with 409', async () => {
    assertProblem(await register('plc-0001'), 409, 'device_exists');
  });

  it('lists and shows devices without any credential', async () => {
    const list = await call<{ devices: Array<Record<string, unknown>> }>('GET', `${rt.apiUrl}/devices`, {
      token: admin,
    });
    assert.equal(list.status, 200);
    const ids = list.body.devices.map((d) => d.deviceId);
    assert.ok(ids.includes('plc-0001') && ids.includes('plc-0002'));
    const one = await call('GET', `${rt.apiUrl}/devices/plc-0001`, { token: admin });
    assert.equal(one.status, 200);
    assert.equal(one.body.displayName, 'Line 1 PLC');
    assert.deepEqual(one.body.tags, { site: 'lyon' });
    assert.doesNotMatch(one.text + list.text, /sig=|queueSas|policy/i);
  });

  it('rotate revokes the old SAS and hands out a working new one', async () => {
    const first = await register('rot-dev');
    await owner.getQueueClient('dev-rot-dev').sendMessage('bQ==');
    assert.equal(await refused(deviceQueue(first.body).peekMessages()), 200);
    const rotated = await call<Enrollment>('POST', `${rt.apiUrl}/devices/rot-dev/rotate`, { token: admin });
    assert.equal(rotated.status, 200);
    assert.notEqual(rotated.body.queueSas, first.body.queueSas);
    assert.equal(await refused(deviceQueue(first.body).receiveMessages()), 403, 'old SAS refused after rotate');
    const got = await deviceQueue(rotated.body).receiveMessages();
    assert.equal(got.receivedMessageItems.length, 1, 'new SAS works');
  });

  it('delete revokes the SAS and removes the queue and the device', async () => {
    const e = (await register('gone-dev')).body;
    const del = await call('DELETE', `${rt.apiUrl}/devices/gone-dev`, { token: admin });
    assert.equal(del.status, 204);
    assert.ok([403, 404].includes(await refused(deviceQueue(e).receiveMessages())), 'SAS refused after delete');
    assert.equal(await owner.getQueueClient('dev-gone-dev').exists(), false);
    assertProblem(await call('GET', `${rt.apiUrl}/devices/gone-dev`, { token: admin }), 404, 'device_not_found');
    assertProblem(await call('DELETE', `${rt.apiUrl}/devices/gone-dev`, { token: admin }), 404, 'device_not_found');
  });

  it('needs an admin: 401 without a token, 403 for an operator', async () => {
    const anon = await call('GET', `${rt.apiUrl}/devices`);
    assertProblem(anon, 401, 'unauthenticated');
    assert.match(anon.headers.get('www-authenticate') ?? '', /^Bearer/);
    assertProblem(await call('GET', `${rt.apiUrl}/devices`, { token: operator }), 403, 'role_required');
    assertProblem(await call('POST', `${rt.apiUrl}/devices`, { token: operator, body: { deviceId: 'x-op' } }), 403);
  });

  it('serves GET /health to anyone', async () => {
    const r = await call('GET', `${rt.apiUrl}/health`);
    assert.equal(r.status, 200);
    assert.equal(r.body.status, 'ok');
  });

  describe('malformed requests get 4xx problem+json with a stable code', () => {
    const long = 'a'.repeat(60);
    const cases: Array<{
      name: string;
      method: string;
      path: string;
      body?: unknown;
      raw?: string;
      headers?: Record<string, string>;
      status: number;
      code: string;
    }> = [
      { name: 'no body', method: 'POST', path: 'devices', status: 400, code: 'validation_failed' },
      { name: 'empty object', method: 'POST', path: 'devices', body: {}, status: 400, code: 'validation_failed' },
      {
        name: 'array body',
        method: 'POST',
        path: 'devices',
        body: [{ deviceId: 'abc' }],
        status: 400,
        code: 'validation_failed',
      },
      { name: 'string body', method: 'POST', path: 'devices', body: 'abc', status: 400, code: 'validation_failed' },
      { name: 'null body', method: 'POST', path: 'devices', raw: 'null', status: 400, code: 'validation_failed' },
      {
        name: 'truncated JSON',
        method: 'POST',
        path: 'devices',
        raw: '{"deviceId": "ab',
        status: 400,
        code: 'malformed_json',
      },
      {
        name: 'not JSON at all',
        method: 'POST',
        path: 'devices',
        raw: 'deviceId=abc',
        status: 400,
        code: 'malformed_json',
      },
      {
        name: 'invalid UTF-8',
        method: 'POST',
        path: 'devices',
        raw: 'x',
        headers: { 'content-type': 'application/json' },
        status: 400,
        code: 'malformed_json',
      },
      {
        name: 'text/plain',
        method: 'POST',
        path: 'devices',
        raw: '{"deviceId":"abc"}',
        headers: { 'content-type': 'text/plain' },
        status: 415,
        code: 'unsupported_media_type',
      },
      {
        name: 'no content type',
        method: 'POST',
        path: 'devices',
        raw: '{"deviceId":"abc"}',
        headers: { 'content-type': '' },
        status: 415,
        code: 'unsupported_media_type',
      },
      {
        name: 'oversize body',
        method: 'POST',
        path: 'devices',
        body: { deviceId: 'abc', displayName: 'x'.repeat(20_000) },
        status: 413,
        code: 'payload_too_large',
      },
      {
        name: 'unknown field',
        method: 'POST',
        path: 'devices',
        body: { deviceId: 'abc', owner: 'me' },
        status: 400,
        code: 'validation_failed',
      },
      {
        name: 'id as number',
        method: 'POST',
        path: 'devices',
        body: { deviceId: 12345 },
        status: 400,
        code: 'validation_failed',
      },
      {
        name: 'id null',
        method: 'POST',
        path: 'devices',
        body: { deviceId: null },
        status: 400,
        code: 'validation_failed',
      },
      {
        name: 'id too short',
        method: 'POST',
        path: 'devices',
        body: { deviceId: 'ab' },
        status: 400,
        code: 'validation_failed',
      },
      {
        name: 'id too long',
        method: 'POST',
        path: 'devices',
        body: { deviceId: long },
        status: 400,
        code: 'validation_failed',
      },
      {
        name: 'id uppercase',
        method: 'POST',
        path: 'devices',
        body: { deviceId: 'PLC-1' },
        status: 400,
        code: 'validation_failed',
      },
      {
        name: 'id double hyphen',
        method: 'POST',
        path: 'devices',
        body: { deviceId: 'plc--1' },
        status: 400,
        code: 'validation_failed',
      },
      {
        name: 'id leading hyphen',
        method: 'POST',
        path: 'devices',
        body: { deviceId: '-plc1' },
        status: 400,
        code: 'validation_failed',
      },
      {
        name: 'id trailing hyphen',
        method: 'POST',
        path: 'devices',
        body: { deviceId: 'plc1-' },
        status: 400,
        code: 'validation_failed',
      },
      {
        name: 'id with underscore',
        method: 'POST',
        path: 'devices',
        body: { deviceId: 'plc_1' },
        status: 400,
        code: 'validation_failed',
      },
      {
        name: 'id with slash',
        method: 'POST',
        path: 'devices',
        body: { deviceId: 'plc/1' },
        status: 400,
        code: 'validation_failed',
      },
      {
        name: 'id with unicode',
        method: 'POST',
        path: 'devices',
        body: { deviceId: 'plcé1' },
        status: 400,
        code: 'validation_failed',
      },
      {
        name: 'empty displayName',
        method: 'POST',
        path: 'devices',
        body: { deviceId: 'abc', displayName: '' },
        status: 400,
        code: 'validation_failed',
      },
      {
        name: 'displayName too long',
        method: 'POST',
        path: 'devices',
        body: { deviceId: 'abc', displayName: 'x'.repeat(101) },
        status: 400,
        code: 'validation_failed',
      },
      {
        name: 'displayName number',
        method: 'POST',
        path: 'devices',
        body: { deviceId: 'abc', displayName: 7 },
        status: 400,
        code: 'validation_failed',
      },
      {
        name: 'tags an array',
        method: 'POST',
        path: 'devices',
        body: { deviceId: 'abc', tags: ['a'] },
        status: 400,
        code: 'validation_failed',
      },
      {
        name: 'tag value a number',
        method: 'POST',
        path: 'devices',
        body: { deviceId: 'abc', tags: { a: 1 } },
        status: 400,
        code: 'validation_failed',
      },
      {
        name: 'tag name with space',
        method: 'POST',
        path: 'devices',
        body: { deviceId: 'abc', tags: { 'a b': 'x' } },
        status: 400,
        code: 'validation_failed',
      },
      {
        name: 'too many tags',
        method: 'POST',
        path: 'devices',
        body: { deviceId: 'abc', tags: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`t${i}`, 'v'])) },
        status: 400,
        code: 'validation_failed',
      },
      { name: 'bad id on GET', method: 'GET', path: 'devices/BAD_ID', status: 400, code: 'validation_failed' },
      { name: 'bad id on DELETE', method: 'DELETE', path: 'devices/a', status: 400, code: 'validation_failed' },
      {
        name: 'bad id on rotate',
        method: 'POST',
        path: 'devices/Not-Valid/rotate',
        status: 400,
        code: 'validation_failed',
      },
      { name: 'encoded slash in id', method: 'GET', path: 'devices/a%2Fb%2Fc', status: 400, code: 'validation_failed' },
      {
        name: 'unknown device on GET',
        method: 'GET',
        path: 'devices/never-seen',
        status: 404,
        code: 'device_not_found',
      },
      {
        name: 'unknown device on rotate',
        method: 'POST',
        path: 'devices/never-seen/rotate',
        status: 404,
        code: 'device_not_found',
      },
    ];
    for (const c of cases) {
      it(`${c.method} /${c.path}: ${c.name} → ${c.status} ${c.code}`, async () => {
        const headers: Record<string, string> = { authorization: `Bearer ${admin}`, ...(c.headers ?? {}) };
        let raw: string | Uint8Array | undefined = c.raw;
        if (c.body !== undefined) {
          raw = JSON.stringify(c.body);
          headers['content-type'] ??= 'application/json';
        } else if (c.raw !== undefined) headers['content-type'] ??= 'application/json';
        if (c.name === 'invalid UTF-8') raw = new Uint8Array([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]);
        if (headers['content-type'] === '') delete headers['content-type'];
        const r = await call(
          'POST' === c.method && c.path === 'devices' ? 'POST' : c.method,
          `${rt.apiUrl}/${c.path}`,
          { rawBody: raw, headers },
        );
        assertProblem(r, c.status, c.code);
      });
    }
    it('has at least 30 cases', () => assert.ok(cases.length >= 30));
  });
});
