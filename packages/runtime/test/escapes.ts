/**
 * The sandbox-escape suite's programs: each is a distinct WASI P1 guest (WAT, compiled at test time) trying one way
 * out of its sandbox. A program ends with `proc_exit(errno)` of the call it tried (0 when the call succeeded), so the
 * test asserts the exact errno the guest saw; resource abuse ends in a coded task failure instead. Exit codes stay
 * below 126 (wasmtime refuses larger ones). docs/security.md
 * has the same table (ids match).
 *
 * Layout every program gets (hosts' paths differ per run): `/data` (fd 3) is a read-write mount at `<root>/data`,
 * `/other` (fd 4, when `mounts` says so) a second mount at `<root>/other`; `<root>/secret.txt` and
 * `<root>/st_other/secret.txt` (another state instance) sit outside both, and `own.txt` inside `/data`.
 */

/** WASI P1 errno values (wasi_snapshot_preview1 `errno`). */
export const E = {
  SUCCESS: 0,
  BADF: 8,
  FAULT: 21,
  ILSEQ: 25,
  INVAL: 28,
  NAMETOOLONG: 37,
  NOMEM: 48,
  NOENT: 44,
  NOSPC: 51,
  NOTSOCK: 57,
  NOTSUP: 58,
  PERM: 63,
  XDEV: 75,
  NOTCAPABLE: 76,
} as const;

/** What a program must end with under VYR. */
export type Expected =
  | { exitCode: number }
  | { reason: 'MEMORY_LIMIT' | 'TRAP' | 'DEADLINE_EXCEEDED' | 'CANCELLED' | 'INSTANTIATE_FAILED' };

export interface Escape {
  /** Stable id, as in docs/security.md. */
  id: string;
  /** The way out it tries. */
  tries: string;
  /** The module text. */
  wat: string;
  /** Mounts: `data` (default), `data+other`, `data-ro` (read-only /data), `none`. */
  mounts?: 'data' | 'data+other' | 'data-ro' | 'none';
  limits?: { memoryBytes?: number; deadlineMs?: number };
  /** State quotas on /data. */
  quota?: { quotaBytes?: number; quotaEntries?: number };
  stdin?: string;
  /** Cancel the task once it has written this many stdout bytes. */
  cancelAfterOutput?: number;
  /** Host-side set-up inside the layout above (paths relative to `<root>`), before the run. */
  symlinks?: Record<string, string>;
  expect: Expected;
  /**
   * wasmtime's answer for the same program, when it differs from `expect` (checked by the cross-engine test when the
   * Python `wasmtime` package is installed), with why; `skip` for programs only a node can judge (deadline,
   * cancel, quotas).
   */
  wasmtime?: { exitCode?: number; trap?: true; skip?: true; why: string };
}

const IMPORTS = `
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_symlink" (func $path_symlink (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_link" (func $path_link (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_rename" (func $path_rename (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_create_directory" (func $mkdir (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_seek" (func $fd_seek (param i32 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sock_accept" (func $sock_accept (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sock_recv" (func $sock_recv (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sock_send" (func $sock_send (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sock_shutdown" (func $sock_shutdown (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock_time_get (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_res_get" (func $clock_res_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_raise" (func $proc_raise (param i32) (result i32)))`;

/** Every right P1 defines (bits 0-28), base and inheriting (wasmtime traps on undefined bits). */
const ALL = '(i64.const 0x1fffffff) (i64.const 0x1fffffff)';
/** oflags: CREAT = 1, DIRECTORY = 2, EXCL = 4, TRUNC = 8. */
const CREAT = 1;

/**
 * A program: `strings` are laid out from address 2048 (each as `(i32.const ptr) (i32.const len)` in `body` through
 * `{name}`), scratch memory is 0..2047, `body` runs in `_start` with locals `$e $fd $i $n` (i32).
 */
function prog(options: { strings?: Record<string, string | Uint8Array>; body: string; memory?: string }): string {
  let at = 2048;
  let data = '';
  let body = options.body;
  for (const [name, value] of Object.entries(options.strings ?? {})) {
    const bytes = typeof value === 'string' ? new TextEncoder().encode(value) : value;
    const escaped = [...bytes].map((b) => `\\${b.toString(16).padStart(2, '0')}`).join('');
    data += `\n  (data (i32.const ${at}) "${escaped}")`;
    body = body.replaceAll(`{${name}}`, `(i32.const ${at}) (i32.const ${bytes.length})`);
    at += bytes.length + 1;
  }
  return `(module${IMPORTS}
  (memory (export "memory") ${options.memory ?? '1'})${data}
  (func (export "_start") (local $e i32) (local $fd i32) (local $i i32) (local $n i32)
    ${body}))`;
}

