#!/usr/bin/env bash
# Runs a command where a real, hardware-style /dev/kvm exists, even on a host whose own /dev/kvm
# cannot run ordinary guests (kvm-pvm) or that has none: inside "L1", a Debian kernel booted
# under QEMU TCG on an emulated AMD CPU with SVM and nested paging. L1 loads kvm_amd, so its
# /dev/kvm runs unmodified guests (L2); TCG emulates SVM, not VMX, hence the AMD CPU model.
# Everything L2 does is emulated twice: L1 starts in about 8 s, a small Linux L2 in 10-20 s more.
#
# Usage: scripts/nested-kvm.sh [options] PAYLOAD_DIR [COMMAND]
#   PAYLOAD_DIR  copied into L1's RAM as /payload, the command's working directory (and first in
#                its PATH). L1 has no disk and no network card: everything comes in here.
#   COMMAND      run by L1's shell (busybox sh -c); default ./run.
#   -t SECS      give up after SECS seconds of wall time (default 300).
#   -m MIB       L1's memory (default 2048; the payload lives in it).
#   -c MODEL     QEMU CPU model for L1 (default EPYC; it must offer svm and npt).
#   -L FILE      also put FILE into L1 at its own absolute path, with every shared library
#                `ldd FILE` names, so that a dynamically linked host program runs there (repeat).
#   -M MODULE    also load this module of L1's kernel, with its dependencies (repeat; e.g. tun).
#   -T           prefix each console line with the seconds since the start.
# Output: L1's serial console. Lines of our own start with "NESTED-KVM:", among them
# "NESTED-KVM: /dev/kvm ready" or "NESTED-KVM: no /dev/kvm", and "NESTED-KVM: status N".
# Exit status: COMMAND's; 124 on timeout; 125 when L1 ended without reporting one; 2 on a usage
# error; 3 when this machine cannot run L1 (a tool or L1's kernel could not be installed).
# Installs on first use (root or sudo): qemu-system-x86, busybox-static, cpio; L1's kernel is the
# one Debian's linux-image-amd64 depends on, fetched with apt-get download and kept in
# ${CHR_VMM_CACHE:-/var/tmp/chr-vmm}/nested-kvm.
set -euo pipefail
say() { echo "nested-kvm: $*" >&2; }
cannot() { say "$*"; exit 3; }
usage() { sed -n '8,/^set -e/p' "$0" | sed '$d' >&2; exit 2; }

TIMEOUT=300 MEM=2048 MODEL=EPYC STAMP=0 FILES=() EXTRA_MODULES=()
while getopts "t:m:c:L:M:Th" opt; do
  case $opt in
    t) TIMEOUT=$OPTARG ;; m) MEM=$OPTARG ;; c) MODEL=$OPTARG ;; L) FILES+=("$OPTARG") ;;
    M) EXTRA_MODULES+=("$OPTARG") ;; T) STAMP=1 ;; *) usage ;;
  esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || usage
PAYLOAD=$1; shift
COMMAND=${*:-./run}
[ -d "$PAYLOAD" ] || { say "$PAYLOAD is not a directory"; exit 2; }
for f in "${FILES[@]}"; do [ -e "$f" ] || { say "-L $f: no such file"; exit 2; }; done

# --- tools ----------------------------------------------------------------------------------------
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
APTLOG=${TMPDIR:-/tmp}/chr-vmm-nested-kvm-apt.log
install_pkgs() {
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -y -q)
  say "installing $*"
  $SUDO "${apt[@]}" install "$@" >>"$APTLOG" 2>&1 && return 0
  $SUDO "${apt[@]}" update >>"$APTLOG" 2>&1 || true
  $SUDO "${apt[@]}" install "$@" >>"$APTLOG" 2>&1 || cannot "cannot install $* (see $APTLOG)"
}
command -v qemu-system-x86_64 >/dev/null || install_pkgs qemu-system-x86
command -v cpio >/dev/null || install_pkgs cpio
static_busybox() { [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1; }
static_busybox || install_pkgs busybox-static
static_busybox || cannot "/bin/busybox is not a static program (install busybox-static)"

# --- L1's kernel: vmlinuz and its module tree, unpacked once into the cache ------------------------
CACHE=${CHR_VMM_CACHE:-/var/tmp/chr-vmm}/nested-kvm
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9
if [ ! -f "$CACHE/kernel/ready" ]; then
  kernel_pkg() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}'; }
  pkg=$(kernel_pkg || true)
  [ -n "$pkg" ] || { $SUDO apt-get -q update >>"$APTLOG" 2>&1 || true; pkg=$(kernel_pkg || true); }
  [ -n "$pkg" ] || cannot "apt knows no kernel package for linux-image-amd64 (see $APTLOG)"
  say "fetching L1's kernel: $pkg"
  rm -rf "$CACHE/kernel" "$CACHE/download"; mkdir -p "$CACHE/download" "$CACHE/kernel"
  (cd "$CACHE/download" && apt-get download "$pkg" >>"$APTLOG" 2>&1) \
    || cannot "cannot download $pkg (see $APTLOG)"
  dpkg-deb -x "$CACHE"/download/*.deb "$CACHE/kernel/tree"
  mv "$CACHE"/kernel/tree/boot/vmlinuz-* "$CACHE/kernel/vmlinuz"
  # the package leaves modules.dep to depmod at install time
  base=$CACHE/kernel/tree; [ -d "$base/lib/modules" ] || base=$base/usr
  /bin/busybox depmod -b "$base" "$(ls "$base/lib/modules")" || cannot "depmod failed in $base"
  echo "$pkg" > "$CACHE/kernel/ready"
  rm -rf "$CACHE/download"
fi
flock -u 9
VMLINUZ=$CACHE/kernel/vmlinuz
# the module tree is under /lib/modules, or /usr/lib/modules in newer (merged-/usr) packages
MODROOT=$(echo "$CACHE"/kernel/tree/lib/modules/* "$CACHE"/kernel/tree/usr/lib/modules/* | tr ' ' '\n' | grep -v '\*' | head -1)
[ -f "$MODROOT/modules.dep" ] || cannot "no modules.dep under $MODROOT"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/nested-kvm.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
ROOT=$WORK/root

# --- modules: kvm_amd (with irqbypass, kvm, ccp...) and the extra ones, dependencies first ---------
declare -A path_of=() queued=()
while IFS=: read -r rel _; do n=${rel##*/}; n=${n%%.ko*}; path_of[${n//-/_}]=$rel; done <"$MODROOT/modules.dep"
LOAD=()
queue_module() {
  local name=${1//-/_} rel dep
  [ -z "${queued[$name]:-}" ] || return 0
  queued[$name]=1
  rel=${path_of[$name]:-}
  if [ -z "$rel" ]; then
    grep -q "/${name}.ko" "$MODROOT/modules.builtin" 2>/dev/null || say "module $name: not in L1's kernel"
    return 0
  fi
  for dep in $(grep "^$rel:" "$MODROOT/modules.dep" | cut -d: -f2-); do
    dep=${dep##*/}; queue_module "${dep%%.ko*}"
  done
  LOAD+=("$name")
}
for m in kvm_amd "${EXTRA_MODULES[@]}"; do queue_module "$m"; done
mkdir -p "$ROOT"/{bin,dev,proc,sys,tmp,root,etc,var/tmp,modules,payload}
for name in "${LOAD[@]}"; do
  src=$MODROOT/${path_of[$name]}
  case $src in # busybox insmod wants a plain .ko
    *.ko.xz) xz -dc "$src" ;; *.ko.zst) zstd -qdc "$src" ;; *.ko.gz) gzip -dc "$src" ;; *) cat "$src" ;;
  esac >"$ROOT/modules/$name.ko"
