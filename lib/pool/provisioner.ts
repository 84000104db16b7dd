// The namespace operations that provision, adoption (reconcile) and deletion share: make a
// `creating` row's namespace ready in ARM (tagged as the pool's) and the row `available` with its
// keys sealed, and take a namespace out of the pool for good. The row always exists before its
// namespace is created and outlives its deletion, so a step that fails leaves nothing orphaned.
import {
  DEFAULT_HYBRID_CONNECTION,
  nextHybridConnection,
  RelayResourceNotFoundError,
  type NamespaceRef,
  type PreparedNamespace,
  type RelayManager,
} from '../relay/relayManager';
import type { Sealer } from '../sealing';
import { refOf, type Namespace } from './namespace';
import type { NamespaceStore } from './namespaceStore';
import { sealNamespaceKeys } from './sealedKeys';

/** ARM tag that marks a namespace as a member of a pool (value: the pool name). */
export const POOL_TAG = 'relay-broker-pool';

/** What maintenance needs from RelayManager (tests may pass a fake). */
export type PoolRelayOps = Pick<
  RelayManager,
  | 'prepareNamespace'
  | 'getSessionKeys'
  | 'recycle'
  | 'deleteNamespace'
  | 'listNamespaces'
  | 'deleteHybridConnection'
  | 'prepareHybridConnection'
  | 'scrubNamespace'
  | 'regenerateHybridConnectionKeys'
  | 'checkDrift'
  | 'rateLimitsOf'
>;

export class NamespaceProvisioner {
  constructor(
    private readonly store: NamespaceStore,
    private readonly relay: PoolRelayOps,
    private readonly sealer: Sealer,
    private readonly clock: () => Date = () => new Date(),
  ) {}

  /**
   * prepareNamespace (+ a recycle when the namespace's history is unknown: an adopted namespace's
   * hybrid connection is replaced by a fresh one, its foreign rules and hybrid connections deleted
   * and RootManageSharedAccessKey rotated) → keys → sealed for the row's generation → available.
   * ARM errors are thrown (the caller decides what they mean).
   * Second run: prepareNamespace only writes what is missing; an `available` row is returned as is.
   */
  async prepareAndMarkAvailable(
    row: Namespace,
    options: { recycleFirst: boolean; onPrepared?: (prepared: PreparedNamespace) => void },
  ): Promise<Namespace> {
    const prepared = await this.relay.prepareNamespace({
      subscriptionId: row.subscriptionId,
      resourceGroup: row.resourceGroup,
      location: row.location,
      name: row.name,
      tags: { [POOL_TAG]: this.store.poolName },
      hybridConnection: row.hybridConnection ?? DEFAULT_HYBRID_CONNECTION,
    });
    options.onPrepared?.(prepared);
    let ref: NamespaceRef = {
      subscriptionId: row.subscriptionId,
      resourceGroup: row.resourceGroup,
      name: row.name,
      hybridConnection: prepared.hybridConnection,
      endpoint: prepared.endpoint,
    };
    if (options.recycleFirst) {
      const next = nextHybridConnection(prepared.hybridConnection, row.generation);
      await this.relay.recycle(ref, { rotateNamespaceKeys: true, nextHybridConnection: next });
      ref = { ...ref, hybridConnection: next };
    }
    const keys = await this.relay.getSessionKeys(ref);
    return this.store.markAvailable(row.name, {
      endpoint: prepared.endpoint,
      hybridConnection: ref.hybridConnection!,
      sealedKeys: sealNamespaceKeys(this.sealer, row.name, row.generation, keys),
      now: this.clock(),
    });
  }

  /**
   * Takes a row out of the pool for good, along the state machine (leased → recycling →
   * quarantined → deleting, or the shorter path from where it is), deletes the namespace in ARM
   * when asked, and removes the row with a tombstone.
   * Second run: continues from the state the row is in; a row already gone is a no-op.
   */
  async retire(name: string, reason: string, now: Date, options: { armDelete: boolean }): Promise<void> {
    let ns = await this.store.get(name);
    if (!ns) return;
    if (ns.state === 'leased') ns = await this.store.beginRecycle(name, { now });
    if (ns.state === 'recycling') ns = await this.store.quarantine(name, reason, now);
    if (ns.state !== 'deleting') ns = await this.store.beginDelete(name, now);
    if (options.armDelete) await this.deleteInArm(refOf(ns));
    await this.store.remove(name, this.clock());
  }

  /** Deletes the namespace in ARM and waits for it; one already gone is not an error. Second run: nothing left, no-op. */
  async deleteInArm(ref: NamespaceRef): Promise<void> {
    try {
      await this.relay.deleteNamespace(ref);
    } catch (err) {
      if (!(err instanceof RelayResourceNotFoundError)) throw err;
    }
  }
}
