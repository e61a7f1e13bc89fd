#!/usr/bin/env bash
# bench/vm/run.sh — run ONE command as root inside a throw-away KVM guest that
# boots Debian's kernel (with IPVS) on top of this host's root filesystem.
#
#   bench/vm/run.sh [options] -- CMD [ARGS...]
#
# The guest sees the host's / read-only (9p), with fresh tmpfs on /tmp, /run,
# /var/tmp and /dev/shm, and any --share DIR read-write at the same path. CMD
# runs with the caller's working directory and PATH; its stdout/stderr are
# streamed to ours and run.sh exits with CMD's exit status.
#
# Exit status: CMD's status; 124 on --timeout; 125 if the VM itself failed
# (no exit status came back — the guest console log is printed).
set -euo pipefail

usage() {
  cat <<'EOF'
usage: bench/vm/run.sh [options] -- CMD [ARGS...]
  --cpus N         vCPUs (default 2, env VIPD_VM_CPUS)
  --mem M          guest RAM, qemu syntax: 3G, 2048M (default 3G, env VIPD_VM_MEM)
  --share DIR      share host DIR read-write at the same path in the guest (repeatable)
  --env K=V        set an environment variable for CMD (repeatable)
  --timeout SECS   kill the VM after SECS seconds, exit 124 (default 900, 0 = none)
  --timing         print boot / command / shutdown latency to stderr
  --console        print the guest kernel console log to stderr afterwards
  --keep           keep the per-run directory ($VIPD_VM_DIR/runs/ID)
  --accel MODE     kvm | tcg | auto (default auto, env VIPD_VM_ACCEL): auto uses KVM
                   when it can boot a stock kernel, else TCG software emulation
  --tcg            same as --accel tcg
  -h, --help       this help
Build the kernel/initramfs first: bench/vm/build.sh (run.sh calls it if needed).
EOF
}

W=${VIPD_VM_DIR:-/var/tmp/vipd-vm}
HERE=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
CPUS=${VIPD_VM_CPUS:-2}
MEM=${VIPD_VM_MEM:-3G}
TIMEOUT=${VIPD_VM_TIMEOUT:-900}
ACCEL_MODE=${VIPD_VM_ACCEL:-auto}
TIMING=0 CONSOLE=0 KEEP=0
SHARES=() ENVS=()

die() { printf 'run.sh: error: %s\n' "$*" >&2; exit 125; }

while [ $# -gt 0 ]; do
  case $1 in
    --cpus) CPUS=${2:?}; shift 2 ;;
    --mem) MEM=${2:?}; shift 2 ;;
    --share) SHARES+=("${2:?}"); shift 2 ;;
    --env) ENVS+=("${2:?}"); shift 2 ;;
    --timeout) TIMEOUT=${2:?}; shift 2 ;;
    --timing) TIMING=1; shift ;;
    --console) CONSOLE=1; shift ;;
    --keep) KEEP=1; shift ;;
    --accel) ACCEL_MODE=${2:?}; shift 2 ;;
    --tcg) ACCEL_MODE=tcg; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) usage >&2; die "unknown option: $1 (put the command after --)" ;;
  esac
done
[ $# -gt 0 ] || { usage >&2; die "no command given"; }
[[ $CPUS =~ ^[0-9]+$ ]] && [ "$CPUS" -ge 1 ] || die "--cpus wants a positive integer"
[[ $TIMEOUT =~ ^[0-9]+$ ]] || die "--timeout wants whole seconds"

# ------------------------------------------------------------ preconditions
[ "$(id -u)" -eq 0 ] || die "must run as root (9p passthrough of / needs it)"
QEMU=$(command -v qemu-system-x86_64 || true)

# Can KVM boot Debian's stock kernel here? Prints the reason when it cannot.
kvm_unusable() {
  if [ ! -e /dev/kvm ]; then echo "/dev/kvm does not exist (no KVM on this machine)"
  elif [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then echo "/dev/kvm is not read/writable by $(id -un)"
  elif [ -d /sys/module/kvm_pvm ] && [ ! -d /sys/module/kvm_intel ] && [ ! -d /sys/module/kvm_amd ]; then
    # PVM ("pagetable-based virtual machine") is KVM without VT-x/AMD-V, used
    # for nested guests. It only runs PVM-enabled (CONFIG_PVM_GUEST) kernels;
    # a stock Debian kernel hangs right after the real-mode setup.
    echo "host KVM is PVM (kvm_pvm, no VT-x/AMD-V): it cannot boot a stock Debian kernel"
  fi
}
case $ACCEL_MODE in
  kvm) why=$(kvm_unusable); [ -z "$why" ] || die "--accel kvm: $why" ;;
  tcg) ;;
  auto)
    why=$(kvm_unusable)
    if [ -z "$why" ]; then ACCEL_MODE=kvm; else
      ACCEL_MODE=tcg
      [ -n "${VIPD_VM_QUIET:-}" ] || printf 'run.sh: note: %s; using TCG software emulation (slow; see bench/vm/README.md)\n' "$why" >&2
    fi ;;
  *) die "--accel wants kvm, tcg or auto" ;;
