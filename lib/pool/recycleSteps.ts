// A recycle in two steps, shared by a session's end and pool maintenance:
// 1. delete the hybrid connection the row holds (its connections drop, every token for it dies):
//    the only ARM write on a session's critical path; after it the session is really `ended`;
// 2. prepare the next generation under a fresh hybrid connection name (never a just-deleted one,
//    which Azure refuses for a while with 429 40901), its rules one after another, the namespace's
//    foreign rules and hybrid connections removed and RootManageSharedAccessKey rotated, the new
//    keys read and sealed, the row `available` again.
// The caller holds the row's recycle claim (NamespaceStore.beginRecycle) before either step.
import { nextHybridConnection, type RelayManager } from '../relay/relayManager';
import type { Sealer } from '../sealing';
import { refOf, type Namespace } from './namespace';
import type { NamespaceStore } from './namespaceStore';
import { sealNamespaceKeys } from './sealedKeys';

/** What the two steps need from RelayManager (tests may pass a fake). */
export type RecycleRelayOps = Pick<
  RelayManager,
  'deleteHybridConnection' | 'prepareHybridConnection' | 'scrubNamespace' | 'getSessionKeys'
>;

/**
 * Step 1: deletes the row's hybrid connection (a 404 counts as deleted) and records it on the row.
 * ARM errors are thrown. Second run: a row already marked is returned without an ARM call.
 */
export async function deleteHybridConnectionOf(
  store: NamespaceStore,
  relay: RecycleRelayOps,
  ns: Namespace,
  now: Date,
): Promise<Namespace> {
  if (ns.hybridConnectionDeletedAt || !ns.hybridConnection) return ns;
  await relay.deleteHybridConnection(refOf(ns));
  return store.markHybridConnectionDeleted(ns.name, ns.hybridConnection, now);
}

/**
 * Step 2 (after step 1): the next generation under `nextHybridConnection(...)`, foreign rules and
 * hybrid connections gone, root keys rotated, the keys sealed for generation + 1, the row
 * `available`. ARM errors are thrown (the row stays `recycling`; the caller counts the failure).
 * Second run: the same name is written again (deterministic), the row is bumped only once.
 */
export async function prepareNextGeneration(
  store: NamespaceStore,
  relay: RecycleRelayOps,
  sealer: Sealer,
  ns: Namespace,
  now: () => Date,
): Promise<Namespace> {
  if (!ns.hybridConnectionDeletedAt && ns.hybridConnection)
    ns = await deleteHybridConnectionOf(store, relay, ns, now());
  const next = nextHybridConnection(ns.hybridConnection, ns.generation);
  const ref = { ...refOf(ns), hybridConnection: next };
  await relay.scrubNamespace(ref, next);
  await relay.prepareHybridConnection(ref);
  const keys = await relay.getSessionKeys(ref);
  return store.markRecycled(ns.name, {
    now: now(),
    fromGeneration: ns.generation,
    hybridConnection: next,
    sealedKeys: sealNamespaceKeys(sealer, ns.name, ns.generation + 1, keys),
  });
}
