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

const namespaceRef = z.object({
  sessionId: z.string(),
  namespace: z.string().optional(),
  generation: z.number().int().optional(),
});

/** Recycle step 1: the hybrid connection deleted (tokens dead). Second run: see SessionService.endRelay. */
export const endSessionRelayActivity = df.app.activity('endSessionRelay', {
  handler: async (input: unknown, ctx) => {
    const parsed = namespaceRef.parse(input);
    const outcome = await getServices().sessionService.endRelay(parsed);
    ctx.info(`hybrid connection of session ${parsed.sessionId}: ${outcome}`);
    return outcome;
  },
});

/** The kill switch when step 1 keeps failing. Second run: see SessionService.killRelayKeys. */
export const killSessionRelayKeysActivity = df.app.activity('killSessionRelayKeys', {
  handler: async (input: unknown, ctx) => {
    const parsed = namespaceRef.parse(input);
    const killed = await getServices().sessionService.killRelayKeys(parsed);
    if (killed) ctx.warn(`session ${parsed.sessionId}: hybrid connection not deleted yet, its rules' keys regenerated`);
    return killed;
  },
});

/** Recycle step 2: the next generation prepared. Second run: see SessionService.prepareNext. */
export const prepareNextGenerationActivity = df.app.activity('prepareNextGeneration', {
  handler: async (input: unknown, ctx) => {
    const parsed = namespaceRef.parse(input);
    const outcome = await getServices().sessionService.prepareNext(parsed);
    ctx.info(`next generation of the namespace of session ${parsed.sessionId}: ${outcome}`);
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
