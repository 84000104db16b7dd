import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  ConcurrencyError,
  ConflictError,
  describeError,
  DeviceNotFoundError,
  ERROR_CODES,
  ERRORS,
  InvalidTransitionError,
  isErrorCode,
  PoolExhaustedError,
  RelayArmError,
  RelayArmUnavailableError,
  toProblem,
  ValidationError,
} from '../../lib/errors';
import { registryClasses, repoRoot, serverRaises, serverSource } from './errorsSource';

describe('toProblem', () => {
  it('keeps the status and stable code of a known error', () => {
    const p = toProblem(new DeviceNotFoundError('device x is not registered'), '/api/devices/x');
    assert.equal(p.status, 404);
    assert.equal(p.headers['content-type'], 'application/problem+json');
    assert.deepEqual(
      { code: p.body.code, status: p.body.status, instance: p.body.instance },
      { code: 'device_not_found', status: 404, instance: '/api/devices/x' },
    );
  });
  it('carries Retry-After for pool exhaustion', () => {
    const p = toProblem(new PoolExhaustedError('none left', 12));
    assert.equal(p.status, 503);
    assert.equal(p.headers['retry-after'], '12');
  });
  it('lists field errors of a validation error', () => {
    const p = toProblem(new ValidationError('bad', [{ path: 'deviceId', message: 'too short' }]));
    assert.deepEqual(p.body.errors, [{ path: 'deviceId', message: 'too short' }]);
  });
  it('hides the internals of an unknown error behind a correlation id', () => {
    const p = toProblem(new Error('ECONNREFUSED 10.0.0.1 secret=abc'));
    assert.equal(p.status, 500);
    assert.equal(p.body.code, 'internal_error');
    assert.ok(p.correlationId);
    assert.doesNotMatch(JSON.stringify(p.body), /ECONNREFUSED|secret/);
  });
  it('answers load as 503 service_busy with Retry-After, never 500: storage 503s and timeouts, dropped connections, the durable runtime’s 5xx', () => {
    const storageBusy = Object.assign(new Error('Server Busy'), { name: 'RestError', statusCode: 503 });
    const storageTimeout = Object.assign(new Error('Operation timed out'), { name: 'RestError', statusCode: 500 });
    const reset = Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
    const sendError = Object.assign(new Error('connect failed'), { name: 'RestError', code: 'REQUEST_SEND_ERROR' });
    const durable = new Error(
      'The operation failed with an unexpected status code: 500. Details: "Something went wrong"',
    );
    const wrapped = new Error('insert failed', { cause: storageBusy });
    for (const err of [storageBusy, storageTimeout, reset, sendError, durable, wrapped]) {
      const p = toProblem(err, '/api/sessions');
      assert.equal(p.status, 503, err.message);
      assert.equal(p.body.code, 'service_busy');
      assert.equal(p.headers['retry-after'], '2');
      assert.equal(p.correlationId, undefined);
      assert.doesNotMatch(JSON.stringify(p.body), /Server Busy|socket|Details/);
    }
    // A 4xx from storage that reached here is a bug, not load: still a 500.
    const forbidden = Object.assign(new Error('AuthorizationFailure'), { name: 'RestError', statusCode: 403 });
    assert.equal(toProblem(forbidden).status, 500);
    assert.equal(toProblem(new Error('The operation failed with an unexpected status code: 400.')).status, 500);
  });

  it('takes the status and title of a relay error from the registry', () => {
    const p = toProblem(new RelayArmUnavailableError('gave up', { operation: 'namespaces.get' }));
    assert.deepEqual(
      { status: p.status, code: p.body.code, title: p.body.title },
      { status: 503, code: 'relay_arm_unavailable', title: ERRORS.relay_arm_unavailable.title },
    );
  });
});

