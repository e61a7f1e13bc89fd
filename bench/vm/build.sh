#!/usr/bin/env bash
# bench/vm/build.sh — prepare the IPVS-capable test VM used by bench/vm/run.sh.
#
# Idempotent. Everything lands under $VIPD_VM_DIR (default /var/tmp/vipd-vm),
# never in the repository:
#   debs/                    downloaded .deb files (kernel, busybox-static)
#   kernel/<kver>/           dpkg-deb -x of the kernel package (+ depmod output)
#   busybox/<ver>/           dpkg-deb -x of busybox-static
#   initramfs-<kver>.cpio    busybox + preloaded modules + /init
#   current.env              what run.sh boots (KVER, KERNEL, INITRD, KROOT)
#
# Environment knobs:
#   VIPD_VM_DIR            work dir (default /var/tmp/vipd-vm)
#   VIPD_VM_KERNEL_PKG     kernel package (default: what linux-image-amd64 depends on)
#   VIPD_VM_EXTRA_MODULES  extra module names to preload (space separated)
#   VIPD_VM_FORCE=1        rebuild the initramfs even if the inputs did not change
set -euo pipefail

W=${VIPD_VM_DIR:-/var/tmp/vipd-vm}

# Modules preloaded at boot. Their dependencies (modules.dep) and "pre:" soft
# dependencies (modules.softdep, via modules.alias) are added automatically.
# Anything else can still be loaded inside the guest on demand: the full module
# tree of the guest kernel is reachable there (kernel auto-load and `modprobe`).
BASE_MODULES=(
  # boot plumbing: PCI virtio transport, 9p host shares, output ports, entropy
  virtio_pci 9p 9pnet 9pnet_virtio netfs virtio_console virtio_rng
  # IPVS + conntrack
  ip_vs ip_vs_rr ip_vs_wrr ip_vs_sh ip_vs_lc ip_vs_wlc ip_vs_mh
  nf_conntrack nf_defrag_ipv4 nf_defrag_ipv6 libcrc32c
  # test topologies
  veth bridge dummy macvlan sch_netem
)
read -r -a EXTRA_MODULES <<<"${VIPD_VM_EXTRA_MODULES:-}"

