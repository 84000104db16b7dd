// A pooled namespace's Listen and Send rule keys, sealed in its row so that opening a session
// needs no ARM call. The seal is bound to the namespace and its generation: keys of an older
// generation (before a recycle) or of another row never open.
import { z } from 'zod';
import type { SasKey } from '../relay/sas';
import { SealedDataError, type Sealer } from '../sealing';

/** The two keys a session's tokens are minted from. */
export interface NamespaceKeys {
  listen: SasKey;
  send: SasKey;
}

const sasKeySchema = z.object({ keyName: z.string().min(1), key: z.string().min(1) });
const namespaceKeysSchema = z.object({ listen: sasKeySchema, send: sasKeySchema });

/** The sealing context: the row (namespace name) and the generation the keys belong to. */
export function sealedKeysContext(namespace: string, generation: number): string {
  return `namespace-keys:${namespace}:${generation}`;
}

/** Seals `{listen, send}` for `namespace` at `generation`. */
export function sealNamespaceKeys(sealer: Sealer, namespace: string, generation: number, keys: NamespaceKeys): string {
  const plain: NamespaceKeys = {
    listen: { keyName: keys.listen.keyName, key: keys.listen.key },
    send: { keyName: keys.send.keyName, key: keys.send.key },
  };
  return sealer.seal(JSON.stringify(plain), sealedKeysContext(namespace, generation));
}

/**
 * Opens the row's sealed keys; undefined when the row has none, or when they do not open for this
 * row and generation (sealed for another generation, another sealing key, or tampered): the
 * caller then asks ARM. Never throws with key material in a message.
 */
export function openNamespaceKeys(
  sealer: Sealer,
  ns: { name: string; generation: number; sealedKeys?: string },
): NamespaceKeys | undefined {
  if (!ns.sealedKeys) return undefined;
  try {
    const parsed = namespaceKeysSchema.safeParse(
      JSON.parse(sealer.open(ns.sealedKeys, sealedKeysContext(ns.name, ns.generation))),
    );
    return parsed.success ? parsed.data : undefined;
  } catch (err) {
    if (err instanceof SealedDataError || err instanceof SyntaxError) return undefined;
    throw err;
  }
}
