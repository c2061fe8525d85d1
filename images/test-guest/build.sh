#!/bin/bash
# build.sh - build the chr-vmm test guest: a CHR-like disk image made only from Debian packages.
#
# Usage: images/test-guest/build.sh
#   Builds into $CHR_VMM_CACHE/test-guest (default /var/tmp/chr-vmm/test-guest) and prints that
#   directory as its only stdout line (progress goes to stderr). Nothing is rebuilt while the stamp
#   (sha256 of this script, of src/, of everything under images/test-guest/rootfs/, of the overlay
#   and of the settings below) still matches. Concurrent callers are serialised with flock. Set
#   TEST_GUEST_FORCE=1 to rebuild anyway.
# Settings (environment; the defaults build the test guest itself):
#   TEST_GUEST_NAME=test-guest          output directory (and lock) under $CHR_VMM_CACHE
#   TEST_GUEST_KERNEL=linux-image-amd64 the Debian kernel meta package (linux-image-cloud-amd64...)
#   TEST_GUEST_OVERLAY=DIR              files copied into the initramfs over rootfs/
#   TEST_GUEST_CMDLINE="..."            appended to the kernel command line
#
# Output directory:
#   guest.img              raw MBR disk, 64 MiB: p1 FAT16 (bootable, SYSLINUX + kernel + initrd),
#                          p2 4 MiB of known data (see data.sha256 / data.md5)
#   guest.vmdk             monolithicSparse VMDK        guest-stream.vmdk  streamOptimized VMDK
#   guest.vdi  guest.vhdx  guest.qcow2                  (all converted from guest.img by qemu-img)
#   guest-poweroff.img / guest-poweroff.vmdk  same disk, but the kernel command line also has
#                          chr_test=poweroff: the guest powers off right after its ready line
#   vmlinuz, initrd.gz, cmdline   the same kernel/initramfs/command line, for direct kernel boot
#   modules.txt            the kernel modules the guest loads, in load order
#   info.txt               kernel package, partition layout, data partition checksums
# Needs (installed on first use): busybox-static cpio syslinux syslinux-common mtools fdisk
# dosfstools qemu-utils gcc libc6-dev (src/udp-echo.c, static; a cross gcc on non-x86 hosts), and
# Debian's linux-image-amd64 dependency, fetched with apt-get download.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${CHR_VMM_CACHE:-/var/tmp/chr-vmm}
NAME=${TEST_GUEST_NAME:-test-guest}
KERNEL_META=${TEST_GUEST_KERNEL:-linux-image-amd64}
OVERLAY=${TEST_GUEST_OVERLAY:-}
EXTRA_CMDLINE=${TEST_GUEST_CMDLINE:-}
OUT=$CACHE/$NAME
APTLOG=$CACHE/test-guest-apt.log
log() { echo "$NAME: $*" >&2; }
die() { echo "$NAME: error: $*" >&2; exit 1; }
case $NAME in ""|*/*|.*) die "TEST_GUEST_NAME must be a plain directory name";; esac
case $KERNEL_META in linux-image-*) ;; *) die "TEST_GUEST_KERNEL must be a linux-image-* package";; esac
[ -z "$OVERLAY" ] || [ -d "$OVERLAY" ] || die "TEST_GUEST_OVERLAY $OVERLAY is not a directory"

mkdir -p "$CACHE"
exec 9>"$CACHE/$NAME.lock"
flock 9

# --- stamp: this script + the guest's own files ---------------------------------------------------
tree_sums() { # tree_sums DIR: name, mode and sha256 of every file under DIR
  (cd "$1" && find . -type f -o -type l | LC_ALL=C sort | while read -r f; do
     printf '%s %s\n' "$f" "$(stat -c %a "$f")"; sha256sum "$f"; done)
}
stamp=$( { sha256sum "$HERE/build.sh" "$HERE"/src/*
           tree_sums "$HERE/rootfs"
           # the default settings add nothing, so the test guest's stamp only depends on its files
           if [ "$KERNEL_META" != linux-image-amd64 ] || [ -n "$OVERLAY$EXTRA_CMDLINE" ]; then
             echo "kernel=$KERNEL_META cmdline=$EXTRA_CMDLINE"; [ -z "$OVERLAY" ] || tree_sums "$OVERLAY"; fi
         } | sha256sum | cut -d' ' -f1)
if [ "${TEST_GUEST_FORCE:-0}" != 1 ] && [ -f "$OUT/stamp" ] && [ "$(cat "$OUT/stamp")" = "$stamp" ]; then
  echo "$OUT"; exit 0
fi

# --- tools ----------------------------------------------------------------------------------------
apt_updated=0
apt_install() {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >>"$APTLOG" 2>&1 && return 0
  if [ $apt_updated = 0 ]; then apt_updated=1; apt-get update -qq >>"$APTLOG" 2>&1 || true; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >>"$APTLOG" 2>&1 \
    || die "cannot install $* (see $APTLOG)"
}
need() { command -v "$1" >/dev/null 2>&1 || { log "installing $2"; apt_install "$2"; }; }
need cpio cpio; need sfdisk fdisk; need mkfs.fat dosfstools; need mcopy mtools
need syslinux syslinux; need qemu-img qemu-utils; need gzip gzip; need flock util-linux
# the guest's udp-echo is a static x86-64 program: the native gcc here, a cross gcc elsewhere
if [ "$(uname -m)" = x86_64 ]; then
  GUEST_CC=gcc; need gcc gcc
  [ -f /usr/lib/x86_64-linux-gnu/libc.a ] || { log "installing libc6-dev"; apt_install libc6-dev; }
else
  GUEST_CC=x86_64-linux-gnu-gcc; need $GUEST_CC gcc-x86-64-linux-gnu
  [ -d /usr/x86_64-linux-gnu/lib ] || { log "installing libc6-dev-amd64-cross"; apt_install libc6-dev-amd64-cross; }
fi
[ -f /usr/lib/syslinux/mbr/mbr.bin ] && [ -f /usr/lib/syslinux/modules/bios/ldlinux.c32 ] \
  || { log "installing syslinux-common"; apt_install syslinux-common; }
# the busybox in the guest must be static (Debian's busybox-static, installed as /bin/busybox)
if [ ! -x /bin/busybox ] || ldd /bin/busybox >/dev/null 2>&1; then
  log "installing busybox-static"; apt_install busybox-static; fi
ldd /bin/busybox >/dev/null 2>&1 && die "/bin/busybox is not static (install busybox-static)"
BB=/bin/busybox

# fixed timestamps (initramfs, FAT) so that the raw image only changes when its inputs do
export SOURCE_DATE_EPOCH=1700000000
WORK=$(mktemp -d "$CACHE/$NAME.work.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# --- kernel: the package $KERNEL_META depends on (the .deb is kept in the cache) -------------------
kpkg() { apt-cache depends "$KERNEL_META" 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}'; }
pkg=$(kpkg || true)
if [ -z "$pkg" ]; then
  log "refreshing apt package lists"; apt-get update -qq >>"$APTLOG" 2>&1 || true; apt_updated=1
  pkg=$(kpkg || true)
fi
[ -n "$pkg" ] || die "cannot find the kernel package $KERNEL_META depends on"
KDIR=$CACHE/debian-kernel; mkdir -p "$KDIR"
# guests of other names may fetch kernels into the same directory at the same time
exec 8>"$KDIR/.lock"
flock 8
deb=$(ls "$KDIR/${pkg}"_*.deb 2>/dev/null | head -1 || true)
if [ -z "$deb" ]; then
  log "downloading $pkg"
  if ! (cd "$WORK" && apt-get download "$pkg" >>"$APTLOG" 2>&1); then
    [ $apt_updated = 0 ] || die "cannot download $pkg (see $APTLOG)"
    log "refreshing apt package lists"; apt-get update -qq >>"$APTLOG" 2>&1 || true; apt_updated=1
    pkg=$(kpkg || true); [ -n "$pkg" ] || die "cannot find the kernel package $KERNEL_META depends on"
    (cd "$WORK" && apt-get download "$pkg" >>"$APTLOG" 2>&1) || die "cannot download $pkg (see $APTLOG)"
  fi
  # older versions of the same flavour go (linux-image-6.1.0-56-amd64 for ...-57-amd64, not -cloud-amd64)
  flavour=${KERNEL_META#linux-image-}
  for old in "$KDIR"/linux-image-*.deb; do
    [ -e "$old" ] || continue
    [[ $(basename "$old") =~ ^linux-image-[0-9][^_]*-[0-9]+-${flavour}_ ]] && rm -f "$old"
  done
  mv "$WORK/${pkg}"_*.deb "$KDIR/"
  deb=$(ls "$KDIR/${pkg}"_*.deb | head -1)
fi
flock -u 8
log "extracting $(basename "$deb")"
X=$WORK/kernel; mkdir -p "$X"
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$X" --wildcards './boot/vmlinuz-*' './lib/modules/*'
kver=$(ls "$X/lib/modules" | head -1)
MODROOT=$X/lib/modules/$kver
[ -f "$MODROOT/modules.dep" ] || "$BB" depmod -b "$X" "$kver" >/dev/null 2>&1 \
  || die "depmod failed for $kver"

# --- modules: the wanted ones and what they depend on, in load order -------------------------------
# virtio_pci_modern_dev / virtio_pci_legacy_dev only exist as modules in newer kernels; they come
# in through modules.dep when virtio_pci needs them. button + evdev: the ACPI power button as an
# input device, which busybox acpid reads.
WANTED="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover
        net_failover virtio_blk virtio_net button evdev"
REQUIRED="virtio_ring virtio virtio_pci virtio_blk virtio_net"
declare -A modpath=() done=()
while IFS=: read -r p _; do n=${p##*/}; n=${n%.ko*}; modpath[${n//-/_}]=$p; done < "$MODROOT/modules.dep"
is_builtin() { grep -q "/$1.ko\$" "$MODROOT/modules.builtin"; }
ORDER=()
add_mod() { # add_mod NAME: its dependencies first (depth first), then itself
  local n=$1 p d
  [ -z "${done[$n]:-}" ] || return 0
  done[$n]=1
  p=${modpath[$n]:-}
  [ -n "$p" ] || return 0
  for d in $(grep "^$p:" "$MODROOT/modules.dep" | cut -d: -f2-); do
    d=${d##*/}; d=${d%.ko*}; add_mod "${d//-/_}"; done
  ORDER+=("$n")
}
for m in $WANTED; do
  if is_builtin "$m"; then log "module $m: built into the kernel"
  elif [ -z "${modpath[$m]:-}" ]; then
    case " $REQUIRED " in *" $m "*) die "module $m is neither built in nor a module of $kver";; esac
    log "module $m: not in this kernel, skipped"
  else add_mod "$m"; fi
done
log "modules (load order): ${ORDER[*]}"

# --- initramfs --------------------------------------------------------------------------------------
R=$WORK/initramfs
mkdir -p "$R"/{bin,sbin,dev,proc,sys,tmp,run,root,var/log,lib/modules,etc}
cp "$BB" "$R/bin/busybox"
for a in $("$BB" --list); do [ "$a" = busybox ] || ln -s busybox "$R/bin/$a"; done
cp -a "$HERE/rootfs/." "$R/"
[ -z "$OVERLAY" ] || cp -a "$OVERLAY/." "$R/"
$GUEST_CC -static -Os -s -o "$R/bin/udp-echo" "$HERE/src/udp-echo.c" || die "cannot build the guest's udp-echo with $GUEST_CC"
ln -sf bin/busybox "$R/init"      # busybox init as PID 1, configured by /etc/inittab
: > "$R/etc/modules"
for m in "${ORDER[@]}"; do
  cp "$MODROOT/${modpath[$m]}" "$R/lib/modules/$m.ko"; echo "$m" >> "$R/etc/modules"; done
echo "$kver" > "$R/etc/kernel-release"
chmod 1777 "$R/tmp"
find "$R" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
(cd "$R" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --reproducible --quiet) | gzip -9 -n > "$WORK/initrd.gz"
cp "$X"/boot/vmlinuz-* "$WORK/vmlinuz"

# --- disk: MBR (syslinux mbr.bin) + p1 FAT16 with SYSLINUX + p2 known data ------------------------
SECTORS=131072                 # 64 MiB
P1_START=2048   P1_SIZE=120832 # 1 MiB .. 60 MiB
P2_START=122880 P2_SIZE=8192   # 60 MiB .. 64 MiB (4 MiB of known data)
CMDLINE="console=tty0 console=ttyS0,115200 quiet loglevel=3${EXTRA_CMDLINE:+ $EXTRA_CMDLINE}"
IMG=$WORK/guest.img
truncate -s $((SECTORS * 512)) "$IMG"
sfdisk --quiet --no-reread --no-tell-kernel "$IMG" >/dev/null <<EOF
label: dos
label-id: 0x43485254
start=$P1_START, size=$P1_SIZE, type=e, bootable
start=$P2_START, size=$P2_SIZE, type=da
EOF
dd if=/usr/lib/syslinux/mbr/mbr.bin of="$IMG" bs=440 count=1 conv=notrunc status=none

syslinux_cfg() { # syslinux_cfg EXTRA_CMDLINE
  cat <<EOF
SERIAL 0 115200
DEFAULT chr
PROMPT 0
TIMEOUT 0
LABEL chr
  KERNEL /vmlinuz
  INITRD /initrd.gz
  APPEND $CMDLINE$1
EOF
}
P1=$WORK/p1.img
truncate -s $((P1_SIZE * 512)) "$P1"
mkfs.fat -F 16 -h $P1_START -n CHRTEST --invariant "$P1" >/dev/null
export MTOOLS_SKIP_CHECK=1
syslinux_cfg "" > "$WORK/syslinux.cfg"
mcopy -i "$P1" "$WORK/vmlinuz" "$WORK/initrd.gz" "$WORK/syslinux.cfg" ::/
dd if="$P1" of="$IMG" bs=512 seek=$P1_START conv=notrunc,sparse status=none
syslinux --install --offset $((P1_START * 512)) "$IMG" || die "syslinux --install failed"
mdir -a -i "$IMG@@$((P1_START * 512))" ::/ | grep -qiE "^ldlinux +sys" || die "ldlinux.sys missing on p1"

# p2: sector i holds the line "chr-test-guest data sector=<i, 8 digits>" padded with '.' to
# 63 bytes plus '\n', eight times (512 bytes).
awk -v n=$P2_SIZE 'BEGIN { for (i = 0; i < n; i++) { l = sprintf("chr-test-guest data sector=%08d ", i);
  while (length(l) < 63) l = l "."; for (j = 0; j < 8; j++) printf "%s\n", l } }' > "$WORK/p2.bin"
