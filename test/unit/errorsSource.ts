// Test support: the registry's classes as the module exports them, and the product's own source
// (lib/ and functions/), so tests can ask whether a code is really raised somewhere.
import fs from 'node:fs';
import path from 'node:path';
import * as errors from '../../lib/errors';
import { BrokerError, type ErrorCode } from '../../lib/errors';

/** The repository root: the nearest ancestor holding package.json and lib/ (works from test/ and dist/). */
export function repoRoot(): string {
  let dir = __dirname;
  for (let i = 0; i < 10; i += 1) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'lib', 'errors.ts'))) return dir;
    dir = path.dirname(dir);
  }
  throw new Error(`no repository root above ${__dirname}`);
}

type ErrorClass = new (...args: unknown[]) => BrokerError;

/** Every concrete class lib/errors.ts exports, with the code an instance carries (abstract bases have none). */
export function registryClasses(): Array<{ name: string; code: ErrorCode }> {
  const out: Array<{ name: string; code: ErrorCode }> = [];
  for (const [name, value] of Object.entries(errors)) {
    if (typeof value !== 'function' || !(value.prototype instanceof BrokerError)) continue;
    // Arguments every constructor accepts: a detail, then options that also satisfy RelayArmError.
    const instance = new (value as ErrorClass)('detail', { operation: 'test' });
    const code = (instance as { code?: ErrorCode }).code;
    if (code !== undefined) out.push({ name, code });
  }
  return out;
}

/** The TypeScript source of lib/ and functions/ (the server), concatenated. */
export function serverSource(): string {
  const root = repoRoot();
  const texts: string[] = [];
  const walk = (dir: string): void => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) texts.push(fs.readFileSync(full, 'utf8'));
    }
  };
  walk(path.join(root, 'lib'));
  walk(path.join(root, 'functions'));
  return texts.join('\n');
}

/** True when the server constructs the class that raises `code` somewhere (`new XError(`). */
export function serverRaises(code: ErrorCode, source = serverSource()): boolean {
  if (code === 'internal_error') return /\binternal_error\b/.test(source);
  return registryClasses()
    .filter((c) => c.code === code)
    .some((c) => new RegExp(`new ${c.name}\\(`).test(source));
}
