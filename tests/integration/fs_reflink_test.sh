#!/usr/bin/env bash
# Copy-up by reflink (design §2: data is copied "by reflink (FICLONE) where the host
# filesystem allows"): with the store's blobs and the upper directory on one XFS
# filesystem made with reflink=1, the first write to a big lower file clones its blob.
#   - the file shows the write and, around it, the lower data byte for byte (through
#     the mount, and in the upper directory after unmounting);
#   - the upper file shares its extents with the blob (filefrag -v says "shared");
#   - the blob itself is unchanged.
# Skips where XFS with reflink cannot be made and loop-mounted here.
. "$(dirname "$0")/lib.sh"

need_root "loop-mounts an XFS filesystem"
[[ -c /dev/fuse ]] || skip "needs /dev/fuse"
need_tools mkfs.xfs filefrag cmp
need_strata
START=$EPOCHREALTIME
setup_work
IMG=$STORES/xfs.img X=$STORES/xfs
truncate -s 1G "$IMG"
mkfs.xfs -q -m reflink=1 "$IMG" >/dev/null 2>&1 || skip "mkfs.xfs -m reflink=1 failed (xfsprogs too old?)"
mkdir "$X"
mount -o loop "$IMG" "$X" 2>/dev/null || skip "cannot loop-mount XFS here (no xfs module or loop device)"
STORE=$X/store
mkdir -p "$WORK/src/data" "$WORK/mnt" "$X/upper"
head -c 64M /dev/urandom >"$WORK/src/data/big"
step import st import dir "$WORK/src" --name reflink
M=$WORK/mnt U=$X/upper
step mount st mount reflink "$M" --upper "$U"

# The expected file: the lower data with its first 4 KiB overwritten.
cp "$WORK/src/data/big" "$WORK/want"
head -c 4096 /dev/zero | tr '\0' w >"$WORK/patch"
dd if="$WORK/patch" of="$WORK/want" bs=4096 count=1 conv=notrunc status=none
step "first write" dd if="$WORK/patch" of="$M/data/big" bs=4096 count=1 conv=notrunc status=none
check "data through the mount" cmp "$M/data/big" "$WORK/want"
shared=$(filefrag -v "$U/data/big" | grep -c shared || true)
note "upper extents marked shared: $shared"
((shared > 0)) || {
  filefrag -v "$U/data/big" >&2
  fail "the upper file shares no extent with its blob: the copy-up did not clone it"
}
# umount returns before the daemon has exited: its open files would keep the
# XFS busy for the umount below.
daemon=$(pids_naming "$M")
umount "$M"
if [[ -n $daemon ]]; then
  # shellcheck disable=SC2086 # one pid a word
  left=$(wait_gone $daemon) || fail "the daemon did not exit after umount: $left"
fi
check "data in the upper" cmp "$U/data/big" "$WORK/want"
blob=$(find "$STORE" -type f -size +60M | head -1)
[[ -n $blob ]] || fail "no 64 MiB blob in the store"
check "the blob is unchanged" cmp "$blob" "$WORK/src/data/big"
umount "$X"
finish "$START"
