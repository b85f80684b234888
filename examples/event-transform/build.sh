#!/usr/bin/env bash
# Rebuilds event-transform.wasm (WASI P1, from src/event-transform.c) byte for byte, and optionally a native binary.
#
# Toolchain (Debian 12/13): apt-get install -y clang-19 lld-19 libclang-rt-19-dev-wasm32 wasi-libc
# Usage: build.sh                 rebuild event-transform.wasm in place
#        build.sh --check         rebuild into a temp dir and fail if the committed .wasm differs
#        build.sh --native FILE   build the same source for this host (the process and container baselines)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CC="${CC:-clang-19}"
# Fixed flags: no debug info, stripped, paths mapped so nothing host-specific ends up in the binary.
COMMON=(-O2 -std=c11 -Wall -Wextra -Werror -ffile-prefix-map="$here"=.)

if ! command -v "$CC" >/dev/null 2>&1; then
  echo "build.sh: $CC not found; install: apt-get install -y clang-19 lld-19 libclang-rt-19-dev-wasm32 wasi-libc" >&2
  exit 1
fi

cd "$here"
case "${1:-}" in
  --native)
    out="${2:?build.sh --native FILE}"
    # Static, so the same file runs directly and inside a minimal OCI bundle with no libc in its root fs.
    "$CC" "${COMMON[@]}" -static -o "$out" src/event-transform.c -lm
    echo "built $out ($(wc -c <"$out") bytes, native $(uname -m))"
    ;;
  --check)
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    "$CC" --target=wasm32-wasi "${COMMON[@]}" -Wl,--strip-all -o "$tmp/event-transform.wasm" src/event-transform.c
    if cmp -s "$tmp/event-transform.wasm" event-transform.wasm; then
      echo "event-transform.wasm reproduces byte for byte"
    else
      echo "build.sh: event-transform.wasm differs from the committed file (run build.sh and commit)" >&2
      exit 1
    fi
    ;;
  "")
    "$CC" --target=wasm32-wasi "${COMMON[@]}" -Wl,--strip-all -o event-transform.wasm src/event-transform.c
    echo "built event-transform.wasm ($(wc -c <event-transform.wasm) bytes, sha256 $(sha256sum event-transform.wasm | cut -c1-16)…)"
    ;;
  *) echo "usage: build.sh [--check | --native FILE]" >&2; exit 64 ;;
esac
