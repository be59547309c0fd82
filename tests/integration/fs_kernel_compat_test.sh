#!/usr/bin/env bash
# fs_kernel_compat_test: the upper directory strata writes is kernel overlayfs's format,
# and strata reads the upper kernel overlayfs writes (design §2 "Upper directory",
# fs/upper_format.h).
#
# strata → kernel: two directory lowers (merged dirs, files, symlinks, a fifo, a char
# device, a hardlink pair left untouched, an opaque dir and a 0/0 whiteout in the top
# layer). strata-overlay mounts them with an upper and makes only changes that need no
# strata extension (no metadata-only copy-up, no directory rename, no new hardlink):
# data copy-up (append, write at an offset, O_TRUNC), new files/dirs/symlinks/fifos/a
# device, unlinks of lower files (whiteouts), rm -rf of a lower dir (whiteout), rm -rf then
# mkdir of a lower dir (opaque dir), renames of files (upper ones, and lower ones after a
# data write), chmod and user.* xattrs on files already copied up. The tree seen through
# strata is recorded; then kernel overlayfs mounts the same lowers and strata's upper with
# a fresh empty workdir and must show the same tree; then strata-overlay mounts the upper
# again (its own workdir) and still shows it.
# kernel → strata: kernel overlayfs (index=off, metacopy=off, redirect_dir=on) makes
# changes into a fresh upper (0/0 whiteouts, trusted.overlay.opaque, directory renames
# with absolute and relative trusted.overlay.redirect, copy-ups with
# trusted.overlay.origin); strata-overlay on that upper must show what the kernel showed.
#
# Compared per path (snap.py): type, permission bits, owner, size and nlink of
# non-directories, sha256 of file contents, symlink targets, device numbers, every xattr
# except trusted.strata.* / user.strata.* (strata's documented extensions, which kernel
# overlayfs shows as ordinary xattrs), sorted directory listings, hardlink groups, and
# the mtime of non-directories exactly (both sides read the same upper or lower inode;
# strata keeps no times of its own). Not compared: st_ino/st_dev, atime, ctime,
# directory nlink (kernel overlayfs reports 1 for merged dirs), directory size and mtime.
# Needs root (trusted.* xattrs, mknod, kernel overlayfs mounts) and /dev/fuse.
# shellcheck source-path=SCRIPTDIR source=lib.sh disable=SC2001 # sed indents multi-line output
. "$(dirname "$0")/lib.sh"

need_root "kernel overlayfs mounts, trusted.* xattrs and mknod"
[[ -c /dev/fuse ]] || skip "needs /dev/fuse (FUSE mounts)"
need_tools python3 mount umount mountpoint mknod mkfifo setfattr getfattr
need_strata
OVERLAY_BIN=$(dirname "$STRATA_BIN")/strata-overlay
[[ -x $OVERLAY_BIN ]] || fail "$OVERLAY_BIN is not built (strata-overlay)"
need_kernel_overlay

start=$EPOCHREALTIME
setup_work
umask 022
# All on one disk filesystem, as a real upper would be (kernel overlayfs needs upper and
# workdir on one filesystem).
T=$STORES
L1=$T/L1 L2=$T/L2 MNT=$T/mnt SNAP=$T/snap.py
declare -A DAEMONS=() # mount point -> pids of its FUSE daemon
mkdir -p "$MNT"

cat >"$SNAP" <<'PYEOF'
"""snap.py record ROOT OUT.json | compare A.json B.json LABEL_A LABEL_B
record: one entry per path under ROOT (symlinks not followed). compare: one line per
difference, exit 1 if any."""
import hashlib
import json
import os
import stat
import sys

KINDS = ((stat.S_ISREG, "file"), (stat.S_ISDIR, "dir"), (stat.S_ISLNK, "symlink"),
         (stat.S_ISCHR, "chardev"), (stat.S_ISBLK, "blockdev"), (stat.S_ISFIFO, "fifo"),
         (stat.S_ISSOCK, "socket"))


def kind(mode):
    return next((n for t, n in KINDS if t(mode)), "?")


def ignored_xattr(name):
    # strata's own extensions (docs: fs/upper_format.h); the kernel shows them
    return name.startswith(("trusted.strata.", "user.strata."))


