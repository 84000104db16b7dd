// The session rules' orchestration port (lib/sessions/orchestrations.ts) over the Durable client.
import * as df from 'durable-functions';
import type { DurableClient } from 'durable-functions';
import type { SessionOrchestrations } from '../../lib/sessions/orchestrations';
import { SESSION_ORCHESTRATOR } from '../sessionOrchestrator';
import { raiseEventIfRunning, statusOrUndefined } from './durable';

/** The session rules' orchestration port over the durable client (asked for on first use). */
export function sessionOrchestrations(clientOf: () => DurableClient): SessionOrchestrations {
  return {
    startNew: async (input) => {
      await clientOf().startNew(SESSION_ORCHESTRATOR, { instanceId: input.sessionId, input });
    },
    getStatus: async (sessionId) => {
      const st = await statusOrUndefined(clientOf(), sessionId);
      return st
        ? { runtimeStatus: String(st.runtimeStatus), customStatus: st.customStatus, input: st.input }
        : undefined;
    },
    listRunningSince: async (createdFrom) => {
      const all = await clientOf().getStatusBy({
        createdTimeFrom: createdFrom,
        runtimeStatus: [df.OrchestrationRuntimeStatus.Running, df.OrchestrationRuntimeStatus.Pending],
      });
      return new Map(
        all.map((st) => [st.instanceId, { runtimeStatus: String(st.runtimeStatus), customStatus: st.customStatus }]),
      );
    },
    raiseEvent: (sessionId, eventName, data) => raiseEventIfRunning(clientOf(), sessionId, eventName, data),
    terminate: (sessionId, reason) => clientOf().terminate(sessionId, reason),
  };
}
