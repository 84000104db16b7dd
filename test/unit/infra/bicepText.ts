// Reads the Bicep files in infra/ as text (no Bicep compiler is available here) and extracts what
// the consistency checks need: app settings, parameters and module calls. Strict on purpose: a
// line it cannot read inside an app-settings region is an error, never silently skipped.

export interface SettingEntry {
  name: string;
  /** The Bicep expression of the value, as written (comments removed). */
  valueText: string;
  /** Where it was found, for messages. */
  source: string;
}

export interface BicepParam {
  name: string;
  type: string;
  hasDefault: boolean;
}

export interface ModuleCall {
  symbol: string;
  path: string;
  paramNames: string[];
}

export const SETTINGS_BEGIN_MARKER = '// app-settings:begin';
export const SETTINGS_END_MARKER = '// app-settings:end';

/** Index just past the string literal that opens at `start` (a `'`), handling '''multi-line''', escapes and ${...}. */
function skipString(text: string, start: number): number {
  if (text.startsWith("'''", start)) {
    const end = text.indexOf("'''", start + 3);
    if (end < 0) throw new Error(`unterminated multi-line string at offset ${start}`);
    return end + 3;
  }
  let i = start + 1;
  while (i < text.length) {
    const ch = text[i];
    if (ch === '\\') i += 2;
    else if (ch === "'") return i + 1;
    else if (text.startsWith('${', i)) i = skipInterpolation(text, i + 2);
    else i += 1;
  }
  throw new Error(`unterminated string at offset ${start}`);
}

/** Index just past the `}` closing an interpolation whose body starts at `start`. */
function skipInterpolation(text: string, start: number): number {
  let depth = 1;
  let i = start;
  while (i < text.length) {
    const ch = text[i];
    if (ch === "'") {
      i = skipString(text, i);
      continue;
    }
    if (ch === '{') depth += 1;
    else if (ch === '}') {
      depth -= 1;
      if (depth === 0) return i + 1;
    }
    i += 1;
  }
  throw new Error(`unterminated interpolation at offset ${start}`);
}

/** Removes // and /* *\/ comments, leaving string literals (which may contain `//`, as URLs do) intact. */
export function stripComments(text: string): string {
  let out = '';
  let i = 0;
  while (i < text.length) {
    if (text[i] === "'") {
      const end = skipString(text, i);
      out += text.slice(i, end);
      i = end;
    } else if (text.startsWith('//', i)) {
      const nl = text.indexOf('\n', i);
      i = nl < 0 ? text.length : nl;
    } else if (text.startsWith('/*', i)) {
      const end = text.indexOf('*/', i + 2);
      if (end < 0) throw new Error(`unterminated block comment at offset ${i}`);
      i = end + 2;
    } else {
      out += text[i];
      i += 1;
    }
  }
  return out;
}

const OPENERS = new Set(['{', '[', '(']);
const CLOSERS = new Set(['}', ']', ')']);

/** Index of the bracket closing the one at `open` (comment-free text). */
export function matchingClose(text: string, open: number): number {
  let depth = 0;
  let i = open;
  while (i < text.length) {
    const ch = text[i];
    if (ch === "'") {
      i = skipString(text, i);
      continue;
    }
    if (OPENERS.has(ch)) depth += 1;
    else if (CLOSERS.has(ch)) {
      depth -= 1;
      if (depth === 0) return i;
    }
    i += 1;
  }
  throw new Error(`unbalanced bracket at offset ${open}`);
}

/** Splits comment-free text into the lines that start at bracket depth 0 (a line with an open bracket runs on). */
function topLevelLines(body: string): string[] {
  const lines: string[] = [];
  let depth = 0;
  let current = '';
  let i = 0;
  while (i < body.length) {
    const ch = body[i];
    if (ch === "'") {
      const end = skipString(body, i);
      current += body.slice(i, end);
      i = end;
      continue;
    }
    if (OPENERS.has(ch)) depth += 1;
    else if (CLOSERS.has(ch)) depth -= 1;
    if (ch === '\n' && depth === 0) {
      lines.push(current);
      current = '';
    } else {
      current += ch;
    }
    i += 1;
  }
  lines.push(current);
  if (depth !== 0) throw new Error('unbalanced brackets in object body');
  return lines.map((l) => l.trim()).filter((l) => l.length > 0);
}

