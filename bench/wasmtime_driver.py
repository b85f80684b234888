"""Drives the same WASI preview1 module through wasmtime (the `wasmtime` package of the Python registry embeds the
real wasmtime C API library) so bench/compare.ts can put a native Wasm engine beside VYR's jco/V8 path.

Two modes, both printing JSON lines on stdout (nothing else is printed there):

  python3 wasmtime_driver.py serve MODULE
      Reads one JSON command per line on stdin and answers each with one JSON line:
        {"op": "compile"}                          -> {"compileMs": ...}   (a fresh Module from the bytes)
        {"op": "run", "stdin": P, "stdout": P,     -> {"instantiateMs": ..., "runMs": ..., "exitCode": N}
         "preopens": [[HOST, GUEST, MUTABLE]]}        (new Store + WasiConfig per run; the Linker is reused)
        {"op": "rss"}                              -> {"maxRssBytes": ...}  (getrusage of this process)
      Prints {"ready": true, "importMs": ..., "compileMs": ..., "wasmtime": VERSION} first.

  python3 wasmtime_driver.py once MODULE STDIN STDOUT REFDIR AGGDIR
      One cold run in a fresh process (REFDIR preopened read-only at /ref, AGGDIR read-write at /agg): import + compile + instantiate + run, then exit with the guest's code.
      Prints {"importMs": ..., "compileMs": ..., "instantiateMs": ..., "runMs": ..., "exitCode": N}.

Times are wall-clock milliseconds from time.perf_counter_ns.
"""

import json
import resource
import sys
import time

_t0 = time.perf_counter_ns()
import wasmtime  # noqa: E402  (imported after the clock starts: the import is a phase we report)

_import_ms = (time.perf_counter_ns() - _t0) / 1e6


def _ms(start: int) -> float:
    return (time.perf_counter_ns() - start) / 1e6


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("wasmtime")
    except Exception:  # pragma: no cover - metadata missing in odd installs
        return "unknown"


class Engine:
    def __init__(self, module_path: str) -> None:
        self.engine = wasmtime.Engine()
        with open(module_path, "rb") as f:
            self.bytes = f.read()
        self.linker = wasmtime.Linker(self.engine)
        self.linker.define_wasi()
        self.module = None

    def compile(self) -> float:
        t = time.perf_counter_ns()
        self.module = wasmtime.Module(self.engine, self.bytes)
        return _ms(t)

    def run(self, stdin: str, stdout: str, preopens: list) -> dict:
        t = time.perf_counter_ns()
        store = wasmtime.Store(self.engine)
        wasi = wasmtime.WasiConfig()
        wasi.argv = ["event-transform"]
        wasi.stdin_file = stdin
        wasi.stdout_file = stdout
        wasi.stderr_file = "/dev/null"
        for host, guest, mutable in preopens:
            wasi.preopen_dir(host, guest, bool(mutable))
        store.set_wasi(wasi)
        instance = self.linker.instantiate(store, self.module)
        start = instance.exports(store)["_start"]
        instantiate_ms = _ms(t)
        t = time.perf_counter_ns()
        code = 0
        try:
            start(store)
        except wasmtime.ExitTrap as e:
            code = e.code
        return {"instantiateMs": instantiate_ms, "runMs": _ms(t), "exitCode": code}


def serve(module_path: str) -> None:
    engine = Engine(module_path)
    compile_ms = engine.compile()
    out = sys.stdout
    out.write(json.dumps({"ready": True, "importMs": _import_ms, "compileMs": compile_ms, "wasmtime": _version()}) + "\n")
    out.flush()
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        cmd = json.loads(line)
        try:
            if cmd["op"] == "compile":
                reply = {"compileMs": engine.compile()}
            elif cmd["op"] == "run":
                reply = engine.run(cmd["stdin"], cmd["stdout"], cmd.get("preopens", []))
            elif cmd["op"] == "rss":
                reply = {"maxRssBytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
            else:
                reply = {"error": f"unknown op {cmd['op']!r}"}
        except Exception as e:  # report, keep serving: the harness decides what a failure means
            reply = {"error": f"{type(e).__name__}: {e}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()


def once(module_path: str, stdin: str, stdout: str, ref: str, agg: str) -> int:
    engine = Engine(module_path)
    compile_ms = engine.compile()
    r = engine.run(stdin, stdout, [(ref, "/ref", False), (agg, "/agg", True)])
    sys.stdout.write(json.dumps({"importMs": _import_ms, "compileMs": compile_ms, **r}) + "\n")
    return int(r["exitCode"])


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "serve":
        serve(sys.argv[2])
    elif len(sys.argv) >= 7 and sys.argv[1] == "once":
        sys.exit(once(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]))
    else:
        sys.stderr.write("usage: wasmtime_driver.py serve MODULE | once MODULE STDIN STDOUT REFDIR AGGDIR\n")
        sys.exit(64)
