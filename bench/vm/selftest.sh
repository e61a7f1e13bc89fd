#!/usr/bin/env bash
# bench/vm/selftest.sh — prove the VM runner works:
#   1. the guest runs Debian's kernel with ip_vs loaded;
#   2. keepalived's health checker (-C) starts there (it refuses on a host
#      without IPVS), adds one virtual_server with one real_server that lives
#      in a network namespace created inside the guest, and ipvsadm lists it.
# Only documentation addresses are used, and only inside the guest.
#
#   bench/vm/selftest.sh            run both checks through bench/vm/run.sh
#   bench/vm/selftest.sh --guest    (internal) the keepalived part, in the guest
set -euo pipefail
HERE=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")

if [ "${1:-}" != --guest ]; then
  command -v keepalived >/dev/null || apt-get install -y -qq --no-install-recommends keepalived >&2
  command -v ipvsadm >/dev/null || apt-get install -y -qq --no-install-recommends ipvsadm >&2
  echo "=== 1. kernel and ip_vs in the guest"
  "$HERE/run.sh" --timing -- sh -c 'uname -r; lsmod | grep ip_vs'
  echo "=== 2. keepalived health checker + IPVS in the guest"
  "$HERE/run.sh" --timing -- "$HERE/selftest.sh" --guest
  exit
fi

# ------------------------------------------------------------- in the guest
[ "${VIPD_VM:-}" = 1 ] || { echo "selftest.sh --guest: only inside bench/vm/run.sh" >&2; exit 2; }
BB=/run/vipd-vm/busybox
W=$(mktemp -d /tmp/selftest.XXXXXX)

# real server: namespace rs1 at 192.0.2.10, HTTP on :8080 (busybox httpd)
ip netns add rs1
ip link add veth-lb type veth peer name veth-rs1 netns rs1
ip addr add 192.0.2.1/24 dev veth-lb
ip link set veth-lb up
ip -n rs1 link set lo up
ip -n rs1 addr add 192.0.2.10/24 dev veth-rs1
ip -n rs1 link set veth-rs1 up
mkdir -p "$W/www"; echo ok >"$W/www/index.html"
ip netns exec rs1 "$BB" httpd -f -p 192.0.2.10:8080 -h "$W/www" &
HTTPD=$!

cat >"$W/keepalived.conf" <<'EOF'
global_defs {
    router_id vipd_vm_selftest
}
virtual_server 198.51.100.10 80 {
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server 192.0.2.10 8080 {
        weight 1
        TCP_CHECK {
            connect_timeout 2
        }
    }
}
EOF

timeout 20 keepalived -n -l -D -C -f "$W/keepalived.conf" \
  -p /run/ka-selftest.pid -c /run/ka-selftest-checkers.pid >"$W/ka.log" 2>&1 &
KA=$!
# wait until the checker reports the real server up (or give up after 15 s)
for _ in $(seq 1 150); do
  grep -q 'TCP connection to \[192.0.2.10\]:tcp:8080 success' "$W/ka.log" && break
  sleep 0.1
done
sleep 0.5
echo "--- ipvsadm -Ln while keepalived runs:"
ipvsadm -Ln
ipvsadm -Ln | grep -q -- '-> 192.0.2.10:8080' && TABLE_OK=1 || TABLE_OK=0
kill -TERM "$KA" 2>/dev/null || true
wait "$KA" || true
echo "--- keepalived -n -l -D -C (run under timeout 20, stopped with SIGTERM) log:"
cat "$W/ka.log"
kill "$HTTPD" 2>/dev/null || true

echo "--- verdict:"
rc=0
if grep -qi "Can't initialize ipvs" "$W/ka.log"; then echo "FAIL: keepalived could not initialize IPVS"; rc=1; fi
grep -q 'Initializing ipvs' "$W/ka.log" \
  && echo "ok: keepalived initialized IPVS" || { echo "FAIL: no 'Initializing ipvs'"; rc=1; }
grep -q 'Activating healthchecker for service \[192.0.2.10\]:tcp:8080 for VS \[198.51.100.10\]:tcp:80' "$W/ka.log" \
  && echo "ok: healthchecker activated for [192.0.2.10]:8080 in VS [198.51.100.10]:80" || { echo "FAIL: service not activated"; rc=1; }
grep -q 'TCP connection to \[192.0.2.10\]:tcp:8080 success' "$W/ka.log" \
  && echo "ok: TCP_CHECK to [192.0.2.10]:8080 succeeded" || { echo "FAIL: no successful TCP_CHECK"; rc=1; }
[ "$TABLE_OK" = 1 ] && echo "ok: ipvsadm shows 198.51.100.10:80 -> 192.0.2.10:8080" || { echo "FAIL: IPVS table lacks the real server"; rc=1; }
exit $rc
