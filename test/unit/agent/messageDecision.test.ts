// The agent's decision per queue message: open, refuse (port not allowed), close, ignore (past
// notAfter, duplicate, other device, lifetime over) or drop (not a device message).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decideMessage, type DecisionContext } from '../../../agent/messageDecision';
import { encodeDeviceMessage, type SessionOpenMessage } from '../../../lib/devices/deviceNotifier';

const NOW = new Date('2030-01-01T12:00:00Z');
const later = (ms: number): string => new Date(NOW.getTime() + ms).toISOString();

function open(overrides: Partial<SessionOpenMessage> = {}): SessionOpenMessage {
  return {
    type: 'session.open',
    version: 1,
    sessionId: '11111111-1111-4111-8111-111111111111',
    deviceId: 'plc-7',
    port: 3389,
    relay: {
      namespace: 'ns',
      endpoint: 'https://ns.servicebus.windows.net/',
      hybridConnection: 'tunnel',
      listenToken: 'SharedAccessSignature sr=x&sig=y&se=1&skn=l',
      expiresAt: later(3600_000),
    },
    readyUrl: 'https://app/api/sessions/1/ready',
    readyToken: 'r'.repeat(43),
    notAfter: later(30_000),
    ...overrides,
  };
}

const ctx = (overrides: Partial<DecisionContext> = {}): DecisionContext => ({
  deviceId: 'plc-7',
  allowPorts: new Set([3389, 22]),
  now: NOW,
  running: new Set(),
  handled: new Set(),
  ...overrides,
});

describe('agent message decisions', () => {
  it('opens a session for an allowed port before notAfter', () => {
    const d = decideMessage(encodeDeviceMessage(open()), ctx());
    assert.equal(d.action, 'open');
  });
  it('refuses a port not in --allow, naming the port and the allowed ones', () => {
    const d = decideMessage(encodeDeviceMessage(open({ port: 5900 })), ctx());
    assert.equal(d.action, 'refuse');
    assert.ok(d.action === 'refuse' && /port 5900 is not allowed.*22, 3389/.test(d.detail));
  });
  it('ignores a message past notAfter, even for an allowed port', () => {
    const d = decideMessage(encodeDeviceMessage(open({ notAfter: later(-1) })), ctx());
    assert.deepEqual(d.action === 'ignore' && d.reason, 'expired');
    const exactly = decideMessage(encodeDeviceMessage(open({ notAfter: later(0) })), ctx());
    assert.equal(exactly.action, 'ignore');
  });
  it('ignores a past-notAfter message for a forbidden port too (no refusal for a stale session)', () => {
    const d = decideMessage(encodeDeviceMessage(open({ port: 5900, notAfter: later(-1) })), ctx());
    assert.deepEqual(d.action === 'ignore' && d.reason, 'expired');
  });
  it('ignores a session whose lifetime is already over', () => {
    const d = decideMessage(encodeDeviceMessage(open({ relay: { ...open().relay, expiresAt: later(-5) } })), ctx());
    assert.deepEqual(d.action === 'ignore' && d.reason, 'lifetime_over');
  });
  it('ignores a duplicate open for a session running or already handled', () => {
    const m = open();
    assert.deepEqual(
      decideMessage(encodeDeviceMessage(m), ctx({ running: new Set([m.sessionId]) })).action === 'ignore' && 'dup',
      'dup',
    );
    const d = decideMessage(encodeDeviceMessage(m), ctx({ handled: new Set([m.sessionId]) }));
    assert.deepEqual(d.action === 'ignore' && d.reason, 'duplicate');
  });
  it('ignores a message addressed to another device', () => {
    const d = decideMessage(encodeDeviceMessage(open({ deviceId: 'other-1' })), ctx());
    assert.deepEqual(d.action === 'ignore' && d.reason, 'other_device');
  });
  it('closes a running session on session.close, ignores one for a session not running', () => {
    const close = encodeDeviceMessage({
      type: 'session.close',
      version: 1,
      sessionId: 's-1',
      deviceId: 'plc-7',
      reason: 'requested',
    });
    assert.equal(decideMessage(close, ctx({ running: new Set(['s-1']) })).action, 'close');
    const d = decideMessage(close, ctx());
    assert.deepEqual(d.action === 'ignore' && d.reason, 'unknown_session');
  });
  it('drops what is not base64 JSON or not a device message, without echoing its content', () => {
    for (const text of [
      '%%%',
      Buffer.from('not json').toString('base64'),
      Buffer.from(
        JSON.stringify({ type: 'session.open', version: 2, listenToken: 'SharedAccessSignature secret' }),
      ).toString('base64'),
      '',
    ]) {
      const d = decideMessage(text, ctx());
      assert.equal(d.action, 'drop', text);
      assert.ok(d.action === 'drop' && !d.detail.includes('secret'));
    }
  });
});
