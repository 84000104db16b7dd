#!/usr/bin/env bash
# The real Bicep compiler, offline: the CLI comes from the NuGet package
# Azure.Bicep.CommandLine.linux-x64 (a self-contained `bicep` executable), restored by a throwaway
# project into .cache/ with the machine's own `dotnet restore`. Nothing else is downloaded; the
# type definitions are embedded in the CLI and infra/ uses no registry modules.
#
#   scripts/bicep.sh build   compile infra/*.bicep into the committed infra/*.json
#   scripts/bicep.sh check   lint every file (any diagnostic fails) and fail when a committed
#                            infra/*.json differs from what its .bicep compiles to (drift)
#   scripts/bicep.sh path    print the path of the bicep executable (restoring it if needed)
#
# Without dotnet it says so and skips (exit 0); REQUIRE_DOTNET=1 (set by .ci/run) makes that a failure.
set -euo pipefail

BICEP_VERSION=0.49.2 # test/unit/infra/settings.test.ts checks the committed JSON was compiled by this version
PACKAGE=Azure.Bicep.CommandLine.linux-x64

root="$(cd "$(dirname "$0")/.." && pwd)"
cache="$root/.cache/bicep"
bicep="$cache/packages/$(echo "$PACKAGE" | tr '[:upper:]' '[:lower:]')/$BICEP_VERSION/tools/bicep"
mode="${1:-check}"

skip() {
  if [ "${REQUIRE_DOTNET:-}" = "1" ]; then
    echo "bicep: $1, and REQUIRE_DOTNET=1: failing." >&2
    exit 1
  fi
  echo "bicep: SKIPPED: $1. The Bicep build, lint and drift check did not run (committed infra/*.json left as is)." >&2
  exit 0
}

obtain() {
  [ -x "$bicep" ] && return 0
  command -v dotnet > /dev/null || skip "dotnet is not on PATH (the Bicep CLI comes from NuGet through dotnet restore)"
  [ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ] || skip "the NuGet Bicep CLI used here is linux-x64 only"
  mkdir -p "$cache/restore"
  # The SDK's own framework, so the restore needs no targeting pack from the network.
  local tfm
  tfm="net$(dotnet --version | cut -d. -f1).0"
  # PackageDownload fetches the package as is (no assets, no framework match needed).
  cat > "$cache/restore/bicep-cli.csproj" << EOF
<Project Sdk="Microsoft.NET.Sdk">
  <PropertyGroup>
    <TargetFramework>$tfm</TargetFramework>
  </PropertyGroup>
  <ItemGroup>
    <PackageDownload Include="$PACKAGE" Version="[$BICEP_VERSION]" />
  </ItemGroup>
</Project>
EOF
  echo "bicep: restoring $PACKAGE $BICEP_VERSION from NuGet into .cache/bicep" >&2
  dotnet restore "$cache/restore/bicep-cli.csproj" --packages "$cache/packages" --nologo -v quiet >&2
  chmod +x "$bicep"
  [ -x "$bicep" ] || { echo "bicep: restore finished but $bicep is missing" >&2; exit 1; }
}

# The top-level templates; modules are compiled into them and linted on their own.
templates() { ls "$root"/infra/*.bicep; }
all_files() { ls "$root"/infra/*.bicep "$root"/infra/modules/*.bicep; }

obtain
cd "$root"
case "$mode" in
  path)
    echo "$bicep"
    ;;
  build)
    "$bicep" --version
    for f in $(templates); do
      "$bicep" build "$f" --outfile "${f%.bicep}.json"
      echo "built ${f#"$root"/} -> ${f%.bicep}.json" | sed "s|$root/||g"
    done
    ;;
  check)
    "$bicep" --version
    status=0
    out="$(mktemp -d)"
    trap 'rm -rf "$out"' EXIT
    for f in $(all_files); do
      rel="${f#"$root"/}"
      # bicep lint exits 0 on warnings; here any diagnostic (error, warning, info) fails the check.
      if ! "$bicep" lint "$f" > "$out/lint.txt" 2>&1 || [ -s "$out/lint.txt" ]; then
        echo "lint $rel: FAILED" >&2
        cat "$out/lint.txt" >&2
        status=1
      else
        echo "lint $rel: clean"
      fi
    done
    for f in $(templates); do
      rel="${f#"$root"/}"
      json="${f%.bicep}.json"
      if ! "$bicep" build "$f" --outfile "$out/compiled.json" 2> "$out/build.txt" || [ -s "$out/build.txt" ]; then
        echo "build $rel: FAILED" >&2
        cat "$out/build.txt" >&2
        status=1
      elif [ ! -f "$json" ]; then
        echo "build $rel: ${json#"$root"/} is not committed; run scripts/bicep.sh build" >&2
        status=1
      elif ! diff -u "$json" "$out/compiled.json" > "$out/drift.txt"; then
        echo "build $rel: DRIFT: ${json#"$root"/} is not what $rel compiles to; run scripts/bicep.sh build and commit" >&2
        head -40 "$out/drift.txt" >&2
        status=1
      else
        echo "build $rel: clean, ${json#"$root"/} up to date"
      fi
    done
    exit $status
    ;;
  *)
    echo "usage: scripts/bicep.sh build|check|path" >&2
    exit 2
    ;;
esac