[ "$(stat -c %s "$WORK/p2.bin")" = $((P2_SIZE * 512)) ] || die "data partition has the wrong size"
dd if="$WORK/p2.bin" of="$IMG" bs=512 seek=$P2_START conv=notrunc status=none

# the same disk with chr_test=poweroff on the command line
cp --sparse=always "$IMG" "$WORK/guest-poweroff.img"
syslinux_cfg " chr_test=poweroff" > "$WORK/syslinux.cfg"
mcopy -o -i "$WORK/guest-poweroff.img@@$((P1_START * 512))" "$WORK/syslinux.cfg" ::/syslinux.cfg

# --- other formats --------------------------------------------------------------------------------
log "converting to vmdk, stream vmdk, vdi, vhdx, qcow2"
N=$WORK/out; mkdir -p "$N"
mv "$IMG" "$WORK/guest-poweroff.img" "$WORK/vmlinuz" "$WORK/initrd.gz" "$N/"
qemu-img convert -f raw -O vmdk "$N/guest.img" "$N/guest.vmdk"
qemu-img convert -f raw -O vmdk -o subformat=streamOptimized "$N/guest.img" "$N/guest-stream.vmdk"
qemu-img convert -f raw -O vdi "$N/guest.img" "$N/guest.vdi"
qemu-img convert -f raw -O vhdx "$N/guest.img" "$N/guest.vhdx"
qemu-img convert -f raw -O qcow2 "$N/guest.img" "$N/guest.qcow2"
qemu-img convert -f raw -O vmdk "$N/guest-poweroff.img" "$N/guest-poweroff.vmdk"
echo "$CMDLINE" > "$N/cmdline"
printf '%s\n' "${ORDER[@]}" > "$N/modules.txt"
(cd "$WORK" && sha256sum p2.bin | cut -d' ' -f1) > "$N/data.sha256"
(cd "$WORK" && md5sum p2.bin | cut -d' ' -f1) > "$N/data.md5"
cat > "$N/info.txt" <<EOF
name=$NAME
kernel_meta=$KERNEL_META
kernel_package=$pkg
kernel_deb=$(basename "$deb")
kernel_release=$kver
cmdline=$CMDLINE
disk_sectors=$SECTORS
p1=start:$P1_START size:$P1_SIZE type:0e(FAT16 LBA) bootable syslinux
p2=start:$P2_START size:$P2_SIZE type:da data
p2_sha256=$(cat "$N/data.sha256")
p2_md5=$(cat "$N/data.md5")
modules=${ORDER[*]}
guest_img_sha256=$(sha256sum "$N/guest.img" | cut -d' ' -f1)
EOF
echo "$stamp" > "$N/stamp"

rm -rf "$OUT.old"
[ ! -e "$OUT" ] || mv "$OUT" "$OUT.old"
mv "$N" "$OUT"
rm -rf "$OUT.old"
log "built $OUT"
echo "$OUT"
