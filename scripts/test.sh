#!/usr/bin/env bash
# The whole test suite, as CI runs it: install what the tests need (Debian 12, as root; only what is
# missing), then formatting, lints and every test of the workspace. Tests that need root, a device or a
# tool skip with a clear message when those are absent.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have mkfs.btrfs || need+=(btrfs-progs)
have mkfs.xfs || need+=(xfsprogs)
have mkfs.ext4 || need+=(e2fsprogs)
have losetup || need+=(util-linux)
have blkid || need+=(util-linux)
have jq || need+=(jq)
have runc || need+=(runc)
[ -x /bin/busybox ] || need+=(busybox-static)
have fusermount3 || need+=(fuse3)
have ip || need+=(iproute2)
have mount.nfs || need+=(nfs-common)
/usr/bin/python3 -c 'import kubernetes' 2>/dev/null || need+=(python3-kubernetes)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && have apt-get; then
    echo "installing: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "warning: missing ${need[*]} and cannot apt-get install them; the tests that need them will skip"
  fi
fi
have kubectl || echo "note: kubectl is not installed (Debian has no current one); the kubectl end-to-end tests will skip"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace 2>&1 | tee target/test-output.txt
# One closing line with the totals over every test binary.
awk '/^test result:/ { p += $4; f += $6 } END { printf "total: %d passed, %d failed\n", p, f }' target/test-output.txt