def record(root):
    out, inos = {}, {}
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        for name in [""] + sorted(dirs + files):
            p = os.path.join(dirpath, name) if name else dirpath
            if not name and dirpath != root:
                continue  # each directory is recorded once, from its parent
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            k = kind(st.st_mode)
            e = {"type": k, "mode": oct(stat.S_IMODE(st.st_mode)),
                 "owner": f"{st.st_uid}:{st.st_gid}"}
            if k != "dir":
                e["size"] = st.st_size
                e["nlink"] = st.st_nlink
                e["mtime_ns"] = st.st_mtime_ns
                inos.setdefault(st.st_ino, []).append(rel)
            if k == "file":
                with open(p, "rb") as f:
                    e["sha256"] = hashlib.sha256(f.read()).hexdigest()
            elif k == "symlink":
                e["target"] = os.readlink(p)
            elif k in ("chardev", "blockdev"):
                e["rdev"] = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
            elif k == "dir":
                e["entries"] = sorted(os.listdir(p))
            xa = {}
            for n in sorted(os.listxattr(p, follow_symlinks=False)):
                if not ignored_xattr(n):
                    xa[n] = os.getxattr(p, n, follow_symlinks=False).hex()
            if xa:
                e["xattrs"] = xa
            out[rel] = e
    for group in inos.values():
        if len(group) > 1:
            for rel in group:
                out[rel]["hardlinks"] = sorted(group)
    return out


def compare(a, b, la, lb):
    diffs = []
    for rel in sorted(set(a) | set(b)):
        if rel not in a or rel not in b:
            diffs.append(f"{rel}: only through {la if rel in a else lb}")
            continue
        for key in sorted(set(a[rel]) | set(b[rel])):
            va, vb = a[rel].get(key), b[rel].get(key)
            if va != vb:
                diffs.append(f"{rel}: {key}: {la} {va!r} != {lb} {vb!r}")
    for d in diffs[:40]:
        print("    " + d)
    if len(diffs) > 40:
        print(f"    ... and {len(diffs) - 40} more differences")
    return 1 if diffs else 0


if sys.argv[1] == "record":
    with open(sys.argv[3], "w") as f:
        json.dump(record(sys.argv[2]), f, indent=1, sort_keys=True)
elif sys.argv[1] == "compare":
    with open(sys.argv[2]) as f:
        a = json.load(f)
    with open(sys.argv[3]) as f:
        b = json.load(f)
    sys.exit(compare(a, b, sys.argv[4], sys.argv[5]))
PYEOF
snap() { python3 "$SNAP" "$@"; }

# --- the lowers ------------------------------------------------------------------------------
make_lowers() {
  mkdir -p "$L2"/{common/sub/deep,data,hl,rmtree/sub,redo/inner,opq,mv/a/b,mv2,kdir/in}
  echo "from l2" >"$L2/common/from_l2"
  echo deep >"$L2/common/sub/deep/file"
  setfattr -n user.layer -v bottom "$L2/common"
  echo a >"$L2/a.txt" && echo b >"$L2/b.txt" && echo bottom >"$L2/shadowed"
  printf 'base\n' >"$L2/data/append"
  head -c 8192 /dev/zero | tr '\0' o >"$L2/data/offset"
  echo "some content" >"$L2/data/trunc"
  echo "rename me" >"$L2/data/ren_src" && echo "rename over" >"$L2/data/ren_over"
  echo owned >"$L2/data/owned" && chown 1234:5678 "$L2/data/owned" && chmod 0640 "$L2/data/owned"
  echo xa >"$L2/data/xa" && setfattr -n user.color -v blue "$L2/data/xa"
  setfattr -n trusted.secret -v s3 "$L2/data/xa"
  echo del >"$L2/data/del" && echo del2 >"$L2/data/del2"
  head -c 300000 /dev/urandom >"$L2/data/big"
  echo pair >"$L2/hl/a" && ln "$L2/hl/a" "$L2/hl/b"
  ln -s a.txt "$L2/sym" && ln -s /nonexistent/target "$L2/abslink"
  mkfifo "$L2/fifo" && mknod "$L2/chr" c 1 3
  echo w >"$L2/rmtree/w" && echo z >"$L2/rmtree/sub/z"
  echo old >"$L2/redo/old" && echo inner >"$L2/redo/inner/f"
  echo old1 >"$L2/opq/old1" && echo gone >"$L2/gone"
  echo a >"$L2/mv/a/b/f" && echo m2 >"$L2/mv2/f" && echo k >"$L2/kdir/in/k"
  mkdir -p "$L1"/{common/sub,rmtree,opq,mv}
  chmod 0775 "$L1/common" && setfattr -n user.layer -v top "$L1/common"
  echo "from l1" >"$L1/common/from_l1" && echo l1 >"$L1/common/sub/l1file"
  echo top >"$L1/shadowed" && chmod 0600 "$L1/shadowed"
  echo "top only" >"$L1/top_only" && echo l1 >"$L1/rmtree/l1file"
  mknod "$L1/gone" c 0 0
  setfattr -n trusted.overlay.opaque -v y "$L1/opq" && echo new >"$L1/opq/new"
  echo top >"$L1/mv/topfile"
  find "$L1" "$L2" -exec touch -h -d @1700000000 {} +
}
step "two lower layers (merged dirs, whiteout, opaque dir, hardlinks, symlinks, fifo, device)" make_lowers

