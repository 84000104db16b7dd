import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig, SETTINGS } from '../../lib/config';
import { ConfigError } from '../../lib/errors';

const localEnv = {
  RELAY_BROKER_MODE: 'local',
  AUTH_MODE: 'local',
  AzureWebJobsStorage: 'UseDevelopmentStorage=true',
  AUTH_ISSUER: 'http://127.0.0.1:1/local',
  AUTH_AUDIENCE: 'relay-broker',
  AUTH_JWKS_URL: 'http://127.0.0.1:1/keys',
};

describe('config', () => {
  it('loads the local defaults', () => {
    const c = loadConfig(localEnv);
    assert.equal(c.mode, 'local');
    assert.equal(c.storage.accountName, 'devstoreaccount1');
    assert.equal(c.sessions.openBudgetMs, 8000);
    assert.equal(c.pool.subscriptions.length, 1);
    assert.ok(Object.isFrozen(c.pool));
  });

  const bad: Array<[string, Record<string, string>, string]> = [
    ['an integer setting that is not a number', { POOL_FLOOR: 'five' }, 'POOL_FLOOR'],
    ['a negative floor', { POOL_FLOOR: '-1' }, 'POOL_FLOOR'],
    ['a floor above the cap', { POOL_FLOOR: '10', POOL_CAP: '5' }, 'POOL_FLOOR'],
    ['subscriptions that are not JSON', { POOL_SUBSCRIPTIONS: '[{' }, 'POOL_SUBSCRIPTIONS'],
    [
      'subscriptions with an unknown field',
      { POOL_SUBSCRIPTIONS: '[{"subscriptionId":"s","resourceGroup":"g","location":"l","x":1}]' },
      'POOL_SUBSCRIPTIONS',
    ],
    ['an hour profile of 23 hours', { POOL_HOUR_PROFILE: JSON.stringify(new Array(23).fill(1)) }, 'POOL_HOUR_PROFILE'],
    ['an unknown mode', { RELAY_BROKER_MODE: 'cloud' }, 'RELAY_BROKER_MODE'],
    ['entra auth without an issuer', { AUTH_MODE: 'entra', AUTH_ISSUER: '' }, 'AUTH_ISSUER'],
    ['a non-URL public API', { PUBLIC_API_URL: 'not a url' }, 'PUBLIC_API_URL'],
  ];
  for (const [what, overrides, setting] of bad) {
    it(`refuses ${what}, naming ${setting}`, () => {
      assert.throws(
        () => loadConfig({ ...localEnv, ...overrides }),
        (err: unknown) => {
          assert.ok(err instanceof ConfigError);
          assert.match(err.message, new RegExp(`\\b${setting}\\b`));
          return true;
        },
      );
    });
  }

  it('never echoes a secret value in its message', () => {
    assert.throws(
      () =>
        loadConfig({
          ...localEnv,
          AzureWebJobsStorage: undefined as unknown as string,
          AzureWebJobsStorage__accountName: 'acct',
        }),
      (err: unknown) => err instanceof ConfigError && /STORAGE_ACCOUNT_KEY/.test(err.message),
    );
  });

  it('refuses an unresolved Key Vault reference, naming the setting', () => {
    assert.throws(
      () =>
        loadConfig({
          ...localEnv,
          SEALING_KEY: '@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/sealing)',
        }),
      (err: unknown) =>
        err instanceof ConfigError && /SEALING_KEY: is an unresolved Key Vault reference/.test(err.message),
    );
  });

  it('requires the azure settings in azure mode', () => {
    assert.throws(
      () => loadConfig({ RELAY_BROKER_MODE: 'azure', AUTH_MODE: 'entra' }),
      /AzureWebJobsStorage__accountName[\s\S]*AUTH_ISSUER|AUTH_ISSUER/,
    );
  });

  const azureEnv = {
    RELAY_BROKER_MODE: 'azure',
    AUTH_MODE: 'entra',
    AzureWebJobsStorage__accountName: 'strbkhost',
    STORAGE_ACCOUNT_KEY: Buffer.alloc(64, 7).toString('base64'),
    SEALING_KEY: Buffer.alloc(32, 9).toString('base64'),
    PUBLIC_API_URL: 'https://app.example.net/api',
    POOL_SUBSCRIPTIONS: '[{"subscriptionId":"s","resourceGroup":"g","location":"l"}]',
    AUTH_ISSUER: 'https://login.example/t/v2.0',
    AUTH_AUDIENCE: 'api',
    AUTH_JWKS_URL: 'https://login.example/t/keys',
  };

  it('puts the device queues in the account DEVICE_QUEUE_ACCOUNT_NAME names, and signs their SAS for it', () => {
    const c = loadConfig({ ...azureEnv, DEVICE_QUEUE_ACCOUNT_NAME: 'stqrbkdevices' });
    assert.equal(c.storage.accountName, 'strbkhost');
    assert.equal(c.storage.tableEndpoint, 'https://strbkhost.table.core.windows.net');
    assert.equal(c.storage.queueAccountName, 'stqrbkdevices');
    assert.equal(c.storage.queueEndpoint, 'https://stqrbkdevices.queue.core.windows.net');
  });

  it('keeps the device queues in the host account when DEVICE_QUEUE_ACCOUNT_NAME is unset', () => {
    const c = loadConfig(azureEnv);
    assert.equal(c.storage.queueAccountName, 'strbkhost');
    assert.equal(c.storage.queueEndpoint, 'https://strbkhost.queue.core.windows.net');
  });

  it('refuses a device queue account other than the one a connection string names', () => {
    assert.throws(
      () => loadConfig({ ...localEnv, DEVICE_QUEUE_ACCOUNT_NAME: 'other' }),
      (err: unknown) => err instanceof ConfigError && /DEVICE_QUEUE_ACCOUNT_NAME/.test(err.message),
    );
    assert.equal(
      loadConfig({ ...localEnv, DEVICE_QUEUE_ACCOUNT_NAME: 'devstoreaccount1' }).storage.queueAccountName,
      'devstoreaccount1',
    );
  });

  it('documents every setting', () => {
    for (const [name, s] of Object.entries(SETTINGS)) assert.ok(s.doc.length > 10, name);
  });
});
