// Keeps infra/ honest against lib/config.ts by reading what the real Bicep compiler made of it: the
// committed infra/main.json (scripts/bicep.sh fails CI when it differs from main.bicep). Every
// setting Azure requires is deployed, nothing unknown is deployed, secrets are Key Vault references,
// the runtime is the supported Node LTS, and the device queues have a storage account of their own.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { SETTINGS } from '../../../lib/config';
import {
  appSettings,
  at,
  checkSettings,
  describeReport,
  isClean,
  isObject,
  moduleDeployment,
  moduleParam,
  moduleResources,
  pinnedBicepVersion,
  readTemplate,
  repoRoot,
} from './armTemplate';

const root = repoRoot();
const main = readTemplate(path.join(root, 'infra', 'main.json'));
const poolSubscription = readTemplate(path.join(root, 'infra', 'pool-subscription.json'));
const settings = appSettings(main);

const requiredNames = Object.entries(SETTINGS)
  .filter(([, s]) => s.azure === 'required')
  .map(([name]) => name);

/** The deployment (module) whose output an ARM expression reads, e.g. 'storage' for reference(...'storage'...). */
function referencedDeployments(expression: string): string[] {
  return [...expression.matchAll(/resourceId\('Microsoft\.Resources\/deployments', '([^']+)'\)/g)].map((m) => m[1]);
}

describe('the compiled templates', () => {
  it('were compiled by the Bicep CLI that scripts/bicep.sh pins', () => {
    const pinned = pinnedBicepVersion(root);
    for (const t of [main, poolSubscription]) {
      assert.equal(at(t, 'metadata', '_generator', 'name'), 'bicep');
      const version = at(t, 'metadata', '_generator', 'version');
      assert.ok(
        typeof version === 'string' && version.startsWith(`${pinned}.`),
        `compiled by ${JSON.stringify(version)}`,
      );
    }
  });
});

describe('infra app settings match lib/config.ts SETTINGS', () => {
  it('the appSettings module gets the settings object', () => {
    assert.ok(Object.keys(settings).length >= requiredNames.length, `only ${Object.keys(settings).length} settings`);
  });

  it('every setting marked azure: required is deployed, and every deployed setting is known', () => {
    const report = checkSettings(Object.keys(settings), SETTINGS);
    assert.ok(isClean(report), describeReport(report));
  });

  it('removing any one required setting makes the check fail and name it', () => {
    assert.ok(requiredNames.length > 0);
    for (const name of requiredNames) {
      assert.ok(name in settings, `${name} is not deployed`);
      const report = checkSettings(
        Object.keys(settings).filter((n) => n !== name),
        SETTINGS,
      );
      assert.deepEqual(report.missingRequired, [name]);
      assert.ok(!isClean(report));
      assert.match(describeReport(report), new RegExp(`missing from infra: ${name}$`, 'm'));
    }
  });

  it('a setting unknown to lib/config.ts makes the check fail and name it', () => {
    const report = checkSettings([...Object.keys(settings), 'POOL_CAPP'], SETTINGS);
    assert.deepEqual(report.unknown, ['POOL_CAPP']);
    assert.match(describeReport(report), /unknown to lib\/config.ts SETTINGS: POOL_CAPP/);
  });

  it('a local-only setting deployed to Azure makes the check fail', () => {
    const report = checkSettings([...Object.keys(settings), 'RELAY_ARM_CA_FILE'], SETTINGS);
    assert.deepEqual(report.localOnly, ['RELAY_ARM_CA_FILE']);
    assert.ok(!isClean(report));
  });

  it('no secret in app settings: no AzureWebJobsStorage connection string, secrets only as Key Vault references', () => {
    assert.ok(
      !('AzureWebJobsStorage' in settings),
      'AzureWebJobsStorage (a keyed connection string) must not be deployed',
    );
    // lib/config.ts documents its secrets as "A Key Vault reference in Azure."
    const secretNames = Object.entries(SETTINGS)
      .filter(([, s]) => s.doc.includes('Key Vault reference'))
      .map(([name]) => name);
    assert.ok(secretNames.includes('STORAGE_ACCOUNT_KEY') && secretNames.includes('SEALING_KEY'));
    for (const name of secretNames) {
      assert.match(
        settings[name] ?? '',
        /^\[format\('@Microsoft\.KeyVault\(SecretUri=\{0\}\)', reference\(resourceId\('Microsoft\.Resources\/deployments', 'keyVault'\)/,
        `${name} must be a Key Vault reference`,
      );
    }
    for (const [name, value] of Object.entries(settings)) {
      assert.doesNotMatch(value, /AccountKey=|listKeys\(|parameters\('sealingKey'\)/, `${name} carries a secret value`);
    }
  });

  it('the only listKeys in the template is the Key Vault secret (the key never leaves that module)', () => {
    const text = JSON.stringify(main);
    const count = text.split('listKeys(').length - 1;
    assert.equal(count, 1, `listKeys( appears ${count} times`);
    const secrets = moduleResources(main, 'keyVault', 'Microsoft.KeyVault/vaults/secrets');
    assert.ok(secrets.some((s) => JSON.stringify(s).includes('listKeys(')));
  });
});

describe('the runtime', () => {
  it('Flex Consumption takes runtime from functionAppConfig, not from app settings', () => {
    assert.ok(!('FUNCTIONS_WORKER_RUNTIME' in settings) && !('FUNCTIONS_EXTENSION_VERSION' in settings));
    const [site] = moduleResources(main, 'functionApp', 'Microsoft.Web/sites');
    assert.equal(at(site, 'properties', 'functionAppConfig', 'runtime', 'name'), 'node');
    assert.equal(at(site, 'properties', 'functionAppConfig', 'runtime', 'version'), "[parameters('nodeVersion')]");
    assert.equal(moduleParam(main, 'functionApp', 'nodeVersion'), "[parameters('nodeVersion')]");
  });

  it('defaults to Node 22 and no longer offers Node 20 (end of support 30 Apr 2026)', () => {
    const param = at(main, 'parameters', 'nodeVersion');
    assert.equal(at(param, 'defaultValue'), '22');
    const allowed = at(param, 'allowedValues');
    assert.ok(Array.isArray(allowed) && !allowed.includes('20') && allowed.includes('22'), JSON.stringify(allowed));
  });
});

describe('device queues in a storage account of their own', () => {
  it('the device queue settings and the signing key point at the device queue account, the host at its own', () => {
    assert.deepEqual(referencedDeployments(settings.DEVICE_QUEUE_ACCOUNT_NAME ?? ''), ['deviceQueueStorage']);
    assert.deepEqual(referencedDeployments(settings.STORAGE_QUEUE_ENDPOINT ?? ''), ['deviceQueueStorage']);
    assert.match(settings.STORAGE_QUEUE_ENDPOINT ?? '', /^\[format\('https:\/\/\{0\}\.queue\.\{1\}'/);
    assert.deepEqual(referencedDeployments(settings.AzureWebJobsStorage__accountName ?? ''), ['storage']);
    assert.deepEqual(referencedDeployments(settings.STORAGE_TABLE_ENDPOINT ?? ''), ['storage']);
    const keySource = moduleParam(main, 'keyVault', 'storageAccountName');
    assert.ok(typeof keySource === 'string');
    assert.deepEqual(referencedDeployments(keySource), ['deviceQueueStorage']);
  });

  it('two distinct accounts: shared key only on the device queue account (its key signs device SAS)', () => {
    const [host] = moduleResources(main, 'storage', 'Microsoft.Storage/storageAccounts');
    const [devices] = moduleResources(main, 'deviceQueueStorage', 'Microsoft.Storage/storageAccounts');
    assert.equal(at(host, 'properties', 'allowSharedKeyAccess'), false);
    assert.equal(at(devices, 'properties', 'allowSharedKeyAccess'), true);
    const hostName = moduleParam(main, 'storage', 'name');
    const devicesName = moduleParam(main, 'deviceQueueStorage', 'name');
    assert.ok(typeof hostName === 'string' && typeof devicesName === 'string');
    assert.notEqual(hostName, devicesName);
    assert.ok(isObject(moduleDeployment(main, 'deviceQueueStorage')));
  });
});

describe('infra parameters line up', () => {
  it('every parameter in main.parameters.json is a param of main.bicep, and every param without a default is given', () => {
    const json: unknown = JSON.parse(fs.readFileSync(path.join(root, 'infra', 'main.parameters.json'), 'utf8'));
    assert.ok(typeof json === 'object' && json !== null && 'parameters' in json);
    const given = Object.keys((json as { parameters: Record<string, unknown> }).parameters);
    const params = at(main, 'parameters');
    assert.ok(isObject(params));
    assert.deepEqual(
      given.filter((g) => !(g in params)),
      [],
      'parameters file names params main.bicep does not declare',
    );
    const withoutDefault = Object.entries(params)
      .filter(([, p]) => isObject(p) && !('defaultValue' in p))
      .map(([name]) => name);
    assert.ok(withoutDefault.length > 0);
    assert.deepEqual(
      withoutDefault.filter((name) => !given.includes(name)),
      [],
      'params of main.bicep without a default must be in main.parameters.json',
    );
  });
});