log() { printf 'build.sh: %s\n' "$*" >&2; }
die() { printf 'build.sh: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (apt-get, dpkg-deb, device nodes in the initramfs)"
mkdir -p "$W"/debs "$W"/kernel "$W"/busybox "$W"/runs

APT_UPDATED=0
apt_update_once() {
  if [ "$APT_UPDATED" -eq 0 ]; then
    log "apt-get update"
    apt-get update -qq >&2 || die "apt-get update failed"
    APT_UPDATED=1
  fi
}
apt_install() { # pkg...
  log "installing: $*"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2; then
    apt_update_once
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2 \
      || die "apt-get install $* failed"
  fi
}

# ---------------------------------------------------------------- host tools
need_pkgs=()
command -v qemu-system-x86_64 >/dev/null || need_pkgs+=(qemu-system-x86)
command -v depmod >/dev/null || need_pkgs+=(kmod)
command -v cpio >/dev/null || need_pkgs+=(cpio)
if [ "${#need_pkgs[@]}" -gt 0 ]; then apt_install "${need_pkgs[@]}"; else log "host tools present (qemu-system-x86_64, depmod, cpio)"; fi

# ----------------------------------------------------------- download debs
# apt-get download drops privileges to _apt unless told otherwise; the work dir
# is root-owned, so keep it as root (avoids a noisy warning).
APT_DL=(apt-get -qq -o APT::Sandbox::User=root download)

kpkg=${VIPD_VM_KERNEL_PKG:-}
if [ -z "$kpkg" ]; then
  kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
  if [ -z "$kpkg" ]; then
    apt_update_once
    kpkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
  fi
  [ -n "$kpkg" ] || die "could not resolve linux-image-amd64 to a versioned kernel package"
fi
kver=${kpkg#linux-image-}   # e.g. 6.1.0-56-amd64

fetch_deb() { # pkg -> prints path of the .deb in $W/debs
  local pkg=$1 ver f
  ver=$(apt-cache policy "$pkg" 2>/dev/null | awk '/Candidate:/ {print $2}')
  if [ -z "$ver" ] || [ "$ver" = "(none)" ]; then
    apt_update_once
    ver=$(apt-cache policy "$pkg" | awk '/Candidate:/ {print $2}')
  fi
  [ -n "$ver" ] && [ "$ver" != "(none)" ] || die "package $pkg not available from apt"
  f="$W/debs/${pkg}_${ver//:/%3a}_amd64.deb"   # apt-get download encodes the epoch colon
  if [ -s "$f" ]; then
    log "have $(basename "$f")"
  else
    log "downloading $pkg=$ver"
    (cd "$W/debs" && "${APT_DL[@]}" "$pkg=$ver" >&2) || die "apt-get download $pkg failed"
    [ -s "$f" ] || die "apt-get download $pkg did not produce $f"
  fi
  printf '%s\n' "$f"
}

kdeb=$(fetch_deb "$kpkg")
bbdeb=$(fetch_deb busybox-static)

# ------------------------------------------------------------------ extract
KROOT="$W/kernel/$kver"
MODDIR="$KROOT/lib/modules/$kver"
if [ -f "$KROOT/.done" ] && [ "$(cat "$KROOT/.done")" = "$(basename "$kdeb")" ]; then
  log "kernel $kver already extracted in $KROOT"
else
  log "extracting $(basename "$kdeb") -> $KROOT"
  rm -rf "$KROOT"; mkdir -p "$KROOT"
  dpkg-deb -x "$kdeb" "$KROOT"
  # The .deb ships no modules.dep (its postinst runs depmod): generate it.
  log "depmod for $kver"
  depmod -b "$KROOT" "$kver"
  basename "$kdeb" >"$KROOT/.done"
fi
[ -f "$KROOT/boot/vmlinuz-$kver" ] || die "no vmlinuz in $kdeb"
grep -q '^CONFIG_IP_VS=[ym]' "$KROOT/boot/config-$kver" || die "kernel $kver has no IPVS"

# Uncompressed vmlinux for PVH direct boot: skips the in-guest decompression of
# the bzImage, which costs ~1 s under TCG. Falls back to the bzImage if absent.
VMLINUX="$KROOT/boot/vmlinux-$kver"
if [ ! -s "$VMLINUX" ] && grep -q '^CONFIG_PVH=y' "$KROOT/boot/config-$kver"; then
  off=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$KROOT/boot/vmlinuz-$kver" | head -n1 | cut -d: -f1 || true)
  command -v xz >/dev/null || apt_install xz-utils
  # (process substitution, not a pipe: xz stops after the stream and tail's
  # SIGPIPE would fail the pipeline under pipefail)
  if [ -n "$off" ] && xz -dc --single-stream <(tail -c +$((off + 1)) "$KROOT/boot/vmlinuz-$kver") >"$VMLINUX.tmp" 2>/dev/null \
     && [ "$(od -An -tx1 -N4 "$VMLINUX.tmp" | tr -d ' \n')" = 7f454c46 ]; then
    mv "$VMLINUX.tmp" "$VMLINUX"; log "extracted vmlinux for PVH boot"
  else
    rm -f "$VMLINUX.tmp"; log "could not extract vmlinux (not xz?); will boot the bzImage"
  fi
fi
BOOT_KERNEL="$KROOT/boot/vmlinuz-$kver"; [ -s "$VMLINUX" ] && BOOT_KERNEL=$VMLINUX

bbver=$(dpkg-deb -f "$bbdeb" Version); bbver=${bbver//:/_}
BBDIR="$W/busybox/$bbver"
if [ -x "$BBDIR/bin/busybox" ]; then
  log "busybox $bbver already extracted"
else
  log "extracting $(basename "$bbdeb") -> $BBDIR"
  rm -rf "$BBDIR"; mkdir -p "$BBDIR"
  dpkg-deb -x "$bbdeb" "$BBDIR"
fi

# ---------------------------------------------- resolve module dependencies
declare -A PATH_OF=() DEPS_OF=() BUILTIN=() SOFTPRE=() SOFTPOST=() ALIAS=() SEEN=()
ORDER=()
norm() { local n=${1##*/}; n=${n%.ko*}; printf '%s' "${n//-/_}"; }

while IFS= read -r line; do
  key=${line%%:*}; n=$(norm "$key")
  PATH_OF[$n]=$key; DEPS_OF[$key]=${line#*:}
done <"$MODDIR/modules.dep"
while IFS= read -r line; do BUILTIN[$(norm "$line")]=1; done <"$MODDIR/modules.builtin"
while read -r kw name rest; do
  [ "$kw" = softdep ] || continue
  mode=; pre=; post=
  for w in $rest; do
    case $w in pre:) mode=pre ;; post:) mode=post ;; *) [ "$mode" = pre ] && pre+=" $w"; [ "$mode" = post ] && post+=" $w" ;; esac
  done
  n=$(norm "$name"); SOFTPRE[$n]+=$pre; SOFTPOST[$n]+=$post
done <"$MODDIR/modules.softdep"
while read -r kw a m; do
  [ "$kw" = alias ] || continue
  case $a in *'*'*|*'?'*|*'['*) continue ;; esac   # wildcard device aliases: not needed here
  ALIAS[$a]+=" $(norm "$m")"
done <"$MODDIR/modules.alias"

visit() { # name [optional]
  local n; n=$(norm "$1"); local optional=${2:-}
  [ -z "${SEEN[$n]:-}" ] || return 0
  SEEN[$n]=1
  if [ -n "${BUILTIN[$n]:-}" ]; then log "module $n is built into $kver"; return 0; fi
  local p=${PATH_OF[$n]:-}
  if [ -z "$p" ]; then
    if [ -n "${ALIAS[$1]:-}" ]; then local m; for m in ${ALIAS[$1]}; do visit "$m" "$optional"; done; return 0; fi
    [ -n "$optional" ] && { log "soft dependency $1 not found, skipped"; return 0; }
    die "module $1 not found in $MODDIR/modules.dep"
  fi
  local d
  for d in ${SOFTPRE[$n]:-}; do visit "$d" optional; done
  for d in ${DEPS_OF[$p]}; do visit "$d"; done
  ORDER+=("$p")
  for d in ${SOFTPOST[$n]:-}; do visit "$d" optional; done
}
for m in "${BASE_MODULES[@]}" "${EXTRA_MODULES[@]}"; do visit "$m"; done
log "preloading ${#ORDER[@]} modules (requested $((${#BASE_MODULES[@]} + ${#EXTRA_MODULES[@]})), rest from modules.dep/softdep)"

# ------------------------------------------------------------ guest /init
# Runs as PID 1 inside the initramfs. It never chroots itself (so the kernel's
# module auto-loader keeps using the initramfs' busybox modprobe); the command
# runs in a chrooted child.
read -r -d '' INIT <<'INIT_EOF' || true
#!/bin/busybox sh
# vipd-vm guest init (generated by bench/vm/build.sh)
export PATH=/bin
KVER=@KVER@
R=/newroot
log() { echo "vipd-vm-init: $*" >/dev/kmsg 2>/dev/null || echo "vipd-vm-init: $*"; }
fail() { log "FATAL: $*"; [ -n "$CTL" ] && echo "fail $*" >"$CTL"; sync; poweroff -f; sleep 5; reboot -f; }

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
CTL=
t_init=$(cut -d' ' -f1 /proc/uptime)

while read -r m; do
  insmod "/lib/modules/$KVER/$m" 2>/dev/null || log "insmod $m failed"
done </modules.load

RUN=
for a in $(cat /proc/cmdline); do
  case $a in vipdvm.run=*) RUN=${a#vipdvm.run=} ;; esac
done
[ -n "$RUN" ] || fail "no vipdvm.run= on the kernel command line"

# virtio serial ports: map port names to device nodes (they appear shortly
# after virtio_console binds).
port() {
  local i=0 d
  while [ $i -lt 200 ]; do
    for d in /sys/class/virtio-ports/*; do
      [ -f "$d/name" ] && [ "$(cat "$d/name")" = "$1" ] && { echo "/dev/${d##*/}"; return 0; }
    done
    i=$((i + 1)); usleep 10000
  done
  return 1
}
OUT=$(port vipd.out) || fail "port vipd.out missing"
ERR=$(port vipd.err) || fail "port vipd.err missing"
CTL=$(port vipd.ctl) || fail "port vipd.ctl missing"
i=0; while [ ! -c "$OUT" ] || [ ! -c "$ERR" ] || [ ! -c "$CTL" ]; do
  i=$((i + 1)); [ $i -gt 200 ] && fail "port device nodes missing"; usleep 10000
done

mkdir -p $R
mount -t 9p -o ro,trans=virtio,version=9p2000.L,msize=512000,cache=loose hostroot $R || fail "mount host root (9p) failed"
[ -f "$R$RUN/guest.env" ] || fail "$RUN/guest.env not visible in the guest"
. "$R$RUN/guest.env"   # sets KROOT, and the share list lives in $RUN/shares

# writable scratch: /run first (it holds our state), then bind what must stay
# reachable from under /var/tmp or /tmp before tmpfs hides it.
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs $R/run || fail "tmpfs /run"
mkdir -p $R/run/vipd-vm/kroot
cp "$R$RUN/cmd.sh" $R/run/vipd-vm/cmd.sh
: >$R/run/vipd-vm/busybox
mount --bind /bin/busybox $R/run/vipd-vm/busybox   # static busybox for tests (httpd, nc, ...)
cp "$R$RUN/shares" /shares 2>/dev/null || : >/shares
if [ -d "$R$KROOT/lib/modules/$KVER" ]; then
  mount --bind "$R$KROOT" $R/run/vipd-vm/kroot
  mkdir -p /lib/modules/$KVER
  mount --bind "$R$KROOT/lib/modules/$KVER" /lib/modules/$KVER   # on-demand modprobe
fi
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs $R/tmp || fail "tmpfs /tmp"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs $R/var/tmp || fail "tmpfs /var/tmp"
mount -t proc proc $R/proc
mount -t sysfs sysfs $R/sys
mount -t cgroup2 cgroup2 $R/sys/fs/cgroup 2>/dev/null || :
mount -t devtmpfs devtmpfs $R/dev
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts $R/dev/pts 2>/dev/null || :
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs $R/dev/shm

# read-write shares, mounted at the same path as on the host
while read -r tag path; do
  [ -n "$tag" ] || continue
  mkdir -p "$R$path" 2>/dev/null
  mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=mmap "$tag" "$R$path" || fail "mount share $path failed"
done </shares

echo /sbin/modprobe >/proc/sys/kernel/modprobe
hostname vipd-vm
ip link set lo up

t_cmd=$(cut -d' ' -f1 /proc/uptime)
echo "start $t_init $t_cmd" >"$CTL"
chroot $R /bin/bash /run/vipd-vm/cmd.sh </dev/null >"$OUT" 2>"$ERR"
rc=$?
t_end=$(cut -d' ' -f1 /proc/uptime)
sync
echo "rc $rc $t_end" >"$CTL"
while read -r tag path; do [ -n "$tag" ] && umount "$R$path" 2>/dev/null; done </shares
sync
poweroff -f
sleep 5
reboot -f
INIT_EOF
INIT=${INIT//@KVER@/$kver}

# ------------------------------------------------------- build initramfs
INITRD="$W/initramfs-$kver.cpio"
stamp=$( { printf '%s\n' "$kver" "$bbver" "${ORDER[@]}"; printf '%s' "$INIT"; } | sha256sum | cut -c1-16)
if [ -z "${VIPD_VM_FORCE:-}" ] && [ -f "$INITRD" ] && [ "$(cat "$INITRD.stamp" 2>/dev/null)" = "$stamp" ]; then
  log "initramfs up to date: $INITRD"
else
  stage=$(mktemp -d "$W/initramfs.XXXXXX")
  trap 'rm -rf "$stage"' EXIT
  mkdir -p "$stage"/{bin,sbin,dev,proc,sys,newroot,lib/modules/$kver}
  cp "$BBDIR/bin/busybox" "$stage/bin/busybox"
  for a in $("$BBDIR/bin/busybox" --list); do
    [ "$a" = busybox ] || ln -s busybox "$stage/bin/$a"
  done
  ln -s ../bin/busybox "$stage/sbin/modprobe"
  : >"$stage/modules.load"
  for p in "${ORDER[@]}"; do
    mkdir -p "$stage/lib/modules/$kver/$(dirname "$p")"
    cp "$MODDIR/$p" "$stage/lib/modules/$kver/$p"
    printf '%s\n' "$p" >>"$stage/modules.load"
  done
  # keep the index files so busybox modprobe works even without the 9p bind
  cp "$MODDIR"/modules.{dep,alias,softdep,builtin,order} "$stage/lib/modules/$kver/"
  printf '%s\n' "$INIT" >"$stage/init"
  chmod 0755 "$stage/init"
  mknod -m 0600 "$stage/dev/console" c 5 1
  mknod -m 0666 "$stage/dev/null" c 1 3
  (cd "$stage" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet) >"$INITRD.tmp"
  mv "$INITRD.tmp" "$INITRD"
  printf '%s\n' "$stamp" >"$INITRD.stamp"
  log "built $INITRD ($(du -h "$INITRD" | cut -f1), ${#ORDER[@]} modules)"
fi

cat >"$W/current.env.tmp" <<EOF
# written by bench/vm/build.sh
KVER=$kver
KERNEL=$BOOT_KERNEL
INITRD=$INITRD
KROOT=$KROOT
BUILD_STAMP=$stamp
EOF
mv "$W/current.env.tmp" "$W/current.env"
log "ready: kernel $kver, initramfs $INITRD (run: bench/vm/run.sh -- CMD...)"
