#!/bin/sh
# Runs every disk fuzz target for a bounded time (default 60 s each).
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
set -eu
cd "$(dirname "$0")/.."
secs="${1:-60}"
for target in image qcow2 vmdk vdi vhdx; do
    cargo +nightly fuzz run "$target" -- -max_total_time="$secs" -rss_limit_mb=1024 -timeout=10
done
