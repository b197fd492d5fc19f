#!/usr/bin/env bash
# Type-checks and lints the Metal build for Apple silicon (aarch64-apple-darwin) from Linux,
# where there is no Mac to build or run it on: `cargo clippy --features metal` for that target.
# Nothing is linked (that needs Apple's SDK), so this says the code compiles for macOS, not that
# Metal runs. Needs rustup (to add the target's standard library) and clang (for ring's C, which
# is compiled without the SDK's headers: freestanding, with a stub TargetConditionals.h).
#
#   scripts/check-macos.sh            # after: apt-get install clang
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add aarch64-apple-darwin
stub=$(mktemp -d)
trap 'rm -rf "$stub"' EXIT
cat >"$stub/TargetConditionals.h" <<'H'
#pragma once
#define TARGET_OS_MAC 1
#define TARGET_OS_OSX 1
#define TARGET_OS_IPHONE 0
#define TARGET_OS_IOS 0
#define TARGET_OS_TV 0
#define TARGET_OS_WATCH 0
#define TARGET_OS_SIMULATOR 0
H
export CC_aarch64_apple_darwin=clang
export CFLAGS_aarch64_apple_darwin="--target=arm64-apple-macos11 -ffreestanding -nostdlibinc -DRING_CORE_NOSTDLIBINC=1 -I$stub"
cargo clippy --release --locked --features metal --target aarch64-apple-darwin \
  --target-dir target/macos --all-targets -- -D warnings
echo "the Metal build type-checks for aarch64-apple-darwin"
