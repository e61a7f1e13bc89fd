#!/bin/sh
# Profile vipd's reloads at 2,000 x 20 in the IPVS guest (issue 16 item 5):
#   mkdir -p /var/tmp/perfout
#   bench/vm/run.sh --timeout 800 --share /var/tmp/perfout -- bench/vm/perf-reload.sh
# then /var/tmp/perfout/{bench.txt,report.txt,perf.data} (resolve vipd's addresses on the host).
O=/var/tmp/perfout
cd "$(dirname "$0")/../.."
target/release/vipd bench reload --vs 2000 --rs 20 --reloads 2 --timeout 400 --variants vipd > $O/bench.txt 2>&1 &
B=$!
until grep -q "destinations in the kernel" $O/bench.txt; do sleep 0.5; done
P=$(pgrep -f "vipd-.*run|/vipd run" | head -1)
[ -n "$P" ] || P=$(pgrep -x vipd | while read p; do grep -q " run" /proc/$p/cmdline 2>/dev/null && echo $p; done | head -1)
echo "daemon pid $P" >> $O/bench.txt
perf record -F 250 -p "$P" -o $O/perf.data > $O/perf-record.txt 2>&1 &
R=$!
wait $B
kill -INT $R; wait $R
perf report -i $O/perf.data --stdio --sort dso,sym 2>/dev/null | head -80 > $O/report.txt
