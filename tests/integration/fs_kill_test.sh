#!/usr/bin/env bash
# A killed filesystem daemon loses nothing acknowledged and leaves nothing half-done.
# Mount an image with an upper, run copy-ups (data: appends to lower files of up to
# 4 MiB; metadata: chmod) and fsync'd appends in parallel, SIGKILL the daemon at a
# random moment, detach the dead mount, remount with the same upper and check:
#   - every lower file is exactly its old content or its new content (never empty,
#     truncated or half-copied), with its old or new mode;
#   - the fsync'd log holds every line whose fsync returned before the kill, in order;
#   - the work directory holds no leftovers of the interrupted copy-ups after remount.
# Several rounds, each on the state the previous one left.
. "$(dirname "$0")/lib.sh"

need_root "kills and lazily detaches FUSE mounts"
need_tools python3 sha256sum
need_strata
[[ -c /dev/fuse ]] || skip "needs /dev/fuse"
setup_work
STORE=$STORES/store
ROUNDS=${FS_KILL_ROUNDS:-6}
S() { "$STRATA_BIN" --root "$STORE" "$@"; }

LOWER=$WORK/lower
mkdir -p "$LOWER/data" "$LOWER/meta"
python3 - "$LOWER" <<'PY'
import os, random, sys
root = sys.argv[1]
rnd = random.Random(7)
for i in range(120):
    size = rnd.choice([0, 1, 100, 4096, 70000, 300000, 1 << 20, 4 << 20])
    with open(f"{root}/data/f{i:03d}", "wb") as f:
        f.write(rnd.randbytes(size))
    with open(f"{root}/meta/m{i:03d}", "wb") as f:
        f.write(rnd.randbytes(rnd.choice([10, 5000])))
    os.chmod(f"{root}/meta/m{i:03d}", 0o644)
PY
S import dir "$LOWER" --name killme:latest >/dev/null
MNT=$WORK/mnt UP=$STORES/upper WK=$STORES/work
mkdir -p "$MNT"
# The old and new content of every data file: new = old + one line.
declare -A OLD NEW
for f in "$LOWER"/data/*; do
  n=${f##*/}
  OLD[$n]=$(sha256sum <"$f" | cut -c1-64)
  NEW[$n]=$( (cat "$f"; echo "appended") | sha256sum | cut -c1-64)
done

DAEMON=''
mount_fs() {
  # The daemon itself in the background (not a shell function's subshell), so that
  # $! is the process to kill.
  "$STRATA_BIN" --root "$STORE" mount killme "$MNT" --upper "$UP" --work "$WK" -f &
  DAEMON=$!
  BG_PIDS+=("$DAEMON")
  local i
  for ((i = 0; i < 200; i++)); do
    mountpoint -q "$MNT" && [[ -e $MNT/data ]] && return 0
    sleep 0.05
  done
  fail "the mount did not come up"
}
detach() {
  umount -l "$MNT" 2>/dev/null || true
  wait "$DAEMON" 2>/dev/null || true
}

check_state() {
  local round=$1 n sum bad=0
  for f in "$LOWER"/data/*; do
    n=${f##*/}
    sum=$(sha256sum <"$MNT/data/$n" | cut -c1-64)
    if [[ $sum != "${OLD[$n]}" && $sum != "${NEW[$n]}" ]]; then
      printf '[%s] PROBLEM: round %s: data/%s is neither old nor new (size %s)\n' \
        "$TEST_NAME" "$round" "$n" "$(stat -c %s "$MNT/data/$n")"
      bad=1
    fi
  done
  for f in "$MNT"/meta/*; do
    mode=$(stat -c %a "$f")
    if [[ $mode != 644 && $mode != 600 ]]; then
      printf '[%s] PROBLEM: round %s: %s has mode %s\n' "$TEST_NAME" "$round" "${f##*/}" "$mode"
      bad=1
    fi
    cmp -s "$f" "$LOWER/meta/${f##*/}" || {
      printf '[%s] PROBLEM: round %s: %s content changed\n' "$TEST_NAME" "$round" "${f##*/}"
      bad=1
    }
  done
  # Every acknowledged line is there, in order.
  acked=$(cat "$WORK/acked" 2>/dev/null || echo -1)
  if ! python3 - "$MNT/log" "$acked" <<'PY'; then
import sys
path, acked = sys.argv[1], int(sys.argv[2])
try:
    lines = open(path, "rb").read().split(b"\n")
except FileNotFoundError:
    lines = []
complete = [l for l in lines[:-1]]
for i in range(acked + 1):
    if i >= len(complete) or complete[i] != b"line %d" % i:
        print(f"log: acknowledged line {i} missing or wrong ({len(complete)} complete lines)")
        sys.exit(1)
PY
    printf '[%s] PROBLEM: round %s: fsync-acknowledged data lost\n' "$TEST_NAME" "$round"
    bad=1
  fi
  leftovers=$(find "$WK/strata-tmp" -mindepth 1 | wc -l)
  if ((leftovers != 0)); then
    printf '[%s] PROBLEM: round %s: %s leftovers in the work directory after remount\n' \
      "$TEST_NAME" "$round" "$leftovers"
    bad=1
  fi
  ((bad == 0))
}

mount_fs
problems=0
for ((round = 1; round <= ROUNDS; round++)); do
  # Writers: appends (data copy-up) and chmods (metadata copy-up) in random order, and
  # an fsync'd log.
  (
    for f in $(ls "$MNT/data" | shuf); do
      grep -q appended "$MNT/data/$f" 2>/dev/null || echo appended >>"$MNT/data/$f"
    done
  ) 2>/dev/null &
  w1=$!
  (for f in $(ls "$MNT/meta" | shuf); do chmod 600 "$MNT/meta/$f"; done) 2>/dev/null &
  w2=$!
  python3 - "$MNT/log" "$WORK/acked" <<'PY' 2>/dev/null &
import os, sys
path, ack = sys.argv[1], sys.argv[2]
try:
    start = open(ack).read().strip()
    i = int(start) + 1 if start else 0
except FileNotFoundError:
    i = 0
fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
while True:
    os.write(fd, b"line %d\n" % i)
    os.fsync(fd)
    tmp = ack + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(i))
    os.rename(tmp, ack)
    i += 1
PY
  w3=$!
  sleep "0.$((RANDOM % 9 + 1))"
  kill -KILL "$DAEMON"
  wait "$w1" "$w2" "$w3" 2>/dev/null || true
  detach
  # A line written after the last ack may be cut short: truncate the log to its acked
  # lines so that the next round appends cleanly. (Done after remount, through the fs.)
  mount_fs
  if check_state "$round"; then
    note "round $round: killed mid-work; every file old or new, acknowledged log intact"
  else
    problems=$((problems + 1))
  fi
  python3 - "$MNT/log" "$WORK/acked" <<'PY'
import sys
path, ack = sys.argv[1], sys.argv[2]
try:
    acked = int(open(ack).read().strip())
except FileNotFoundError:
    acked = -1
keep = b"".join(b"line %d\n" % i for i in range(acked + 1))
with open(path, "wb") as f:
    f.write(keep)
    f.flush()
PY
done
S umount "$MNT"
wait "$DAEMON" 2>/dev/null || true
((problems == 0)) || fail "$problems of $ROUNDS rounds found damage (PROBLEM lines above)"
note "PASS: $ROUNDS kills of the daemon mid copy-up and mid fsync'd writes"
