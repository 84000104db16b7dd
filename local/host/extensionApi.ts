// The seam between the local functions host and what plugs into it: every trigger type (HTTP,
// timer, durable) is an extension; the host keeps lifecycle, the function registry and invoke.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { HostJson } from './appLoader';
import type { RegisteredFunction } from './coreApi';
import type { LogLevel, RpcBindingInfo, RpcInvocationResponse, RpcTypedData } from './coreTypes';

export interface TriggeredFunction {
  fn: RegisteredFunction;
  triggerName: string;
  trigger: RpcBindingInfo;
}

/** What an extension sees of the host. */
export interface ExtensionHostApi {
  readonly appDir: string;
  readonly hostJson: HostJson;
  /** http://127.0.0.1:<port> */
  readonly baseUrl: string;
  /** The key /admin and the webhooks require (the real host's master and system keys in one). */
  readonly systemKey: string;
  functionsWithTrigger(type: string): TriggeredFunction[];
  /** Invokes a function with the trigger's data; other inputs come from their extensions. */
  invoke(
    name: string,
    triggerData: RpcTypedData,
    triggerMetadata?: Record<string, RpcTypedData>,
  ): Promise<RpcInvocationResponse>;
  log(level: LogLevel, message: string, functionName?: string): void;
}

/** The seam through which trigger and binding types plug in (HTTP and timer are built-in ones). */
export interface HostExtension {
  readonly name: string;
  readonly triggerTypes: readonly string[];
  readonly inputTypes: readonly string[];
  start(host: ExtensionHostApi): Promise<void>;
  close(): Promise<void>;
  /** Data for an input binding of one of `inputTypes`. */
  inputData?(binding: RpcBindingInfo, fn: RegisteredFunction): RpcTypedData | Promise<RpcTypedData>;
  /** A request this extension serves (a function route, /admin/..., a webhook); true when handled. */
  handleHttp?(req: IncomingMessage, res: ServerResponse, body: Buffer): Promise<boolean>;
}

/** The function's trigger binding (the one binding whose type ends in "Trigger"). */
export function triggerOf(fn: RegisteredFunction): { name: string; binding: RpcBindingInfo } | undefined {
  for (const [name, binding] of Object.entries(fn.metadata.bindings)) {
    if (binding.type && /trigger$/i.test(binding.type)) return { name, binding };
  }
  return undefined;
}
