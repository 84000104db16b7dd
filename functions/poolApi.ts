// GET /pool (admin): namespaces by state and subscription, the target now and why, the last
// maintenance run and its outcome, and whether a run is under way.
import * as df from 'durable-functions';
import { poolMaintenanceInstanceId } from '../lib/pool/maintenanceRun';
import { json, route } from './shared/route';

route('poolStatus', {
  methods: ['GET'],
  route: 'pool',
  access: ['admin'],
  durableClient: true,
  handler: async ({ services, durable }) => {
    const status = await services.poolMaintenance.status(new Date());
    const instanceId = poolMaintenanceInstanceId(services.config.pool.name);
    let runtimeStatus: string | undefined;
    try {
      runtimeStatus = (await durable().getStatus(instanceId)).runtimeStatus;
    } catch {
      // Never started (the client reports an unknown instance as an error), or the task hub is
      // unreachable: the pool's own state above is still worth answering with.
      runtimeStatus = undefined;
    }
    // What the sessions cost this month and what sits idle (lib/audit/costLedger.ts).
    const cost = await services.costs.report(await services.sessionStore.listReady(), new Date());
    return json(200, {
      ...status,
      cost,
      lastRun: status.lastRun ?? null,
      maintenance: {
        instanceId,
        runtimeStatus: runtimeStatus ?? null,
        running:
          runtimeStatus === df.OrchestrationRuntimeStatus.Running ||
          runtimeStatus === df.OrchestrationRuntimeStatus.Pending,
      },
    });
  },
});
