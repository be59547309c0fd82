# shellcheck shell=bash
# Helpers shared by the integration tests (tests/integration/*_test.sh). Source it first:
#   . "$(dirname "$0")/lib.sh"
# ctest sets STRATA_BIN, STRATA_SRC and STRATA_BUILD; when run by hand they default to
# this checkout and its build/ tree. Exit codes: 0 pass, 1 fail, 77 skip.
set -euo pipefail
shopt -s inherit_errexit

: "${STRATA_SRC:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
: "${STRATA_BUILD:=$STRATA_SRC/build}"
: "${STRATA_BIN:=$STRATA_BUILD/bin/strata}"
export STRATA_TEST_CACHE=${STRATA_TEST_CACHE:-/var/cache/strata-test}
TEST_NAME=$(basename "$0" .sh)
TREECMP=$STRATA_SRC/tests/integration/treecmp.py
FIXTURES=$STRATA_SRC/tests/fixtures
WORK='' STORES='' # set by setup_work
BG_PIDS=() # background processes that cleanup must not leave behind

note() { printf '[%s] %s\n' "$TEST_NAME" "$*"; }
fail() {
  local more=''
  if ((${PROBLEMS:-0} > 0)); then more=" (and ${PROBLEMS} failed checks before: PROBLEM lines above)"; fi
  printf '[%s] FAIL: %s%s\n' "$TEST_NAME" "$*" "$more" >&2
  exit 1
}
skip() {
  printf '[%s] SKIP: %s\n' "$TEST_NAME" "$*" >&2
  exit 77
}

need_root() { ((EUID == 0)) || skip "needs root ($*)"; }
need_tools() {
  local tool
  for tool; do
    command -v "$tool" >/dev/null || skip "needs $tool, which is not installed"
  done
}
need_strata() {
  [[ -x $STRATA_BIN ]] || fail "STRATA_BIN=$STRATA_BIN is not an executable (build strata first)"
}
# need_overlay_bin: sets OVERLAY to the strata-overlay built next to $STRATA_BIN.
need_overlay_bin() {
  OVERLAY=$(dirname "$STRATA_BIN")/strata-overlay
  [[ -x $OVERLAY ]] || fail "$OVERLAY is not built (strata-overlay)"
}
# need_kernel_overlay: kernel overlayfs (the reference) can be mounted, loading its
# module if needed.
need_kernel_overlay() {
  grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null ||
    skip "kernel overlayfs (the reference) is not available"
}

# setup_work: private directories, removed on exit (also on SIGINT/SIGTERM) with any
# background process still registered in BG_PIDS, any process naming them and any mount
# under them (see unmount_under; STRATA_KEEP_WORK=1 keeps the directories, printing their
# paths):
#   $STORES  on disk (${TMPDIR:-/tmp}): strata stores go here, as on a real machine;
#   $WORK    for everything else (reference trees, extractions, exports): on a tmpfs
#            when one with room and with user/trusted xattrs and ACLs is at hand
#            ($STRATA_TEST_SCRATCH, else /dev/shm), because deleting tens of thousands of
#            files from a disk mounted with `discard` takes minutes; else under $STORES.
setup_work() {
  STORES=$(mktemp -d "${TMPDIR:-/tmp}/strata-$TEST_NAME.XXXXXX")
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  # strata's user namespace keepers (strata-UID/userns.pid, one per user) are recorded
  # here, so that cleanup ends them (their command lines name it) with the rest.
  export XDG_RUNTIME_DIR=$STORES/run
  mkdir -m 1777 "$XDG_RUNTIME_DIR"
  local base
  for base in ${STRATA_TEST_SCRATCH:-} /dev/shm; do
    if scratch_ok "$base"; then
      WORK=$(mktemp -d "$base/strata-$TEST_NAME.XXXXXX")
      return
    fi
  done
  WORK=$STORES/work
  mkdir "$WORK"
}
# scratch_ok DIR: DIR is a tmpfs with 4 GiB free that keeps xattrs and ACLs.
scratch_ok() {
  [[ -d $1 && -w $1 ]] || return 1
  [[ $(stat -f -c %T "$1") == tmpfs ]] || return 1
  (($(df -k --output=avail "$1" | tail -1) > 4 * 1024 * 1024)) || return 1
  local probe ok=1
  probe=$(mktemp "$1/strata-probe.XXXXXX") || return 1
  setfattr -n user.probe -v 1 "$probe" 2>/dev/null || ok=0
  if ((EUID == 0)); then setfattr -n trusted.probe -v 1 "$probe" 2>/dev/null || ok=0; fi
  setfacl -m u:1:r "$probe" 2>/dev/null || ok=0
  rm -f "$probe"
  ((ok))
}
# cleanup: setup_work's EXIT trap (the exit status is kept).
cleanup() {
  local rc=$? pid dir
  set +e # undo all that can be undone
  for pid in "${BG_PIDS[@]}"; do
    kill -KILL "$pid" 2>/dev/null
  done
  unmount_under "$WORK" "$STORES"
  for pid in "${BG_PIDS[@]}"; do
    wait "$pid" 2>/dev/null
  done
  for dir in "$WORK" "$STORES"; do
    if [[ -n $dir && -d $dir ]]; then
      if [[ ${STRATA_KEEP_WORK:-0} == 1 ]]; then
        note "kept $dir"
      else
        rm -rf --one-file-system "$dir"
      fi
    fi
  done
  exit "$rc"
}

