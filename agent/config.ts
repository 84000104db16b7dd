// Where the CLI finds the API and its credentials: flags, else the environment
// (RELAY_BROKER_URL, RELAY_BROKER_TOKEN), else the local state `npm start` wrote (.relay-broker/local.json).
import { promises as fs } from 'node:fs';
import { describeError } from '../lib/errors';
import path from 'node:path';
import { z } from 'zod';
import type { LocalIssuer } from '../lib/auth/localIssuer';
import { CliError } from './errors';
import type { Output } from './output';

/** The package root: <outDir>/agent/config.js is two levels below it. */
export const PACKAGE_ROOT = path.resolve(__dirname, '..', '..');
export const LOCAL_STATE_FILE = 'local.json';

const localStateSchema = z.object({
  apiUrl: z.string().url(),
  issuerDir: z.string().min(1),
  relayCaFile: z.string().min(1).optional(),
});
export type LocalState = z.infer<typeof localStateSchema> & { dir: string };

export function localStateDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.RELAY_BROKER_STATE_DIR
    ? path.resolve(env.RELAY_BROKER_STATE_DIR)
    : path.join(PACKAGE_ROOT, '.relay-broker');
}

/** The local state, or undefined when local mode is not running (no file). A broken file is an error. */
export async function readLocalState(env: NodeJS.ProcessEnv = process.env): Promise<LocalState | undefined> {
  const dir = localStateDir(env);
  const file = path.join(dir, LOCAL_STATE_FILE);
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ENOENT') return undefined;
    throw new CliError({ title: 'Cannot read the local state', detail: `${file}: ${describeError(err)}` });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new CliError({
      title: 'The local state is not valid JSON',
      detail: file,
      hint: 'Restart `npm start`, or remove the file.',
    });
  }
  const r = localStateSchema.safeParse(parsed);
  if (!r.success) {
    throw new CliError({
      title: 'The local state is not valid',
      detail: `${file}: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`,
    });
  }
  const resolve = (p: string): string => path.resolve(dir, p);
  return {
    ...r.data,
    issuerDir: resolve(r.data.issuerDir),
    relayCaFile: r.data.relayCaFile ? resolve(r.data.relayCaFile) : undefined,
    dir,
  };
}

export interface ApiFlags {
  apiUrl?: string;
  token?: string;
}

export interface ApiConfig {
  apiUrl: string;
  token?: string;
  /** Where the URL came from, for the user's benefit. */
  source: 'flag' | 'env' | 'local';
  local?: LocalState;
}

const normalize = (u: string): string => u.replace(/\/+$/, '');

/** Mints a local dev token from the issuer of the running `npm start`. */
export async function mintLocalToken(
  state: LocalState,
  options: { role: 'admin' | 'operator'; sub?: string; ttlSeconds?: number },
): Promise<{ token: string; sub: string; expiresAt: string }> {
  let issuer: LocalIssuer;
  try {
    // Loaded on demand: only local mode needs the JOSE library.
    const { LocalIssuer: Issuer } = await import('../lib/auth/localIssuer');
    issuer = await Issuer.load(state.issuerDir);
  } catch (err) {
    throw new CliError({
      title: 'Cannot load the local issuer',
      detail: describeError(err),
      hint: 'Is `npm start` running? It writes the issuer next to the local state.',
    });
  }
  const sub = options.sub ?? (options.role === 'admin' ? 'local-admin' : 'local-operator');
  const ttlSeconds = options.ttlSeconds ?? 3600;
  const token = await issuer.mint({ sub, roles: [options.role], name: sub, ttlSeconds });
  return { token, sub, expiresAt: new Date(Date.now() + ttlSeconds * 1000).toISOString() };
}

/** Resolves the API URL and token; in local mode mints an admin token and says so on stderr. */
export async function resolveApiConfig(
  flags: ApiFlags,
  out: Output,
  env: NodeJS.ProcessEnv = process.env,
): Promise<ApiConfig> {
  const fromFlagOrEnv = flags.apiUrl ?? env.RELAY_BROKER_URL;
  const token = flags.token ?? env.RELAY_BROKER_TOKEN;
  const local = await readLocalState(env).catch((err: unknown) => {
    // A broken local state matters only when nothing else says where the API is.
    if (fromFlagOrEnv && token) return undefined;
    throw err;
  });
  if (fromFlagOrEnv) {
    const apiUrl = normalize(fromFlagOrEnv);
    const source = flags.apiUrl ? 'flag' : 'env';
    if (token || !local || normalize(local.apiUrl) !== apiUrl)
      return { apiUrl, token, source, local: local && normalize(local.apiUrl) === apiUrl ? local : undefined };
    const minted = await mintLocalToken(local, { role: 'admin', ttlSeconds: 3600 });
    out.note(`using an admin token from the local issuer (${local.issuerDir})`);
    return { apiUrl, token: minted.token, source, local };
  }
  if (!local) {
    throw new CliError({
      title: 'No API configured',
      detail: 'Neither --api-url nor RELAY_BROKER_URL is set, and no local broker is running.',
      hint: 'Pass --api-url and --token (or set RELAY_BROKER_URL and RELAY_BROKER_TOKEN), or start the local stack with `npm start`.',
    });
  }
  const apiUrl = normalize(local.apiUrl);
  if (token) {
    out.note(`local mode: API ${apiUrl}`);
    return { apiUrl, token, source: 'local', local };
  }
  const minted = await mintLocalToken(local, { role: 'admin', ttlSeconds: 3600 });
  out.note(`local mode: API ${apiUrl}, admin token from the local issuer`);
  return { apiUrl, token: minted.token, source: 'local', local };
}

/**
 * The CA to trust for the relay: `--relay-ca`, else RELAY_BROKER_RELAY_CA, else the local
 * emulator's when talking to the local broker. Undefined means the system's roots (Azure).
 */
export async function resolveRelayCa(
  flag: string | undefined,
  apiUrl: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<string | undefined> {
  const file = flag ?? env.RELAY_BROKER_RELAY_CA;
  if (file) return readCa(file);
  const local = await readLocalState(env).catch(() => undefined);
  if (local?.relayCaFile && normalize(local.apiUrl) === normalize(apiUrl)) return readCa(local.relayCaFile);
  return undefined;
}

async function readCa(file: string): Promise<string> {
  let pem: string;
  try {
    pem = await fs.readFile(file, 'utf8');
  } catch (err) {
    throw new CliError({
      title: 'Cannot read the relay CA',
      detail: `${file}: ${describeError(err)}`,
      hint: 'Pass a PEM file with --relay-ca.',
    });
  }
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) {
    throw new CliError({
      title: 'The relay CA is not a PEM certificate',
      detail: file,
      hint: 'Pass the emulator certificate (PEM) with --relay-ca.',
    });
  }
  return pem;
}
