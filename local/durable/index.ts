// The local durable engine: runs real `durable-functions` orchestrations in the local host with
// state in Azure Tables (Azurite). See README.md in this folder.
export { createDurableExtension, type DurableExtension, type DurableExtensionOptions } from './extension';
export { DurableEngine } from './engine';
export { TERMINAL, type RuntimeStatus, type StatusSnapshot } from './instance';
export { WEBHOOK_PREFIX } from './httpApi';