/** Opens `path` in /data (following symlinks when `follow`) for reading and exits with the errno. */
function openExit(path: string | Uint8Array, options: { follow?: boolean; oflags?: number; dirfd?: number } = {}) {
  return prog({
    strings: { p: path },
    body: `(call $exit (call $path_open (i32.const ${options.dirfd ?? 3}) (i32.const ${options.follow === false ? 0 : 1})
      {p} (i32.const ${options.oflags ?? 0}) ${ALL} (i32.const 0) (i32.const 0)))`,
  });
}

/**
 * Creates symlink `name` → `target` in /data, then opens `open` following links; exits with the errno of the first
 * step that failed (a refused symlink and a refused open are both a way out closed).
 */
function symlinkThenOpen(target: string, name: string, open: string): string {
  return prog({
    strings: { t: target, n: name, o: open },
    body: `(local.set $e (call $path_symlink {t} (i32.const 3) {n}))
      (if (local.get $e) (then (call $exit (local.get $e))))
      (call $exit (call $path_open (i32.const 3) (i32.const 1) {o} (i32.const 0) ${ALL} (i32.const 0) (i32.const 0)))`,
  });
}

/** A ciovec at 0 pointing at `len` bytes at 1024, for fd_write / sock_send. */
const IOVEC = (len: number) =>
  `(i32.store (i32.const 0) (i32.const 1024)) (i32.store (i32.const 4) (i32.const ${len}))`;