done
printf '%s\n' "${LOAD[@]}" >"$ROOT/modules/order"

# --- L1's root: busybox, /init, the payload and the -L files ---------------------------------------
cp /bin/busybox "$ROOT/bin/busybox"
cat >"$ROOT/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm; mount -t devpts devpts /dev/pts; mount -t tmpfs tmpfs /dev/shm
ip link set lo up 2>/dev/null
export HOME=/root PATH=/payload:/bin:/usr/bin:/sbin:/usr/sbin
echo "NESTED-KVM: L1 up after $(cut -d' ' -f1 /proc/uptime) s; svm=$(grep -cw svm /proc/cpuinfo) npt=$(grep -cw npt /proc/cpuinfo)"
while read -r m; do
  insmod "/modules/$m.ko" 2>&1 | sed "s/^/NESTED-KVM: insmod $m: /"
done </modules/order
if [ -c /dev/kvm ]; then echo "NESTED-KVM: /dev/kvm ready"; else echo "NESTED-KVM: no /dev/kvm"; fi
cd /payload
sh -c "$(cat /payload/.nested-kvm-command)"
echo "NESTED-KVM: status $?"
poweroff -f
INIT
chmod 755 "$ROOT/init"
cp -a "$PAYLOAD/." "$ROOT/payload/"
printf '%s\n' "$COMMAND" >"$ROOT/payload/.nested-kvm-command"
for f in "${FILES[@]}"; do
  for x in "$(readlink -f "$f")" $(ldd "$f" 2>/dev/null | grep -o '/[^ )]*' || true); do
    mkdir -p "$ROOT$(dirname "$x")"; cp -L "$x" "$ROOT$x"
  done
  # the program is also reachable under the name it was given (a symlink's name, say)
  [ -e "$ROOT$f" ] || { mkdir -p "$ROOT$(dirname "$f")"; cp -L "$f" "$ROOT$f"; }
done
(cd "$ROOT" && find . | cpio -o -H newc --quiet) >"$WORK/initramfs.cpio"

# --- boot L1 and relay its console; its `poweroff -f` after the status line ends QEMU ---------------
t0=${EPOCHREALTIME//[.,]/}
relay() {
  local line now cs
  while IFS= read -r line || [ -n "$line" ]; do
    line=${line%$'\r'}
    # the EPYC model names features TCG lacks; QEMU warns once per feature, to no purpose here
    case $line in *"TCG doesn't support requested feature"*) continue ;; esac
    if [ "$STAMP" = 1 ]; then
      now=${EPOCHREALTIME//[.,]/}; cs=$(((now - t0) / 10000))
      printf '[%4d.%02d] %s\n' $((cs / 100)) $((cs % 100)) "$line"
    else
      printf '%s\n' "$line"
    fi
    case $line in
      "NESTED-KVM: status "*)
        echo "${line#NESTED-KVM: status }" >"$WORK/status" ;;
    esac
  done
}
set +e
timeout -k 5 "$TIMEOUT" qemu-system-x86_64 -machine q35,accel=tcg -cpu "$MODEL" -smp 1 -m "$MEM" \
  -display none -monitor none -serial stdio -no-reboot -nic none -pidfile "$WORK/qemu.pid" \
  -kernel "$VMLINUZ" -initrd "$WORK/initramfs.cpio" -append "console=ttyS0 quiet panic=-1" \
  </dev/null 2>&1 | relay
qemu_status=${PIPESTATUS[0]}
set -e
if [ -s "$WORK/status" ]; then exit "$(cat "$WORK/status")"; fi
[ "$qemu_status" = 124 ] && { say "timed out after $TIMEOUT s"; exit 124; }
say "L1 ended (QEMU status $qemu_status) without reporting the command's status"
exit 125
