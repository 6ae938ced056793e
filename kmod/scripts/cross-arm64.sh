#!/bin/sh
# Cross-builds toa.ko for arm64 against Debian's arm64 kernel headers, to prove
# the module has no x86-only code (kprobe argument access goes through
# regs_get_kernel_argument, see compat.h).
#
# Nothing on the machine's apt configuration changes: a private APT_CONFIG in
# .cache/arm64/apt downloads linux-headers-<abi>-arm64, its -common package
# and linux-kbuild for the *host* architecture (kbuild's fixdep/modpost run on
# the build machine), unpacks them with dpkg -x into .cache/arm64/root, and
# builds with CROSS_COMPILE=aarch64-linux-gnu-.
#   SUITE=bookworm (default)   META=linux-headers-arm64 (or linux-headers-6.12-arm64)
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
root=$(cd "$here/.." && pwd)
SUITE=${SUITE:-bookworm}
META=${META:-linux-headers-arm64}
cache="$root/.cache/arm64/$SUITE"
mkdir -p "$cache/apt/lists/partial" "$cache/apt/archives/partial" "$cache/debs" "$cache/root"
hostarch=$(dpkg --print-architecture)

cat > "$cache/apt/sources.list" <<SRC
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $SUITE main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security $SUITE-security main
SRC
cat > "$cache/apt/apt.conf" <<CONF
Dir::Etc::SourceList "$cache/apt/sources.list";
Dir::Etc::SourceParts "/dev/null";
Dir::State::Lists "$cache/apt/lists";
Dir::State::status "/dev/null";
Dir::Cache "$cache/apt";
APT::Architecture "$hostarch";
APT::Architectures { "$hostarch"; "arm64"; };
APT::Sandbox::User "root";
CONF
export APT_CONFIG="$cache/apt/apt.conf"
apt-get -qq update

# meta package -> linux-headers-<abi>-arm64 -> linux-headers-<abi>-common, linux-kbuild-<x.y>
pick() { apt-cache depends "$1" | sed -n "s/^ *Depends: <\{0,1\}\($2\)\(:[a-z0-9]*\)\{0,1\}>\{0,1\}\$/\1/p" | head -1; }
hdr=$(pick "$META:arm64" 'linux-headers-[0-9].*-arm64')
[ -n "$hdr" ] || { echo "cannot resolve $META:arm64" >&2; exit 1; }
common=$(pick "$hdr:arm64" 'linux-headers-[0-9].*-common[a-z-]*')
kbuild=$(pick "$hdr:arm64" 'linux-kbuild-[0-9.]*\(+[a-z0-9]*\)\?')
echo "headers: $hdr  common: $common  kbuild: $kbuild ($hostarch)"
( cd "$cache/debs" && apt-get -qq download "$hdr:arm64" "$common" "$kbuild:$hostarch" )
for d in "$cache"/debs/*.deb; do dpkg -x "$d" "$cache/root"; done

kdir="$cache/root/usr/src/$hdr"
# Debian's arch Makefile includes the -common tree by absolute path.
sed -i "s|^include /usr/src/|include $cache/root/usr/src/|" "$kdir/Makefile"

out="$cache/build"
rm -rf "$out" && mkdir -p "$out"
cp "$here"/*.c "$here"/*.h "$here"/Kbuild "$out"/ && mkdir -p "$out/uapi" && cp "$here/uapi/toa.h" "$out/uapi/"
make -C "$kdir" M="$out" ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu- modules 2>&1 | tee "$out/build.log"
if grep -qi 'warning' "$out/build.log"; then echo "arm64 build has warnings" >&2; exit 1; fi
file "$out/toa.ko"
modinfo "$out/toa.ko" | grep -E '^(vermagic|name)'
