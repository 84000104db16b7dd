// The agent's retries run on the shared jittered backoff: a fleet that lost its queue at the same
// second does not retry in lock-step, and the ready call backs off and gives up in bounds.
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import { AnonymousCredential, QueueClient } from '@azure/storage-queue';
import { DeviceAgent, type AgentLog, type ReadyPoster } from '../../../agent/deviceAgent';
import type { SessionOpenMessage } from '../../../lib/devices/deviceNotifier';

/** A port nothing listens on: every poll fails at once with ECONNREFUSED, through the real SDK. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const enrollment = (port: number) => ({
  deviceId: 'plc-1',
  apiUrl: 'http://127.0.0.1/api',
  queueUrl: `http://127.0.0.1:${port}/devstoreaccount1/dev-plc-1`,
  queueSas: 'sv=2024-01-01&sig=x',
  expiresAt: '2099-01-01T00:00:00Z',
});

function agentWith(port: number, random: () => number, log: AgentLog, postReady?: ReadyPoster): DeviceAgent {
  const e = enrollment(port);
  return new DeviceAgent({
    enrollment: e,
    allowPorts: new Set([22]),
    pollIntervalMs: 1000,
    queueClient: new QueueClient(`${e.queueUrl}?${e.queueSas}`, new AnonymousCredential(), {
      retryOptions: { maxTries: 1 },
    }),
    log,
    random,
    postReady,
  });
}

/** Starts an agent on an unreachable queue and returns the delay of its first retry. */
async function firstPollRetry(port: number, random: () => number): Promise<number> {
  let resolveDelay!: (ms: number) => void;
  const delay = new Promise<number>((resolve) => (resolveDelay = resolve));
  const agent = agentWith(port, random, (event, fields) => {
    if (event === 'poll.failed') resolveDelay(fields.retryInMs as number);
  });
  agent.start();
  try {
    return await delay;
  } finally {
    await agent.close();
  }
}

describe('the agent on the shared backoff', () => {
  it('two agents that fail their poll at once wait different, jittered delays', async () => {
    const port = await closedPort();
    const [a, b] = await Promise.all([firstPollRetry(port, () => 0.1), firstPollRetry(port, () => 0.8)]);
    assert.notEqual(a, b);
    // The first step is twice the poll interval, equal-jittered: between 1 and 2 s.
    assert.deepEqual([a, b], [1100, 1800]);
  });

  it('retries the ready call on 5xx with growing jittered delays, at most four times', async () => {
    const port = await closedPort();
    const answers = [503, 502, 204];
    const posted: number[] = [];
    const agent = agentWith(
      port,
      () => 0,
      () => undefined,
      () => {
        posted.push(Date.now());
        return Promise.resolve(answers.shift() ?? 500);
      },
    );
    const message = {
      sessionId: 's-1',
      readyUrl: 'http://127.0.0.1/api/sessions/s-1/ready',
      readyToken: 't',
      notAfter: new Date(Date.now() + 60_000).toISOString(),
    } as SessionOpenMessage;
    assert.equal(await agent.answer(message), 204);
    assert.equal(posted.length, 3);
    answers.push(500, 500, 500, 500, 500);
    posted.length = 0;
    assert.equal(await agent.answer(message), 0);
    assert.equal(posted.length, 4);
  });

  it('does not retry the ready call past the message notAfter', async () => {
    const port = await closedPort();
    let calls = 0;
    const agent = agentWith(
      port,
      () => 0,
      () => undefined,
      () => {
        calls++;
        return Promise.resolve(503);
      },
    );
    const late = { sessionId: 's-2', readyUrl: 'http://x/', readyToken: 't', notAfter: new Date(0).toISOString() };
    assert.equal(await agent.answer(late as SessionOpenMessage), 0);
    assert.equal(calls, 1);
  });

  it('asks once more past notAfter when a ready call got no answer (it may have been taken)', async () => {
    const port = await closedPort();
    const outcomes: Array<() => Promise<number>> = [
      () => Promise.reject(new DOMException('The operation was aborted due to timeout', 'TimeoutError')),
      () => Promise.resolve(204),
    ];
    let calls = 0;
    const agent = agentWith(
      port,
      () => 0,
      () => undefined,
      () => {
        calls++;
        return (outcomes.shift() ?? (() => Promise.resolve(500)))();
      },
    );
    const late = { sessionId: 's-3', readyUrl: 'http://x/', readyToken: 't', notAfter: new Date(0).toISOString() };
    assert.equal(await agent.answer(late as SessionOpenMessage), 204);
    assert.equal(calls, 2);
    // Unanswered twice: it gives up after the one confirming call.
    calls = 0;
    outcomes.push(
      () => Promise.reject(new Error('socket hang up')),
      () => Promise.reject(new Error('socket hang up')),
    );
    assert.equal(await agent.answer(late as SessionOpenMessage), 0);
    assert.equal(calls, 2);
  });
});
