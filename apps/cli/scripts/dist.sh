#!/usr/bin/env bash
# Builds a self-contained installation of the `vyr` command in DIR (docs/cli.md "Install"):
#
#   DIR/bin/vyr        the launcher: runs lib/vyr with lib/node/bin/node (or VYR_NODE_BINARY, or a Node >= 24 on PATH)
#   DIR/lib/vyr        `pnpm deploy --prod` of apps/cli: its dist and production node_modules, the workspace
#                      packages (@vyr/cli, @vyr/node, @vyr/runtime, …) copied in from their built dist, not linked
#   DIR/lib/node/bin/node   the Node.js (>= 24) this script runs with, unless --no-node
#
# Nothing in DIR points back into the source tree: copy or move DIR anywhere (same OS and CPU architecture).
# Needs the workspace built (`make build` / `pnpm build`) and Node >= 24 and pnpm on PATH. `make dist` does all that.
set -euo pipefail

usage() {
  echo "usage: $0 [--no-node] DIR" >&2
  exit 2
}

bundle_node=1
out=""
for arg in "$@"; do
  case "$arg" in
    --no-node) bundle_node=0 ;;
    -*) usage ;;
    *) [ -z "$out" ] || usage; out="$arg" ;;
  esac
done
[ -n "$out" ] || usage

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
fail() {
  echo "dist: $*" >&2
  exit 1
}

command -v pnpm >/dev/null || fail "pnpm is not on PATH (make dist installs it into .toolchain/)"
node_bin="$(command -v node)" || fail "node is not on PATH"
major="$("$node_bin" -p 'process.versions.node.split(".")[0]')"
[ "$major" -ge 24 ] || fail "$node_bin is Node $major; Node 24 or newer is needed"

# Refuse to replace anything but an earlier installation made by this script.
if [ -e "$out" ]; then
  if [ -n "$(ls -A "$out" 2>/dev/null)" ] && [ ! -f "$out/.vyr-dist" ]; then
    fail "$out exists and is not a vyr installation made by this script; choose a new or empty directory"
  fi
  rm -rf "$out"
fi

for pkg in apps/cli apps/node packages/cli packages/api packages/artifact packages/runtime packages/state \
  packages/telemetry packages/collector proto; do
  [ -d "$root/$pkg/dist" ] || fail "$pkg is not built; run 'make build' (or 'pnpm build') first"
done

mkdir -p "$out/bin" "$out/lib"
out="$(cd "$out" && pwd)"
echo "dist: deploying apps/cli with its production dependencies into $out/lib/vyr" >&2
# pnpm 12 deploys injected copies of workspace dependencies (their package.json "files"), so lib/vyr is
# self-contained; the lockfile pins the same versions as the workspace.
(cd "$root" && pnpm --filter vyr deploy --prod "$out/lib/vyr" >&2)

if [ "$bundle_node" = 1 ]; then
  mkdir -p "$out/lib/node/bin"
  cp "$node_bin" "$out/lib/node/bin/node"
  chmod 0755 "$out/lib/node/bin/node"
fi

cat >"$out/bin/vyr" <<'LAUNCHER'
#!/bin/sh
# The vyr command, installed by apps/cli/scripts/dist.sh (`make dist`). Link or copy this installation anywhere;
# put DIR/bin on PATH or symlink DIR/bin/vyr into it.
here="$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)"
if [ -n "${VYR_NODE_BINARY:-}" ]; then
  node="$VYR_NODE_BINARY"
elif [ -x "$here/lib/node/bin/node" ]; then
  node="$here/lib/node/bin/node"
else
  node="$(command -v node || true)"
  if [ -z "$node" ] || ! "$node" -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 24 ? 0 : 1)' 2>/dev/null; then
    echo "vyr: Node.js 24 or newer is needed: install it, or set VYR_NODE_BINARY to its node binary" >&2
    exit 127
  fi
fi
exec "$node" "$here/lib/vyr/dist/main.js" "$@"
LAUNCHER
chmod 0755 "$out/bin/vyr"
touch "$out/.vyr-dist"
echo "dist: installed; run $out/bin/vyr --help" >&2