describe('the error registry', () => {
  it('raises every code but internal_error with exactly one class, and no class raises a code outside it', () => {
    const classes = registryClasses();
    const byCode = new Map<string, string[]>();
    for (const c of classes) byCode.set(c.code, [...(byCode.get(c.code) ?? []), c.name]);
    for (const code of ERROR_CODES) {
      const expected = code === 'internal_error' ? 0 : 1;
      assert.equal(byCode.get(code)?.length ?? 0, expected, `${code}: ${(byCode.get(code) ?? []).join(', ')}`);
    }
    for (const c of classes) assert.ok(isErrorCode(c.code), `${c.name} raises ${c.code}, not in ERRORS`);
  });

  it('has no code the server never raises', () => {
    const source = serverSource();
    const dead = ERROR_CODES.filter((code) => !serverRaises(code, source));
    assert.deepEqual(dead, []);
  });

  it('catches the two codes once raised by two classes through one class each, both conflicts', () => {
    const stale = new ConcurrencyError('row changed');
    const refused = new InvalidTransitionError('not from here');
    assert.deepEqual(
      [stale.code, stale.status, refused.code, refused.status],
      ['concurrent_update', 409, 'invalid_transition', 409],
    );
    assert.ok(stale instanceof ConflictError && refused instanceof ConflictError);
  });

  it('keeps the relay family under one base that callers catch', () => {
    const e = new RelayArmUnavailableError('x', { operation: 'op', armStatus: 429 });
    assert.ok(e instanceof RelayArmError);
    assert.equal(e.armStatus, 429);
  });

  it('is the table docs/api.md lists, code for code and status for status', () => {
    const doc = fs.readFileSync(path.join(repoRoot(), 'docs', 'api.md'), 'utf8');
    const section = doc.slice(doc.indexOf('## Errors'));
    assert.ok(section.startsWith('## Errors'), 'docs/api.md has an Errors section');
    const rows = [...section.matchAll(/^\| `([a-z_]+)` \| (\d{3}) \|/gm)].map((m) => [m[1], Number(m[2])]);
    const registry = ERROR_CODES.map((code) => [code, ERRORS[code].status]);
    const sort = (r: Array<Array<string | number>>) => [...r].sort((a, b) => String(a[0]).localeCompare(String(b[0])));
    assert.deepEqual(sort(rows), sort(registry));
  });
});

describe('describeError', () => {
  it('names the error when the name says more than Error, and not otherwise', () => {
    assert.equal(describeError(new TypeError('x is not a function')), 'TypeError: x is not a function');
    assert.equal(describeError(new Error('plain')), 'plain');
    assert.equal(
      describeError(new DeviceNotFoundError('Device a is not registered.')),
      'DeviceNotFoundError: Device a is not registered.',
    );
  });

  it('folds a multi-line message onto one line', () => {
    assert.equal(describeError(new Error('first\nRequestId: 1\n  Time: now')), 'first RequestId: 1 Time: now');
  });

  it('redacts secrets in the message before cutting, so a cut never leaves half a secret', () => {
    const sas = 'SharedAccessSignature sr=https%3a%2f%2fns%2ftunnel&sig=c2VjcmV0c2lnbmF0dXJl&se=1&skn=send';
    assert.doesNotMatch(describeError(new Error(`refused with ${sas}`)), /c2VjcmV0/);
    // Cut first, this JWT would lose its second dot and no longer look like one.
    const jwt = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl';
    const text = describeError(`token ${jwt} rejected`, 36);
    assert.ok(text.length <= 36);
    assert.doesNotMatch(text, /eyJhbGci|eyJzdWIi/);
  });

  it('cuts to maxLen with an ellipsis', () => {
    const text = describeError(new Error('x'.repeat(1000)), 100);
    assert.equal(text.length, 100);
    assert.ok(text.endsWith('…'));
  });

  it('describes values that are not errors', () => {
    assert.equal(describeError('just text'), 'just text');
    assert.equal(describeError({ status: 500 }), '{"status":500}');
    assert.equal(describeError(undefined), 'undefined');
  });

  it('adds stack frames only when asked, redacted too', () => {
    const err = new Error('boom');
    assert.doesNotMatch(describeError(err), /\n/);
    const withStack = describeError(err, 500, { stackFrames: 2 });
    assert.equal(withStack.split('\n').length, 3);
    assert.match(withStack.split('\n')[1] ?? '', /^\s+at /);
  });
});

describe("a namespace row's lastError and the maintenance run record (written with describeError)", () => {
  it('redact a key=value secret in an ARM error', () => {
    const stored = describeError(new Error('listKeys answered primaryKey=c2VjcmV0a2V5 for rule device-listen'));
    assert.doesNotMatch(stored, /c2VjcmV0a2V5/);
    assert.match(stored, /primaryKey=\[REDACTED\]/);
  });
});
