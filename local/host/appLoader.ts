// Finds and loads the app the way the Node worker does (worker src/startApp.ts): the files
// matched by package.json `main` (a glob), plus what Core Tools does around it:
// local.settings.json Values into the environment and host.json's route prefix.
import fs from 'node:fs';
import path from 'node:path';

export interface HostJson {
  routePrefix: string;
  hubName?: string;
  raw: Record<string, unknown>;
}

export function readHostJson(appDir: string): HostJson {
  const file = path.join(appDir, 'host.json');
  const raw = fs.existsSync(file) ? (JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>) : {};
  const extensions = (raw.extensions ?? {}) as Record<string, Record<string, unknown> | undefined>;
  const prefix = extensions.http?.routePrefix;
  const hubName = extensions.durableTask?.hubName;
  return {
    routePrefix: typeof prefix === 'string' ? prefix.replace(/^\/+|\/+$/g, '') : 'api',
    hubName: typeof hubName === 'string' ? hubName : undefined,
    raw,
  };
}

/** Core Tools copies local.settings.json `Values` into the environment; set values win. */
export function applyLocalSettings(appDir: string, env: NodeJS.ProcessEnv = process.env): string[] {
  const file = path.join(appDir, 'local.settings.json');
  if (!fs.existsSync(file)) return [];
  const parsed = JSON.parse(fs.readFileSync(file, 'utf8')) as { Values?: Record<string, unknown> };
  const applied: string[] = [];
  for (const [k, v] of Object.entries(parsed.Values ?? {})) {
    if (env[k] === undefined && (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean')) {
      env[k] = String(v);
      applied.push(k);
    }
  }
  return applied;
}

/** The files package.json `main` points at (a path or a glob with `*` and `**`). */
export function resolveEntryPoints(appDir: string): string[] {
  const pkg = JSON.parse(fs.readFileSync(path.join(appDir, 'package.json'), 'utf8')) as { main?: string };
  const pattern = (pkg.main ?? 'index.js').replace(/\\/g, '/').replace(/^\.\//, '');
  if (!/[*?]/.test(pattern)) {
    const file = path.resolve(appDir, pattern);
    if (!fs.existsSync(file)) throw new Error(`package.json main "${pattern}" does not exist (did you build?)`);
    return [file];
  }
  const firstGlob = pattern.search(/[*?]/);
  const baseDir = path.resolve(appDir, pattern.slice(0, pattern.lastIndexOf('/', firstGlob) + 1));
  const regex = globToRegExp(path.resolve(appDir, pattern).replace(/\\/g, '/'));
  const files = walk(baseDir).filter((f) => regex.test(f.replace(/\\/g, '/')));
  if (files.length === 0) throw new Error(`package.json main "${pattern}" matched no file (did you build?)`);
  return files.sort();
}

function walk(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  const out: string[] = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      if (entry.name !== 'node_modules') out.push(...walk(full));
    } else out.push(full);
  }
  return out;
}

function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === '*' && glob[i + 1] === '*') {
      re += '.*';
      i++;
      if (glob[i + 1] === '/') i++;
    } else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

/** Requires the entry points afresh so their registrations run again for this host. */
export function loadEntryPoints(files: string[]): void {
  for (const f of files) delete require.cache[require.resolve(f)];
  // The host loads the app the way the worker does: CommonJS require of the compiled entry points.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  for (const f of files) require(f);
}

/** Replaces `%Setting%` placeholders in binding properties, as the host does. */
export function resolvePlaceholders<T>(value: T, env: NodeJS.ProcessEnv = process.env): T {
  if (typeof value === 'string') {
    return value.replace(/%([A-Za-z0-9_:.-]+)%/g, (whole, name: string) => {
      const v = env[name];
      if (v === undefined) throw new Error(`Binding refers to app setting "${name}", which is not set`);
      return v;
    }) as T;
  }
  if (Array.isArray(value)) return (value as unknown[]).map((v) => resolvePlaceholders(v, env)) as T;
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = resolvePlaceholders(v, env);
    return out as T;
  }
  return value;
}
