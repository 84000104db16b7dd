// Two timers over sessions and their audit: every 15 s the liveness sweep ends ready sessions whose
// client is gone or that sat idle (SessionControl.sweepLiveness, through the orchestration's end
// event); every hour the audit table drops rows older than AUDIT_RETENTION_DAYS.
import { app, type InvocationContext, type Timer } from '@azure/functions';
import * as df from 'durable-functions';
import { describeError } from '../lib/errors';
import { getServices } from './shared/services';
import { sessionOrchestrations } from './shared/sessionOrchestrations';

export const SESSION_LIVENESS_TIMER = 'sessionLivenessTimer';
export const AUDIT_RETENTION_TIMER = 'auditRetentionTimer';

async function sweepLiveness(_timer: Timer, ctx: InvocationContext): Promise<void> {
  const services = getServices();
  await services.ready();
  const control = services.sessionControl(sessionOrchestrations(() => df.getClient(ctx)));
  const ended = await control.sweepLiveness((sessionId, err) =>
    ctx.warn(`session ${sessionId}: could not end it: ${describeError(err, 300)}`),
  );
  for (const e of ended) ctx.info(`session ${e.sessionId} device ${e.deviceId}: ending (${e.reason})`);
}

async function applyRetention(_timer: Timer, ctx: InvocationContext): Promise<void> {
  const services = getServices();
  await services.ready();
  const cutoff = new Date(Date.now() - services.config.audit.retentionDays * 86_400_000);
  const deleted = await services.audit.deleteOlderThan(cutoff);
  if (deleted) ctx.info(`audit: ${deleted} row(s) before ${cutoff.toISOString().slice(0, 10)} deleted`);
}

app.timer(SESSION_LIVENESS_TIMER, {
  schedule: '*/15 * * * * *',
  extraInputs: [df.input.durableClient()],
  handler: sweepLiveness,
});

app.timer(AUDIT_RETENTION_TIMER, {
  schedule: '0 7 * * * *',
  handler: applyRetention,
});
