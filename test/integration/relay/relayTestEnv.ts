// Shared setup of the relay integration tests: an emulator, the real @azure/arm-relay client
// through createRelayApiFactory, and a RelayManager whose sleeps are recorded and shortened.
import { RelayEmulator, type RelayEmulatorOptions } from '../../../local/relay-emulator';
import { createRelayApiFactory, RelayManager, type RelayManagerOptions } from '../../../lib/relay/relayManager';

export const SUBSCRIPTION = '00000000-0000-0000-0000-000000000001';
export const RESOURCE_GROUP = 'relay-pool';
export const LOCATION = 'westeurope';

export interface RelayTestEnv {
  emulator: RelayEmulator;
  manager: RelayManager;
  /** Every delay RelayManager asked for (backoff, Retry-After, LRO polls), in ms. */
  sleeps: number[];
  makeManager(options?: Partial<RelayManagerOptions>): RelayManager;
}

export async function startRelayTestEnv(
  emulatorOptions: RelayEmulatorOptions = {},
  managerOptions: Partial<RelayManagerOptions> = {},
): Promise<RelayTestEnv> {
  const emulator = await new RelayEmulator({
    createDelayMs: 100,
    deleteDelayMs: 50,
    // Every other ARM duration (write time, windows, bucket refill) at 1/100 of Azure's.
    timeScale: 0.01,
    ...emulatorOptions,
  }).start();
  const sleeps: number[] = [];
  const makeManager = (options: Partial<RelayManagerOptions> = {}): RelayManager =>
    new RelayManager({
      apiFactory: createRelayApiFactory({
        endpoint: emulator.armEndpoint,
        caPem: emulator.caCertPem,
        lroPollIntervalMs: 20,
      }),
      // Record the delay asked for, wait at most 25 ms: tests show Retry-After is honoured without waiting for it.
      sleep: (ms) => {
        sleeps.push(ms);
        return new Promise((resolve) => setTimeout(resolve, Math.min(ms, 25)));
      },
      ...managerOptions,
      ...options,
    });
  return { emulator, manager: makeManager(), sleeps, makeManager };
}

let counter = 0;
/** A fresh valid namespace name per call (names are global in the emulator, as in Azure). */
export function namespaceName(prefix = 'rb'): string {
  counter++;
  return `${prefix}-${process.pid}-${counter}-${Math.random().toString(36).slice(2, 8)}`;
}
