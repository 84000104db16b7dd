// Activities of the session orchestration: thin adapters over lib/sessions/sessionService.ts.
// Each handle is registered once here and yielded by value from the orchestrator.
import * as df from 'durable-functions';
import { z } from 'zod';
import { endReasonSchema, sessionInputSchema } from '../lib/sessions/session';
import { getServices } from './shared/services';

const sessionRef = z.object({ deviceId: z.string(), sessionId: z.string() });

/** Lease + mint + notify. Returns the sealed send token or `{ok:false}` when the pool is empty. */
export const openSessionActivity = df.app.activity('openSession', {
  handler: async (input: unknown) => {
    const s = getServices();
    await s.ready();
    return s.sessionService.open(sessionInputSchema.parse(input));
  },
});

export const markSessionReadyActivity = df.app.activity('markSessionReady', {
  handler: async (input: unknown) => {
    const s = getServices();
    await s.sessionService.markReady(
      sessionRef.extend({ readyAt: z.string(), namespace: z.string(), generation: z.number().int() }).parse(input),
    );
    return null;
  },
});

export const closeOnDeviceActivity = df.app.activity('closeOnDevice', {
  handler: async (input: unknown) => {
    await getServices().sessionService.closeOnDevice(sessionRef.extend({ reason: endReasonSchema }).parse(input));
    return null;
  },
});

export const recycleSessionNamespaceActivity = df.app.activity('recycleSessionNamespace', {
  handler: async (input: unknown, ctx) => {
    const parsed = z
      .object({ sessionId: z.string(), namespace: z.string().optional(), generation: z.number().int().optional() })
      .parse(input);
    const outcome = await getServices().sessionService.recycle(parsed);
    ctx.info(`recycle of the namespace of session ${parsed.sessionId}: ${outcome}`);
    return outcome;
  },
});

export const recordSessionEndActivity = df.app.activity('recordSessionEnd', {
  handler: async (input: unknown) => {
    await getServices().sessionService.recordEnd(
      sessionRef
        .extend({
          reason: endReasonSchema,
          endedAt: z.string(),
          namespace: z.string().optional(),
          generation: z.number().int().optional(),
        })
        .parse(input),
    );
    return null;
  },
});
