// Parsers of the CLI's option values (pure): each throws commander's InvalidArgumentError, so a bad
// value is a usage error (exit 2) with a message that says what a good one looks like.
import { InvalidArgumentError } from 'commander';

export function parsePort(value: string): number {
  if (!/^\d{1,5}$/.test(value.trim())) throw new InvalidArgumentError(`"${value}" is not a port (1-65535).`);
  const port = Number(value);
  if (port < 1 || port > 65535) throw new InvalidArgumentError(`${port} is not a port (1-65535).`);
  return port;
}

/** `3389,22` or `3389 22` into a set of ports; refuses empties, duplicates are fine. */
export function parseAllowList(value: string): Set<number> {
  const parts = value.split(/[,\s]+/).filter((p) => p.length > 0);
  if (parts.length === 0) throw new InvalidArgumentError('give at least one port, e.g. --allow 3389,22');
  const ports = new Set<number>();
  for (const p of parts) ports.add(parsePort(p));
  return ports;
}

/** `host:port`, `:port` or `port` (host defaults to 127.0.0.1; port 0 picks a free one). */
export function parseListen(value: string): { host: string; port: number } {
  const m = /^(?:(\[[0-9a-fA-F:]+\]|[^:]*):)?(\d{1,5})$/.exec(value.trim());
  if (!m)
    throw new InvalidArgumentError(
      `"${value}" is not host:port (e.g. 127.0.0.1:13389, or 127.0.0.1:0 for a free port).`,
    );
  const port = Number(m[2]);
  if (port > 65535) throw new InvalidArgumentError(`${port} is not a port.`);
  const host = (m[1] ?? '').replace(/^\[|\]$/g, '') || '127.0.0.1';
  return { host, port };
}

export function parsePositiveInt(name: string, max = Number.MAX_SAFE_INTEGER) {
  return (value: string): number => {
    if (!/^\d+$/.test(value.trim()) || Number(value) < 1 || Number(value) > max) {
      throw new InvalidArgumentError(`${name} must be a whole number from 1 to ${max}, got "${value}".`);
    }
    return Number(value);
  };
}

/** Repeatable `--tag k=v`: accumulates into a record. */
export function collectTag(value: string, previous: Record<string, string> = {}): Record<string, string> {
  const eq = value.indexOf('=');
  if (eq <= 0) throw new InvalidArgumentError(`"${value}" is not name=value.`);
  const name = value.slice(0, eq);
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(name))
    throw new InvalidArgumentError(`tag name "${name}": 1-64 letters, digits, _ . -`);
  return { ...previous, [name]: value.slice(eq + 1) };
}

const DEVICE_ID = /^(?=.{3,59}$)[a-z0-9]+(?:-[a-z0-9]+)*$/;
export function parseDeviceId(value: string): string {
  if (!DEVICE_ID.test(value)) {
    throw new InvalidArgumentError(
      `"${value}" is not a device id: 3-59 lowercase letters, digits and single hyphens, starting and ending with a letter or digit.`,
    );
  }
  return value;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export function parseSessionId(value: string): string {
  if (!UUID.test(value)) throw new InvalidArgumentError(`"${value}" is not a session id (a UUID).`);
  return value;
}
