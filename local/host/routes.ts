// ASP.NET-style route templates as the Functions host reads them: `devices/{id}`, optional
// `{id?}`, constrained `{n:int}`, catch-all `{*rest}`. Literal segments outrank parameters.

export interface RouteTemplate {
  template: string;
  segments: Segment[];
  /** Higher wins when two templates match the same path. */
  precedence: number;
}

type Segment =
  | { kind: 'literal'; value: string }
  | { kind: 'param'; name: string; optional: boolean; constraint?: string; catchAll: boolean };

const CONSTRAINTS: Record<string, (v: string) => boolean> = {
  int: (v) => /^-?\d+$/.test(v),
  long: (v) => /^-?\d+$/.test(v),
  bool: (v) => /^(true|false)$/i.test(v),
  guid: (v) => /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(v),
  alpha: (v) => /^[a-z]+$/i.test(v),
  double: (v) => !Number.isNaN(Number(v)),
  float: (v) => !Number.isNaN(Number(v)),
};

export function parseRouteTemplate(template: string): RouteTemplate {
  const trimmed = template.replace(/^\/+|\/+$/g, '');
  const segments: Segment[] = trimmed === '' ? [] : trimmed.split('/').map(parseSegment);
  let precedence = 0;
  segments.forEach((s, i) => {
    const weight = s.kind === 'literal' ? 4 : s.catchAll ? 1 : s.constraint ? 3 : 2;
    precedence += weight * 10 ** Math.max(0, 8 - i);
  });
  return { template, segments, precedence };
}

function parseSegment(raw: string): Segment {
  const m = /^\{(\*)?([A-Za-z_][A-Za-z0-9_]*)(?::([a-z]+))?(\?)?\}$/.exec(raw);
  if (!m) {
    if (raw.includes('{') || raw.includes('}')) throw new Error(`Unsupported route segment "${raw}"`);
    return { kind: 'literal', value: raw.toLowerCase() };
  }
  const constraint = m[3];
  if (constraint && !CONSTRAINTS[constraint]) throw new Error(`Unsupported route constraint "${constraint}"`);
  return { kind: 'param', name: m[2], catchAll: Boolean(m[1]), constraint, optional: Boolean(m[4]) || Boolean(m[1]) };
}

/** Matches a path (below the route prefix, no query) and returns the route values, or undefined. */
export function matchRoute(route: RouteTemplate, path: string): Record<string, string> | undefined {
  const parts = path
    .replace(/^\/+|\/+$/g, '')
    .split('/')
    .filter((p) => p !== '');
  const params: Record<string, string> = {};
  let i = 0;
  for (const seg of route.segments) {
    if (seg.kind === 'literal') {
      if (parts[i] === undefined || safeDecode(parts[i]).toLowerCase() !== seg.value) return undefined;
      i++;
      continue;
    }
    if (seg.catchAll) {
      if (i < parts.length) params[seg.name] = parts.slice(i).map(safeDecode).join('/');
      i = parts.length;
      continue;
    }
    const part = parts[i];
    if (part === undefined) {
      if (seg.optional) continue;
      return undefined;
    }
    const value = safeDecode(part);
    if (seg.constraint && !CONSTRAINTS[seg.constraint](value)) return undefined;
    params[seg.name] = value;
    i++;
  }
  return i === parts.length ? params : undefined;
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
