#!/usr/bin/env bash
# fs_passthrough_test: FUSE passthrough of the upper's files (fs/backing_files.h), on
# strata-overlay as root:
#   - writes to an upper file never reach the daemon (its /proc/PID/io counts), nor do
#     reads (no FUSE_READ: ftrace's fuse_request_send, where tracefs is at hand); with
#     STRATA_PASSTHROUGH=0 they do (the checks can fail);
#   - on a read-only mount, reads of lower files are passed through too;
#   - a lower file held open for reading while it is copied up: the reader follows the
#     copy-up, the writer's data lands, and the inode is passed through once both close;
#   - privileges: suid set while the file is open for writing shows once it is closed,
#     unless it was written after the chmod (the write removes it, as the kernel does
#     for a writer without CAP_FSETID).
# fs_writeback_test's writes (O_WRONLY partial pages, O_APPEND, MAP_SHARED, truncate,
# fallocate, O_DIRECT) run passed through too, as root.
# Needs root (CAP_SYS_ADMIN for backing files), /dev/fuse and Linux 6.9 (passthrough).
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

need_root "FUSE passthrough needs CAP_SYS_ADMIN"
[[ -c /dev/fuse ]] || skip "needs /dev/fuse"
need_tools python3 mountpoint dd
need_overlay_bin
IFS=. read -r kmajor kminor _ <<<"$(uname -r)"
((kmajor > 6 || (kmajor == 6 && kminor >= 9))) || skip "FUSE passthrough needs Linux 6.9"
kconfig=$( { zcat /proc/config.gz || cat "/boot/config-$(uname -r)"; } 2>/dev/null || true)
if [[ -n $kconfig ]] && ! grep -q '^CONFIG_FUSE_PASSTHROUGH=y' <<<"$kconfig"; then
  skip "this kernel is built without CONFIG_FUSE_PASSTHROUGH"
fi
start=$EPOCHREALTIME
setup_work
L=$STORES/lower M=$STORES/m
mkdir -p "$L" "$STORES"/{u,w} "$M"
dd if=/dev/urandom of="$L/lowerfile" bs=1M count=4 status=none
echo lower >"$L/small"

DAEMON=
start_strata() {
  env "$@" "$OVERLAY" -f -o "lowerdir=$L,upperdir=$STORES/u,workdir=$STORES/w" "$M" \
    2>>"$WORK/err" &
  DAEMON=$!
  BG_PIDS+=("$DAEMON")
  wait_mounted "$M" "$WORK/err"
}
stop_strata() {
  umount "$M" || fail "umount $M"
  wait "$DAEMON" 2>/dev/null || true
}
# io FIELD: the daemon's /proc/PID/io FIELD (rchar, wchar: bytes through its syscalls).
io() { awk -v f="$1:" '$1 == f { print $2 }' "/proc/$DAEMON/io"; }
# daemon_bytes CMD...: MiB the daemon read plus wrote while CMD ran.
daemon_bytes() {
  local before after
  before=$(($(io rchar) + $(io wchar)))
  "$@" >/dev/null
  after=$(($(io rchar) + $(io wchar)))
  echo $(((after - before) >> 20))
}
# small N: "yes" when N (MiB) is under 4, else N.
small() { if (($1 < 4)); then echo yes; else echo "$1"; fi; }
TRACE=/sys/kernel/tracing
EVENT=$TRACE/events/fuse/fuse_request_send
[[ -w $EVENT/enable ]] || note "no tracefs with fuse events: the FUSE_READ counts are not checked"
# reads CMD...: the FUSE_READ requests the mount at $M got while CMD ran, after a drop of
# the caches. Without tracefs, CMD runs and nothing is checked (expect_reads).
reads() {
  sync
  echo 3 >/proc/sys/vm/drop_caches
  local major minor
  IFS=: read -r major minor <<<"$(mountpoint -d "$M")"
  echo "connection == $(((major << 20) | minor)) && opcode == 15" >"$EVENT/filter"
  echo >"$TRACE/trace"
  echo 1 >"$EVENT/enable"
  echo 1 >"$TRACE/tracing_on"
  "$@" >/dev/null
  echo 0 >"$EVENT/enable"
  echo 0 >"$EVENT/filter"
  grep -c 'fuse_request_send:' "$TRACE/trace" || true
}
# expect_reads LABEL none|some CMD...: no FUSE_READ, or at least one, while CMD ran.
expect_reads() {
  if [[ ! -w $EVENT/enable ]]; then
    "${@:3}" >/dev/null
    return
  fi
  local n
  n=$(reads "${@:3}")
  expect "$1" "$2" "$(if ((n == 0)); then echo none; else echo some; fi)"
}