# --- mounting --------------------------------------------------------------------------------
# strata_mount UPPER WORK: strata-overlay on $MNT.
strata_mount() {
  local pids
  "$OVERLAY_BIN" -o "lowerdir=$L1:$L2,upperdir=$1,workdir=$2" "$MNT" || return 1
  mountpoint -q "$MNT" || {
    echo "  $MNT is not a mount point after strata-overlay returned"
    return 1
  }
  pids=$(pids_naming "$MNT" | tr '\n' ' ')
  DAEMONS[$MNT]=$pids
  # shellcheck disable=SC2206 # pids are numbers
  BG_PIDS+=($pids)
}
# kernel_mount UPPER WORK [OPTS]: kernel overlayfs on $MNT.
kernel_mount() {
  local err
  err=$(mount -t overlay overlay -o "lowerdir=$L1:$L2,upperdir=$1,workdir=$2${3:+,$3}" "$MNT" 2>&1) || {
    echo "  mount -t overlay failed: $err"
    dmesg 2>/dev/null | grep -i overlay | tail -5 | sed 's/^/    dmesg: /'
    return 1
  }
}
# do_umount: unmount $MNT; a FUSE daemon must exit within 10 s.
do_umount() {
  local left
  umount "$MNT" || return 1
  if mountpoint -q "$MNT"; then
    echo "  $MNT is still mounted after umount"
    return 1
  fi
  # shellcheck disable=SC2086 # pids are numbers
  left=$(wait_gone ${DAEMONS[$MNT]:-}) || {
    echo "  the daemon of $MNT (pid ${left//$'\n'/, }) still runs 10 s after umount"
    return 1
  }
  DAEMONS[$MNT]=''
}

# compare_snaps A B LA LB: the two recorded trees are the same.
compare_snaps() {
  snap compare "$1" "$2" "$3" "$4" || {
    echo "  the tree through $4 differs from the tree through $3 (above)"
    return 1
  }
}
# Checks of an upper directory itself: wh_dev PATH, xattr_is PATH NAME VALUE, no_xattr PATH NAME.
wh_dev() { [[ -c $1 && $(stat -c %t:%T "$1") == 0:0 ]] || { echo "  $1: expected a 0/0 character device (whiteout), seen $(stat -c '%F %t:%T' "$1" 2>&1)"; return 1; }; }
xattr_is() {
  local seen
  seen=$(getfattr --absolute-names --only-values -n "$2" "$1" 2>/dev/null) || seen='(none)'
  [[ $seen == "$3" ]] || { echo "  $1: expected xattr $2=$3, seen $seen"; return 1; }
}
no_xattr() {
  if getfattr --absolute-names -n "$2" "$1" >/dev/null 2>&1; then
    echo "  $1: expected no xattr $2, seen $(getfattr --absolute-names --only-values -n "$2" "$1")"
    return 1
  fi
}
# no_strata_ext UPPER: no metadata-only copy-up, redirect or hardlink-index entry was
# needed, so the upper holds nothing a kernel overlayfs could misread.
no_strata_ext() {
  local out
  out=$(getfattr -R -h --absolute-names -m '^trusted\.overlay\.(metacopy|redirect)$|^trusted\.strata\.(lowerdata|nlink)$' "$1" 2>/dev/null | grep '^# file:' || true)
  [[ -z $out ]] || { echo "  the upper uses strata-only extensions (this test must avoid them):"; sed 's/^/    /' <<<"$out"; return 1; }
}

