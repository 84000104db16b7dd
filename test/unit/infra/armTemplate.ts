// Reads the ARM JSON that the real Bicep CLI compiled from infra/*.bicep (committed next to it;
// scripts/bicep.sh fails CI when it drifts), and checks deployed app settings against
// lib/config.ts SETTINGS. Pure functions over parsed JSON: no compiler needed at test time.
import fs from 'node:fs';
import path from 'node:path';

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

/** The repository root: the nearest ancestor holding package.json and infra/ (works from test/ and from dist*). */
export function repoRoot(from = __dirname): string {
  let dir = from;
  for (let i = 0; i < 10; i += 1) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'infra'))) return dir;
    dir = path.dirname(dir);
  }
  throw new Error(`no repository root above ${from}`);
}

export function isObject(v: Json | undefined): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** `o.a.b.c`, failing with the path when a step is missing or not an object. */
export function at(o: Json | undefined, ...keys: string[]): Json {
  let cur: Json | undefined = o;
  for (const [i, k] of keys.entries()) {
    if (!isObject(cur) || !(k in cur)) throw new Error(`no ${keys.slice(0, i + 1).join('.')} in the template`);
    cur = cur[k];
  }
  return cur as Json;
}

export function readTemplate(file: string): JsonObject {
  const parsed = JSON.parse(fs.readFileSync(file, 'utf8')) as Json;
  if (!isObject(parsed)) throw new Error(`${file} is not a JSON object`);
  return parsed;
}

/** The resources of a template (Bicep emits an array, or an object with symbolic names). */
export function resources(template: Json): JsonObject[] {
  const r = at(template, 'resources');
  const list = Array.isArray(r) ? r : isObject(r) ? Object.values(r) : [];
  return list.filter(isObject);
}

/** A nested deployment (a Bicep `module`) by its deployment name. */
export function moduleDeployment(template: Json, name: string): JsonObject {
  const found = resources(template).filter((r) => r.type === 'Microsoft.Resources/deployments' && r.name === name);
  if (found.length !== 1) throw new Error(`expected one deployment named ${name}, found ${found.length}`);
  return found[0];
}

/** The value passed to a module's parameter (`params: { name: value }`). */
export function moduleParam(template: Json, deployment: string, param: string): Json {
  return at(moduleDeployment(template, deployment), 'properties', 'parameters', param, 'value');
}

/** Resources of one type inside a module's own template. */
export function moduleResources(template: Json, deployment: string, type: string): JsonObject[] {
  return resources(at(moduleDeployment(template, deployment), 'properties', 'template')).filter((r) => r.type === type);
}

/** The settings object main.bicep hands to modules/appSettings.bicep: every app setting, name -> value. */
export function appSettings(template: Json): Record<string, string> {
  const value = moduleParam(template, 'appSettings', 'settings');
  if (!isObject(value)) throw new Error('the appSettings module gets no settings object');
  const out: Record<string, string> = {};
  for (const [name, v] of Object.entries(value)) {
    if (typeof v !== 'string') throw new Error(`app setting ${name} is not a string (${JSON.stringify(v)})`);
    out[name] = v;
  }
  return out;
}

/** App settings the platform reads (not lib/config.ts). */
export const PLATFORM_SETTINGS = new Set([
  'FUNCTIONS_EXTENSION_VERSION',
  'FUNCTIONS_WORKER_RUNTIME',
  'APPLICATIONINSIGHTS_CONNECTION_STRING',
  'APPLICATIONINSIGHTS_AUTHENTICATION_STRING',
  'AzureWebJobsFeatureFlags',
  'SCM_DO_BUILD_DURING_DEPLOYMENT',
  'ENABLE_ORYX_BUILD',
]);
export const PLATFORM_PREFIXES = ['AzureWebJobsStorage__', 'WEBSITE_', 'AzureFunctionsJobHost__'];

export function isPlatformSetting(name: string): boolean {
  return PLATFORM_SETTINGS.has(name) || PLATFORM_PREFIXES.some((p) => name.startsWith(p));
}

export interface SettingsReport {
  /** azure: 'required' in SETTINGS but not deployed. */
  missingRequired: string[];
  /** Deployed, but neither in SETTINGS nor a platform setting. */
  unknown: string[];
  /** Deployed, but SETTINGS marks it local-only. */
  localOnly: string[];
}

export function checkSettings(
  deployed: Iterable<string>,
  catalogue: Readonly<Record<string, { azure: 'required' | 'optional' | 'local' }>>,
): SettingsReport {
  const names = new Set(deployed);
  return {
    missingRequired: Object.entries(catalogue)
      .filter(([n, s]) => s.azure === 'required' && !names.has(n))
      .map(([n]) => n),
    unknown: [...names].filter((n) => !(n in catalogue) && !isPlatformSetting(n)).sort(),
    localOnly: [...names].filter((n) => catalogue[n]?.azure === 'local').sort(),
  };
}

export function isClean(r: SettingsReport): boolean {
  return r.missingRequired.length === 0 && r.unknown.length === 0 && r.localOnly.length === 0;
}

export function describeReport(r: SettingsReport): string {
  return [
    ...r.missingRequired.map((n) => `missing from infra: ${n}`),
    ...(r.unknown.length ? [`unknown to lib/config.ts SETTINGS: ${r.unknown.join(', ')}`] : []),
    ...(r.localOnly.length ? [`local-only settings deployed: ${r.localOnly.join(', ')}`] : []),
  ].join('\n');
}

/** The Bicep CLI version scripts/bicep.sh pins (its `BICEP_VERSION=` line). */
export function pinnedBicepVersion(root: string): string {
  const m = /^BICEP_VERSION=([0-9.]+)/m.exec(fs.readFileSync(path.join(root, 'scripts', 'bicep.sh'), 'utf8'));
  if (!m) throw new Error('scripts/bicep.sh has no BICEP_VERSION= line');
  return m[1];
}
