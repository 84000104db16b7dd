// Problem documents become CLI errors with the API's title and detail and a hint of what to do.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { problemError } from '../../../agent/apiClient';

const problem = (status: number, body: unknown, headers: Record<string, string> = {}) =>
  problemError(status, body, new Headers(headers), 'GET /x').problem;

describe('API problems in the CLI', () => {
  it('keeps the title, detail, status and code, and adds a hint by code', () => {
    const p = problem(404, {
      type: 't',
      title: 'Not found',
      status: 404,
      detail: 'Device plc-7 is not registered.',
      code: 'device_not_found',
    });
    assert.equal(p.title, 'Not found');
    assert.equal(p.detail, 'Device plc-7 is not registered.');
    assert.equal(p.status, 404);
    assert.equal(p.code, 'device_not_found');
    assert.match(p.hint ?? '', /devices list/);
  });
  it('says when to retry from Retry-After', () => {
    const p = problem(
      503,
      { title: 'Pool exhausted', detail: 'Every namespace is in use.', code: 'pool_exhausted' },
      { 'retry-after': '30' },
    );
    assert.match(p.hint ?? '', /Retry in 30 s/);
  });
  it('explains a 401 with how to get a token', () => {
    assert.match(
      problem(401, { title: 'Unauthorized', detail: 'No token.', code: 'unauthenticated' }).hint ?? '',
      /--token|RELAY_BROKER_TOKEN/,
    );
  });
  it('keeps the correlation id of a 500 and lists field errors of a 400', () => {
    assert.equal(
      problem(500, {
        title: 'Internal error',
        detail: 'Something failed.',
        code: 'internal_error',
        correlationId: 'c-1',
      }).correlationId,
      'c-1',
    );
    const v = problem(400, {
      title: 'The request is not valid',
      detail: 'Invalid body.',
      code: 'validation_failed',
      errors: [{ path: 'port', message: 'too big' }],
    });
    assert.match(v.detail, /port: too big/);
  });
  it('copes with an answer that is not a problem document', () => {
    const p = problem(502, '<html>bad gateway</html>');
    assert.equal(p.title, 'The API answered 502');
    assert.match(p.detail, /bad gateway/);
  });
});