const ENTRY = /^(?:'([^'\\]*)'|([A-Za-z_$][A-Za-z0-9_$]*))\s*:\s*([\s\S]*)$/;

/** The `key: value` entries at the top level of an object body (the text between its braces, comment-free). */
export function objectEntries(body: string, source: string): Array<{ key: string; valueText: string }> {
  return topLevelLines(body).map((line) => {
    const m = ENTRY.exec(line);
    if (!m) throw new Error(`${source}: cannot read "${line.slice(0, 80)}" as a "NAME: value" line`);
    return { key: m[1] ?? m[2], valueText: m[3].trim() };
  });
}

/** App settings written as object keys between the app-settings markers. */
export function settingsFromMarkedObjects(text: string, source: string): SettingEntry[] {
  const entries: SettingEntry[] = [];
  let from = 0;
  for (;;) {
    const begin = text.indexOf(SETTINGS_BEGIN_MARKER, from);
    if (begin < 0) break;
    const end = text.indexOf(SETTINGS_END_MARKER, begin);
    if (end < 0) throw new Error(`${source}: "${SETTINGS_BEGIN_MARKER}" without "${SETTINGS_END_MARKER}"`);
    const region = stripComments(text.slice(begin + SETTINGS_BEGIN_MARKER.length, end));
    for (const e of objectEntries(region, source)) entries.push({ name: e.key, valueText: e.valueText, source });
    from = end + SETTINGS_END_MARKER.length;
  }
  if (text.indexOf(SETTINGS_END_MARKER, from) >= 0) {
    throw new Error(`${source}: "${SETTINGS_END_MARKER}" without "${SETTINGS_BEGIN_MARKER}"`);
  }
  return entries;
}

/** App settings written as `appSettings: [ { name: 'X', value: ... } ]` (siteConfig form). */
export function settingsFromAppSettingsArrays(text: string, source: string): SettingEntry[] {
  const clean = stripComments(text);
  const entries: SettingEntry[] = [];
  const re = /\bappSettings\s*:\s*\[/g;
  for (let m = re.exec(clean); m; m = re.exec(clean)) {
    const open = m.index + m[0].length - 1;
    const close = matchingClose(clean, open);
    for (const element of topLevelLines(clean.slice(open + 1, close))) {
      if (!element.startsWith('{') || !element.endsWith('}')) {
        throw new Error(`${source}: appSettings element is not an object literal: "${element.slice(0, 80)}"`);
      }
      const fields = objectEntries(element.slice(1, -1), source);
      const nameField = fields.find((f) => f.key === 'name');
      const literal = nameField && /^'([^'\\$]*)'$/.exec(nameField.valueText);
      if (!literal) throw new Error(`${source}: appSettings entry without a literal name: "${element.slice(0, 80)}"`);
      const value = fields.find((f) => f.key === 'value');
      entries.push({ name: literal[1], valueText: value ? value.valueText : '', source });
    }
    re.lastIndex = close;
  }
  return entries;
}

/** Every app setting a Bicep file declares, in either convention. */
export function extractAppSettings(text: string, source: string): SettingEntry[] {
  return [...settingsFromMarkedObjects(text, source), ...settingsFromAppSettingsArrays(text, source)];
}

/** `param name type [= default]` declarations. */
export function extractParams(text: string): BicepParam[] {
  const clean = stripComments(text);
  const params: BicepParam[] = [];
  const re = /^\s*param\s+([A-Za-z_][A-Za-z0-9_]*)\s+([A-Za-z_][A-Za-z0-9_.]*)(\s*=)?/gm;
  for (let m = re.exec(clean); m; m = re.exec(clean)) {
    params.push({ name: m[1], type: m[2], hasDefault: m[3] !== undefined });
  }
  return params;
}

