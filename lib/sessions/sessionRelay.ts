// How a session reaches its namespace's relay keys and recycles its hybrid connection, over
// RelayManager: the keys sealed in the namespace row on the hot path (no ARM call), ARM otherwise;
// the recycle's ARM steps (lib/pool/recycleSteps.ts) go straight to RelayManager.
import type { Namespace } from '../pool/namespace';
import { openNamespaceKeys } from '../pool/sealedKeys';
import type { NamespaceRef } from '../relay/relayManager';
import type { Sealer } from '../sealing';
import type { SessionKeys, SessionRelayOps } from './sessionService';

export class SessionRelay implements SessionRelayOps {
  constructor(
    private readonly relay: SessionRelayOps['arm'],
    private readonly sealer: Sealer,
  ) {}

  get arm(): SessionRelayOps['arm'] {
    return this.relay;
  }

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
