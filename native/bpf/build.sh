#!/bin/sh
# Builds toa-bpf (the eBPF backend's loader) for x64 or arm64 outside
# node-gyp, for prebuilds: prebuilds/linux-<arch>/toa-bpf is where
# src/bpf/loader.ts looks after build/Release/. libbpf, libelf and zlib are
# Debian bookworm's static libraries: the machine's for x64; for arm64,
# downloaded into .cache/arm64-bpf with a private apt configuration (the
# machine's sources and architectures are left alone) and cross-compiled
# with gcc-aarch64-linux-gnu.
#
#   native/bpf/build.sh x64|arm64 OUTPUT
set -eu
arch=$1 out=$2
root=$(cd "$(dirname "$0")/../.." && pwd)
# the glibc floor: see the end of loader.c
flags="-O2 -Wall -Wextra -Werror -no-pie -Wl,--wrap=fstat,--wrap=__libc_start_main -Wl,--as-needed"
libs="-Wl,-Bstatic -lbpf -lelf -lz -Wl,-Bdynamic"
case $arch in
x64)
	exec gcc $flags -o "$out" "$root/native/bpf/loader.c" -L/usr/lib/x86_64-linux-gnu $libs ;;
arm64)
	d=$root/.cache/arm64-bpf
	if [ ! -f "$d/root/usr/lib/aarch64-linux-gnu/libbpf.a" ]; then
		mkdir -p "$d/apt/lists/partial" "$d/apt/cache/archives/partial" "$d/debs" "$d/root"
		key=/usr/share/keyrings/debian-archive-keyring.gpg
		cat > "$d/apt/sources.list" <<SRC
deb [arch=arm64 signed-by=$key] http://deb.debian.org/debian bookworm main
deb [arch=arm64 signed-by=$key] http://deb.debian.org/debian-security bookworm-security main
SRC
		cat > "$d/apt/apt.conf" <<CONF
Dir::Etc::SourceList "$d/apt/sources.list";
Dir::Etc::SourceParts "/dev/null";
Dir::Etc::Preferences "/dev/null";
Dir::Etc::PreferencesParts "/dev/null";
Dir::State::Lists "$d/apt/lists";
Dir::State::status "/dev/null";
Dir::Cache "$d/apt/cache";
APT::Sandbox::User "root";
APT::Architecture "arm64";
APT::Architectures { "arm64"; };
Acquire::Languages "none";
CONF
		APT_CONFIG=$d/apt/apt.conf apt-get update -qq
		(cd "$d/debs" && APT_CONFIG=$d/apt/apt.conf apt-get download -qq libbpf-dev:arm64 libelf-dev:arm64 zlib1g-dev:arm64)
		for f in "$d"/debs/*.deb; do dpkg -x "$f" "$d/root"; done
	fi
	exec aarch64-linux-gnu-gcc $flags -I"$d/root/usr/include" -o "$out" "$root/native/bpf/loader.c" \
		-L"$d/root/usr/lib/aarch64-linux-gnu" $libs ;;
*)
	echo "usage: $0 x64|arm64 OUTPUT" >&2
	exit 2 ;;
esac
