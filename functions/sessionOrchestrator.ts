// The session orchestration: open (lease, mint, notify) → wait for the device or the ready
// timeout → ready (credentials in the custom status, sealed) → wait for the end or the lifetime
// → recycle the namespace and record the end. Deterministic: time from the context, ids in the input.
import * as df from 'durable-functions';
import type { OrchestrationContext, OrchestrationHandler } from 'durable-functions';
import {
  endSessionEventSchema,
  sessionInputSchema,
  SESSION_EVENTS,
  statusForReason,
  type EndReason,
  type SessionCustomStatus,
} from '../lib/sessions/session';
import { describeError } from '../lib/errors';
import type { OpenSessionResult } from '../lib/sessions/sessionService';
import {
  closeOnDeviceActivity,
  markSessionReadyActivity,
  openSessionActivity,
  recordSessionEndActivity,
  recycleSessionNamespaceActivity,
} from './sessionActivities';
import { durableRetry } from './shared/durable';

export const SESSION_ORCHESTRATOR = 'sessionOrchestrator';

const recycleRetry = durableRetry({ baseMs: 2000, maxAttempts: 4 });

/** Audit-record writes: a storage blip must neither fail the orchestration nor skip the recycle. */
const recordRetry = durableRetry({ baseMs: 1000, maxAttempts: 5 });

export const sessionOrchestrator: OrchestrationHandler = function* (context: OrchestrationContext) {
  const input = sessionInputSchema.parse(context.df.getInput());
  const log = (message: string) => {
    if (!context.df.isReplaying) context.info(`session ${input.sessionId} device ${input.deviceId}: ${message}`);
  };
  const status = (s: SessionCustomStatus) => context.df.setCustomStatus(s);
  status({ status: 'pending' });

  let opened: OpenSessionResult | undefined;
  let reason: EndReason | undefined;
  try {
    opened = (yield openSessionActivity(input)) as OpenSessionResult;
  } catch (err) {
    log(`open failed: ${firstLine(err)}`);
    reason = 'error';
  }

  if (opened && !opened.ok) {
    log('no namespace available');
    status({ status: 'failed', reason: 'pool_exhausted', retryAfterSeconds: opened.retryAfterSeconds });
    try {
      yield recordSessionEndActivity({
        deviceId: input.deviceId,
        sessionId: input.sessionId,
        reason: 'pool_exhausted',
        endedAt: context.df.currentUtcDateTime.toISOString(),
      }).withRetry(recordRetry);
    } catch (err) {
      log(`could not record the end: ${firstLine(err)}`);
    }
    return { status: 'failed', reason: 'pool_exhausted' };
  }

  if (opened?.ok) {
    status({ status: 'pending', namespace: opened.namespace });
    log(`namespace ${opened.namespace} leased, device notified`);
    const readyDeadline = new Date(context.df.currentUtcDateTime.getTime() + input.readyTimeoutMs);
    const readyTimer = context.df.createTimer(readyDeadline);
    const readyEvent = context.df.waitForExternalEvent(SESSION_EVENTS.deviceReady);
    const endEvent = context.df.waitForExternalEvent(SESSION_EVENTS.endSession);
    const first = yield context.df.Task.any([readyEvent, endEvent, readyTimer]);
    if (!readyTimer.isCompleted) readyTimer.cancel();

    if (first === readyEvent) {
      const ready = (readyEvent.result ?? {}) as { status?: string };
      if (ready.status === 'refused') reason = 'device_refused';
    } else if (first === endEvent) {
      reason = endSessionEventSchema.parse(endEvent.result ?? {}).reason;
    } else {
      reason = 'device_not_ready';
    }

    if (!reason) {
      const readyAt = context.df.currentUtcDateTime.toISOString();
      status({
        status: 'ready',
        readyAt,
        relay: {
          namespace: opened.namespace,
          endpoint: opened.endpoint,
          hybridConnection: opened.hybridConnection,
          sealedSendToken: opened.sealedSendToken,
          expiresAt: opened.expiresAt,
        },
      });
      log('ready');
      try {
        yield markSessionReadyActivity({
          deviceId: input.deviceId,
          sessionId: input.sessionId,
          readyAt,
          namespace: opened.namespace,
          generation: opened.generation,
        }).withRetry(recordRetry);
      } catch (err) {
        // The session works; its audit record catches up when the end is recorded.
        log(`could not record ready: ${firstLine(err)}`);
      }
      // An EndSession that arrived while the record was written resolved the first waiter.
      if (endEvent.isCompleted) {
        reason = endSessionEventSchema.parse(endEvent.result ?? {}).reason;
      } else {
        const lifetimeTimer = context.df.createTimer(new Date(input.expiresAt));
        const endLater = context.df.waitForExternalEvent(SESSION_EVENTS.endSession);
        const ended = yield context.df.Task.any([endLater, lifetimeTimer]);
        if (ended === endLater) {
          lifetimeTimer.cancel();
          reason = endSessionEventSchema.parse(endLater.result ?? {}).reason;
        } else reason = 'lifetime';
      }
    }
  }

  const finalReason: EndReason = reason ?? 'error';
  status({ status: 'ending', reason: finalReason });
  log(`ending: ${finalReason}`);
  // Recycle first: deleting the hybrid connection is what drops live connections.
  try {
    yield recycleSessionNamespaceActivity({
      sessionId: input.sessionId,
      ...(opened?.ok ? { namespace: opened.namespace, generation: opened.generation } : {}),
    }).withRetry(recycleRetry);
  } catch (err) {
    // The namespace stays in recycling (or quarantined): pool maintenance retries it.
    log(`recycle failed: ${firstLine(err)}`);
  }
  try {
    yield closeOnDeviceActivity({ deviceId: input.deviceId, sessionId: input.sessionId, reason: finalReason });
  } catch {
    log('could not tell the device to close (its listener was dropped by the recycle anyway)');
  }
  try {
    yield recordSessionEndActivity({
      deviceId: input.deviceId,
      sessionId: input.sessionId,
      reason: finalReason,
      endedAt: context.df.currentUtcDateTime.toISOString(),
      ...(opened?.ok ? { namespace: opened.namespace, generation: opened.generation } : {}),
    }).withRetry(recordRetry);
  } catch (err) {
    log(`could not record the end: ${firstLine(err)}`);
  }
  const final = statusForReason(finalReason);
  status({ status: final, reason: finalReason });
  log(final);
  return { status: final, reason: finalReason };
};

function firstLine(err: unknown): string {
  return describeError(err, 300);
}

df.app.orchestration(SESSION_ORCHESTRATOR, sessionOrchestrator);