esac
if [ -z "$QEMU" ] || [ ! -f "$W/current.env" ]; then
  [ -n "$QEMU" ] || printf 'run.sh: qemu-system-x86_64 not found; running build.sh to install it\n' >&2
  "$HERE/build.sh" >&2 || die "build.sh failed"
  QEMU=$(command -v qemu-system-x86_64) || die "qemu-system-x86_64 missing (apt-get install qemu-system-x86)"
fi
# shellcheck source=/dev/null
. "$W/current.env"
[ -f "$KERNEL" ] && [ -f "$INITRD" ] || die "kernel/initramfs missing; run bench/vm/build.sh"

for i in "${!SHARES[@]}"; do
  d=$(readlink -f "${SHARES[$i]}") || die "--share ${SHARES[$i]}: bad path"
  [ -d "$d" ] || die "--share $d: not a directory"
  case $d in /|/proc|/proc/*|/sys|/sys/*|/dev|/dev/*) die "--share $d: not allowed" ;; esac
  case $d in *[[:space:]]*) die "--share $d: paths with whitespace are not supported" ;; esac
  SHARES[$i]=$d
done

# ------------------------------------------------------------- run directory
mkdir -p "$W/runs"
RUN=$(mktemp -d "$W/runs/run.XXXXXXXX")
QPID=
cleanup() {
  local rc=$?
  if [ -n "$QPID" ] && kill -0 "$QPID" 2>/dev/null; then kill "$QPID" 2>/dev/null || true; fi
  # reader jobs exit on EOF once qemu is gone
  wait 2>/dev/null || true
  if [ "$KEEP" -eq 1 ]; then printf 'run.sh: kept %s\n' "$RUN" >&2; else rm -rf "$RUN"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

{
  printf 'KROOT=%q\n' "$KROOT"
} >"$RUN/guest.env"
: >"$RUN/shares"
for i in "${!SHARES[@]}"; do printf 'share%d %s\n' "$i" "${SHARES[$i]}" >>"$RUN/shares"; done
{
  echo '#!/bin/bash'
  echo '# generated by bench/vm/run.sh'
  printf 'export PATH=%q\n' "$PATH"
  echo 'export HOME=/root LANG=C.UTF-8 VIPD_VM=1'
  printf 'export MODPROBE_OPTIONS=%q\n' "-d /run/vipd-vm/kroot"
  echo 'unset TERM'
  for e in "${ENVS[@]}"; do
    [[ $e == *=* ]] || { echo "run.sh: --env wants K=V" >&2; exit 125; }
    printf 'export %q=%q\n' "${e%%=*}" "${e#*=}"
  done
  printf 'cd -- %q 2>/dev/null || { echo "run.sh: note: %q is not visible in the guest (tmpfs over /tmp, /var/tmp, /run?); running in /" >&2; cd /; }\n' "$PWD" "$PWD"
  printf 'exec'; printf ' %q' "$@"; printf '\n'
} >"$RUN/cmd.sh"

for p in out err ctl; do mkfifo "$RUN/$p.in" "$RUN/$p.out"; done

# qboot: minimal firmware, boots a -kernel noticeably faster than SeaBIOS
BIOS=(); [ -f /usr/share/qemu/qboot.rom ] && BIOS=(-bios /usr/share/qemu/qboot.rom)
ACCEL=(-accel kvm -cpu host)
# shellcheck disable=SC2054  # commas are qemu option syntax
# TCG: one host thread per vCPU (MTTCG), a large translation cache
[ "$ACCEL_MODE" = tcg ] && ACCEL=(-accel tcg,thread=multi,tb-size=512 -cpu max)

# shellcheck disable=SC2054
QARGS=(
  "${ACCEL[@]}" -M pc -smp "$CPUS" -m "$MEM"
  -nodefaults -no-user-config -display none -vga none -no-reboot -pidfile "$RUN/qemu.pid"
  "${BIOS[@]}"
  -kernel "$KERNEL" -initrd "$INITRD"
  -append "console=ttyS0 quiet panic=-1 cryptomgr.notests ${VIPD_VM_APPEND:-} vipdvm.run=$RUN"
  -serial "file:$RUN/console.log"
  -fsdev "local,id=hostroot,path=/,security_model=passthrough,readonly=on,multidevs=remap"
  -device "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot"
  -device virtio-rng-pci
  -device virtio-serial-pci,id=vser
  -chardev "pipe,id=out,path=$RUN/out" -device "virtserialport,bus=vser.0,chardev=out,name=vipd.out"
  -chardev "pipe,id=err,path=$RUN/err" -device "virtserialport,bus=vser.0,chardev=err,name=vipd.err"
  -chardev "pipe,id=ctl,path=$RUN/ctl" -device "virtserialport,bus=vser.0,chardev=ctl,name=vipd.ctl"
)
for i in "${!SHARES[@]}"; do
  QARGS+=(-fsdev "local,id=share$i,path=${SHARES[$i]},security_model=passthrough"
          -device "virtio-9p-pci,fsdev=share$i,mount_tag=share$i")
done

# Readers first (FIFOs), then qemu. qemu opens the FIFOs O_RDWR, so the readers
# see EOF only once qemu has exited.
cat "$RUN/out.out" &
cat "$RUN/err.out" >&2 &
while IFS= read -r line; do printf '%s %s\n' "$(date +%s%N)" "$line"; done <"$RUN/ctl.out" >"$RUN/events" &

T0=$(date +%s%N)
if [ "$TIMEOUT" -gt 0 ]; then
  timeout --kill-after=5 "$TIMEOUT" "$QEMU" "${QARGS[@]}" </dev/null >"$RUN/qemu.log" 2>&1 &
else
  "$QEMU" "${QARGS[@]}" </dev/null >"$RUN/qemu.log" 2>&1 &
fi
QPID=$!
set +e
wait "$QPID"; QRC=$?
set -e
QPID=
T3=$(date +%s%N)
wait   # readers drain and exit

RC=$(awk '$2 == "rc" {print $3}' "$RUN/events")
TIMED_OUT=0
[ -z "$RC" ] && { [ "$QRC" -eq 124 ] || [ "$QRC" -eq 137 ]; } && TIMED_OUT=1
if [ "$CONSOLE" -eq 1 ] || { [ -z "$RC" ] && [ "$TIMED_OUT" -eq 0 ]; }; then
  printf -- '----- guest console (%s) -----\n' "$RUN/console.log" >&2
  cat "$RUN/console.log" >&2 || true
  if [ -s "$RUN/qemu.log" ]; then printf -- '----- qemu -----\n' >&2; cat "$RUN/qemu.log" >&2; fi
  printf -- '-----\n' >&2
fi
if [ "$TIMING" -eq 1 ]; then
  awk -v t0="$T0" -v t3="$T3" '
    $2 == "start" { t1 = $1; up_init = $3; up_cmd = $4 }
    $2 == "rc"    { t2 = $1; up_end = $4 }
    END {
      if (t1) printf "run.sh: timing: qemu start -> command start %.0f ms (guest uptime at /init %.2f s, at command %.2f s)\n", (t1 - t0) / 1e6, up_init, up_cmd > "/dev/stderr"
      if (t2) printf "run.sh: timing: command %.0f ms (guest clock %.0f ms), exit -> qemu gone %.0f ms, total %.0f ms\n", (t2 - t1) / 1e6, (up_end - up_cmd) * 1000, (t3 - t2) / 1e6, (t3 - t0) / 1e6 > "/dev/stderr"
    }' "$RUN/events"
fi

if [ -z "$RC" ]; then
  if [ "$TIMED_OUT" -eq 1 ]; then
    printf 'run.sh: timeout after %ss, VM killed\n' "$TIMEOUT" >&2
    if ! grep -q '^[0-9]* start' "$RUN/events"; then
      printf 'run.sh: the command never started; last guest console lines:\n' >&2
      tail -n 15 "$RUN/console.log" >&2 || true
    fi
    exit 124
  fi
  fail=$(awk '$2 == "fail" {sub(/^[^ ]+ fail /, ""); print}' "$RUN/events")
  printf 'run.sh: the VM returned no exit status (qemu exit %s)%s\n' "$QRC" "${fail:+: $fail}" >&2
  exit 125
fi
exit "$RC"