# own_secs N: N seconds, spelt so that only this test's processes carry it as an
# argument ("30.0" and this shell's pid). Tests run in parallel: a bare "sleep 30" of
# another test would be found by pids_naming -x 30 and taken for this one's.
own_secs() { printf '%s.0%s\n' "$1" "$$"; }

# pids_naming [-x] TEXT...: the pids of the processes (other than this shell) with a
# command-line argument that contains a TEXT (-x: that equals it), one a line. A process
# that exits during the scan is passed over; an empty TEXT names none.
pids_naming() {
  local exact=0 p a t
  local -a args texts=()
  if [[ ${1-} == -x ]]; then
    exact=1
    shift
  fi
  for t; do
    if [[ -n $t ]]; then texts+=("$t"); fi
  done
  ((${#texts[@]})) || return 0
  for p in /proc/[0-9]*; do
    [[ ${p#/proc/} != "$$" && ${p#/proc/} != "$BASHPID" ]] || continue
    # A process may exit while we look: its cmdline is then unreadable, or empty.
    mapfile -d '' args 2>/dev/null <"$p/cmdline" || continue
    for a in "${args[@]}"; do
      for t in "${texts[@]}"; do
        if [[ $exact == 1 && $a == "$t" || $exact == 0 && $a == *"$t"* ]]; then
          echo "${p#/proc/}"
          continue 3
        fi
      done
    done
  done
  return 0
}

# wait_naming [-x] TEXT: wait up to 5 s until a process names TEXT (see pids_naming).
wait_naming() {
  local i
  for ((i = 0; i < 50; i++)); do
    [[ -n $(pids_naming "$@") ]] && return 0
    sleep 0.1
  done
  return 1
}

# wait_mounted MNT ERRFILE: wait up to 5 s until MNT is a mount point; else fail, with
# what ERRFILE (the daemon's stderr) says.
wait_mounted() {
  local i
  for ((i = 0; i < 100; i++)); do
    mountpoint -q "$1" && return 0
    sleep 0.05
  done
  fail "$1 did not mount: $(cat "$2" 2>/dev/null)"
}

# running PID: PID is a live process (not gone, not a zombie).
running() {
  local stat
  { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
  stat=${stat##*) } # after the command name, which may hold spaces and parentheses
  [[ ${stat%% *} != [ZX] ]]
}

# wait_gone PID...: wait up to 10 s for every PID to exit (a zombie has); print the ones
# still running then, one a line, and return 1 if there are any.
wait_gone() {
  local pid i
  local -a left=("$@")
  for ((i = 0; i < 100; i++)); do
    set -- "${left[@]}"
    left=()
    for pid; do
      if running "$pid"; then left+=("$pid"); fi
    done
    ((${#left[@]})) || return 0
    sleep 0.1
  done
  printf '%s\n' "${left[@]}"
  return 1
}

# mounts_under DIR...: the mount points at or under each DIR, deepest first, one a line.
mounts_under() {
  local mp
  while read -r _ _ mp; do printf '%s\n' "$mp"; done < <(mount_table_under "$@")
}
# mount_table_under DIR...: "MAJOR:MINOR FSTYPE MOUNTPOINT" for each mount at or under a
# DIR (from /proc/self/mountinfo, octal escapes decoded), deepest first. A DIR that is
# not an absolute path below the root is passed over.
mount_table_under() {
  local line dev mp dir rest
  local -a dirs=()
  for dir; do
    dir=${dir%/}
    if [[ $dir == /?* ]]; then dirs+=("$dir"); fi
  done
  ((${#dirs[@]})) || return 0
  while IFS= read -r line; do
    read -r _ _ dev _ mp _ <<<"$line"
    printf -v mp '%b' "$mp"
    rest=${line#* - } # after the optional fields: FSTYPE SOURCE OPTIONS
    for dir in "${dirs[@]}"; do
      if [[ $mp == "$dir" || $mp == "$dir"/* ]]; then
        printf '%s %s %s\n' "$dev" "${rest%% *}" "$mp"
        break
      fi
    done
  done </proc/self/mountinfo | LC_ALL=C sort -r -k3
}

# unmount_under DIR...: undo what a test left in its private directories DIR (absolute,
# two levels deep at least): abort the FUSE connections mounted under them (a hung daemon
# then blocks nothing), kill the processes naming a DIR/ (leftover daemons and their
# users) and wait for them (10 s), then unmount every mount under them deepest first
# (umount, else umount -l; as non-root fusermount3 -u -z). Notes each process killed and
# mount undone, says on stderr which mount it could not undo; never fails.
unmount_under() {
  local dir dev type mp pid args
  local -a dirs=() names=() mounts=() killed_pids=()
  for dir; do
    dir=${dir%/}
    if [[ $dir == /?*/?* ]]; then
      dirs+=("$dir")
      names+=("$dir/")
    fi
  done
  ((${#dirs[@]})) || return 0
  mapfile -t mounts < <(mount_table_under "${dirs[@]}")
  for mp in "${mounts[@]}"; do
    read -r dev type _ <<<"$mp"
    if [[ $type == fuse* && -w /sys/fs/fuse/connections/${dev#*:}/abort ]]; then
      echo 1 2>/dev/null >"/sys/fs/fuse/connections/${dev#*:}/abort" || true
    fi
  done
  for pid in $(pids_naming "${names[@]}"); do
    { args=$(tr '\0' ' ' <"/proc/$pid/cmdline"); } 2>/dev/null || args='?'
    disown "$pid" 2>/dev/null || true # a job of this shell: no "Killed" message
    if kill -KILL "$pid" 2>/dev/null; then
      killed_pids+=("$pid")
      note "killed a leftover process $pid: $args"
    fi
  done
  wait_gone "${killed_pids[@]}" >/dev/null || true
  for mp in "${mounts[@]}"; do
    read -r _ _ mp <<<"$mp"
    if ((EUID == 0)) && { umount "$mp" || umount -l "$mp"; } 2>/dev/null; then
      note "unmounted a leftover mount: $mp"
    elif ((EUID != 0)) && fusermount3 -u -z "$mp" 2>/dev/null; then
      note "unmounted a leftover mount: $mp"
    else
      echo "could not unmount $mp" >&2
    fi
  done
  return 0
}

# fixture SCRIPT [ARGS...]: run tests/fixtures/SCRIPT and print what it prints; a fixture
# that exits 77 skips the test, any other failure fails it.
fixture() {
  local out rc=0
  out=$("$FIXTURES/$1" "${@:2}") || rc=$?
  if ((rc == 77)); then skip "fixture $1 is not available (see its message above)"; fi
  ((rc == 0)) || fail "fixture $1 ${*:2} failed (exit $rc)"
  printf '%s\n' "$out"
}

# elapsed START_EPOCHREALTIME: seconds since START, e.g. "12.34".
elapsed() {
  local us=$((${EPOCHREALTIME/./} - ${1/./}))
  printf '%d.%02d' $((us / 1000000)) $((us % 1000000 / 10000))
}

# timed LABEL CMD...: run CMD, print its wall time, and leave its exit status in TIMED_RC
# (step and check). CMD runs in a subshell with errexit in force (also for shell
# functions), so it cannot change the test's variables. errexit is switched off around
# the subshell rather than tested with || or if, which would turn it off inside CMD too.
timed() {
  local label=$1 start
  shift
  start=$EPOCHREALTIME
  set +e
  (
    set -e
    "$@"
  )
  TIMED_RC=$?
  set -e
  printf '[%s] %7ss  %s\n' "$TEST_NAME" "$(elapsed "$start")" "$label"
}

# step LABEL CMD...: run CMD (see timed); on failure fail naming LABEL and CMD.
step() {
  timed "$@"
  ((TIMED_RC == 0)) || fail "$1: \`${*:2}\` exited $TIMED_RC"
}

# check LABEL CMD...: like step, but a failure is recorded (a PROBLEM line) and the test
# goes on; finish then fails. For checks whose failure does not stop the later ones.
PROBLEMS=0
check() {
  timed "$@"
  if ((TIMED_RC != 0)); then
    # shellcheck disable=SC2016 # the backquotes are literal
    printf '[%s] PROBLEM: %s: `%s` exited %d\n' "$TEST_NAME" "$1" "${*:2}" "$TIMED_RC"
    PROBLEMS=$((PROBLEMS + 1))
  fi
}
# expect LABEL WANT SEEN: a check of a value: a PROBLEM line (and finish fails) unless
# SEEN is WANT.
expect() {
  if [[ $2 == "$3" ]]; then
    note "ok: $1"
  else
    printf '[%s] PROBLEM: %s: want %q, seen %q\n' "$TEST_NAME" "$1" "$2" "$3"
    PROBLEMS=$((PROBLEMS + 1))
  fi
}
# finish START: pass (printing the time since START), or fail if a check failed.
finish() {
  ((PROBLEMS == 0)) || fail "checks failed"
  note "PASS in $(elapsed "$1")s"
}

# The strata CLI on the store $STORE (or another store: STORE=DIR st ...).
# shellcheck disable=SC2153 # STORE is set by each test
st() { "$STRATA_BIN" --root "$STORE" "$@"; }

# gnu_extract TAR DIR: extract TAR into DIR (created) the way the references are made.
# Any message from GNU tar is an error (the tarballs strata writes must read cleanly),
# except that GNU tar 1.34 does not know the POSIX keyword hdrcharset, which a PAX writer
# must use for a name that is not UTF-8 (GNU tar then takes the name as bytes, as it should).
gnu_extract() {
  local err
  mkdir -p "$2" || return
  err=$(tar --xattrs --xattrs-include='*' --acls --numeric-owner --warning=no-timestamp \
    -xpf "$1" -C "$2" 2>&1) || {
    printf 'tar -x %s failed:\n%s\n' "$1" "$err" | head -20
    return 1
  }
  err=$(grep -v "^tar: Ignoring unknown extended header keyword 'hdrcharset'$" <<<"$err" || true)
  if [[ -n $err ]]; then
    printf 'GNU tar complains about %s (%d lines), e.g.:\n%s\n' "$1" \
      "$(grep -c '' <<<"$err")" "$(sort <<<"$err" | uniq -c | sort -rn | head -5)"
    return 1
  fi
}

# umoci_unpack LAYOUT:TAG BUNDLE: unpack an image with umoci (its rootfs is BUNDLE/rootfs).
umoci_unpack() { umoci unpack --image "$1" "$2" >/dev/null; }

# tree_cmp A B [treecmp options]: compare two trees (see treecmp.py); prints one line per
# difference and returns 1 if they differ.
tree_cmp() { python3 "$TREECMP" --summary "$@"; }

# flat_tree IMAGE DIR: export IMAGE flattened (STORE as for st) and extract it into DIR.
# The flattened export has no member for the root directory (as `docker export`, see
# layerdb/tar_writer.cc), so compare such trees with `tree_cmp --no-root`.
flat_tree() {
  st export "$1" --flatten -o "$2.tar" &&
    gnu_extract "$2.tar" "$2"
}

# count_blobs STORE: the number of blob files (STORE/blobs/??/*).
count_blobs() {
  local n=0 f
  for f in "$1"/blobs/??/*; do
    if [[ -f $f ]]; then n=$((n + 1)); fi
  done
  echo "$n"
}

# json_names KIND: print one line per object listed by `st KIND --json` (images: the
# name; layers: the diff_id, or the id when there is none), whatever the exact shape (a list, or an object
# holding one list). Fails when the output is not JSON.
json_names() {
  local out
  out=$(st "$1" --json) || fail "strata $1 --json exited non-zero"
  python3 -c '
import json, sys
kind, text = sys.argv[1], sys.argv[2]
try:
    doc = json.loads(text) if text.strip() else None
except ValueError as e:
    sys.exit(f"strata {kind} --json: not JSON ({e}): {text[:200]!r}")
if isinstance(doc, dict):
    lists = [v for v in doc.values() if isinstance(v, list)]
    if len(lists) != 1:
        sys.exit(f"strata {kind} --json: expected a list: {text[:200]!r}")
    doc = lists[0]
if not isinstance(doc, list):
    sys.exit(f"strata {kind} --json: expected a list: {text[:200]!r}")
for item in doc:
    if isinstance(item, dict):
        for key in ("name", "names", "repo_tags", "diff_id", "id", "digest"):
            if item.get(key) not in (None, "", []):
                v = item[key]
                print(" ".join(v) if isinstance(v, list) else v)
                break
        else:
            print(json.dumps(item, sort_keys=True))
    else:
        print(item)
' "$1" "$out" || fail "strata $1 --json: unexpected output (above)"
}

# expect_error WANT CMD...: CMD must exit 1 and write exactly one line on stderr, starting
# with "strata: " and containing WANT (a fixed string; "A|B" accepts either). Prints a
# problem and returns 1 otherwise (so that a test can report every case, then fail).
expect_error() {
  local want=$1 rc=0 err alt ok=0 lines alts shown
  shift
  shown=$*
  if [[ $1 == st ]]; then shown="strata ${*:2}"; fi
  err=$("$@" 2>&1 >/dev/null) || rc=$?
  lines=$(printf '%s' "$err" | grep -c '' || true)
  if ((rc != 1)); then
    printf '  %s: exit %d, want 1; stderr: %s\n' "$shown" "$rc" "${err:-(empty)}"
    return 1
  fi
  if ((lines != 1)); then
    printf '  %s: %d stderr lines, want 1:\n%s\n' "$shown" "$lines" "$(printf '%s\n' "$err" | sed 's/^/    | /')"
    return 1
  fi
  if [[ $err != "strata: "* ]]; then
    printf '  %s: stderr does not start with "strata: ": %s\n' "$shown" "$err"
    return 1
  fi
  IFS='|' read -ra alts <<<"$want"
  for alt in "${alts[@]}"; do
    if [[ $err == *"$alt"* ]]; then ok=1; fi
  done
  if ((!ok)); then
    printf '  %s: stderr does not name %s: %s\n' "$shown" "${want//|/ or }" "$err"
    return 1
  fi
  printf '  ok: %s\n' "$err"
}
