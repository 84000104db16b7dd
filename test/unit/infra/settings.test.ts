// Keeps infra/ honest against lib/config.ts without a Bicep compiler: every setting Azure requires
// is deployed, nothing unknown is deployed, parameters and module calls line up.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { SETTINGS } from '../../../lib/config';
import {
  checkSettings,
  describeReport,
  extractAppSettings,
  extractModuleCalls,
  extractParams,
  isClean,
  settingsFromAppSettingsArrays,
  SettingEntry,
  stripComments,
} from './bicepText';

/** The repository root: the nearest ancestor holding package.json (works from test/ and from dist-*). */
function repoRoot(): string {
  let dir = __dirname;
  for (let i = 0; i < 10; i += 1) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'infra'))) return dir;
    dir = path.dirname(dir);
  }
  throw new Error(`no repository root above ${__dirname}`);
}

const root = repoRoot();
const infraDir = path.join(root, 'infra');
const read = (rel: string) => fs.readFileSync(path.join(root, rel), 'utf8');

function bicepFiles(): string[] {
  const top = fs
    .readdirSync(infraDir)
    .filter((f) => f.endsWith('.bicep'))
    .map((f) => `infra/${f}`);
  const modules = fs
    .readdirSync(path.join(infraDir, 'modules'))
    .filter((f) => f.endsWith('.bicep'))
    .map((f) => `infra/modules/${f}`);
  return [...top, ...modules].sort();
}

/** App settings declared anywhere in infra/, with main.bicep's text optionally replaced. */
function infraSettings(mainText?: string): SettingEntry[] {
  return bicepFiles().flatMap((rel) =>
    extractAppSettings(rel === 'infra/main.bicep' && mainText !== undefined ? mainText : read(rel), rel),
  );
}

const requiredNames = Object.entries(SETTINGS)
  .filter(([, s]) => s.azure === 'required')
  .map(([name]) => name);

/** main.bicep with the app-settings line of `name` removed (asserts it was there). */
function withoutSetting(mainText: string, name: string): string {
  const line = new RegExp(`^[ \\t]*'?${name}'?[ \\t]*:.*\\r?\\n`, 'm');
  assert.match(mainText, line, `main.bicep has no "${name}:" line to delete`);
  return mainText.replace(line, '');
}