export const ESCAPES: Escape[] = [
  // ---- paths out of a preopen --------------------------------------------------------------------------------
  {
    id: 'fs.dotdot',
    tries: 'open `../secret.txt` (parent of the mount)',
    wat: openExit('../secret.txt'),
    expect: { exitCode: E.PERM },
  },
  {
    id: 'fs.dotdot-nested',
    tries: 'open `a/b/../../../secret.txt` (climbs out through names that do not exist)',
    wat: openExit('a/b/../../../secret.txt'),
    expect: { exitCode: E.PERM },
    wasmtime: { exitCode: E.NOENT, why: 'wasmtime resolves `a` first and finds nothing; VYR refuses the climb first' },
  },
  {
    id: 'fs.absolute',
    tries: 'open `/etc/passwd` relative to the preopen',
    wat: openExit('/etc/passwd'),
    expect: { exitCode: E.PERM },
  },
  {
    id: 'fs.proc',
    tries: 'open `../../../../../../proc/self/environ` (the node process environment)',
    wat: openExit('../../../../../../proc/self/environ'),
    expect: { exitCode: E.PERM },
  },
  {
    id: 'fs.mkdir-out',
    tries: 'create directory `../made` next to the mount',
    wat: prog({ strings: { p: '../made' }, body: '(call $exit (call $mkdir (i32.const 3) {p}))' }),
    expect: { exitCode: E.PERM },
  },
  {
    id: 'fs.other-state',
    tries: "open `../st_other/secret.txt` (another state instance's files)",
    wat: openExit('../st_other/secret.txt'),
    expect: { exitCode: E.PERM },
  },
  // ---- symlinks and hard links leaving a preopen ----------------------------------------------------------------
  {
    id: 'link.symlink-absolute',
    tries: 'create symlink `l` → `/etc/passwd`, open `l`',
    wat: symlinkThenOpen('/etc/passwd', 'l', 'l'),
    expect: { exitCode: E.PERM },
  },
  {
    id: 'link.symlink-relative',
    tries: 'create symlink `up` → `..`, open `up/secret.txt`',
    wat: symlinkThenOpen('..', 'up', 'up/secret.txt'),
    expect: { exitCode: E.PERM },
  },
  {
    id: 'link.symlink-proc-root',
    tries: 'create symlink `root` → `/proc/self/root`, open `root/etc/passwd`',
    wat: symlinkThenOpen('/proc/self/root', 'root', 'root/etc/passwd'),
    expect: { exitCode: E.PERM },
  },
  {
    id: 'link.symlink-dev',
    tries: 'create symlink `dev` → `/dev`, open `dev/zero`',
    wat: symlinkThenOpen('/dev', 'dev', 'dev/zero'),
    expect: { exitCode: E.PERM },
  },
  {
    id: 'link.symlink-chain',
    tries: 'symlinks `a` → `b`, `b` → `../secret.txt`, open `a`',
    wat: prog({
      strings: { b: 'b', a: 'a', out: '../secret.txt' },
      body: `(drop (call $path_symlink {out} (i32.const 3) {b}))
        (drop (call $path_symlink {b} (i32.const 3) {a}))
        (call $exit (call $path_open (i32.const 3) (i32.const 1) {a} (i32.const 0) ${ALL} (i32.const 0) (i32.const 0)))`,
    }),
    expect: { exitCode: E.PERM },
  },
  {
    id: 'link.symlink-planted',
    tries: 'open `planted`, a symlink to the secret placed in the mount by the host (state content)',
    wat: openExit('planted'),
    symlinks: { 'data/planted': '<root>/secret.txt' },
    expect: { exitCode: E.PERM },
  },
  {
    id: 'link.hardlink-out',
    tries: 'hard link `../secret.txt` as `stolen`',
    wat: prog({
      strings: { o: '../secret.txt', n: 'stolen' },
      body: '(call $exit (call $path_link (i32.const 3) (i32.const 0) {o} (i32.const 3) {n}))',
    }),
    expect: { exitCode: E.PERM },
  },
  {
    id: 'link.hardlink-cross',
    tries: 'hard link `/data/own.txt` into `/other` (another mount)',
    mounts: 'data+other',
    wat: prog({
      strings: { o: 'own.txt', n: 'linked' },
      body: '(call $exit (call $path_link (i32.const 3) (i32.const 0) {o} (i32.const 4) {n}))',
    }),
    expect: { exitCode: E.XDEV },
    wasmtime: { exitCode: E.SUCCESS, why: 'wasmtime allows links between preopens on one host filesystem' },
  },
  {
    id: 'link.rename-cross',
    tries: 'rename `/data/own.txt` into `/other`',
    mounts: 'data+other',
    wat: prog({
      strings: { o: 'own.txt', n: 'moved' },
      body: '(call $exit (call $path_rename (i32.const 3) {o} (i32.const 4) {n}))',
    }),
    expect: { exitCode: E.XDEV },
    wasmtime: { exitCode: E.SUCCESS, why: 'wasmtime allows renames between preopens on one host filesystem' },
  },
  {
    id: 'link.rename-out',
    tries: 'rename `own.txt` to `../moved` (out of the mount)',
    wat: prog({
      strings: { o: 'own.txt', n: '../moved' },
      body: '(call $exit (call $path_rename (i32.const 3) {o} (i32.const 3) {n}))',
    }),
    expect: { exitCode: E.PERM },
  },
  // ---- names ----------------------------------------------------------------------------------------------------
  {
    id: 'name.long',
    tries: 'create a file with a 5000-byte name',
    wat: openExit('n'.repeat(5000), { oflags: CREAT }),
    expect: { exitCode: E.NAMETOOLONG },
  },
  {
    id: 'name.invalid-utf8',
    tries: 'create a file whose name is not UTF-8 (`\\xff\\xfe`)',
    wat: openExit(new Uint8Array([0xff, 0xfe]), { oflags: CREAT }),
    expect: { exitCode: E.ILSEQ },
  },
  {
    id: 'name.nul',
    tries: 'open `own.txt\\0../../secret.txt` (a NUL byte cutting the name)',
    wat: openExit(new Uint8Array([...new TextEncoder().encode('own.txt'), 0, ...new TextEncoder().encode('../x')])),
    expect: { exitCode: E.INVAL },
  },
  // ---- descriptors ----------------------------------------------------------------------------------------------
  {
    id: 'fd.closed-preopen',
    tries: 'close the preopen (fd 3), then open through it',
    wat: prog({
      strings: { p: 'own.txt' },
      body: `(drop (call $fd_close (i32.const 3)))
        (call $exit (call $path_open (i32.const 3) (i32.const 0) {p} (i32.const 0) ${ALL} (i32.const 0) (i32.const 0)))`,
    }),
    expect: { exitCode: E.BADF },
  },
  {
    id: 'fd.guess',
    tries: 'write to descriptors 5..1000 that were never opened (another task’s files?)',
    wat: prog({
      body: `${IOVEC(1)} (local.set $i (i32.const 5))
        (block $done (loop $next
          (local.set $e (call $fd_write (local.get $i) (i32.const 0) (i32.const 1) (i32.const 8)))
          (if (i32.ne (local.get $e) (i32.const ${E.BADF})) (then (call $exit (i32.const 1))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $next (i32.lt_u (local.get $i) (i32.const 1000)))))
        (call $exit (i32.const ${E.BADF}))`,
    }),
    expect: { exitCode: E.BADF },
  },
  {
    id: 'fd.exhaustion',
    tries: 'open `own.txt` 100 000 times without closing (host descriptor table)',
    wat: prog({
      strings: { p: 'own.txt' },
      body: `(block $done (loop $next
          (local.set $e (call $path_open (i32.const 3) (i32.const 0) {p} (i32.const 0) ${ALL} (i32.const 0) (i32.const 0)))
          (br_if $done (local.get $e))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $next (i32.lt_u (local.get $i) (i32.const 100000)))))
        ;; exit with the errno that stopped it (0: all 100 000 opened)
        (call $exit (local.get $e))`,
    }),
    expect: { exitCode: E.NOMEM },
    wasmtime: {
      skip: true,
      why: 'wasmtime has no per-instance cap: it stops at the host process limit (EIO at `ulimit -n` 20000 here)',
    },
  },
  {
    id: 'fd.churn',
    tries: 'open and close `own.txt` 1500 times, past the open-descriptor bound (closing gives them back)',
    wat: prog({
      strings: { p: 'own.txt' },
      body: `(block $done (loop $next
          (local.set $e (call $path_open (i32.const 3) (i32.const 0) {p} (i32.const 0) ${ALL} (i32.const 0) (i32.const 16)))
          (br_if $done (local.get $e))
          (drop (call $fd_close (i32.load (i32.const 16))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $next (i32.lt_u (local.get $i) (i32.const 1500)))))
        (call $exit (local.get $e))`,
    }),
    expect: { exitCode: 0 },
  },
  // ---- quotas ---------------------------------------------------------------------------------------------------
  {
    id: 'quota.entries-tree',
    tries: 'create 10 000 directories against an entry quota of 100',
    quota: { quotaEntries: 100 },
    wat: prog({
      body: `(block $done (loop $next
          ;; name: 4 digits at 1024
          (i32.store8 (i32.const 1024) (i32.add (i32.const 48) (i32.rem_u (i32.div_u (local.get $i) (i32.const 1000)) (i32.const 10))))
          (i32.store8 (i32.const 1025) (i32.add (i32.const 48) (i32.rem_u (i32.div_u (local.get $i) (i32.const 100)) (i32.const 10))))
          (i32.store8 (i32.const 1026) (i32.add (i32.const 48) (i32.rem_u (i32.div_u (local.get $i) (i32.const 10)) (i32.const 10))))
          (i32.store8 (i32.const 1027) (i32.add (i32.const 48) (i32.rem_u (local.get $i) (i32.const 10))))
          (local.set $e (call $mkdir (i32.const 3) (i32.const 1024) (i32.const 4)))
          (br_if $done (local.get $e))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $next (i32.lt_u (local.get $i) (i32.const 10000)))))
        (call $exit (local.get $e))`,
    }),
    expect: { exitCode: E.NOSPC },
    wasmtime: { skip: true, why: 'state quotas are VYR’s' },
  },
  {
    id: 'quota.sparse-write',
    tries: 'seek to 1 TiB and write one byte against a byte quota of 1 MiB',
    quota: { quotaBytes: 1024 * 1024 },
    wat: prog({
      strings: { p: 'sparse.bin' },
      body: `(local.set $e (call $path_open (i32.const 3) (i32.const 0) {p} (i32.const ${CREAT}) ${ALL} (i32.const 0) (i32.const 16)))
        (if (local.get $e) (then (call $exit (i32.const 1))))
        (local.set $fd (i32.load (i32.const 16)))
        (drop (call $fd_seek (local.get $fd) (i64.const 1099511627776) (i32.const 0) (i32.const 24)))
        ${IOVEC(1)}
        (call $exit (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8)))`,
    }),
    expect: { exitCode: E.NOSPC },
    wasmtime: { skip: true, why: 'state quotas are VYR’s' },
  },
  {
    id: 'fs.readonly',
    tries: 'create a file in a read-only mount',
    mounts: 'data-ro',
    wat: openExit('new.txt', { oflags: CREAT }),
    expect: { exitCode: E.PERM },
    wasmtime: { skip: true, why: 'the Python wasmtime API has no read-only preopen' },
  },
  // ---- host environment and arguments ----------------------------------------------------------------------------
  {
    id: 'env.host',
    tries: 'read the host environment (exit code = number of variables seen)',
    wat: prog({
      body: '(drop (call $environ_sizes_get (i32.const 0) (i32.const 4))) (call $exit (i32.load (i32.const 0)))',
    }),
    expect: { exitCode: 0 },
  },
  {
    id: 'args.host',
    tries: "read the host's arguments (exit code = argc − 1)",
    wat: prog({
      body: '(drop (call $args_sizes_get (i32.const 0) (i32.const 4))) (call $exit (i32.sub (i32.load (i32.const 0)) (i32.const 1)))',
    }),
    expect: { exitCode: 0 },
  },
  // ---- sockets (P1; wasi:sockets is refused as network.test.ts shows) ---------------------------------------------
  {
    id: 'sock.accept',
    tries: 'sock_accept on the preopen',
    wat: prog({ body: '(call $exit (call $sock_accept (i32.const 3) (i32.const 0) (i32.const 0)))' }),
    expect: { exitCode: E.NOTSOCK },
  },
  {
    id: 'sock.recv',
    tries: 'sock_recv on stdin',
    wat: prog({
      body: `${IOVEC(16)} (call $exit (call $sock_recv (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 8) (i32.const 12)))`,
    }),
    expect: { exitCode: E.NOTSOCK },
  },
  {
    id: 'sock.send',
    tries: 'sock_send on stdout',
    wat: prog({
      body: `${IOVEC(1)} (call $exit (call $sock_send (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 8)))`,
    }),
    expect: { exitCode: E.NOTSOCK },
  },
  {
    id: 'sock.shutdown',
    tries: 'sock_shutdown on stdout',
    wat: prog({ body: '(call $exit (call $sock_shutdown (i32.const 1) (i32.const 3)))' }),
    expect: { exitCode: E.NOTSOCK },
  },
  // ---- clocks, random, signals ----------------------------------------------------------------------------------
  {
    id: 'clock.bad-id',
    tries: 'clock_time_get of clock id 99',
    wat: prog({ body: '(call $exit (call $clock_time_get (i32.const 99) (i64.const 0) (i32.const 0)))' }),
    expect: { exitCode: E.BADF },
    wasmtime: { trap: true, why: 'wasmtime traps on a value outside the clockid enum; the adapter answers EBADF' },
  },
  {
    id: 'clock.res-bad-id',
    tries: 'clock_res_get of clock id 99',
    wat: prog({ body: '(call $exit (call $clock_res_get (i32.const 99) (i32.const 0)))' }),
    expect: { exitCode: E.BADF },
    wasmtime: { trap: true, why: 'wasmtime traps on a value outside the clockid enum; the adapter answers EBADF' },
  },
  {
    id: 'clock.cputime',
    tries: 'clock_time_get of the process CPU-time clock (host timing side channel)',
    wat: prog({ body: '(call $exit (call $clock_time_get (i32.const 2) (i64.const 0) (i32.const 0)))' }),
    expect: { exitCode: E.BADF },
  },
  {
    id: 'clock.out-of-bounds',
    tries: 'clock_time_get writing its answer past the end of memory',
    wat: prog({ body: '(call $exit (call $clock_time_get (i32.const 0) (i64.const 0) (i32.const 0x7ffffff0)))' }),
    expect: { reason: 'TRAP' },
    wasmtime: { trap: true, why: 'same: an out-of-bounds pointer is the guest’s own fault' },
  },
  {
    id: 'random.out-of-bounds',
    tries: 'random_get into a buffer 2 GiB past the end of memory',
    wat: prog({ body: '(call $exit (call $random_get (i32.const 0x7ffffff0) (i32.const 16)))' }),
    expect: { reason: 'TRAP' },
    wasmtime: { trap: true, why: 'same' },
  },
  {
    id: 'poll.none',
    tries: 'poll_oneoff with no subscriptions (would block forever)',
    wat: prog({ body: '(call $exit (call $poll_oneoff (i32.const 0) (i32.const 512) (i32.const 0) (i32.const 8)))' }),
    expect: { exitCode: E.INVAL },
  },
  {
    id: 'proc.raise',
    tries: 'proc_raise(SIGKILL)',
    wat: prog({ body: '(call $exit (call $proc_raise (i32.const 9)))' }),
    expect: { exitCode: E.NOTSUP },
  },
  // ---- resources ------------------------------------------------------------------------------------------------
  {
    id: 'mem.grow-loop',
    tries: 'grow memory 1 MiB at a time until refused, then fail',
    limits: { memoryBytes: 16 * 1024 * 1024 },
    wat: prog({
      body: `(block $done (loop $next
          (br_if $done (i32.eq (memory.grow (i32.const 16)) (i32.const -1)))
          (br $next)))
        (call $exit (i32.const 1))`,
    }),
    expect: { reason: 'MEMORY_LIMIT' },
    wasmtime: { skip: true, why: 'no memory limit configured there' },
  },
  {
    id: 'mem.huge-initial',
    tries: 'declare 2 GiB of initial memory',
    limits: { memoryBytes: 16 * 1024 * 1024 },
    wat: prog({ memory: '32768', body: '(call $exit (i32.const 0))' }),
    expect: { reason: 'MEMORY_LIMIT' },
    wasmtime: { skip: true, why: 'no memory limit configured there' },
  },
  {
    id: 'table.grow',
    tries:
      'grow a table by 1 M entries, up to 3 times (exit code = grows that succeeded; tables live on the worker’s heap)',
    wat: `(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (table $t 0 funcref)
  (func (export "_start") (local $i i32)
    (block $done (loop $next
      (br_if $done (i32.eq (table.grow $t (ref.null func) (i32.const 1000000)) (i32.const -1)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $next (i32.lt_u (local.get $i) (i32.const 3)))))
    (call $exit (local.get $i))))`,
    expect: { exitCode: 1 },
    wasmtime: {
      exitCode: 3,
      why: 'wasmtime sets no table limit by default; VYR bounds tables at 1 000 000 elements',
    },
  },
  {
    id: 'stack.recursion',
    tries: 'recurse without end (stack overflow)',
    wat: `(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func $down (param $n i64) (result i64) (i64.add (call $down (i64.add (local.get $n) (i64.const 1))) (i64.const 1)))
  (func (export "_start") (drop (call $down (i64.const 0))) (call $exit (i32.const 0))))`,
    expect: { reason: 'TRAP' },
    wasmtime: { trap: true, why: 'same (call stack exhausted)' },
  },
  {
    id: 'cpu.loop',
    tries: 'spin forever',
    limits: { deadlineMs: 500 },
    wat: prog({ body: '(loop $spin (br $spin))' }),
    expect: { reason: 'DEADLINE_EXCEEDED' },
    wasmtime: { skip: true, why: 'would spin forever there' },
  },
  {
    id: 'out.flood',
    tries: 'write 64 KiB to stdout in a loop, forever',
    limits: { deadlineMs: 1000 },
    wat: prog({
      memory: '2',
      body: `(i32.store (i32.const 0) (i32.const 65536)) (i32.store (i32.const 4) (i32.const 65536))
        (loop $w (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))) (br $w))`,
    }),
    expect: { reason: 'DEADLINE_EXCEEDED' },
    wasmtime: { skip: true, why: 'would write forever there' },
  },
  {
    id: 'out.after-cancel',
    tries: 'keep writing after the task is cancelled',
    cancelAfterOutput: 1,
    wat: prog({
      body: `${IOVEC(8)} (loop $w (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))) (br $w))`,
    }),
    expect: { reason: 'CANCELLED' },
    wasmtime: { skip: true, why: 'would write forever there' },
  },
  {
    id: 'stdin.never-read',
    tries: 'exit without reading 8 MiB of stdin',
    stdin: 'x'.repeat(8 * 1024 * 1024),
    wat: prog({ body: '(call $exit (i32.const 0))' }),
    expect: { exitCode: 0 },
  },
];
