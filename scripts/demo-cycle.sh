#!/usr/bin/env bash
# `make demo`: one artifact's full cycle, narrated. Key -> pack -> sign -> verify -> tamper (refused) -> node ->
# import -> run with bound state -> state digest -> trace. Everything happens under a temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
vyr() { "$root/vyr" "$@"; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ vyr %s\n' "$*"; vyr "$@"; }
arch="$(uname -m | sed -e 's/x86_64/x64/' -e 's/aarch64/arm64/')"
node_bin="$root/.toolchain/node/node_modules/node-linux-$arch/bin/node"
[ -x "$node_bin" ] || node_bin="node"
# json EXPR: prints a JS expression over the JSON document read from stdin, which the expression calls `d`.
json() { "$node_bin" -e 'let t="";process.stdin.on("data",(c)=>(t+=c)).on("end",()=>{const d=JSON.parse(t);console.log(new Function("d","return ("+process.argv[1]+")")(d)??"")})' "$1"; }

work="$(mktemp -d "${TMPDIR:-/tmp}/vyr-demo.XXXXXX")"
node_pid=""
cleanup() {
  if [ -n "$node_pid" ] && kill -0 "$node_pid" 2>/dev/null; then
    kill -TERM "$node_pid" 2>/dev/null || true
    wait "$node_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
cp "$root/packages/testing/fixtures/c/event-transform.vyr.json" vyr.json
cp "$root/examples/event-transform/events.jsonl" .
cp "$root/packages/testing/fixtures/c/event-transform.wasm" .

say "1. A signing key (ECDSA P-256). The private key stays here; nodes get the public key."
run key generate --out keys

say "2. Pack a WASI P1 module (built from C) into a Wasm OCI artifact. Same inputs, same digest."
run pack event-transform.wasm --manifest vyr.json --out event-transform.oci
first="$(vyr --json pack event-transform.wasm --manifest vyr.json --out again.oci 2>/dev/null | sed -n 's/.*"digest":"\(sha256:[0-9a-f]*\)".*/\1/p')"
echo "packed again: $first (reproducible)"

say "3. Sign it: a Sigstore bundle over the manifest digest, inside the layout and beside it."
run sign event-transform.oci --key keys/vyr.key

say "4. Verify offline, against the public key only."
run verify event-transform.oci --trust keys/vyr.pub

say "5. Tamper with one byte of the component: verification refuses it with a coded error."
cp -r event-transform.oci tampered.oci
cp event-transform.oci.sigstore.json tampered.oci.sigstore.json
blob="$(ls -S tampered.oci/blobs/sha256/ | head -n 1)"
printf '\x00' | dd of="tampered.oci/blobs/sha256/$blob" bs=1 seek=100 conv=notrunc status=none
rc=0; vyr verify tampered.oci --trust keys/vyr.pub || rc=$?
[ "$rc" -eq 65 ] || { echo "UNEXPECTED: tampered artifact gave exit code $rc, not 65" >&2; exit 1; }
echo "(refused with exit code $rc: verification failed)"

say "6. A key this node does not trust: refused too."
run key generate --out other-keys >/dev/null
rc=0; vyr verify event-transform.oci --trust other-keys/vyr.pub || rc=$?
[ "$rc" -eq 65 ] || { echo "UNEXPECTED: untrusted key gave exit code $rc, not 65" >&2; exit 1; }
echo "(refused with exit code $rc)"

say "7. Start a node (laptop tier) that trusts only our key."
"$root/vyr" node start --data-dir node-data --listen 127.0.0.1:0 --trust keys/vyr.pub --otlp none >node.out 2>node.err &
node_pid=$!
for _ in $(seq 1 100); do
  url="$(sed -n 's/.*"url":"\([^"]*\)".*/\1/p' node.out | head -n 1)"
  [ -n "$url" ] && break
  sleep 0.1
done
[ -n "${url:-}" ] || { echo "node did not start:" >&2; cat node.err >&2; exit 1; }
export VYR_NODE="$url"
echo "node at $VYR_NODE"

say "8. Create a state instance for the workload's declared 'data' slot."
state_id="$(vyr --json state create --name demo-data | json 'd.state.id')"
echo "state instance $state_id"

say "9. Run: import (verified against the node's trust set), execute in a sandbox, stream output."
run run event-transform.oci --stdin events.jsonl --env LOG_LEVEL=info --state "data=$state_id"

say "10. Predictable state: the same run on a fresh instance leaves the same content digest."
second="$(vyr --json state create --name demo-data-2 | json 'd.state.id')"
first_digest="$(vyr --json state ls | json "d.states.find((s) => s.id === '$state_id').lastDigest")"
second_digest="$(vyr --json run event-transform.oci --stdin events.jsonl --env LOG_LEVEL=info --state "data=$second" | json 'd.task.stateResults[0].digest')"
echo "first run's state digest:  $first_digest"
echo "second run's state digest: $second_digest"
[ "$first_digest" = "$second_digest" ] || { echo "UNEXPECTED: digests differ" >&2; exit 1; }
run state ls

say "11. The trace the task left: verify -> prepare -> bind -> instantiate -> run -> release."
run traces

say "12. The node's own view."
run node status

echo
echo "Demo complete. Everything above ran for real: artifact, Sigstore bundle, node, worker sandbox, state, trace."
