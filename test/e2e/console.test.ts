// The web console in a real browser: headless Debian chromium driven by playwright-core against the
// whole local stack. Sign in with a local token, see the device, see a session opened through the
// API, end it from the page with the keyboard, see it ended and the client's connection dropped.
// Skips when no chromium is installed, unless REQUIRE_BROWSER_TESTS=1 (CI). With
// CONSOLE_SCREENSHOTS=1 the screenshots of docs/console.md are written to docs/images/.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { connectHybridConnection } from '../../lib/relay/hybridConnection';
import { LocalRuntime, REPO_ROOT } from '../../local/runtime';
import { call } from '../support/http';
import { AgentHarness, startEchoServer, type Enrollment } from '../support/agentHarness';

/** Debian's binary (the /usr/bin/chromium wrapper adds flags of its own), or CHROMIUM_PATH. */
function findChromium(): string | undefined {
  const candidates = [
    process.env.CHROMIUM_PATH,
    '/usr/lib/chromium/chromium',
    '/usr/bin/chromium',
    '/usr/bin/chromium-browser',
  ];
  return candidates.find((p): p is string => Boolean(p) && fs.existsSync(p!));
}

const executablePath = findChromium();
const required = process.env.REQUIRE_BROWSER_TESTS === '1';
const skip = executablePath
  ? false
  : required
    ? false
    : 'chromium is not installed (apt-get install chromium), and REQUIRE_BROWSER_TESTS is not 1';

interface Opened {
  sessionId: string;
  relay: { endpoint: string; hybridConnection: string; sendToken: string };
}

