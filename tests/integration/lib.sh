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

# setup_work: private directories, removed on exit with any background process still
# registered in BG_PIDS (STRATA_KEEP_WORK=1 keeps them; their paths are printed):
#   $STORES  on disk (${TMPDIR:-/tmp}): strata stores go here, as on a real machine;
#   $WORK    for everything else (reference trees, extractions, exports): on a tmpfs
#            when one with room and with user/trusted xattrs and ACLs is at hand
#            ($STRATA_TEST_SCRATCH, else /dev/shm), because deleting tens of thousands of
#            files from a disk mounted with `discard` takes minutes; else under $STORES.
setup_work() {
  STORES=$(mktemp -d "${TMPDIR:-/tmp}/strata-$TEST_NAME.XXXXXX")
  trap cleanup EXIT
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
cleanup() {
  local rc=$? pid dir
  for pid in "${BG_PIDS[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill -KILL "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
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

# step LABEL CMD...: run CMD, print its wall time; on failure fail naming LABEL and CMD.
# CMD runs in a subshell with errexit in force (also for shell functions), so it cannot
# change the test's variables.
step() {
  local label=$1 start rc
  shift
  start=$EPOCHREALTIME
  set +e
  (
    set -e
    "$@"
  )
  rc=$?
  set -e
  printf '[%s] %7ss  %s\n' "$TEST_NAME" "$(elapsed "$start")" "$label"
  ((rc == 0)) || fail "$label: \`$*\` exited $rc"
}

# check LABEL CMD...: like step, but a failure is recorded (a PROBLEM line) and the test
# goes on; finish then fails. For checks whose failure does not stop the later ones.
PROBLEMS=0
check() {
  local label=$1 start rc
  shift
  start=$EPOCHREALTIME
  set +e
  (
    set -e
    "$@"
  )
  rc=$?
  set -e
  printf '[%s] %7ss  %s\n' "$TEST_NAME" "$(elapsed "$start")" "$label"
  if ((rc != 0)); then
    printf '[%s] PROBLEM: %s: `%s` exited %d\n' "$TEST_NAME" "$label" "$*" "$rc"
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