# --- strata writes, the kernel reads ----------------------------------------------------------
U=$T/upper W=$T/work
mkdir -p "$U" "$W"
strata_changes() {
  local m=$MNT
  echo more >>"$m/data/append"                                      # append: data copy-up
  printf XYZ | dd of="$m/data/offset" bs=1 seek=100 conv=notrunc status=none
  echo again >>"$m/data/owned"                                      # keeps 1234:5678 0640
  : >"$m/data/trunc"                                                # O_TRUNC copy-up
  echo "in common" >"$m/common/new_in_merged"
  echo "at root" >"$m/new.txt"
  mkdir -p "$m/newdir/sub" && echo leaf >"$m/newdir/sub/leaf"
  mkdir "$m/common/sub/newsub"
  ln -s common/from_l1 "$m/newlink" && ln -s ../a.txt "$m/newdir/rel"
  mkfifo "$m/newfifo" && mknod "$m/newchr" c 1 5
  rm "$m/b.txt" "$m/top_only" "$m/common/from_l1" "$m/data/del"   # whiteouts
  echo copied >>"$m/data/del2" && rm "$m/data/del2"                 # whiteout over a copy
  rm -rf "$m/rmtree"                                                # merged dir → whiteout
  rm -rf "$m/redo" && mkdir "$m/redo" && echo fresh >"$m/redo/fresh" # opaque
  mkdir "$m/redo/inner" && echo again >"$m/redo/inner/g"
  mv "$m/new.txt" "$m/newdir/moved.txt"                             # rename of upper files
  echo "renamed" >>"$m/data/ren_src" && mv "$m/data/ren_src" "$m/common/renamed"
  echo "over" >>"$m/data/ren_over" && mv "$m/data/ren_over" "$m/shadowed"
  echo x >>"$m/data/xa" && setfattr -n user.note -v hello "$m/data/xa" # xattrs after copy-up
  setfattr -x user.color "$m/data/xa"
  setfattr -n user.new -v 1 "$m/common/new_in_merged"
  echo x >>"$m/data/append" && chmod 0600 "$m/data/append"           # chmod after copy-up
  dd if=/dev/urandom of="$m/data/big" bs=4096 count=1 seek=10 conv=notrunc status=none
  echo "over" >"$m/opq/new2"
}
strata_mount "$U" "$W" || fail "strata-overlay could not mount"
step "strata-overlay: data copy-ups, creates, whiteouts, opaque dir, file renames" strata_changes
strata_upper_ok() {
  local rc=0 f wh
  for f in b.txt top_only common/from_l1 data/del data/del2 rmtree data/ren_src data/ren_over; do
    wh_dev "$U/$f" || rc=1
  done
  [[ -d $U/redo ]] && xattr_is "$U/redo" trusted.overlay.opaque y || rc=1
  no_xattr "$U/common" trusted.overlay.opaque || rc=1
  no_strata_ext "$U" || rc=1
  wh=$(find "$U" -name ".wh.*")
  [[ -z $wh ]] || {
    echo "  .wh. files in an upper written by root: $wh"
    rc=1
  }
  f=$(stat -c %u:%g:%a "$U/data/owned")
  [[ $f == 1234:5678:640 ]] || {
    echo "  $U/data/owned: expected 1234:5678 0640 (copy-up keeps owner and mode), seen $f"
    rc=1
  }
  return "$rc"
}
check "strata's upper: 0/0 whiteouts, trusted.overlay.opaque=y, owners kept, no metacopy/redirect/index" strata_upper_ok
step "record the tree through strata-overlay" snap record "$MNT" "$T/strata.json"
# spot_check JSON: a few facts of the expected tree, so that both sides cannot agree on a
# wrong one.
spot_check() {
  python3 - "$1" <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))
want = {
    ".": ["a.txt", "abslink", "chr", "common", "data", "fifo", "hl", "kdir", "mv", "mv2",
          "newchr", "newdir", "newfifo", "newlink", "opq", "redo", "shadowed", "sym"],
    "common": ["from_l2", "new_in_merged", "renamed", "sub"],
    "common/sub": ["deep", "l1file", "newsub"],
    "data": ["append", "big", "offset", "owned", "trunc", "xa"],
    "opq": ["new", "new2"], "redo": ["fresh", "inner"],
}
bad = [f"{d}: entries {t[d]['entries']}, want {w}" for d, w in want.items() if t[d]["entries"] != w]
facts = {("data/trunc", "size"): 0, ("shadowed", "size"): len("rename over\nover\n"),
         ("hl/a", "nlink"): 2, ("data/owned", "owner"): "1234:5678", ("newchr", "rdev"): "1:5",
         ("newfifo", "type"): "fifo", ("newlink", "target"): "common/from_l1",
         ("data/append", "mode"): "0o600", ("data/xa", "xattrs"): {"trusted.secret": b"s3".hex(), "user.note": b"hello".hex()}}
bad += [f"{p} {k}: {t[p].get(k)!r}, want {v!r}" for (p, k), v in facts.items() if t[p].get(k) != v]
for b in bad:
    print("  " + b)
sys.exit(1 if bad else 0)
PY
}
check "the tree through strata-overlay has the expected entries, sizes, owners, xattrs" spot_check "$T/strata.json"
step "unmount strata-overlay" do_umount

