// Plugs the durable engine into the local functions host: the orchestration/activity trigger
// types, the durableClient input binding (the payload BindingHelper.cs builds) and the HTTP API.
import os from 'node:os';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ExtensionHostApi, HostExtension } from '../host/functionsHost';
import type { RpcTypedData } from '../host/coreTypes';
import { DurableEngine } from './engine';
import { DurableHttpApi, managementLinks, requiredQuery, WEBHOOK_PREFIX } from './httpApi';
import { DurableStore } from './store';

export interface DurableExtensionOptions {
  /** Azure Storage connection string (Azurite locally). */
  connectionString: string;
  /** Overrides host.json extensions.durableTask.hubName (default "TestHubName"). */
  hubName?: string;
  /** Cross-check task ids against the SDK's openTasks after every episode (tests). */
  crossCheck?: boolean;
  /** Override host.json extensions.durableTask.maxConcurrent* (defaults: 10 × CPUs, at least 20). */
  maxConcurrentActivityFunctions?: number;
  maxConcurrentOrchestratorFunctions?: number;
}

export interface DurableExtension extends HostExtension {
  /** The running engine (after start), for tests and benchmarks. */
  readonly engine: DurableEngine | undefined;
  readonly hubName: string | undefined;
}

const HUB_NAME = /^[A-Za-z][A-Za-z0-9]{2,44}$/;

function positiveInt(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isInteger(v) && v > 0 ? v : undefined;
}

export function createDurableExtension(options: DurableExtensionOptions): DurableExtension {
  let engine: DurableEngine | undefined;
  let api: DurableHttpApi | undefined;
  let host: ExtensionHostApi | undefined;
  let hubName: string | undefined;
  let hookDisposable: { dispose(): void } | undefined;
  const sdkOpenTasks = new Map<string, Map<number, string>>();

  /**
   * The binding data BindingHelper.cs builds: every URL carries `code=<system key>` as the real
   * extension's do. No `rpcBaseUrl`: the real one is a keyless loopback listener; without it the
   * client takes these keyed webhook URLs, so no durable call reaches the engine without the key.
   */
  const clientData = (): Record<string, unknown> => {
    const base = `${host!.baseUrl}${WEBHOOK_PREFIX}`;
    const qs = requiredQuery(hubName!, host!.systemKey);
    const links = managementLinks(host!.baseUrl, hubName!, 'INSTANCEID', host!.systemKey);
    return {
      taskHubName: hubName,
      creationUrls: {
        createNewInstancePostUri: `${base}/orchestrators/{functionName}[/{instanceId}]?${qs}`,
        createAndWaitOnNewInstancePostUri: `${base}/orchestrators/{functionName}[/{instanceId}]?timeout={timeoutInSeconds}&pollingInterval={intervalInSeconds}&${qs}`,
      },
      managementUrls: links,
      baseUrl: base,
      requiredQueryStringParameters: qs,
      httpBaseUrl: `${host!.baseUrl}/`,
    };
  };

  return {
    name: 'durable',
    triggerTypes: ['orchestrationTrigger', 'activityTrigger', 'entityTrigger'],
    inputTypes: ['durableClient', 'orchestrationClient'],
    get engine() {
      return engine;
    },
    get hubName() {
      return hubName;
    },

    async start(h: ExtensionHostApi): Promise<void> {
      host = h;
      const entities = h.functionsWithTrigger('entityTrigger');
      if (entities.length > 0) {
        throw new Error(
          `Durable entities are not supported by the local durable engine (entity function(s): ${entities.map((e) => e.fn.name).join(', ')}).`,
        );
      }
      hubName = options.hubName ?? h.hostJson.hubName ?? 'TestHubName';
      if (!HUB_NAME.test(hubName))
        throw new Error(`Task hub name "${hubName}" must be 3-45 letters and digits, starting with a letter`);
      const durableTask = ((h.hostJson.raw.extensions as Record<string, unknown> | undefined)?.durableTask ??
        {}) as Record<string, unknown>;
      const fallback = Math.max(20, 10 * os.cpus().length);
      if (options.crossCheck) {
        // The SDK's own bookkeeping, read after each orchestrator invocation (research 2.4 rule 5).
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        const { app } = require('@azure/functions') as typeof import('@azure/functions');
        hookDisposable = app.hook.postInvocation((ctx) => {
          const inv = ctx.invocationContext as unknown as {
            triggerMetadata?: Record<string, unknown>;
            df?: { taskOrchestratorExecutor?: { openTasks?: Record<string, { actionObj?: unknown }> } };
          };
          const id = inv.triggerMetadata?.instanceId;
          const open = inv.df?.taskOrchestratorExecutor?.openTasks;
          if (typeof id !== 'string' || !open) return;
          const map = new Map<number, string>();
          for (const [k, t] of Object.entries(open)) {
            const a = t.actionObj;
            map.set(
              Number(k),
              typeof a === 'string' ? a : String((a as { actionType?: unknown } | undefined)?.actionType),
            );
          }
          sdkOpenTasks.set(id, map);
        });
      }
      engine = new DurableEngine({
        store: new DurableStore(options.connectionString, hubName),
        host: h,
        maxConcurrentActivityFunctions:
          options.maxConcurrentActivityFunctions ?? positiveInt(durableTask.maxConcurrentActivityFunctions) ?? fallback,
        maxConcurrentOrchestratorFunctions:
          options.maxConcurrentOrchestratorFunctions ??
          positiveInt(durableTask.maxConcurrentOrchestratorFunctions) ??
          fallback,
        crossCheck: options.crossCheck === true,
        sdkOpenTasks: options.crossCheck ? sdkOpenTasks : undefined,
      });
      api = new DurableHttpApi(engine.client, hubName, () => h.baseUrl, h.systemKey);
      await engine.start();
    },

    async close(): Promise<void> {
      await engine?.close();
      hookDisposable?.dispose();
      hookDisposable = undefined;
      sdkOpenTasks.clear();
    },

    inputData(): RpcTypedData {
      if (!host || !hubName) throw new Error('The durable extension is not started');
      return { string: JSON.stringify(clientData()) };
    },

    async handleHttp(req: IncomingMessage, res: ServerResponse, body: Buffer): Promise<boolean> {
      if (!api) return false;
      return api.handle(req, res, body);
    },
  };
}