describe('the web console in headless chromium', { skip }, () => {
  const rt = new LocalRuntime({ disableTimers: true, prefillNamespaces: 2, logSink: () => {} });
  let browser: Browser;
  let page: Page;
  let admin: string;
  let device: AgentHarness | undefined;
  /** The session ended on the sessions page, looked up on the audit page. */
  let sessionId = '';
  let echo: Awaited<ReturnType<typeof startEchoServer>>;
  const shotsDir =
    process.env.CONSOLE_SCREENSHOTS === '1'
      ? path.join(REPO_ROOT, 'docs', 'images')
      : fs.mkdtempSync(path.join(os.tmpdir(), 'console-shots-'));
  const shot = (name: string) => page.screenshot({ path: path.join(shotsDir, `console-${name}.png`), fullPage: true });

  before(async () => {
    assert.ok(executablePath, 'REQUIRE_BROWSER_TESTS=1 but no chromium was found (apt-get install chromium)');
    await rt.start();
    admin = await rt.token('admin');
    echo = await startEchoServer();
    browser = await chromium.launch({
      executablePath,
      headless: true,
      // Root in CI containers: chromium's sandbox needs user namespaces it may not have.
      args: ['--no-sandbox', '--disable-dev-shm-usage'],
    });
    page = await browser.newPage({ viewport: { width: 1100, height: 700 } });
    // Confirmation dialogs (End, Remove) are accepted, as a user would.
    page.on('dialog', (d) => void d.accept());
  });
  after(async () => {
    await browser?.close();
    await device?.stop();
    await echo?.close();
    await rt.close();
    if (process.env.CONSOLE_SCREENSHOTS !== '1') fs.rmSync(shotsDir, { recursive: true, force: true });
  });

  it('signs in with a local token, shows the device, and ends a live session from the page', async () => {
    const reg = await call<Enrollment>('POST', `${rt.apiUrl}/devices`, {
      token: admin,
      body: { deviceId: 'dev-console', displayName: 'Lab PC' },
    });
    assert.equal(reg.status, 201, reg.text);
    device = new AgentHarness(reg.body, { allowPorts: [echo.port], pollMs: 200, ca: rt.relay!.caCertPem }).start();

    await page.goto(`${rt.apiUrl}/console/`);
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
    await shot('signin');
    // A wrong token is refused with a message, and the page stays on sign-in.
    await page.getByLabel('Access token').fill('not-a-token');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page
      .getByRole('alert')
      .filter({ hasText: /sign in again/i })
      .waitFor();

    await page.getByLabel('Access token').fill(admin);
    await page.getByRole('button', { name: 'Sign in' }).click();
    const deviceRow = page.getByRole('row', { name: /dev-console \(Lab PC\)/ });
    await deviceRow.waitFor();
    // The product's agent heartbeats with its device credential: the page shows the device online.
    await deviceRow.filter({ hasText: 'online' }).waitFor();
    assert.match(await page.getByText(/Signed in as local-admin/).innerText(), /admin/);
    assert.equal(await page.getByRole('link', { name: 'Devices' }).getAttribute('aria-current'), 'page');
    await shot('devices');

    // A session opened through the API (what `relay-broker connect` does) carries bytes.
    const opened = await call<Opened>('POST', `${rt.apiUrl}/sessions`, {
      token: admin,
      body: { deviceId: 'dev-console', port: echo.port },
    });
    assert.equal(opened.status, 201, opened.text);
    const { relay } = opened.body;
    const stream = await connectHybridConnection(relay.endpoint, relay.hybridConnection, relay.sendToken, {
      ca: rt.relay!.caCertPem,
    });
    stream.on('error', () => undefined);
    stream.write(Buffer.from('ping'));
    await once(stream, 'data');
    const closed = once(stream, 'close');
    // What `relay-broker connect` reports of the bytes it carried (kept in the session's audit row).
    const beat = await call('POST', `${rt.apiUrl}/sessions/${opened.body.sessionId}/heartbeat`, {
      token: admin,
      body: { openConnections: 1, connections: 1, bytesToDevice: 4, bytesFromDevice: 4 },
    });
    assert.equal(beat.status, 200, beat.text);
    sessionId = opened.body.sessionId;

    // Keyboard: the Sessions link and the End button are reached and pressed without a mouse.
    await page.getByRole('link', { name: 'Sessions' }).focus();
    await page.keyboard.press('Enter');
    const sessionRow = page
      .getByRole('row')
      .filter({ hasText: 'dev-console' })
      .filter({ hasText: String(echo.port) });
    await sessionRow.filter({ hasText: 'ready' }).waitFor();
    assert.match(await sessionRow.innerText(), /local-admin/);
    await shot('sessions');

    const end = page.getByRole('button', { name: `End session ${opened.body.sessionId.slice(0, 8)} to dev-console` });
    await end.focus();
    await page.keyboard.press('Enter');
    // The client's connection drops (the hybrid connection is deleted), and the page shows the end.
    await closed;
    await sessionRow.filter({ hasText: /ended \(requested\)/ }).waitFor({ timeout: 20_000 });
    await page
      .locator('#live')
      .filter({ hasText: /ended|Ending/ })
      .waitFor();
    const shown = await call<{ status: string }>('GET', `${rt.apiUrl}/sessions/${opened.body.sessionId}`, {
      token: admin,
    });
    assert.equal(shown.body.status, 'ended');
    await shot('sessions-ended');
  });

  it('shows the pool by subscription and state with its target, and the audit trail', async () => {
    await page.getByRole('link', { name: 'Pool' }).click();
    const subRow = page.getByRole('row', { name: /00000000-0000-0000-0000-000000000000/ });
    await subRow.waitFor();
    assert.match(await page.locator('#pool-target').innerText(), /Target \d+ usable namespaces/);
    assert.match(await page.locator('#pool-run').innerText(), /No maintenance run recorded yet|Outcome/);
    await shot('pool');

    await page.getByRole('link', { name: 'Audit' }).click();
    // The End pressed on the sessions page is in the trail: who ended which session on which device;
    // and the session's own row once it is over: its end reason, who ended it, and its bytes.
    const ofSession = page.getByRole('row').filter({ hasText: sessionId });
    await ofSession.filter({ hasText: 'session.end' }).waitFor();
    const sessionAuditRow = ofSession.filter({ hasText: 'reason requested' }).filter({ hasText: 'bytesToDevice 4' });
    await sessionAuditRow.waitFor();
    const text = await sessionAuditRow.innerText();
    assert.match(text, /dev-console/);
    assert.match(text, /\bended\b/);
    assert.match(text, /endedBy local-admin/);
    assert.match(text, /bytesFromDevice 4/);
    await page.getByLabel('Outcome').selectOption('failed');
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.getByText('Nothing recorded for this filter.').waitFor();
    await page.getByLabel('Outcome').selectOption('');
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.getByRole('row').filter({ hasText: 'dev-console' }).first().waitFor();
    await shot('audit');
  });

  it('works in a narrow window: no horizontal scroll of the page itself', async () => {
    await page.setViewportSize({ width: 360, height: 740 });
    await page.getByRole('link', { name: 'Devices' }).click();
    await page.getByRole('row', { name: /dev-console/ }).waitFor();
    // A string, evaluated in the page: this project's TypeScript has no DOM types.
    const overflow = await page.evaluate<number>(
      'document.documentElement.scrollWidth - document.documentElement.clientWidth',
    );
    assert.ok(overflow <= 0, `the page scrolls sideways by ${overflow}px`);
    await shot('narrow');
  });

  it('removes a device from the page', async () => {
    await page.setViewportSize({ width: 1100, height: 700 });
    await page.getByRole('button', { name: 'Remove device dev-console' }).click();
    await page.getByText(/No devices yet/).waitFor();
    assert.equal((await call('GET', `${rt.apiUrl}/devices/dev-console`, { token: admin })).status, 404);
  });
});
