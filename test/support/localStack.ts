// The whole local stack for tests that drive the built CLI: a LocalRuntime on a state folder, with
// `local.json` written where the CLI looks for it (RELAY_BROKER_STATE_DIR), as `npm start` does.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { LocalRuntime, type LocalRuntimeOptions } from '../../local/runtime';

export interface LocalStack {
  rt: LocalRuntime;
  /** The environment a CLI child process needs to find this stack. */
  env: Record<string, string>;
}

export async function startLocalStack(
  stateDir: string,
  options: Partial<LocalRuntimeOptions> = {},
): Promise<LocalStack> {
  const rt = new LocalRuntime({
    disableTimers: true,
    logSink: () => {},
    stateDir,
    relayOptions: { createDelayMs: 0 },
    ...options,
  });
  await rt.start();
  await fs.writeFile(path.join(stateDir, 'local.json'), JSON.stringify(rt.localState()), { mode: 0o600 });
  return { rt, env: { RELAY_BROKER_STATE_DIR: stateDir } };
}
