#!/bin/sh
# Builds toa.ko for every kernel header tree it can find and leaves each in
# .cache/kmod-matrix/<kernel release>/toa.ko (a developer's quick check; the
# guest harness, test/support/guest, does its own builds into .cache/kmod/).
# A build that prints any warning fails: the module must build clean on every
# kernel of the matrix.
#   build-matrix.sh                 all trees: /usr/src/linux-headers-*-<arch>
#                                   and unpacked ones under .cache
#   build-matrix.sh <headers dir>   just that tree
# Trees from newer suites (trixie, sid) need their own compiler and glibc:
# when a tree's gcc is missing on the host and a suite chroot exists next to
# it (.cache/**/chroot-<suite>), the build runs in that chroot.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
root=$(cd "$here/.." && pwd)
out="$root/.cache/kmod-matrix"
arch=$(dpkg --print-architecture)
status=0

build_one() {
	kdir=$1
	rel=$(basename "$kdir" | sed 's/^linux-headers-//')
	dst="$out/build/$rel"
	work="$dst/src"
	rm -rf "$work" && mkdir -p "$work/uapi"
	cp "$here"/*.c "$here"/*.h "$here"/Kbuild "$work"/ && cp "$here/uapi/toa.h" "$work/uapi/"
	# unpacked (dpkg -x) trees include their -common part by absolute path
	# (and since 7.x the output tree, KBUILD_OUTPUT=)
	inc=$(sed -n 's/^include \(\/usr\/src\/[^ ]*\)\/Makefile$/\1/p' "$kdir/Makefile" | head -1)
	if [ -n "$inc" ] && [ ! -d "$inc" ]; then
		prefix=${kdir%/usr/src/*}
		sed -i "s|^include /usr/src/|include $prefix/usr/src/|; s|^KBUILD_OUTPUT=/usr/src/|KBUILD_OUTPUT=$prefix/usr/src/|" "$kdir/Makefile"
	fi
	# quoted up to 6.x, bare in 7.x
	cc=$(sed -n 's/^CONFIG_CC_VERSION_TEXT="\{0,1\}\(x86_64-linux-gnu-gcc-[0-9]*\|gcc-[0-9]*\).*/\1/p' "$kdir/include/config/auto.conf" 2>/dev/null | head -1)
	chroot_dir=""
	if [ -n "$cc" ] && ! command -v "$cc" >/dev/null 2>&1; then
		chroot_dir=$(find "$root/.cache" -maxdepth 3 -type d -name 'chroot-*' 2>/dev/null |
			while read -r c; do [ -x "$c/usr/bin/$cc" ] && echo "$c" && break; done)
		[ -n "$chroot_dir" ] || { echo "SKIP $rel: needs $cc (no chroot providing it)" >&2; status=1; return; }
	fi
	log="$dst/build.log"
	if [ -n "$chroot_dir" ]; then
		# bind the tree and sources into the chroot under the same paths
		mkdir -p "$chroot_dir$root" "$chroot_dir/proc"
		mountpoint -q "$chroot_dir$root" || mount --bind "$root" "$chroot_dir$root"
		mountpoint -q "$chroot_dir/proc" || mount -t proc proc "$chroot_dir/proc"
		chroot "$chroot_dir" make -C "$kdir" M="$work" modules >"$log" 2>&1 || true
		umount "$chroot_dir/proc" "$chroot_dir$root" 2>/dev/null || true
	else
		make -C "$kdir" M="$work" modules >"$log" 2>&1 || true
	fi
	if [ ! -f "$work/toa.ko" ]; then
		echo "FAIL $rel: build failed, see $log" >&2; tail -20 "$log" >&2; status=1; return
	fi
	if grep -qi 'warning' "$log"; then
		echo "FAIL $rel: warnings, see $log" >&2; grep -i -A3 warning "$log" >&2; status=1; return
	fi
	# file it under the release the kernel reports (uname -r == vermagic)
	ver=$(modinfo -F vermagic "$work/toa.ko" | cut -d' ' -f1)
	mkdir -p "$out/$ver"
	cp "$work/toa.ko" "$out/$ver/toa.ko"
	echo "ok   $rel -> $out/$ver/toa.ko"
}

if [ $# -gt 0 ]; then
	for k in "$@"; do build_one "$(cd "$k" && pwd)"; done
else
	for k in /usr/src/linux-headers-*-"$arch" $(find "$root/.cache" -path '*/arm64' -prune -o -path "*/usr/src/linux-headers-*-$arch" -type d -print 2>/dev/null); do
		[ -f "$k/Makefile" ] && build_one "$k"
	done
fi
exit $status
