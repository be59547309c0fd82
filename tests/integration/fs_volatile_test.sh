#!/usr/bin/env bash
# The volatile option (design §2): no fsync, and a crash marker so that an upper a
# crashed volatile mount left behind is refused, as kernel overlayfs does.
#   - mounted with -o volatile: WORK/work/incompat/volatile exists while mounted;
#   - after a clean unmount the marker is gone and the upper mounts again;
#   - after a SIGKILL of the daemon the marker stays, the next mount is refused with
#     one line naming it, and removing the marker lets it mount (the data may be
#     incomplete: that is the deal volatile makes).
. "$(dirname "$0")/lib.sh"

need_root "lazily detaches a killed FUSE mount"
[[ -c /dev/fuse ]] || skip "needs /dev/fuse"
need_overlay_bin
setup_work
L=$WORK/lower U=$STORES/upper W=$STORES/work M=$WORK/mnt
mkdir -p "$L/d" "$U" "$M"
echo lower >"$L/d/f"
MARKER=$W/work/incompat/volatile
PID=''
start() { # start OPTS: the daemon in the foreground, in the background
  "$OVERLAY" -f -o "lowerdir=$L,upperdir=$U,workdir=$W$1" "$M" 2>"$WORK/err" &
  PID=$!
  BG_PIDS+=("$PID")
  local i
  for ((i = 0; i < 100; i++)); do
    mountpoint -q "$M" && return 0
    kill -0 "$PID" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}
stop() {
  umount "$M"
  wait "$PID" 2>/dev/null || true
}

start ,volatile || fail "a volatile mount did not come up: $(cat "$WORK/err")"
echo changed >>"$M/d/f"
[[ -e $MARKER ]] || fail "no marker $MARKER while a volatile mount runs"
stop
[[ ! -e $MARKER ]] || fail "the marker is left after a clean unmount"
note "clean unmount of a volatile mount: the marker comes and goes"

start ,volatile || fail "the upper of a cleanly unmounted volatile mount is refused: $(cat "$WORK/err")"
[[ $(cat "$M/d/f") == $'lower\nchanged' ]] || fail "the change is lost after a clean unmount"
kill -KILL "$PID"
wait "$PID" 2>/dev/null || true
umount -l "$M"
[[ -e $MARKER ]] || fail "no marker after the daemon was killed"
if start ""; then
  stop
  fail "an upper left by a crashed volatile mount was accepted"
fi
err=$(cat "$WORK/err")
[[ $(grep -c '' <<<"$err") == 1 && $err == *"$MARKER"* ]] ||
  fail "the refusal should be one line naming $MARKER, seen: $err"
note "after a crash the upper is refused: $err"
rm -f "$MARKER"
start "" || fail "removing the marker should let the upper mount: $(cat "$WORK/err")"
stop
note "PASS: volatile marker on crash, clean unmount, refusal and recovery"
