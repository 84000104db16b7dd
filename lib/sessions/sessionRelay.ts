// How a session reaches its namespace's relay keys and recycles its hybrid connection, over
// RelayManager: the keys sealed in the namespace row on the hot path (no ARM call), ARM otherwise.
import type { Namespace } from '../pool/namespace';
import { openNamespaceKeys } from '../pool/sealedKeys';
import type { NamespaceRef, RelayManager } from '../relay/relayManager';
import type { Sealer } from '../sealing';
import type { SessionKeys, SessionRelayOps } from './sessionService';

export class SessionRelay implements SessionRelayOps {
  constructor(
    private readonly relay: Pick<RelayManager, 'getSessionKeys' | 'recycle'>,
    private readonly sealer: Sealer,
  ) {}

  /**
   * The sealed copy in the row when it opens for the row's generation; ARM only for a row without
   * one (prepared before keys were sealed, or sealed for another generation or sealing key).
   */
  async keysFor(ns: Namespace): Promise<SessionKeys> {
    const sealed = openNamespaceKeys(this.sealer, ns);
    if (sealed) return sealed;
    const keys = await this.relay.getSessionKeys(refOf(ns));
    return { listen: keys.listen, send: keys.send };
  }

  /** Deletes and recreates the hybrid connection with fresh rules, then reads the new keys (to be sealed). */
  async recycle(ns: Namespace): Promise<SessionKeys> {
    await this.relay.recycle(refOf(ns));
    const keys = await this.relay.getSessionKeys(refOf(ns));
    return { listen: keys.listen, send: keys.send };
  }
}

function refOf(ns: Namespace): NamespaceRef {
  return {
    subscriptionId: ns.subscriptionId,
    resourceGroup: ns.resourceGroup,
    name: ns.name,
    hybridConnection: ns.hybridConnection,
    endpoint: ns.endpoint,
  };
}
