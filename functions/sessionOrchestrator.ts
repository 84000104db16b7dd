// The session orchestration: open (lease, mint, notify; done by the open request itself when the
// input carries `opened`) → wait for the device or the ready
// timeout → ready (credentials in the custom status, sealed) → wait for the end or the lifetime
// → delete the hybrid connection (only then `ended`) and record the end → prepare the namespace's
// next generation. Deterministic: time from the context, ids in the input.
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
  endSessionRelayActivity,
  killSessionRelayKeysActivity,
  prepareNextGenerationActivity,
  recordSessionEndActivity,
} from './sessionActivities';
import { durableRetry } from './shared/durable';

export const SESSION_ORCHESTRATOR = 'sessionOrchestrator';

const recycleRetry = durableRetry({ baseMs: 2000, maxAttempts: 4 });

/**
 * When the hybrid connection's first delete fails, the rules' keys are regenerated at once (no new
 * connection opens); when it still fails after `recycleRetry`, the session stays `ending`
 * and the orchestration asks again every END_RETRY_SECONDS, END_ROUNDS times at most (~30 min);
 * after that maintenance keeps retrying the `recycling` row and the session stays `ending`.
 */
const END_RETRY_SECONDS = 15;
const END_ROUNDS = 120;

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
  if (input.opened) {
    // The open request leased and notified already: straight to waiting for the device (one
    // episode and one activity fewer on the open path).
    opened = { ok: true, ...input.opened };
  } else {
    try {
      opened = (yield openSessionActivity(input)) as OpenSessionResult;
    } catch (err) {
      log(`open failed: ${firstLine(err)}`);
      reason = 'error';
    }
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
    const first: unknown = yield context.df.Task.any([readyEvent, endEvent, readyTimer]);
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
        const ended: unknown = yield context.df.Task.any([endLater, lifetimeTimer]);
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
  // Step 1 of the recycle, the only one on the critical path: deleting the hybrid connection is
  // what drops live connections and kills every token. Until it succeeds the session is `ending`.
  const ref = {
    sessionId: input.sessionId,
    ...(opened?.ok ? { namespace: opened.namespace, generation: opened.generation } : {}),
  };
  let deleted = false;
  let keysKilled = false;
  for (let round = 0; round < END_ROUNDS; round++) {
    try {
      // The first try goes without the engine's retries (RelayManager has retried transient faults
      // within the call already): if it fails, the kill switch below runs at once, not after
      // another half minute of retries during which the session's tokens still open connections.
      const attempt = round === 0 ? endSessionRelayActivity(ref) : endSessionRelayActivity(ref).withRetry(recycleRetry);
      const outcome = (yield attempt) as string;
      if (outcome === 'deleted') {
        deleted = true;
        break;
      }
      log(`hybrid connection not deleted yet (${outcome})`);
    } catch (err) {
      log(`hybrid connection delete failed: ${firstLine(err)}`);
      if (!keysKilled) {
        // What can be killed is killed: no new connection opens with the session's tokens.
        try {
          keysKilled = (yield killSessionRelayKeysActivity(ref).withRetry(recycleRetry)) as boolean;
        } catch (killErr) {
          log(`could not regenerate the rules' keys: ${firstLine(killErr)}`);
        }
      }
      // After the first failure, straight to the retried delete; the timer paces later rounds.
      if (round === 0) continue;
    }
    yield context.df.createTimer(new Date(context.df.currentUtcDateTime.getTime() + END_RETRY_SECONDS * 1000));
  }
  try {
    yield closeOnDeviceActivity({ deviceId: input.deviceId, sessionId: input.sessionId, reason: finalReason });
  } catch {
    log('could not tell the device to close (its listener is dropped with the hybrid connection anyway)');
  }
  if (!deleted) {
    // Never `ended` early: the record and the status stay `ending`; maintenance retries the
    // `recycling` row (GET /pool shows it, with its last error).
    log(`hybrid connection still not deleted after ${END_ROUNDS} rounds: left to pool maintenance`);
    return { status: 'ending', reason: finalReason };
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
  // Step 2, off the critical path: the next generation. A failure leaves the row `recycling`
  // with the failure counted, which maintenance retries.
  if (opened?.ok) {
    try {
      yield prepareNextGenerationActivity(ref).withRetry(recycleRetry);
    } catch (err) {
      log(`next generation not prepared (maintenance retries it): ${firstLine(err)}`);
    }
  }
  return { status: final, reason: finalReason };
};

function firstLine(err: unknown): string {
  return describeError(err, 300);
}

df.app.orchestration(SESSION_ORCHESTRATOR, sessionOrchestrator);
