#!/usr/bin/env python3
"""Which of vipd's functions a running daemon executes: writes crates/vipd/hot-text.txt,
the list vipd's build script groups at the front of the executable's code (issue 16
item 1, BENCHMARKS.md "Hot code grouped together").

Why: the running daemon uses a few hundred kB of its ~9 MB of code, but spread over the
whole binary; the kernel maps file pages in 64 KB fault-around windows, so every
scattered function costs a window of resident memory. Grouped, they cost a few windows.

How: `vipd bench scale --variants vipd` runs the daemon (its own copy of the binary)
at 510 VRRPv3 instances, then `vipd bench checkers --impl vipd` with 500 HTTP_GET real
servers (the load balancer's running path); once start-up is over, this script
ptraces each daemon in turn and puts a one-shot breakpoint (int3) on the entry of
every function: a thread that hits one stops, the byte goes back, the function is
marked called, the thread goes on. Exact
(sampling misses what runs once a minute) and cheap (each function traps once; kernel
uprobes would do the same but register at ~10 a second). The functions called are
written in the order of their first call, as link-section globs with the parts that
change between builds (legacy symbol hashes, v0 crate disambiguators, LLVM's `.NNN`
suffixes) replaced by `*`, so the list stays valid across rebuilds and small code
changes; a stale entry only matches nothing.

Needs root (ptrace, network namespaces), binutils' `nm` and `readelf`, x86_64.
Usage (from the workspace root):

    cargo build --release -p vipd
    python3 bench/hot_text.py --vipd target/release/vipd --out crates/vipd/hot-text.txt

    python3 bench/hot_text.py --check target/release/vipd   # entries gone stale?

HOT_TEXT_DEBUG=1 prints every ptrace stop.
"""

import argparse
import ctypes
import fnmatch
import os
import re
import signal
import subprocess
import sys
import time


