#!/usr/bin/env python3
"""Times `vipd check-config` against `keepalived -t` on one config (BENCHMARKS.md,
"Config parsing"): whole processes, interleaved run by run so machine load hits all
alike; wall time (median, min), CPU time (user + sys, median) and max RSS from wait4.

    python3 bench/check_config.py --conf /tmp/vipd-bench.conf --runs 15 \\
        --vipd after=target/release/vipd --vipd before=/tmp/vipd.before \\
        --keepalived 2.2.7=keepalived --keepalived 2.4.3=/opt/keepalived-2.4.3/sbin/keepalived
"""
import argparse
import os
import statistics
import subprocess
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--conf", required=True)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--vipd", action="append", default=[], metavar="LABEL=PATH")
    ap.add_argument("--keepalived", action="append", default=[], metavar="LABEL=PATH")
    a = ap.parse_args()
    cmds = {}
    for spec in a.vipd:
        label, path = spec.split("=", 1)
        cmds[f"vipd {label}"] = [path, "check-config", "-f", a.conf]
    for spec in a.keepalived:
        label, path = spec.split("=", 1)
        # As the earlier figures: setsid -w, no syslog, log to stderr, detailed.
        cmds[f"keepalived {label}"] = ["setsid", "-w", path, "-t", "-f", a.conf,
                                       "--no-syslog", "-l", "-D"]
    res = {k: [] for k in cmds}
    load0 = open("/proc/loadavg").read().split()[0]
    for _ in range(a.runs):
        for k, c in cmds.items():
            t = time.perf_counter()
            p = subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            _, status, ru = os.wait4(p.pid, 0)
            res[k].append((time.perf_counter() - t, ru.ru_utime + ru.ru_stime,
                           ru.ru_maxrss, os.waitstatus_to_exitcode(status)))
    load1 = open("/proc/loadavg").read().split()[0]
    print(f"{a.runs} runs each, load average {load0} before, {load1} after")
    print("| | wall median (min) | CPU median | max RSS | exit |")
    print("|---|---:|---:|---:|---|")
    stats = {}
    for k, v in res.items():
        wall = statistics.median(x[0] for x in v)
        cpu = statistics.median(x[1] for x in v)
        rss = max(x[2] for x in v) / 1024
        stats[k] = (wall, cpu, rss)
        print(f"| {k} | {wall * 1000:.0f} ms ({min(x[0] for x in v) * 1000:.0f}) "
              f"| {cpu * 1000:.0f} ms | {rss:.1f} MB | {sorted(set(x[3] for x in v))} |")
    print()
    print("| ratio | wall | CPU | max RSS |")
    print("|---|---:|---:|---:|")
    for kk in (k for k in cmds if k.startswith("keepalived")):
        for kv in (k for k in cmds if k.startswith("vipd")):
            w, c, r = (stats[kv][i] / stats[kk][i] for i in range(3))
            print(f"| {kv} / {kk} | {w:.2f}× | {c:.2f}× | {r:.2f}× |")


if __name__ == "__main__":
    main()
