// The `@azure/functions-core` module, injected the way the real Node worker does it: a Proxy on
// Module.prototype.require answers that id (worker src/setupCoreModule.ts). Without it,
// @azure/functions silently enters "test mode" and registers nothing.
import Module from 'node:module';
import type {
  FunctionCallback,
  FunctionMetadata,
  HookCallback,
  LogCategory,
  LogLevel,
  ProgrammingModel,
} from './coreTypes';

export const CORE_MODULE_ID = '@azure/functions-core';

export class Disposable {
  static from(...items: Array<{ dispose(): void } | undefined>): Disposable {
    return new Disposable(() => {
      for (const i of items) i?.dispose();
    });
  }
  private callback?: () => void;
  constructor(callback: () => void) {
    this.callback = callback;
  }
  dispose(): void {
    this.callback?.();
    this.callback = undefined;
  }
}

export interface RegisteredFunction {
  name: string;
  metadata: FunctionMetadata;
  callback: FunctionCallback;
}

export type HookName = 'appStart' | 'appTerminate' | 'preInvocation' | 'postInvocation' | 'log';

/** Where registrations go. The host swaps in a fresh one each time it loads an app. */
export class Registry {
  readonly functions = new Map<string, RegisteredFunction>();
  readonly hooks = new Map<string, HookCallback[]>();
  /** Set once per process by the library (it remembers having done so), hence process-wide. */
  get programmingModel(): ProgrammingModel | undefined {
    return programmingModel;
  }
  onLog: (level: LogLevel, category: LogCategory, message: string) => void = () => {};

  hooksOf(name: HookName): HookCallback[] {
    return this.hooks.get(name) ?? [];
  }
}

let active: Registry | undefined;
let programmingModel: ProgrammingModel | undefined;

/** The object the app receives for `require('@azure/functions-core')`. It is stable for the
 * process (the library caches it), and forwards to the active registry. */
const coreApi = {
  version: '3.10.1',
  hostVersion: '4.1000.0-local',
  Disposable,
  registerFunction(metadata: FunctionMetadata, callback: FunctionCallback): Disposable {
    const registry = requireActive();
    const key = metadata.functionId ?? metadata.name;
    if (registry.functions.has(key)) throw new Error(`A function with the name "${key}" has already been registered.`);
    registry.functions.set(key, { name: metadata.name, metadata, callback });
    return new Disposable(() => registry.functions.delete(key));
  },
  setProgrammingModel(pm: ProgrammingModel): void {
    programmingModel = pm;
  },
  getProgrammingModel(): ProgrammingModel | undefined {
    return programmingModel;
  },
  registerHook(name: string, callback: HookCallback): Disposable {
    const registry = requireActive();
    const list = registry.hooks.get(name) ?? [];
    list.push(callback);
    registry.hooks.set(name, list);
    return new Disposable(() => {
      const l = registry.hooks.get(name);
      if (l) l.splice(l.indexOf(callback), 1);
    });
  },
  log(level: LogLevel, category: LogCategory, message: string): void {
    active?.onLog(level, category, message);
  },
};

function requireActive(): Registry {
  if (!active) throw new Error('No local functions host is loading an app in this process');
  return active;
}

let installed = false;

/** Installs the require hook once per process. */
export function installCoreModule(): void {
  if (installed) return;
  const proto = Module.prototype as unknown as { require: (id: string) => unknown };
  proto.require = new Proxy(proto.require, {
    apply(target, thisArg, args: [string]) {
      if (args[0] === CORE_MODULE_ID) return coreApi;
      return Reflect.apply(target, thisArg, args);
    },
  });
  installed = true;
}

/** Makes `registry` the target of registrations; one host per process at a time. */
export function activateRegistry(registry: Registry): void {
  if (active && active !== registry) throw new Error('Another local functions host is already running in this process');
  active = registry;
}

export function deactivateRegistry(registry: Registry): void {
  if (active === registry) active = undefined;
}
