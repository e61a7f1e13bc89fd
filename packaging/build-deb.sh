#!/bin/sh
# Build a Debian package of vipd with plain dpkg-deb (no cargo-deb needed).
#
#   packaging/build-deb.sh                 # cargo build --release, then package
#   VIPD_BIN=target/debug/vipd packaging/build-deb.sh   # package an existing binary
#
# Environment:
#   VIPD_BIN        use this binary instead of building target/release/vipd
#   CARGO_TARGET_DIR  cargo's target directory (default: <workspace>/target)
#   VIPD_DEB_DIR    where the .deb goes (default: $CARGO_TARGET_DIR/debian)
#   CARGO           cargo command (default: cargo)
#   VIPD_DEB_COMPRESS  dpkg-deb compressor (default: xz; gzip or none are faster)
#
# The package version is the binary's own (`vipd --version`, i.e. the Cargo package
# version). The last line printed is the path of the .deb.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$root/target}
out_dir=${VIPD_DEB_DIR:-$target_dir/debian}

if [ -n "${VIPD_BIN:-}" ]; then
    bin=$VIPD_BIN
else
    (cd "$root" && ${CARGO:-cargo} build --release --locked -p vipd)
    bin=$target_dir/release/vipd
fi
[ -x "$bin" ] || { echo "build-deb: no executable at $bin" >&2; exit 1; }

version=$("$bin" --version | awk '{print $2}')
[ -n "$version" ] || { echo "build-deb: cannot read the version from $bin --version" >&2; exit 1; }
arch=$(dpkg --print-architecture)

# Shared-library dependencies from the binary itself.
glibc=$(objdump -T "$bin" 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n 1 || true)
depends="libc6${glibc:+ (>= $glibc)}"
if readelf -d "$bin" 2>/dev/null | grep -q 'libgcc_s\.so'; then
    depends="$depends, libgcc-s1"
fi

stage=$out_dir/vipd_${version}_${arch}
rm -rf "$stage"
mkdir -p "$stage/DEBIAN" \
    "$stage/usr/sbin" \
    "$stage/lib/systemd/system" \
    "$stage/usr/share/man/man1" \
    "$stage/usr/share/bash-completion/completions" \
    "$stage/usr/share/zsh/vendor-completions" \
    "$stage/usr/share/fish/vendor_completions.d" \
    "$stage/usr/share/doc/vipd/examples/frr" \
    "$stage/usr/share/doc/vipd/examples/grafana" \
    "$stage/usr/share/dbus-1/system.d"

install -m 0755 "$bin" "$stage/usr/sbin/vipd"
strip --strip-unneeded "$stage/usr/sbin/vipd" 2>/dev/null || true
install -m 0644 "$here/vipd.service" "$stage/lib/systemd/system/vipd.service"
# keepalived's DBus policy (root only), for `enable_dbus`.
install -m 0644 "$here/org.keepalived.Vrrp1.conf" "$stage/usr/share/dbus-1/system.d/org.keepalived.Vrrp1.conf"

# Man pages and completions come from the clap definition (`vipd gen`, hidden).
gen=$(mktemp -d)
trap 'rm -rf "$gen"' EXIT
"$bin" gen man "$gen/man" >/dev/null
for page in "$gen"/man/*.1; do
    gzip -9n <"$page" >"$stage/usr/share/man/man1/$(basename "$page").gz"
done
"$bin" gen completions bash "$gen/comp" >/dev/null
"$bin" gen completions zsh "$gen/comp" >/dev/null
"$bin" gen completions fish "$gen/comp" >/dev/null
install -m 0644 "$gen/comp/vipd.bash" "$stage/usr/share/bash-completion/completions/vipd"
install -m 0644 "$gen/comp/_vipd" "$stage/usr/share/zsh/vendor-completions/_vipd"
install -m 0644 "$gen/comp/vipd.fish" "$stage/usr/share/fish/vendor_completions.d/vipd.fish"

install -m 0644 "$here"/examples/*.conf "$stage/usr/share/doc/vipd/examples/"
install -m 0644 "$here"/examples/frr/*.conf "$stage/usr/share/doc/vipd/examples/frr/"
install -m 0644 "$here"/examples/grafana/*.json "$stage/usr/share/doc/vipd/examples/grafana/"
for doc in README.md docs/user-guide.md docs/keepalived-differences.md docs/design.md BENCHMARKS.md; do
    [ -f "$root/$doc" ] && install -m 0644 "$root/$doc" "$stage/usr/share/doc/vipd/"
done
install -m 0644 "$here/copyright" "$stage/usr/share/doc/vipd/copyright"
printf 'vipd (%s) unstable; urgency=medium\n\n  * Built from source by packaging/build-deb.sh.\n\n -- vipd maintainers <vipd@localhost>  %s\n' \
    "$version" "$(date -R -d "@${SOURCE_DATE_EPOCH:-$(date +%s)}")" |
    gzip -9n >"$stage/usr/share/doc/vipd/changelog.gz"

installed_size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat >"$stage/DEBIAN/control" <<EOF
Package: vipd
Version: $version
Architecture: $arch
Maintainer: vipd maintainers <vipd@localhost>
Installed-Size: $installed_size
Depends: $depends
Recommends: iproute2
Suggests: keepalived
Section: net
Priority: optional
Description: keepalived-compatible VRRP high-availability daemon
 vipd floats virtual IP addresses between hosts with VRRP (RFC 3768 v2,
 RFC 5798/9568 v3, IPv4 and IPv6). It reads an existing keepalived.conf,
 interoperates with keepalived on the wire, rejects unknown keywords with
 precise diagnostics and shows per-instance state and drop counters with
 "vipd status".
 .
 The systemd unit runs "vipd run -f /etc/keepalived/keepalived.conf" with
 only CAP_NET_ADMIN, CAP_NET_RAW and CAP_SYS_NICE. It is not enabled on
 installation: check the configuration, then "systemctl enable --now vipd".
EOF

# Maintainer scripts: tell systemd about the unit; stop the daemon on removal.
# The service is deliberately not enabled or started: two VRRP daemons with the same
# configuration on one host (vipd and keepalived) would fight over the addresses.
cat >"$stage/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || true
    # Upgrade: restart a running daemon on the new binary (a master hands over
    # gracefully with priority 0, as on any stop).
    if [ "$1" = configure ] && [ -n "${2:-}" ]; then
        systemctl try-restart vipd.service || true
    fi
fi
exit 0
EOF
cat >"$stage/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
    systemctl stop vipd.service >/dev/null 2>&1 || true
fi
exit 0
EOF
cat >"$stage/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || true
fi
if [ "$1" = purge ] && [ -x /usr/bin/deb-systemd-helper ]; then
    deb-systemd-helper purge vipd.service >/dev/null 2>&1 || true
fi
exit 0
EOF
chmod 0755 "$stage/DEBIAN/postinst" "$stage/DEBIAN/prerm" "$stage/DEBIAN/postrm"

deb=$out_dir/vipd_${version}_${arch}.deb
dpkg-deb --root-owner-group -Z"${VIPD_DEB_COMPRESS:-xz}" --build "$stage" "$deb" >/dev/null
rm -rf "$stage"
echo "$deb"
