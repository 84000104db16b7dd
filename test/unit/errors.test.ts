import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { DeviceNotFoundError, PoolExhaustedError, toProblem, ValidationError } from '../../lib/errors';

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
});