kernel_reads_strata() {
  mkdir "$T/kwork" && kernel_mount "$U" "$T/kwork" index=off,metacopy=off &&
    snap record "$MNT" "$T/kernel.json" && umount "$MNT" &&
    compare_snaps "$T/strata.json" "$T/kernel.json" strata-overlay "kernel overlayfs"
}
check "kernel overlayfs on strata's upper (fresh workdir) shows the same tree" kernel_reads_strata
if mountpoint -q "$MNT"; then umount "$MNT"; fi
strata_rereads() {
  strata_mount "$U" "$W" && snap record "$MNT" "$T/strata2.json" && do_umount &&
    compare_snaps "$T/strata.json" "$T/strata2.json" "strata-overlay (first mount)" "strata-overlay (remount)"
}
check "strata-overlay again on its upper (its own workdir) after the kernel mount: the same tree" strata_rereads

# --- the kernel writes, strata reads ----------------------------------------------------------
KU=$T/kupper KW=$T/kwork2
mkdir -p "$KU" "$KW"
kernel_changes() {
  local m=$MNT
  echo more >>"$m/data/append" && : >"$m/data/trunc"
  chmod 0600 "$m/data/owned"                         # metacopy=off: a full copy-up
  setfattr -n user.note -v k "$m/data/xa"
  echo "at root" >"$m/knew" && mkdir -p "$m/kdir2/sub" && ln -s knew "$m/klink"
  mkfifo "$m/kfifo"
  rm "$m/b.txt" "$m/top_only" "$m/common/from_l1"    # 0/0 whiteouts
  rm -rf "$m/rmtree"
  rm -rf "$m/redo" && mkdir "$m/redo" && echo fresh >"$m/redo/fresh" # opaque
  mv "$m/data/ren_src" "$m/common/renamed"           # a lower file: copy-up, whiteout
  mv "$m/mv2" "$m/mv2renamed"                        # lower dir, same parent
  mkdir "$m/kd" && mv "$m/mv/a" "$m/kd/a"            # lower dir into a new dir
  mv "$m/mv" "$m/kdir2/sub/mv"                       # merged dir, another parent
  mv "$m/common/sub" "$m/common/sub2"                # merged dir in a merged dir
  echo inside >"$m/common/sub2/added"
  mkdir "$m/mv2" && echo reborn >"$m/mv2/new"        # new dir where a renamed one was
  mv "$m/kdir" "$m/kdir2/k" && mv "$m/kdir2/k" "$m/kfinal" # renamed twice
  mv "$m/kfinal/in" "$m/kfinal/in2"                  # a dir inside a renamed dir
}
kernel_mount "$KU" "$KW" index=off,metacopy=off,redirect_dir=on || fail "kernel overlayfs could not mount"
step "kernel overlayfs (index=off, metacopy=off, redirect_dir=on): changes" kernel_changes
step "record the tree through kernel overlayfs" snap record "$MNT" "$T/kernel2.json"
step "unmount kernel overlayfs" umount "$MNT"
kernel_upper_ok() {
  local rc=0 f v
  for f in b.txt top_only common/from_l1 rmtree data/ren_src; do wh_dev "$KU/$f" || rc=1; done
  xattr_is "$KU/redo" trusted.overlay.opaque y || rc=1
  xattr_is "$KU/mv2" trusted.overlay.opaque y || rc=1
  xattr_is "$KU/kdir2/sub/mv" trusted.overlay.redirect /mv || rc=1
  xattr_is "$KU/kd/a" trusted.overlay.redirect /mv/a || rc=1
  # a rename in the same directory: the kernel writes a relative redirect (the old name)
  for f in mv2renamed:mv2 common/sub2:sub kfinal/in2:in; do
    v=$(getfattr --absolute-names --only-values -n trusted.overlay.redirect "$KU/${f%:*}" 2>/dev/null) || v='(none)'
    [[ $v == "${f#*:}" || $v == "/${f%%/*}" || $v == "/${f#*:}" || $v == */"${f#*:}" ]] || {
      echo "  $KU/${f%:*}: expected a trusted.overlay.redirect naming ${f#*:}, seen $v"
      rc=1
    }
  done
  return "$rc"
}
check "the kernel's upper: 0/0 whiteouts, opaque dirs, absolute and relative redirects" kernel_upper_ok
strata_reads_kernel() {
  strata_mount "$KU" "$T/swork2" && snap record "$MNT" "$T/strata3.json" && do_umount &&
    compare_snaps "$T/kernel2.json" "$T/strata3.json" "kernel overlayfs" strata-overlay
}
check "strata-overlay on the kernel's upper (fresh workdir) shows what the kernel showed" strata_reads_kernel
finish "$start"
