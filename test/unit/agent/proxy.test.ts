// Which proxy applies to which URL, and that a proxy's password never reaches printable text.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CliError } from '../../../agent/errors';
import { azureProxyOptions, proxyAgentFor, proxyFor, redactProxyUrl, resolveProxySettings } from '../../../agent/proxy';

describe('proxy settings', () => {
  it('--proxy wins over the environment', () => {
    const s = resolveProxySettings('http://flag:3128', { HTTPS_PROXY: 'http://env:8080' });
    assert.equal(s?.source, '--proxy');
    assert.equal(s?.url.host, 'flag:3128');
  });
  it('the environment is read as the Azure SDK reads it: HTTPS_PROXY, then ALL_PROXY, then HTTP_PROXY, any case', () => {
    assert.equal(
      resolveProxySettings(undefined, { HTTP_PROXY: 'http://h:1', ALL_PROXY: 'http://a:1' })?.source,
      'ALL_PROXY',
    );
    assert.equal(
      resolveProxySettings(undefined, { https_proxy: 'http://s:1', HTTP_PROXY: 'http://h:1' })?.url.hostname,
      's',
    );
    assert.equal(resolveProxySettings(undefined, { HTTP_PROXY: 'h:3128' })?.url.href, 'http://h:3128/');
    assert.equal(resolveProxySettings(undefined, {}), undefined);
  });
  it('NO_PROXY exempts exact hosts and .domain suffixes, for every channel', () => {
    const s = resolveProxySettings('http://p:3128', { NO_PROXY: 'localhost, .corp.example,10.0.0.5' });
    assert.equal(proxyFor(s, 'http://localhost:7071/api'), undefined);
    assert.equal(proxyFor(s, 'https://api.corp.example/x'), undefined);
    assert.equal(proxyFor(s, 'https://corp.example/x'), undefined);
    assert.equal(proxyFor(s, 'wss://10.0.0.5/$hc/x'), undefined);
    assert.equal(proxyFor(s, 'wss://ns.servicebus.windows.net/$hc/x')?.host, 'p:3128');
    assert.equal(proxyFor(s, 'https://notcorp.example/x')?.host, 'p:3128');
    assert.equal(proxyAgentFor(s, 'https://localhost/'), undefined);
    assert.ok(proxyAgentFor(s, 'wss://ns.servicebus.windows.net/'));
  });
  it('the queue client gets the proxy with decoded credentials', () => {
    const s = resolveProxySettings('http://us%40er:p%3Ass@p:3128', {});
    assert.deepEqual(azureProxyOptions(s, 'https://acct.queue.core.windows.net/dev-x'), {
      host: 'http://p',
      port: 3128,
      username: 'us@er',
      password: 'p:ss',
    });
    assert.equal(azureProxyOptions(undefined, 'https://acct.queue.core.windows.net/dev-x'), undefined);
  });
  it('a printed proxy hides its password', () => {
    const s = resolveProxySettings('http://me:s3cret@p:3128', {});
    assert.equal(redactProxyUrl(s!.url), 'http://me:***@p:3128');
    assert.ok(!redactProxyUrl(s!.url).includes('s3cret'));
  });
  it('a socks or malformed proxy is a clear error that does not echo the value', () => {
    assert.throws(
      () => resolveProxySettings('socks5://u:topsecret@p:1080', {}),
      (e: unknown) => {
        assert.ok(e instanceof CliError);
        assert.match(e.message, /only HTTP proxies/);
        assert.ok(!e.message.includes('topsecret'));
        return true;
      },
    );
    assert.throws(() => resolveProxySettings(undefined, { HTTPS_PROXY: 'http://[bad' }), /not a URL/);
  });
});
