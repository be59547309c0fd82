#!/usr/bin/env bash
# fs_writeback_test: the writes the writeback cache changes (fs/fuse_ops.cc Init), on
# strata-overlay and on kernel overlayfs over the same lower directory:
#   wo   a 2-byte write into the middle of a page through an O_WRONLY open (the kernel
#        reads the rest of the page through that open);
#   app  two O_APPEND opens writing in turn;
#   mm   a MAP_SHARED mmap write, msync;
#   tr   truncate down by path, then ftruncate up;
#   fa   fallocate: punch a hole, then zero a range (KEEP_SIZE), then extend;
#   od   an O_DIRECT write of one aligned 4 KiB block;
# each on a file of the lower layer (copy-up at open) and on one made on the mount.
# Contents and sizes must equal kernel overlayfs's (od too: the daemon's own fd is never
# O_DIRECT, whose alignment libfuse's request buffer cannot give); and strata's contents,
# sizes and mtimes must be the same after an unmount and remount (the kernel keeps its
# own mtime under the writeback cache; the upper must end with it).
# Needs root (mounts) and /dev/fuse.
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

need_root "mounts"
[[ -c /dev/fuse ]] || skip "needs /dev/fuse"
need_tools python3 mountpoint fallocate
need_overlay_bin
need_kernel_overlay
start=$EPOCHREALTIME
setup_work
L=$STORES/lower PY=$STORES/wb.py
mkdir -p "$L" "$STORES"/{su,sw,sm,ku,kw,km}
for f in wo app mm tr fa od; do
  python3 -c "import sys; sys.stdout.buffer.write(bytes(range(256)) * 40)" >"$L/l-$f"
done

cat >"$PY" <<'PYEOF'
import hashlib, json, mmap, os, subprocess, sys, time
J = os.path.join


def ops(m, f, new):
    p = J(m, f"{'n' if new else 'l'}-{f}")
    if new:
        with open(p, "wb") as o:
            o.write(bytes(range(256)) * 40)
    time.sleep(0.01)
    if f == "wo":
        fd = os.open(p, os.O_WRONLY)
        os.pwrite(fd, b"XY", 5000)
        os.close(fd)
    elif f == "app":
        a = os.open(p, os.O_WRONLY | os.O_APPEND)
        b = os.open(p, os.O_WRONLY | os.O_APPEND)
        for fd, s in ((a, b"a1"), (b, b"b1"), (a, b"a2")):
            os.write(fd, s)
        os.close(a)
        os.close(b)
    elif f == "mm":
        fd = os.open(p, os.O_RDWR)
        mp = mmap.mmap(fd, 8192, mmap.MAP_SHARED)
        mp[5000:5004] = b"MMAP"
        mp.flush()
        mp.close()
        os.close(fd)
    elif f == "tr":
        os.truncate(p, 3000)
        fd = os.open(p, os.O_WRONLY)
        os.ftruncate(fd, 20000)
        os.close(fd)
    elif f == "fa":
        for args in (["-p", "-o", "4096", "-l", "4096"], ["-z", "-n", "-o", "100", "-l", "200"],
                     ["-o", "0", "-l", "16384"]):
            subprocess.run(["fallocate", *args, p], check=True)
    elif f == "od":
        buf = mmap.mmap(-1, 4096)
        buf.write(b"D" * 4096)
        try:
            fd = os.open(p, os.O_WRONLY | os.O_DIRECT)
        except OSError:
            return
        try:
            os.pwritev(fd, [buf], 4096)
        except OSError as e:
            print(f"  note: O_DIRECT write refused ({e})")
        os.close(fd)


def state(m):
    out = {}
    for n in sorted(os.listdir(m)):
        st = os.lstat(J(m, n))
        with open(J(m, n), "rb") as i:
            out[n] = {"size": st.st_size, "sha": hashlib.sha256(i.read()).hexdigest()[:16],
                      "mtime_ns": st.st_mtime_ns}
    return out


cmd = sys.argv[1]
if cmd == "ops":
    for f in ("wo", "app", "mm", "tr", "fa", "od"):
        for new in (False, True):
            ops(sys.argv[2], f, new)
elif cmd == "state":
    json.dump(state(sys.argv[2]), sys.stdout, sort_keys=True, indent=0)
PYEOF

start_strata() {
  "$OVERLAY" -f -o "lowerdir=$L,upperdir=$STORES/su,workdir=$STORES/sw" "$STORES/sm" \
    2>>"$WORK/err" &
  BG_PIDS+=("$!")
  wait_mounted "$STORES/sm" "$WORK/err"
}
start_strata
mount -t overlay overlay -o "lowerdir=$L,upperdir=$STORES/ku,workdir=$STORES/kw" \
  "$STORES/km" || fail "kernel overlayfs did not mount"
step "the writes on strata-overlay" python3 "$PY" ops "$STORES/sm"
step "the writes on kernel overlayfs" python3 "$PY" ops "$STORES/km"
strata=$(python3 "$PY" state "$STORES/sm")
kernel=$(python3 "$PY" state "$STORES/km")
without_times() { python3 -c 'import json, sys
s = json.load(sys.stdin)
print(json.dumps({n: {k: v for k, v in e.items() if k != "mtime_ns"}
                  for n, e in s.items()}, indent=0, sort_keys=True))' <<<"$1"; }
expect "contents and sizes: strata as kernel overlayfs" "$(without_times "$kernel")" \
  "$(without_times "$strata")"
umount "$STORES/sm"
# At once: the old daemon may still hold the work directory's lock for a moment
# after umount returns, and the new mount must wait for it, not fail.
start_strata
expect "contents, sizes and mtimes after an unmount and remount" "$strata" \
  "$(python3 "$PY" state "$STORES/sm")"
umount "$STORES/sm" "$STORES/km"
finish "$start"