def sh(*cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def functions(exe):
    """(address, symbol) of every function in exe's executable segments, one per address."""
    segs = []
    for line in sh("readelf", "-lW", exe).splitlines():
        f = line.split()
        if f and f[0] == "LOAD" and "E" in f[6:-1]:
            segs.append((int(f[2], 16), int(f[4], 16)))  # vaddr, filesz
    seen, out = set(), []
    for line in sh("nm", "--defined-only", "-S", exe).splitlines():
        f = line.split()
        if len(f) != 4 or f[2] not in ("t", "T") or int(f[1], 16) == 0:
            continue
        addr = int(f[0], 16)
        for vaddr, size in segs:
            if vaddr <= addr < vaddr + size and addr not in seen:
                seen.add(addr)
                out.append((addr, f[3]))
    return out


LEGACY_HASH = re.compile(r"17h[0-9a-f]{16}E$")
V0_CRATE = re.compile(r"Cs[0-9A-Za-z]+_")
LLVM_SUFFIX = re.compile(r"\.[0-9]+$|\.llvm\.[0-9]+$")


def pattern(sym):
    """A glob for the link section of `sym` that survives a rebuild."""
    suffix = LLVM_SUFFIX.search(sym)
    # (a symbol's own name matches itself: no glob characters occur in mangled names)
    p = sym[: suffix.start()] if suffix else sym
    p = LEGACY_HASH.sub("17h*", p)
    if p.startswith("_R"):
        p = V0_CRATE.sub("Cs*_", p)
    return p if p.endswith("*") or not suffix else p + "*"


libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
libc.ptrace.restype = ctypes.c_long
PTRACE_CONT, PTRACE_PEEKUSER, PTRACE_POKEUSER, PTRACE_DETACH = 7, 3, 6, 17
PTRACE_SEIZE, PTRACE_INTERRUPT, PTRACE_O_TRACECLONE = 0x4206, 0x4207, 8
PTRACE_GETEVENTMSG, PTRACE_EVENT_STOP = 0x4201, 128
RIP = 16 * 8  # offsetof(struct user_regs_struct, rip)
WALL = 0x40000000
DEBUG = bool(os.environ.get("HOT_TEXT_DEBUG"))


def ptrace(req, tid, addr=0, data=0):
    ctypes.set_errno(0)
    r = libc.ptrace(req, tid, addr, data)
    if r == -1 and ctypes.get_errno():
        e = ctypes.get_errno()
        raise OSError(e, f"ptrace({req}, {tid}): {os.strerror(e)}")
    return r


class Breakpoints:
    """One-shot breakpoints: an int3 on the entry of every function; a thread that hits
    one stops, the original byte goes back, the thread goes on, and the function is
    marked called. Exact (sampling misses what runs once a second) and cheap: each
    function traps once. The process's threads are ptraced for the duration."""

    def __init__(self, pid, addrs):
        self.threads, self.called = set(), {}
        self.mem = os.open(f"/proc/{pid}/mem", os.O_RDWR)
        for tid in map(int, os.listdir(f"/proc/{pid}/task")):
            ptrace(PTRACE_SEIZE, tid, 0, PTRACE_O_TRACECLONE)
            self.threads.add(tid)
        self.stop_all()
        self.orig = {a: os.pread(self.mem, 1, a) for a in addrs}
        for a in addrs:
            os.pwrite(self.mem, b"\xcc", a)
        for tid in self.threads:
            ptrace(PTRACE_CONT, tid)

    def stop_all(self):
        """Interrupts every thread and waits until each has stopped."""
        for tid in list(self.threads):
            try:
                ptrace(PTRACE_INTERRUPT, tid)
            except ProcessLookupError:
                self.threads.discard(tid)
        waiting = set(self.threads)
        while waiting:
            tid, status = os.waitpid(-1, WALL)
            if self.event(tid, status, resume=False):
                waiting.discard(tid)

    def event(self, tid, status, resume=True):
        """Handles one wait status; True when `tid` is now stopped (or gone)."""
        if os.WIFEXITED(status) or os.WIFSIGNALED(status):
            self.threads.discard(tid)
            return True
        sig, ev = os.WSTOPSIG(status), status >> 16
        if DEBUG:
            print(f"tid {tid} sig {sig} ev {ev} resume {resume}", file=sys.stderr)
        if ev == 3:  # PTRACE_EVENT_CLONE: the new thread is traced too
            msg = ctypes.c_ulong()
            ptrace(PTRACE_GETEVENTMSG, tid, 0, ctypes.addressof(msg))
            self.threads.add(msg.value)
        if sig == signal.SIGTRAP and ev == 0:
            rip = ptrace(PTRACE_PEEKUSER, tid, RIP) - 1
            if rip in self.orig:
                # Two threads may trap on one entry before its byte is back: both
                # restart at the entry.
                if rip not in self.called:
                    os.pwrite(self.mem, self.orig[rip], rip)
                    self.called[rip] = len(self.called)  # first-call order
                ptrace(PTRACE_POKEUSER, tid, RIP, rip)
            sig = 0
        elif ev in (PTRACE_EVENT_STOP, 3) or sig == signal.SIGTRAP:
            sig = 0
        self.threads.add(tid)
        if resume:
            ptrace(PTRACE_CONT, tid, 0, sig)
            return False
        if sig:  # a real signal while stopping everything: deliver it, keep waiting
            ptrace(PTRACE_CONT, tid, 0, sig)
            return False
        return True

    def run(self, seconds):
        deadline = time.time() + seconds
        while time.time() < deadline:
            tid, status = os.waitpid(-1, WALL | os.WNOHANG)
            if tid == 0:
                time.sleep(0.002)
            else:
                self.event(tid, status)

    def close(self):
        """Stops the threads, puts every byte back, lets the process go."""
        self.stop_all()
        for a, b in self.orig.items():
            if a not in self.called:
                os.pwrite(self.mem, b, a)
        for tid in self.threads:
            try:
                ptrace(PTRACE_DETACH, tid)
            except ProcessLookupError:
                pass
        os.close(self.mem)


def load_base(pid, exe):
    for line in open(f"/proc/{pid}/maps"):
        f = line.split()
        if len(f) >= 6 and f[5] == exe and int(f[2], 16) == 0:
            return int(f[0].split("-")[0], 16)
    sys.exit(f"hot_text: {exe} not mapped at offset 0 in {pid}")


def find_daemon(deadline):
    """The pid of a bench's daemon: its private copy `/tmp/vpd-PID-N-TAG/vipd run ...`."""
    copy = re.compile(rb"/vpd-[0-9]+-[0-9]+-bench-[a-z]+/vipd$")
    while time.time() < deadline:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
            except OSError:
                continue
            if len(argv) > 1 and copy.search(argv[0]) and argv[1] == b"run":
                return int(pid)
        time.sleep(0.2)
    sys.exit("hot_text: the bench's daemon did not start")


def workload(a, name):
    """The bench command whose daemon is profiled; it keeps running past the count."""
    keep = str(a.warmup + a.seconds + 60)
    if name == "scale":
        return [a.vipd, "bench", "scale", "--variants", "vipd", "--instances", str(a.instances),
                "--advert", str(a.advert), "--settle", keep, "--window", "1"]
    return [a.vipd, "bench", "checkers", "--impl", "vipd", "--servers", str(a.servers),
            "--seconds", keep, "--removals", "0"]


def profile(a, name):
    """The functions the workload's daemon called, in the order of their first call, and
    (address, symbol) of every function of the binary."""
    bench = subprocess.Popen(workload(a, name), stdout=subprocess.DEVNULL)
    try:
        pid = find_daemon(time.time() + 120)
        exe = os.readlink(f"/proc/{pid}/exe")
        funcs = functions(exe)
        time.sleep(a.warmup)
        if bench.poll() is not None:
            sys.exit(f"hot_text: the {name} bench ended early")
        base = load_base(pid, exe)
        t0 = time.time()
        bps = Breakpoints(pid, [base + v for v, _ in funcs])
        print(f"hot_text: {name}: {len(funcs)} breakpoints in pid {pid}"
              f" ({time.time() - t0:.1f} s); {a.seconds} s", file=sys.stderr)
        try:
            bps.run(a.seconds)
        finally:
            bps.close()
        if not os.path.exists(f"/proc/{pid}"):
            sys.exit("hot_text: the daemon died while traced")
        if bench.poll() is not None:
            sys.exit(f"hot_text: the {name} bench ended while counting")
    finally:
        if bench.poll() is None:
            bench.send_signal(signal.SIGINT)
            bench.wait(timeout=60)
    first = {v: bps.called[base + v] for v, _ in funcs if base + v in bps.called}
    called = [sym for _, sym in sorted((first[v], sym) for v, sym in funcs if v in first)]
    print(f"hot_text: {name}: {len(called)} of {len(funcs)} functions called", file=sys.stderr)
    return called, funcs


def check(listing, exe):
    """Entries of `listing` that match no function of `exe`: 1 if any, else 0."""
    names = [sym for _, sym in functions(exe)]
    entries = [l.strip() for l in open(listing) if l.strip() and not l.startswith("#")]
    stale = [e for e in entries if not fnmatch.filter(names, e)]
    for e in stale:
        print(f"stale: {e}")
    print(f"hot_text: {len(entries) - len(stale)} of {len(entries)} entries of {listing}"
          f" match functions of {exe}", file=sys.stderr)
    return 1 if stale else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vipd", default="target/release/vipd")
    ap.add_argument("--out", default="crates/vipd/hot-text.txt")
    ap.add_argument("--workloads", default="scale,checkers", type=lambda v: v.split(","),
                    help="benches whose daemon is profiled, in turn: scale (VRRP), checkers")
    ap.add_argument("--instances", type=int, default=510, help="scale: VRRP instances")
    ap.add_argument("--servers", type=int, default=500, help="checkers: HTTP_GET real servers")
    ap.add_argument("--advert", type=int, default=100, help="ms")
    ap.add_argument("--warmup", type=int, default=20, help="s after the daemon starts")
    ap.add_argument("--seconds", type=int, default=60, help="how long calls are counted")
    ap.add_argument("--check", metavar="BINARY",
                    help="only report which entries of --out match no function of BINARY"
                         " (stale after renames or a toolchain update); exit 1 if any")
    a = ap.parse_args()
    if a.check:
        sys.exit(check(a.out, a.check))

    called, funcs = [], []
    for name in a.workloads:
        more, funcs = profile(a, name)
        called += [sym for sym in more if sym not in called]
    # A glob that also matches functions that were not called (other instances of a
    # generic function share the name but for the hash) keeps the exact name instead:
    # it goes stale with the next toolchain or dependency update and then matches
    # nothing, until this is run again.
    globs = {}
    for _, sym in funcs:
        g = pattern(sym)
        globs[g] = globs.get(g, 0) + 1
    patterns = list(dict.fromkeys(pattern(s) if globs[pattern(s)] == 1 else s for s in called))
    with open(a.out, "w") as f:
        f.write(
            "# Functions the running daemon calls, in the order of their first call: vipd's build script\n"
            "# puts their code together at the front of the executable (BENCHMARKS.md, issue 16\n"
            "# item 1). Globs over link-section names; written by bench/hot_text.py:\n"
            f"#   python3 bench/hot_text.py --workloads {','.join(a.workloads)}"
            f" --instances {a.instances} --advert {a.advert} --servers {a.servers}"
            f" --warmup {a.warmup} --seconds {a.seconds}\n"
            f"# {len(called)} of {len(funcs)} functions called in {a.seconds} s (each workload).\n")
        for p in patterns:
            f.write(p + "\n")
    print(f"hot_text: {len(called)} of {len(funcs)} functions called; {len(patterns)} patterns"
          f" written to {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