describe('infra app settings match lib/config.ts SETTINGS', () => {
  const mainText = read('infra/main.bicep');

  it('main.bicep declares app settings (the extractor found the marked object)', () => {
    const names = infraSettings().map((e) => e.name);
    assert.ok(names.length >= requiredNames.length, `only ${names.length} settings found`);
  });

  it('every setting marked azure: required is deployed, and every deployed setting is known', () => {
    const report = checkSettings(infraSettings(), SETTINGS);
    assert.ok(isClean(report), describeReport(report));
  });

  it('deleting any one required setting from main.bicep makes the check fail and name it', () => {
    assert.ok(requiredNames.length > 0);
    for (const name of requiredNames) {
      const report = checkSettings(infraSettings(withoutSetting(mainText, name)), SETTINGS);
      assert.deepEqual(report.missingRequired, [name]);
      assert.ok(!isClean(report));
      assert.match(describeReport(report), new RegExp(`missing from infra: ${name}$`, 'm'));
    }
  });

  it('a setting unknown to lib/config.ts makes the check fail and name it', () => {
    const text = mainText.replace('  POOL_CAP: string(poolCap)\n', "  POOL_CAP: string(poolCap)\n  POOL_CAPP: '1'\n");
    assert.notEqual(text, mainText);
    const report = checkSettings(infraSettings(text), SETTINGS);
    assert.deepEqual(report.unknown, ['POOL_CAPP']);
    assert.match(describeReport(report), /unknown to lib\/config.ts SETTINGS: POOL_CAPP/);
  });

  it('a local-only setting deployed to Azure makes the check fail', () => {
    const text = mainText.replace(
      '  POOL_CAP: string(poolCap)\n',
      "  POOL_CAP: string(poolCap)\n  RELAY_ARM_CA_FILE: '/tmp/ca.pem'\n",
    );
    const report = checkSettings(infraSettings(text), SETTINGS);
    assert.deepEqual(report.localOnly, ['RELAY_ARM_CA_FILE']);
  });

  it('no secret in app settings: no AzureWebJobsStorage connection string, secrets only as Key Vault references', () => {
    const settings = infraSettings();
    assert.ok(
      !settings.some((e) => e.name === 'AzureWebJobsStorage'),
      'AzureWebJobsStorage (a keyed connection string) must not be deployed',
    );
    // lib/config.ts documents its secrets as "A Key Vault reference in Azure."
    const secretNames = Object.entries(SETTINGS)
      .filter(([, s]) => s.doc.includes('Key Vault reference'))
      .map(([name]) => name);
    assert.ok(
      secretNames.includes('STORAGE_ACCOUNT_KEY'),
      'the catalogue no longer marks STORAGE_ACCOUNT_KEY as a Key Vault reference',
    );
    for (const name of secretNames) {
      const entry = settings.find((e) => e.name === name);
      assert.ok(entry, `${name} missing`);
      assert.match(
        entry.valueText,
        /^'@Microsoft\.KeyVault\(SecretUri=\$\{[^}]+\}\)'$/,
        `${name} must be a Key Vault reference`,
      );
    }
    for (const e of settings) {
      assert.doesNotMatch(e.valueText, /AccountKey=|listKeys\(|sealingKey\b/, `${e.name} carries a secret value`);
    }
  });

  it('Flex Consumption settings: runtime comes from functionAppConfig, not from app settings', () => {
    const names = new Set(infraSettings().map((e) => e.name));
    assert.ok(!names.has('FUNCTIONS_WORKER_RUNTIME') && !names.has('FUNCTIONS_EXTENSION_VERSION'));
    assert.match(read('infra/modules/functionApp.bicep'), /runtime:\s*\{\s*name:\s*'node'/);
  });
});

describe('infra parameters and modules line up', () => {
  it('every parameter in main.parameters.json is a param of main.bicep, and every param without a default is given', () => {
    const json: unknown = JSON.parse(read('infra/main.parameters.json'));
    assert.ok(typeof json === 'object' && json !== null && 'parameters' in json);
    const given = Object.keys((json as { parameters: Record<string, unknown> }).parameters);
    const params = extractParams(read('infra/main.bicep'));
    const declared = new Set(params.map((p) => p.name));
    assert.deepEqual(
      given.filter((g) => !declared.has(g)),
      [],
      'parameters file names params main.bicep does not declare',
    );
    assert.deepEqual(
      params.filter((p) => !p.hasDefault && !given.includes(p.name)).map((p) => p.name),
      [],
      'params of main.bicep without a default must be in main.parameters.json',
    );
  });

  it('every module call points at an existing file, passes only its params and all its params without defaults', () => {
    const problems: string[] = [];
    let calls = 0;
    for (const rel of bicepFiles()) {
      for (const call of extractModuleCalls(read(rel), rel)) {
        calls += 1;
        const target = path.join(path.dirname(path.join(root, rel)), call.path);
        if (!fs.existsSync(target)) {
          problems.push(`${rel}: module ${call.symbol} -> ${call.path} does not exist`);
          continue;
        }
        const params = extractParams(fs.readFileSync(target, 'utf8'));
        const declared = new Set(params.map((p) => p.name));
        for (const passed of call.paramNames) {
          if (!declared.has(passed)) problems.push(`${rel}: module ${call.symbol} passes unknown param ${passed}`);
        }
        for (const p of params) {
          if (!p.hasDefault && !call.paramNames.includes(p.name))
            problems.push(`${rel}: module ${call.symbol} misses required param ${p.name}`);
        }
      }
    }
    assert.ok(calls >= 6, `only ${calls} module calls found`);
    assert.deepEqual(problems, []);
  });
});

describe('the Bicep text extractor', () => {
  it('keeps URLs inside strings when removing comments', () => {
    assert.equal(stripComments("a: 'https://x/y' // note\n/* b */c: 1"), "a: 'https://x/y' \nc: 1");
  });

  it('reads the siteConfig.appSettings array form too', () => {
    const text = `siteConfig: {
      appSettings: [
        {
          name: 'FUNCTIONS_WORKER_RUNTIME' // for Consumption
          value: 'node'
        }
        {
          name: 'POOL_NAME'
          value: '\${poolName}-x'
        }
      ]
    }`;
    assert.deepEqual(
      settingsFromAppSettingsArrays(text, 't').map((e) => [e.name, e.valueText]),
      [
        ['FUNCTIONS_WORKER_RUNTIME', "'node'"],
        ['POOL_NAME', "'${poolName}-x'"],
      ],
    );
  });

  it('refuses a line it cannot read inside the marked object instead of skipping it', () => {
    const text = "var s = {\n  // app-settings:begin\n  POOL_NAME: 'a'\n  ...other\n  // app-settings:end\n}";
    assert.throws(() => extractAppSettings(text, 't'), /cannot read "\.\.\.other"/);
  });

  it('reads nested values as one setting and ignores their inner keys', () => {
    const text =
      "var s = {\n  // app-settings:begin\n  A: empty(x) ? {\n    B: 1\n  } : 'y'\n  'C': '${x}'\n  // app-settings:end\n}";
    assert.deepEqual(
      extractAppSettings(text, 't').map((e) => e.name),
      ['A', 'C'],
    );
  });
});
