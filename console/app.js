// relay-broker web console: plain browser JavaScript, no framework and no build step. Every data
// call goes to the API next door (/api/...) with the signed-in user's bearer token; the page holds
// no secret of its own. Pages poll every few seconds and update rows in place, so focus and
// screen-reader position survive a refresh; changes are announced in the aria-live region.
'use strict';

(() => {
  const API = new URL('..', location.href).href.replace(/\/$/, ''); // /api/console/ → /api
  const POLL_MS = 3000;
  const TOKEN_KEY = 'relay-broker.token';
  const PKCE_KEY = 'relay-broker.pkce';
  const PAGES = ['devices', 'sessions', 'pool', 'audit'];
  const $ = (sel) => document.querySelector(sel);

  let config = { auth: 'local' };
  let timer;
  let auditSource; // 'audit' once GET /audit answered, 'sessions' when it does not exist
  const recentlyEnded = new Map(); // sessionId → ended view, shown for a while after End
  let lastSessionIds;

  // --- tokens --------------------------------------------------------------------------------

  const token = () => sessionStorage.getItem(TOKEN_KEY);
  const claims = (t) => {
    try {
      const part = t.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      return JSON.parse(atob(part));
    } catch {
      return {};
    }
  };
  const b64url = (bytes) =>
    btoa(String.fromCharCode(...new Uint8Array(bytes)))
      .replace(/\+/g, '-')
      .replace(/\//g, '_')
      .replace(/=+$/, '');
  const randomText = () => b64url(crypto.getRandomValues(new Uint8Array(32)));

  // Entra sign-in: the authorization code flow with PKCE for single-page applications (what
  // MSAL.js does), written out so the page needs no library. The redirect URI is this page.
  async function entraSignIn() {
    const { clientId, authority, apiScope } = config.entra;
    const verifier = randomText();
    const state = randomText();
    const challenge = b64url(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier)));
    sessionStorage.setItem(PKCE_KEY, JSON.stringify({ verifier, state }));
    const q = new URLSearchParams({
      client_id: clientId,
      response_type: 'code',
      redirect_uri: redirectUri(),
      response_mode: 'query',
      scope: `${apiScope} openid profile`,
      code_challenge: challenge,
      code_challenge_method: 'S256',
      state,
    });
    location.assign(`${authority}/oauth2/v2.0/authorize?${q}`);
  }

  const redirectUri = () => `${location.origin}${location.pathname}`;

  async function completeEntraSignIn() {
    const params = new URLSearchParams(location.search);
    if (!params.has('code') && !params.has('error')) return;
    history.replaceState(null, '', redirectUri() + location.hash);
    const saved = JSON.parse(sessionStorage.getItem(PKCE_KEY) || 'null');
    sessionStorage.removeItem(PKCE_KEY);
    if (params.has('error'))
      throw new Error(`Sign-in failed: ${params.get('error_description') || params.get('error')}`);
    if (!saved || saved.state !== params.get('state'))
      throw new Error('Sign-in failed: the answer does not match the request.');
    const { clientId, authority, apiScope } = config.entra;
    const res = await fetch(`${authority}/oauth2/v2.0/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        client_id: clientId,
        grant_type: 'authorization_code',
        code: params.get('code'),
        redirect_uri: redirectUri(),
        code_verifier: saved.verifier,
        scope: `${apiScope} openid profile`,
      }),
    });
    const body = await res.json();
    if (!res.ok || !body.access_token) throw new Error(`Sign-in failed: ${body.error_description || res.status}`);
    sessionStorage.setItem(TOKEN_KEY, body.access_token);
  }

  // --- API -----------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, problem) {
      super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
      this.status = status;
      this.code = problem && problem.code;
    }
  }

  async function api(method, path, body) {
    const headers = { authorization: `Bearer ${token()}` };
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(`${API}${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
    });
    const text = await res.text();
    const data = text ? JSON.parse(text) : undefined;
    if (res.status === 401) {
      signOut('Your sign-in has expired or was refused; sign in again.');
      throw new ApiError(401, data);
    }
    if (!res.ok) throw new ApiError(res.status, data);
    return data;
  }

  // --- rendering helpers -----------------------------------------------------------------------

  const announce = (text) => {
    const live = $('#live');
    live.textContent = '';
    // A fresh text node after a tick, so a repeated message is announced again.
    setTimeout(() => (live.textContent = text), 50);
  };
  const showError = (err) => ($('#error').textContent = err ? String(err.message || err) : '');
  const when = (iso) => (iso ? new Date(iso).toLocaleString() : '—');
  const ago = (iso) => {
    if (!iso) return '—';
    const s = Math.max(0, Math.round((Date.now() - new Date(iso).getTime()) / 1000));
    return s < 90 ? `${s} s ago` : s < 5400 ? `${Math.round(s / 60)} min ago` : `${Math.round(s / 3600)} h ago`;
  };
  const el = (tag, attrs = {}, ...children) => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
      else if (v !== undefined && v !== false) node.setAttribute(k, v === true ? '' : v);
    }
    for (const c of children) node.append(c);
    return node;
  };
  const stamp = (id) => {
    const t = $(id);
    const now = new Date();
    t.dateTime = now.toISOString();
    t.textContent = now.toLocaleTimeString();
  };

  /**
   * Keeps one row per key: rows are created once (with their buttons), their text cells updated
   * in place, and rows whose key disappeared removed. Focus on a button in a kept row stays.
   */
  function syncRows(tbody, items, keyOf, cellsOf, actionsOf, emptyText) {
    const seen = new Set();
    const columns = tbody.closest('table').tHead.rows[0].cells.length;
    tbody.querySelector('tr.empty')?.remove();
    let previous = null;
    for (const item of items) {
      const key = keyOf(item);
      seen.add(key);
      let row = [...tbody.rows].find((r) => r.dataset.key === key);
      const cells = cellsOf(item);
      if (!row) {
        row = el('tr', { 'data-key': key });
        cells.forEach((_, i) => row.append(el(i === 0 ? 'th' : 'td', i === 0 ? { scope: 'row' } : {})));
        if (actionsOf) row.append(el('td', { class: 'actions' }));
      }
      const heads = tbody.closest('table').tHead.rows[0].cells;
      cells.forEach((text, i) => {
        if (row.cells[i].textContent !== String(text)) row.cells[i].textContent = String(text);
        // The column's name, shown before the value when a narrow window stacks the cells.
        row.cells[i].dataset.label = heads[i] ? heads[i].textContent : '';
      });
      if (actionsOf) actionsOf(item, row.cells[cells.length]);
      const expected = previous ? previous.nextSibling : tbody.firstChild;
      if (row !== expected) tbody.insertBefore(row, expected);
      previous = row;
    }
    for (const row of [...tbody.rows]) if (!seen.has(row.dataset.key)) row.remove();
    if (!items.length) tbody.append(el('tr', { class: 'empty' }, el('td', { colspan: String(columns) }, emptyText)));
    keepTableRoles(tbody.closest('table'));
  }

  /** Explicit table roles: a narrow window lays the cells out as blocks, which drops the implicit ones. */
  function keepTableRoles(table) {
    table.setAttribute('role', 'table');
    for (const group of table.querySelectorAll('thead, tbody')) group.setAttribute('role', 'rowgroup');
    for (const row of table.rows) {
      row.setAttribute('role', 'row');
      for (const cell of row.cells) {
        const role = cell.tagName === 'TD' ? 'cell' : cell.scope === 'row' ? 'rowheader' : 'columnheader';
        if (cell.getAttribute('role') !== role) cell.setAttribute('role', role);
      }
    }
  }

  const button = (label, accessibleName, onclick) =>
    el('button', { type: 'button', 'aria-label': accessibleName, onclick }, label);

  // --- pages ---------------------------------------------------------------------------------

  async function loadDevices() {
    const [{ devices }, { grants }] = await Promise.all([api('GET', '/devices'), api('GET', '/grants')]);
    const grantsOf = new Map();
    for (const g of grants) grantsOf.set(g.deviceId, [...(grantsOf.get(g.deviceId) || []), g.principalId]);
    syncRows(
      $('#devices-table tbody'),
      devices,
      (d) => d.deviceId,
      (d) => [
        d.displayName ? `${d.deviceId} (${d.displayName})` : d.deviceId,
        d.presence === 'online' || d.online === true
          ? 'online'
          : d.presence === 'offline' || d.presence === 'never' || d.online === false
            ? 'offline'
            : 'unknown',
        d.lastSeenAt ? ago(d.lastSeenAt) : '—',
        (grantsOf.get(d.deviceId) || []).join(', ') || 'admins only',
        when(d.enrollmentExpiresAt),
      ],
      (d, cell) => {
        if (cell.childElementCount) return;
        cell.append(
          button('Grant…', `Grant an operator access to ${d.deviceId}`, () => grant(d.deviceId)),
          button('Revoke…', `Revoke an operator's access to ${d.deviceId}`, () => revoke(d.deviceId)),
          button('Rotate', `Rotate the enrollment of ${d.deviceId}`, () => rotate(d.deviceId)),
          button('Remove', `Remove device ${d.deviceId}`, () => removeDevice(d.deviceId)),
        );
      },
      'No devices yet. Register one with relay-broker devices add <id>.',
    );
    stamp('#devices-updated');
  }

  async function grant(deviceId) {
    const principalId = prompt(`Principal id (object id) to grant access to ${deviceId}:`);
    if (!principalId) return;
    await act(
      () => api('PUT', `/grants/${encodeURIComponent(principalId)}/${encodeURIComponent(deviceId)}`, {}),
      `Granted ${principalId} access to ${deviceId}.`,
    );
  }

  async function revoke(deviceId) {
    const principalId = prompt(`Principal id whose access to ${deviceId} to revoke:`);
    if (!principalId) return;
    await act(
      () => api('DELETE', `/grants/${encodeURIComponent(principalId)}/${encodeURIComponent(deviceId)}`),
      `Revoked ${principalId}'s access to ${deviceId}.`,
    );
  }

  async function rotate(deviceId) {
    if (!confirm(`Rotate the enrollment of ${deviceId}? The device's current enrollment stops working.`)) return;
    await act(async () => {
      const enrollment = await api('POST', `/devices/${encodeURIComponent(deviceId)}/rotate`);
      // The new enrollment is for the device: handed over as a file, never shown on the page.
      const link = el('a', {
        href: URL.createObjectURL(new Blob([JSON.stringify(enrollment, null, 2)], { type: 'application/json' })),
        download: `${deviceId}.json`,
      });
      document.body.append(link);
      link.click();
      link.remove();
    }, `Enrollment of ${deviceId} rotated; the new one was downloaded as ${deviceId}.json.`);
  }

  async function removeDevice(deviceId) {
    if (!confirm(`Remove device ${deviceId}? Its open sessions end.`)) return;
    await act(() => api('DELETE', `/devices/${encodeURIComponent(deviceId)}`), `Device ${deviceId} removed.`);
  }

  async function act(fn, done) {
    try {
      showError();
      await fn();
      announce(done);
      await refresh();
    } catch (err) {
      showError(err);
    }
  }

  async function loadSessions() {
    const [ready, pending] = await Promise.all([
      api('GET', '/sessions?status=ready&limit=500'),
      api('GET', '/sessions?status=pending&limit=500'),
    ]);
    const live = [...pending.sessions, ...ready.sessions].sort((a, b) => (a.createdAt < b.createdAt ? 1 : -1));
    const ids = new Set(live.map((s) => s.sessionId));
    if (lastSessionIds) {
      const opened = live.filter((s) => !lastSessionIds.has(s.sessionId));
      const gone = [...lastSessionIds].filter((id) => !ids.has(id));
      const parts = [];
      if (opened.length) parts.push(`${opened.length} session(s) opened`);
      if (gone.length) parts.push(`${gone.length} session(s) ended`);
      if (parts.length) announce(parts.join(', ') + '.');
    }
    lastSessionIds = ids;
    // Sessions ended from here stay listed, marked ended, until the next page change.
    for (const [id, s] of recentlyEnded) {
      if (ids.has(id)) continue;
      if (s.status !== 'ended' && s.status !== 'failed') {
        const now = await api('GET', `/sessions/${encodeURIComponent(id)}`).catch(() => undefined);
        if (now) recentlyEnded.set(id, now);
      }
    }
    const rows = [...live, ...[...recentlyEnded.values()].filter((s) => !ids.has(s.sessionId))];
    syncRows(
      $('#sessions-table tbody'),
      rows,
      (s) => s.sessionId,
      (s) => [
        s.sessionId.slice(0, 8),
        s.openedBy || '—',
        s.deviceId,
        s.port,
        when(s.readyAt || s.createdAt),
        s.reason && s.status !== 'ready' ? `${s.status} (${s.reason})` : s.status,
        typeof s.bytesToDevice === 'number' || typeof s.bytesFromDevice === 'number'
          ? `${s.bytesToDevice ?? 0} ↓ / ${s.bytesFromDevice ?? 0} ↑`
          : typeof s.bytes === 'object' && s.bytes
            ? `${s.bytes.toDevice ?? s.bytes.sent ?? 0} ↓ / ${s.bytes.fromDevice ?? s.bytes.received ?? 0} ↑`
            : typeof s.bytes === 'number'
              ? String(s.bytes)
              : '—',
      ],
      (s, cell) => {
        const ended = s.status === 'ended' || s.status === 'failed';
        if (ended) {
          cell.querySelector('button')?.remove();
          return;
        }
        if (cell.childElementCount) return;
        cell.append(button('End', `End session ${s.sessionId.slice(0, 8)} to ${s.deviceId}`, () => endSession(s)));
      },
      'No live sessions.',
    );
    stamp('#sessions-updated');
  }

  async function endSession(s) {
    if (!confirm(`End the session to ${s.deviceId} port ${s.port}? Its connections drop.`)) return;
    recentlyEnded.set(s.sessionId, { ...s, status: 'ending' });
    await act(
      () => api('DELETE', `/sessions/${encodeURIComponent(s.sessionId)}`),
      `Ending session ${s.sessionId.slice(0, 8)}.`,
    );
  }

  async function loadPool() {
    const p = await api('GET', '/pool');
    const states = Object.keys(p.byState);
    $('#pool-summary').replaceChildren(
      el(
        'p',
        {},
        `Pool “${p.pool}”: ${p.total} namespace(s). `,
        states.map((s) => `${s} ${p.byState[s]}`).join(', '),
        '.',
      ),
    );
    const head = $('#pool-table thead tr');
    if (!head.childElementCount)
      head.append(
        el('th', { scope: 'col' }, 'Subscription'),
        ...states.map((s) => el('th', { scope: 'col' }, s)),
        el('th', { scope: 'col' }, 'total'),
      );
    syncRows(
      $('#pool-table tbody'),
      p.bySubscription,
      (s) => s.subscriptionId,
      (s) => [
        `${s.subscriptionId}${s.resourceGroup ? ` / ${s.resourceGroup}` : ''}${s.quota ? ` (quota ${s.quota})` : ''}`,
        ...states.map((st) => s.byState[st] ?? 0),
        s.total,
      ],
      undefined,
      'No subscriptions configured.',
    );
    const t = p.target;
    $('#pool-target').replaceChildren(
      el(
        'p',
        {},
        `Target ${t.value} usable namespaces (now ${t.usable}); would create ${t.wouldCreate}, delete ${t.wouldDelete}.`,
      ),
      el('ul', {}, ...t.reasons.map((r) => el('li', {}, r))),
    );
    const run = p.lastRun;
    const m = p.maintenance || {};
    $('#pool-run').replaceChildren(
      run
        ? el(
            'dl',
            {},
            el('dt', {}, 'Outcome'),
            el('dd', { class: `outcome-${run.outcome}` }, run.outcome),
            el('dt', {}, 'Finished'),
            el('dd', {}, `${when(run.finishedAt)} (${Math.round(run.durationMs / 100) / 10} s)`),
            el('dt', {}, 'Steps'),
            el(
              'dd',
              {},
              Object.entries(run.steps)
                .map(
                  ([k, v]) =>
                    `${k}: ${Object.entries(v)
                      .map(([r, n]) => `${r} ${n}`)
                      .join(', ')}`,
                )
                .join('; ') || 'none',
            ),
            el('dt', {}, 'Errors'),
            el('dd', {}, run.errors.length ? run.errors.join('; ') : 'none'),
            el('dt', {}, 'Subscriptions found full'),
            el('dd', {}, Object.keys(run.fullSubscriptions).join(', ') || 'none'),
          )
        : el('p', {}, 'No maintenance run recorded yet.'),
      el(
        'p',
        {},
        `Maintenance now: ${m.running ? 'running' : 'idle'}${m.runtimeStatus ? ` (${m.runtimeStatus})` : ''}.`,
      ),
    );
    stamp('#pool-updated');
  }

  let auditRows = [];
  let auditColumns = [];

  async function loadAudit() {
    const form = new FormData($('#audit-filter'));
    const q = new URLSearchParams();
    for (const [k, v] of form) if (v) q.set(k, String(v));
    q.set('limit', '200');
    let items;
    if (auditSource !== 'sessions') {
      try {
        const body = await api('GET', `/audit?${q}`);
        items = body.events || body.entries || body.items || body.audit || [];
        auditSource = 'audit';
      } catch (err) {
        if (!(err instanceof ApiError) || err.status !== 404) throw err;
        auditSource = 'sessions';
      }
    }
    if (auditSource === 'sessions') {
      // Session records know a status, not an outcome: the same filter under its name there.
      if (q.has('outcome')) q.set('status', q.get('outcome'));
      q.delete('outcome');
      items = (await api('GET', `/sessions?${q}`)).sessions;
    }
    $('#audit-source').textContent = auditSource === 'audit' ? 'GET /audit' : 'session records (GET /sessions)';
    auditColumns =
      auditSource === 'sessions'
        ? ['createdAt', 'sessionId', 'deviceId', 'port', 'openedBy', 'status', 'reason', 'endedAt']
        : [...new Set(items.flatMap((i) => Object.keys(i)))].slice(0, 9);
    const head = $('#audit-table thead tr');
    if (head.dataset.columns !== auditColumns.join()) {
      head.replaceChildren(...auditColumns.map((c) => el('th', { scope: 'col' }, c)));
      head.dataset.columns = auditColumns.join();
      $('#audit-table tbody').replaceChildren();
    }
    auditRows = items;
    syncRows(
      $('#audit-table tbody'),
      items,
      // A session has two audit rows (`session.end` by whoever ended it, `session` once it is over):
      // keyed by the session id they were one row, the later overwriting the other's cells.
      (i) => (auditSource === 'sessions' ? String(i.sessionId) : String(i.id ?? JSON.stringify(i))),
      (i) => auditColumns.map((c) => auditText(i[c]) || '—'),
      undefined,
      'Nothing recorded for this filter.',
    );
    stamp('#audit-updated');
  }

  /** A cell's text: an audit row's details (reason, endedBy, bytes, cost…) as `key value` pairs. */
  function auditText(v) {
    if (v === undefined || v === null) return '';
    if (typeof v === 'object')
      return Object.entries(v)
        .map(([k, x]) => `${k} ${x}`)
        .join(', ');
    return String(v);
  }

  function exportAudit() {
    const cell = (v) => {
      const s = auditText(v);
      // Quote everything; a leading =, +, - or @ is defused so a spreadsheet does not run it.
      return `"${(/^[=+\-@]/.test(s) ? `'${s}` : s).replace(/"/g, '""')}"`;
    };
    const csv = [
      auditColumns.map(cell).join(','),
      ...auditRows.map((r) => auditColumns.map((c) => cell(r[c])).join(',')),
    ].join('\r\n');
    const link = el('a', {
      href: URL.createObjectURL(new Blob([csv], { type: 'text/csv' })),
      download: 'relay-broker-audit.csv',
    });
    document.body.append(link);
    link.click();
    link.remove();
  }

  const LOADERS = { devices: loadDevices, sessions: loadSessions, pool: loadPool, audit: loadAudit };

  // --- shell ---------------------------------------------------------------------------------

  const currentPage = () => {
    const p = location.hash.slice(1);
    return PAGES.includes(p) ? p : 'devices';
  };

  async function refresh() {
    if (!token()) return;
    try {
      await LOADERS[currentPage()]();
      showError();
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 401)) showError(err);
    }
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      if (document.visibilityState === 'visible') await refresh();
      if (token()) schedule();
    }, POLL_MS);
  }

  async function showPage(focus) {
    const page = currentPage();
    for (const p of PAGES) $(`#page-${p}`).hidden = p !== page;
    for (const a of document.querySelectorAll('nav a')) {
      if (a.getAttribute('href') === `#${page}`) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    document.title = `${page[0].toUpperCase()}${page.slice(1)} · relay-broker console`;
    if (page !== 'sessions') recentlyEnded.clear();
    lastSessionIds = undefined;
    if (focus) $(`#${page}-title`).focus();
    await refresh();
    schedule();
  }

  function signedIn() {
    const c = claims(token());
    $('#signin').hidden = true;
    $('#nav').hidden = false;
    $('#who').hidden = false;
    $('#who-name').textContent =
      `Signed in as ${c.name || c.preferred_username || c.sub || 'unknown'}${Array.isArray(c.roles) ? ` (${c.roles.join(', ')})` : ''}`;
    void showPage(false);
  }

  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    clearTimeout(timer);
    for (const p of PAGES) $(`#page-${p}`).hidden = true;
    $('#nav').hidden = true;
    $('#who').hidden = true;
    $('#signin').hidden = false;
    $('#signin-entra').hidden = !config.entra;
    // Pasting a token works in every mode (the API validates it); local mode has no other way.
    $('#signin-token').hidden = false;
    if (config.auth !== 'local')
      $('#signin-token-help').textContent =
        'Or paste an access token for the API (for example from az account get-access-token --scope <API scope>). It is kept in this tab only.';
    $('#signin-error').textContent = message || '';
    $('#signin-title').focus();
  }

  async function start() {
    for (const h of document.querySelectorAll('h2')) h.tabIndex = -1;
    try {
      config = await (await fetch('config.json', { cache: 'no-store' })).json();
      if (config.entra) await completeEntraSignIn();
    } catch (err) {
      $('#signin-error').textContent = String(err.message || err);
    }
    $('#signin-entra-button').addEventListener('click', () => void entraSignIn());
    $('#signin-token').addEventListener('submit', async (e) => {
      e.preventDefault();
      const value = $('#token')
        .value.trim()
        .replace(/^Bearer\s+/i, '');
      sessionStorage.setItem(TOKEN_KEY, value);
      $('#token').value = '';
      try {
        await api('GET', '/devices');
        signedIn();
      } catch (err) {
        if (!(err instanceof ApiError && err.status === 401)) signOut(String(err.message || err));
      }
    });
    $('#sign-out').addEventListener('click', () => signOut('Signed out.'));
    $('#audit-filter').addEventListener('submit', (e) => {
      e.preventDefault();
      $('#audit-table tbody').replaceChildren();
      void refresh();
    });
    $('#audit-export').addEventListener('click', exportAudit);
    window.addEventListener('hashchange', () => void showPage(true));
    if (token()) signedIn();
    else signOut($('#signin-error').textContent);
  }

  void start();
})();
