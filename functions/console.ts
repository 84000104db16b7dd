// GET /api/console/{*path} (anonymous): the web console's static files and its public sign-in
// settings. Only these files, served from a fixed list (no path from the URL touches the disk);
// the page holds no secret and calls the API with the signed-in user's bearer token.
import fs from 'node:fs';
import path from 'node:path';
import type { HttpResponseInit } from '@azure/functions';
import { RouteNotFoundError } from '../lib/errors';
import { json, route } from './shared/route';

const CONSOLE_DIR = path.resolve(__dirname, '..', '..', 'console');
const FILES: Record<string, string> = {
  '': 'text/html; charset=utf-8',
  'index.html': 'text/html; charset=utf-8',
  'app.js': 'text/javascript; charset=utf-8',
  'app.css': 'text/css; charset=utf-8',
};

/** Read once per process: the files change only with a deployment. */
const cache = new Map<string, Buffer>();
function read(file: string): Buffer {
  let body = cache.get(file);
  if (!body) cache.set(file, (body = fs.readFileSync(path.join(CONSOLE_DIR, file))));
  return body;
}

function securityHeaders(authorityOrigin: string | undefined): Record<string, string> {
  return {
    // Scripts and styles from this origin only; the API next door, and Entra's token endpoint
    // when the console signs in with Entra (the PKCE code redemption is a fetch from the page).
    'content-security-policy': [
      "default-src 'none'",
      "script-src 'self'",
      "style-src 'self'",
      "img-src 'self' data:",
      `connect-src 'self'${authorityOrigin ? ` ${authorityOrigin}` : ''}`,
      "form-action 'self'",
      "base-uri 'none'",
      "frame-ancestors 'none'",
    ].join('; '),
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    'cache-control': 'no-cache',
  };
}

route('console', {
  methods: ['GET'],
  route: 'console/{*path}',
  access: 'anonymous',
  usesStorage: false,
  handler: ({ req, services }): Promise<HttpResponseInit> => {
    const { config } = services;
    const file = req.params.path ?? '';
    const url = new URL(req.url);
    // Relative asset URLs need the trailing slash: /api/console → /api/console/.
    if (file === '' && !url.pathname.endsWith('/')) {
      return Promise.resolve({ status: 308, headers: { location: `${url.pathname}/${url.search}` } });
    }
    const entra =
      config.auth.mode === 'entra' && config.console.clientId && config.console.authority && config.console.apiScope
        ? { clientId: config.console.clientId, authority: config.console.authority, apiScope: config.console.apiScope }
        : undefined;
    const headers = securityHeaders(entra ? new URL(entra.authority).origin : undefined);
    if (file === 'config.json') {
      // Public values only: the client id, authority and scope are in every sign-in URL anyway.
      return Promise.resolve(json(200, { mode: config.mode, auth: config.auth.mode, entra }, headers));
    }
    const type = FILES[file];
    if (!type) throw new RouteNotFoundError(`The console has no file ${file}.`);
    return Promise.resolve({
      status: 200,
      headers: { 'content-type': type, ...headers },
      body: read(file === '' ? 'index.html' : file),
    });
  },
});