/** `module sym 'path' = [if (...)] { params: { ... } }` calls, with the names passed in params. */
export function extractModuleCalls(text: string, source: string): ModuleCall[] {
  const clean = stripComments(text);
  const calls: ModuleCall[] = [];
  const re = /^\s*module\s+([A-Za-z_][A-Za-z0-9_]*)\s+'([^']+)'\s*=\s*/gm;
  for (let m = re.exec(clean); m; m = re.exec(clean)) {
    let open = m.index + m[0].length;
    if (clean.startsWith('if', open)) {
      const condOpen = clean.indexOf('(', open);
      open = matchingClose(clean, condOpen) + 1;
      while (/\s/.test(clean[open])) open += 1;
    }
    if (clean[open] !== '{') throw new Error(`${source}: module ${m[1]} is not followed by an object body`);
    const close = matchingClose(clean, open);
    const body = objectEntries(clean.slice(open + 1, close), `${source} module ${m[1]}`);
    const paramsEntry = body.find((e) => e.key === 'params');
    let paramNames: string[] = [];
    if (paramsEntry) {
      const v = paramsEntry.valueText;
      if (!v.startsWith('{') || !v.endsWith('}'))
        throw new Error(`${source}: module ${m[1]} params is not an object literal`);
      paramNames = objectEntries(v.slice(1, -1), `${source} module ${m[1]} params`).map((e) => e.key);
    }
    calls.push({ symbol: m[1], path: m[2], paramNames });
    re.lastIndex = close;
  }
  return calls;
}

export type AzureRequirement = 'required' | 'optional' | 'local';

/** Names the platform (Functions host, App Service, Application Insights) reads; not in lib/config.ts. */
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
  /** Marked azure: 'required' in lib/config.ts but absent from infra. */
  missingRequired: string[];
  /** In infra, but neither in lib/config.ts nor a platform setting. */
  unknown: string[];
  /** In infra, but lib/config.ts says it exists only for the local runtime. */
  localOnly: string[];
  /** Declared more than once in infra. */
  duplicates: string[];
}

export function checkSettings(
  infra: readonly SettingEntry[],
  catalogue: Readonly<Record<string, { azure: AzureRequirement }>>,
): SettingsReport {
  const seen = new Set<string>();
  const duplicates = new Set<string>();
  for (const e of infra) {
    if (seen.has(e.name)) duplicates.add(e.name);
    seen.add(e.name);
  }
  const known = new Set(Object.keys(catalogue));
  return {
    missingRequired: Object.entries(catalogue)
      .filter(([name, s]) => s.azure === 'required' && !seen.has(name))
      .map(([name]) => name),
    unknown: [...seen].filter((n) => !known.has(n) && !isPlatformSetting(n)),
    localOnly: [...seen].filter((n) => catalogue[n]?.azure === 'local'),
    duplicates: [...duplicates],
  };
}

export function isClean(r: SettingsReport): boolean {
  return r.missingRequired.length + r.unknown.length + r.localOnly.length + r.duplicates.length === 0;
}

/** One line per problem, naming the settings, for assertion messages. */
export function describeReport(r: SettingsReport): string {
  const lines: string[] = [];
  if (r.missingRequired.length)
    lines.push(`required by lib/config.ts but missing from infra: ${r.missingRequired.join(', ')}`);
  if (r.unknown.length) lines.push(`in infra but unknown to lib/config.ts SETTINGS: ${r.unknown.join(', ')}`);
  if (r.localOnly.length) lines.push(`local-only settings set in infra: ${r.localOnly.join(', ')}`);
  if (r.duplicates.length) lines.push(`set twice in infra: ${r.duplicates.join(', ')}`);
  return lines.join('\n');
}
