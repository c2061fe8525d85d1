#!/usr/bin/env bash
# Makes this Debian 12 x86-64 machine build chr-vmm for aarch64-unknown-linux-gnu and run the
# result under qemu-user, from Debian packages alone (no rustup target download):
#   - rustc-web/cargo-web (Rust 1.96 from bookworm-security) with the arm64 standard library,
#   - the aarch64 cross linker and C runtime, qemu-aarch64 (user mode),
#   - libslirp-dev:arm64 and libglib2.0-dev:arm64, for the net crate's user-mode networking.
# Idempotent; needs root (or sudo). Progress goes to stderr; stdout is only the environment to
# use, as shell `export` lines, so a caller does
#     eval "$(scripts/aarch64-cross.sh)"
#     /usr/bin/cargo test --target aarch64-unknown-linux-gnu --target-dir target/aarch64-cross -p x86
# Exit status 1 (with the reason on stderr) when the toolchain cannot be installed or is unusable.
set -euo pipefail
say() { echo "[aarch64-cross] $*" >&2; }
fail() { say "$*"; exit 1; }

SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
PKGS=(
  rustc-web cargo-web              # Rust 1.96; /usr/bin/rustc and /usr/bin/cargo
  libstd-rust-web-dev              # the host std, for build scripts and proc macros
  libstd-rust-web-dev:arm64        # the aarch64 std, installed into rustc's own sysroot
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross  # the linker and the C runtime it links against
  qemu-user                        # qemu-aarch64, the test runner
  libslirp-dev:arm64 libglib2.0-dev:arm64 pkg-config  # libslirp, found through pkg-config
)
log=${TMPDIR:-/tmp}/chr-vmm-aarch64-apt.log
# Another apt on this machine (other checkouts, install-deps.sh) holds the lock for a while.
APT=(env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -y -q)

if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  say "enabling the arm64 package architecture (dpkg --add-architecture arm64)"
  $SUDO dpkg --add-architecture arm64 || fail "cannot add the arm64 package architecture"
  added=1
fi
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  say "installing ${missing[*]} (log: $log)"
  # A newly added architecture has no package lists yet, so refresh them first in that case.
  if [ -n "${added:-}" ] || ! $SUDO "${APT[@]}" install --no-install-recommends "${missing[@]}" >"$log" 2>&1; then
    $SUDO "${APT[@]}" update >>"$log" 2>&1 || say "apt-get update reported errors (see $log); trying the install anyway"
    $SUDO "${APT[@]}" install --no-install-recommends "${missing[@]}" >>"$log" 2>&1 \
      || fail "apt-get install failed: $(grep -E '^(E|W):' "$log" | tail -1) (see $log)"
  fi
fi

# rustc-web must find the arm64 std in its own sysroot, or every cross build fails late.
rustc=/usr/bin/rustc
[ -x "$rustc" ] || fail "$rustc is missing after the install"
libdir=$("$rustc" --print target-libdir --target aarch64-unknown-linux-gnu) \
  || fail "$rustc does not know the aarch64-unknown-linux-gnu target"
compgen -G "$libdir/libstd-*.rlib" >/dev/null || fail "no aarch64 std under $libdir"
for tool in aarch64-linux-gnu-gcc qemu-aarch64 /usr/bin/cargo; do
  command -v "$tool" >/dev/null || fail "$tool is missing after the install"
done
say "$("$rustc" --version), $(/usr/bin/cargo --version), $(qemu-aarch64 --version | head -1)"

# Why each line:
# - RUSTC/RUSTDOC: run /usr/bin/cargo; with rustup's shims first on PATH it would pick rustup's rustc.
# - the runner has no `-L /usr/aarch64-linux-gnu`: the arm64 std pulls in the multiarch
#   libc6:arm64 (/lib/ld-linux-aarch64.so.1), which qemu-aarch64 finds by itself; mixing in the
#   cross libc's loader from that other tree hangs every pthread_create.
# - pkg-config reads the arm64 .pc files only (never the host's) for the aarch64 target.
cat <<'EOF'
export RUSTC=/usr/bin/rustc
export RUSTDOC=/usr/bin/rustdoc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER=qemu-aarch64
export PKG_CONFIG_ALLOW_CROSS=1
export PKG_CONFIG_LIBDIR_aarch64_unknown_linux_gnu=/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig
EOF
