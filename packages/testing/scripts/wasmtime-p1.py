#!/usr/bin/env python3
"""Runs WASI preview1 core modules under wasmtime (the `wasmtime` package of the Python registry), for cross-engine
comparison with VYR's runtime. Reads a JSON list of runs on stdin:
  [{"wasm": path, "args": [...], "env": {...}, "preopens": {guest: host}, "stdin": path?, "fuel": n?}, ...]
and prints a JSON list of results: {"exitCode": n, "stdout": str, "stderr": str} or {"trap": message, ...}.
Exit status 3 when the wasmtime package is missing (callers skip the comparison)."""
import json
import os
import sys
import tempfile

try:
    import wasmtime
except ImportError:
    sys.exit(3)


def run(spec):
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    config = wasmtime.WasiConfig()
    config.argv = spec.get("args", ["main"])
    config.env = list(spec.get("env", {}).items())
    out_dir = tempfile.mkdtemp(prefix="vyr-wasmtime-")
    stdout = os.path.join(out_dir, "stdout")
    stderr = os.path.join(out_dir, "stderr")
    config.stdout_file = stdout
    config.stderr_file = stderr
    if spec.get("stdin"):
        config.stdin_file = spec["stdin"]
    for guest, host in spec.get("preopens", {}).items():
        config.preopen_dir(host, guest)
    store.set_wasi(config)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    result = {}
    try:
        module = wasmtime.Module.from_file(engine, spec["wasm"])
        instance = linker.instantiate(store, module)
        instance.exports(store)["_start"](store)
        result["exitCode"] = 0
    except wasmtime.ExitTrap as exit_trap:
        result["exitCode"] = exit_trap.code
    except Exception as err:  # a trap or a link error: the message, first line
        result["trap"] = str(err).splitlines()[0] if str(err) else type(err).__name__
    for name, path in (("stdout", stdout), ("stderr", stderr)):
        try:
            with open(path, "rb") as f:
                result[name] = f.read().decode("utf-8", "replace")
        except OSError:
            result[name] = ""
    return result


print(json.dumps([run(spec) for spec in json.load(sys.stdin)]))
