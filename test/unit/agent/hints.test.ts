// The CLI's words for the server's codes and the session's end reasons are keyed by the closed
// sets themselves: a hint for a code the server never raises is a defect (it was: lifetime_too_long).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HINTS } from '../../../agent/apiClient';
import { OPEN_FAILED_HINTS, REASON_TEXT } from '../../../agent/commands/connect';
import { isErrorCode } from '../../../lib/errors';
import { END_REASONS } from '../../../lib/sessions/session';
import { serverRaises, serverSource } from '../errorsSource';

describe('CLI hints', () => {
  it('name only codes the server can send: in the registry and raised somewhere in lib/ or functions/', () => {
    const source = serverSource();
    const codes = Object.keys(HINTS);
    assert.ok(codes.length > 0);
    const dead = codes.filter((code) => !isErrorCode(code) || !serverRaises(code, source));
    assert.deepEqual(dead, []);
  });

  it('have a text for every end reason and hints only for end reasons', () => {
    assert.deepEqual(Object.keys(REASON_TEXT).sort(), [...END_REASONS].sort());
    for (const reason of Object.keys(OPEN_FAILED_HINTS))
      assert.ok((END_REASONS as readonly string[]).includes(reason), reason);
  });
});