# --- the daemon is out of the data path
start_strata
written=$(daemon_bytes dd if=/dev/zero of="$M/new" bs=1M count=64 conv=fsync status=none)
expect "64 MiB written to a new file: the daemon moved under 4 MiB" yes "$(small "$written")"
expect_reads "... and read back: no FUSE_READ" none cat "$M/new"
expect "... and the upper has it" 67108864 "$(stat -c %s "$STORES/u/new")"
stop_strata
rm -f "$STORES/u/new"
start_strata STRATA_PASSTHROUGH=0
written=$(daemon_bytes dd if=/dev/zero of="$M/new" bs=1M count=64 conv=fsync status=none)
expect "STRATA_PASSTHROUGH=0: the daemon moves the data (the check can fail)" yes \
  "$( ((written >= 64)) && echo yes || echo "$written MiB")"
expect_reads "... and gets FUSE_READs" some cat "$M/new"
stop_strata
rm -f "$STORES/u/new"

# --- a read-only mount passes the lower's files through
"$OVERLAY" -f -o "lowerdir=$L" "$M" 2>>"$WORK/err" &
DAEMON=$!
BG_PIDS+=("$DAEMON")
wait_mounted "$M" "$WORK/err"
expect_reads "a read-only mount: a lower file read with no FUSE_READ" none cat "$M/lowerfile"
expect "... and its content" "$(md5sum <"$L/lowerfile")" "$(md5sum <"$M/lowerfile")"
stop_strata

# --- cached and passed-through opens of one inode
start_strata
out=$(
  python3 - "$M" "$L" <<'PYEOF'
import os, sys
m, l = sys.argv[1], sys.argv[2]
p = os.path.join(m, "lowerfile")
r = os.open(p, os.O_RDONLY)                 # cached: it reads the lower
first = os.pread(r, 4, 0)
w = os.open(p, os.O_RDWR)                   # copy-up, beside a cached open
os.pwrite(w, b"NEW!", 0)
seen = os.pread(r, 4, 0)                    # the reader follows the copy-up
w2 = os.open(p, os.O_RDWR)                  # still beside the cached reader
os.pwrite(w2, b"TWO!", 8)
for fd in (r, w, w2):
    os.close(fd)
w3 = os.open(p, os.O_RDWR)                  # alone now: passed through
os.pwrite(w3, b"3333", 16)
with open(p, "rb") as f:
    data = f.read(20)
os.close(w3)
print(first == open(os.path.join(l, "lowerfile"), "rb").read(4), seen, data[:4], data[8:12], data[16:20])
PYEOF
)
expect "a reader, two writers, then one alone" "True b'NEW!' b'NEW!' b'TWO!' b'3333'" "$out"
expect "... in the upper" "NEW!TWO!3333" "$(python3 -c 'import sys; d = open(sys.argv[1], "rb").read(20); print((d[:4] + d[8:12] + d[16:]).decode())' "$STORES/u/lowerfile")"

# --- privileges set while the file is open for writing
cp /bin/id "$M/kept"
cp /bin/id "$M/written"
exec 3>>"$M/kept" 4>>"$M/written"
chmod 4755 "$M/kept" "$M/written"
hidden=$(stat -c %a "$M/kept")
echo more >&4
exec 3>&- 4>&-
shown=''
for _ in $(seq 100); do # the RELEASEs are asynchronous: up to 5 s
  shown=$(stat -c %a "$M/kept")
  [[ $shown == 4755 ]] && break
  sleep 0.05
done
expect "suid set while open for writing: hidden until the close" 755 "$hidden"
expect "... then shown (not written since)" 4755 "$shown"
expect "... removed by a write after the chmod" 755 "$(stat -c %a "$M/written")"
expect "... also in the upper" "4755 755" "$(stat -c %a "$STORES/u/kept") $(stat -c %a "$STORES/u/written")"
stop_strata
expect "the upper after the unmount" "4755 755" "$(stat -c %a "$STORES/u/kept") $(stat -c %a "$STORES/u/written")"
finish "$start"
