#!/usr/bin/env bash
# A killed import loses nothing and leaves nothing visible. Import the Debian tarball and
# SIGKILL strata; after each kill, either the import is complete (killed after its last
# commit) or nothing of it is visible: no image, no layer; and fsck is clean.
#
# Phase 1, kill points in time and progress (each round imports into the same store, so
# later rounds find the blobs of earlier ones, as a retried import would):
#   t:MS   MS milliseconds after the start (opening the store, the first members);
#   p:PCT  once strata has read PCT% of the tarball (its file position, from
#          /proc/PID/fdinfo), so that the kills land inside the import however fast the
#          machine is and however many blobs earlier rounds left;
#   e:MS   MS milliseconds after the whole tarball has been read: the commit phase
#          (layer records, the view of the image, the image name);
#   l:0    as soon as `strata layers` lists a new layer (an import that makes its layer
#          and its image visible in one step is complete by then).
# An import may finish before its kill point; it must then be complete. Then every image
# is removed, and `strata gc` must leave no blob (and no temp file) behind.
#
# Phase 2, every index commit: a small LD_PRELOAD library raises SIGKILL when strata
# enters its Nth fdatasync/fsync of index/data.mdb (LMDB syncs a transaction's pages
# before it writes the meta page that makes it visible), for N = 1, 2, ... until an
# import runs through. This kills the import just before each of its index commits, on
# any machine, whatever the timing. Done for `import tar` of the tarball and for `import
# oci` of the 3-layer layout (in a store of its own). Skipped without a C compiler.
#
# Finally the complete import's flattened export must equal GNU tar's view of the
# tarball. Needs root for that comparison (owners and device nodes).
. "$(dirname "$0")/lib.sh"

need_root "GNU tar must restore owners and device nodes for the comparison"
need_tools tar python3
need_strata
deb_tar=$(fixture debian-rootfs --tar)
setup_work
STORE=$STORES/store
total_start=$EPOCHREALTIME

problems=0
problem() {
  printf '[%s] PROBLEM: %s\n' "$TEST_NAME" "$*"
  problems=$((problems + 1))
}

# tar_pos PID FILE: strata's read position in FILE (empty if it has no fd on FILE).
tar_pos() {
  local fd k v
  for fd in /proc/"$1"/fd/*; do
    if [[ $(readlink "$fd" 2>/dev/null) == "$2" ]]; then
      # The process may exit at any moment: a vanished fdinfo is no error.
      { while read -r k v; do
        if [[ $k == pos: ]]; then
          echo "$v"
          return
        fi
      done <"/proc/$1/fdinfo/${fd##*/}"; } 2>/dev/null || true
    fi
  done
}

sleep_ms() { sleep "$(printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)))"; }

# wait_point POINT PID FILE: return at POINT (see above) or when PID has exited.
wait_point() {
  local point=$1 pid=$2 file=$3 target pos seen=0 known n deadline=$((SECONDS + 300))
  case $point in
    t:*)
      sleep_ms "${point#t:}"
      return
      ;;
    p:*) target=$(($(stat -c %s "$file") * ${point#p:} / 100)) ;;
    e:*) target=$(stat -c %s "$file") ;;
    l:*) # poll the table (no JSON parsing): a few ms a round
      known=$(grep -c . <<<"$known_layers" || true)
      while running "$pid"; do
        n=$(st layers 2>/dev/null | tail -n +2 | grep -c . || true)
        ((n <= known)) || return 0
      done
      return 0
      ;;
  esac
  while ((SECONDS < deadline)) && running "$pid"; do
    pos=$(tar_pos "$pid" "$file")
    if [[ -n $pos ]]; then
      seen=1
      ((pos < target)) || break
    elif ((seen)); then
      break # the tarball was read and closed
    fi
    sleep 0.005
  done
  if [[ $point == e:* ]]; then sleep_ms "${point#e:}"; fi
}

# after_kill LABEL NAME RC ERRFILE [LAYERS]: check the store after an import of NAME (of
# LAYERS layers, default 1) ended with RC (137: SIGKILL). Updates known_layers, killed,
# completed.
known_layers='' killed=0 completed=0
after_kill() {
  local label=$1 name=$2 rc=$3 err=$4 max=${5:-1} images layers new_layers outcome fsck_out fsck_rc=0
  # Killed before the store's index was initialised: the store does not exist yet (and
  # strata says so).
  fsck_out=$(st fsck 2>&1) || fsck_rc=$?
  if [[ ! -e $STORE ]] || { ((fsck_rc != 0)) && [[ $fsck_out == *"no store at"* ]]; }; then
    note "$label: exit $rc before the store existed (${fsck_out:-no directory})"
    return
  fi
  fsck_rc=0
  images=$(json_names images)
  layers=$(json_names layers)
  new_layers=$(comm -13 <(sort <<<"$known_layers") <(sort <<<"$layers") | sed '/^$/d' | paste -sd' ')
  if ((rc == 137)) && grep -qx "$name" <<<"$images"; then
    completed=$((completed + 1))
    outcome="killed after its last commit: complete"
  elif ((rc == 137)); then
    killed=$((killed + 1))
    outcome=killed
    if [[ -n $new_layers ]]; then
      problem "$label: a layer of the killed import is visible without an image: $new_layers (images: ${images:-none})"
    fi
  elif ((rc == 0)); then # it finished before the kill: fine, but then it must be complete
    completed=$((completed + 1))
    outcome="completed before the kill"
    grep -qx "$name" <<<"$images" || problem "$label: import exited 0 but strata images lacks $name: $images"
    if (($(wc -w <<<"$new_layers") > max)); then
      problem "$label: a complete import of $max layer(s) added more layers: $new_layers"
    fi
  else
    outcome="exit $rc"
    problem "$label: import exited $rc (neither killed nor successful): $(cat "$err")"
  fi
  known_layers=$layers
  fsck_out=$(st fsck 2>&1) || fsck_rc=$?
  if ((fsck_rc != 0)); then
    problem "$label ($outcome): strata fsck exited $fsck_rc: $fsck_out"
  fi
  note "$label: $outcome; $(count_blobs "$STORE") blobs; fsck exit $fsck_rc"
}

# empty_store_after_gc: remove every image; gc must then leave no layer, blob or temp file.
empty_store_after_gc() {
  local name before after leftover
  for name in $(json_names images); do st rmi "$name" >/dev/null; done
  before=$(count_blobs "$STORE")
  step "strata gc (no image left)" st gc
  after=$(count_blobs "$STORE")
  note "blobs before gc: $before, after: $after"
  ((after == 0)) || problem "$after blobs left in $STORE/blobs after gc with no image"
  leftover=$(find "$STORE/blobs" -type f | head -5)
  [[ -z $leftover ]] || problem "files left under $STORE/blobs after gc with no image: $leftover"
  [[ -z $(json_names layers) ]] || problem "layers left after gc with no image: $(json_names layers)"
  step "strata fsck after gc" st fsck
  known_layers=''
}

# --- phase 1: kill points in time and progress -------------------------------------
points=(t:20 t:50 p:10 p:25 p:40 p:55 p:70 p:85 p:95 e:0 l:0 e:100 e:300)
start=$EPOCHREALTIME
for i in "${!points[@]}"; do
  point=${points[$i]} name=kill$i:1
  "$STRATA_BIN" --root "$STORE" import tar "$deb_tar" --name "$name" >"$WORK/out.$i" 2>"$WORK/err.$i" &
  pid=$!
  BG_PIDS+=("$pid")
  wait_point "$point" "$pid" "$deb_tar"
  kill -KILL "$pid" 2>/dev/null || true
  rc=0
  wait "$pid" 2>/dev/null || rc=$? # (no "Killed" job message)
  after_kill "round $i (kill at $point)" "$name" "$rc" "$WORK/err.$i"
done
printf '[%s] %7ss  %s\n' "$TEST_NAME" "$(elapsed "$start")" \
  "phase 1: ${#points[@]} rounds, $killed killed, $completed complete"
((killed >= 7)) || problem "only $killed of ${#points[@]} imports were killed: the kill points miss the import"
empty_store_after_gc

# --- phase 2: a kill before each index commit ----------------------------------------
if command -v cc >/dev/null; then
  cat >"$WORK/killsync.c" <<'EOF'
// SIGKILL on entering the Nth fdatasync/fsync of a file named */index/data.mdb, or the
// Nth msync (LMDB with MDB_WRITEMAP), N = $STRATA_TEST_KILL_AT_SYNC.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int count;

static void maybe_kill(int fd) {
  const char* at = getenv("STRATA_TEST_KILL_AT_SYNC");
  if (at == NULL) return;
  if (fd >= 0) {
    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n < 0) return;
    path[n] = 0;
    const char* tail = "/index/data.mdb";
    size_t lt = strlen(tail), lp = strlen(path);
    if (lp < lt || strcmp(path + lp - lt, tail) != 0) return;
  }
  if (++count == atoi(at)) raise(SIGKILL);
}

int fdatasync(int fd) {
  static int (*real)(int);
  if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
  maybe_kill(fd);
  return real(fd);
}

int fsync(int fd) {
  static int (*real)(int);
  if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
  maybe_kill(fd);
  return real(fd);
}

int msync(void* addr, size_t len, int flags) {
  static int (*real)(void*, size_t, int);
  if (!real) real = (int (*)(void*, size_t, int))dlsym(RTLD_NEXT, "msync");
  maybe_kill(-1);
  return real(addr, len, flags);
}
EOF
  step "build the kill-at-sync preload library" \
    cc -shared -fPIC -O2 -o "$WORK/killsync.so" "$WORK/killsync.c" -ldl
  # kill_each_commit WHAT LAYERS IMPORT-ARGS...: import with a kill before sync #1, #2, ...
  kill_each_commit() {
    local what=$1 nlayers=$2 n=0 done_at=0 start=$EPOCHREALTIME
    shift 2
    killed=0 completed=0 known_layers=$(json_names layers)
    while ((n < 20)); do
      n=$((n + 1))
      LD_PRELOAD=$WORK/killsync.so STRATA_TEST_KILL_AT_SYNC=$n \
        "$STRATA_BIN" --root "$STORE" "$@" --name "sync$n:1" \
        >"$WORK/sync-out.$n" 2>"$WORK/sync-err.$n" &
      pid=$!
      BG_PIDS+=("$pid")
      rc=0
      wait "$pid" 2>/dev/null || rc=$? # (no "Killed" job message)
      after_kill "$what, kill before the index's sync #$n" "sync$n:1" "$rc" "$WORK/sync-err.$n" "$nlayers"
      if ((rc == 0)); then
        done_at=$n
        break
      fi
    done
    printf '[%s] %7ss  %s\n' "$TEST_NAME" "$(elapsed "$start")" \
      "phase 2, $what: a kill before each of its $((done_at - 1)) index syncs"
    ((done_at > 0)) || problem "$what: the import never got through $n index syncs"
    ((done_at > 1)) || problem "$what: the preload library killed nothing (does strata sync index/data.mdb?)"
  }
  kill_each_commit "import tar" 1 import tar "$deb_tar"
  # The same for a 3-layer OCI image, in a store of its own (the tar image stays for the
  # comparison below).
  if deb_oci=$("$FIXTURES/make-debian-oci" 2>/dev/null); then
    tar_store=$STORE
    STORE=$STORES/oci-store
    kill_each_commit "import oci" 3 import oci "$deb_oci:latest"
    STORE=$tar_store
  else
    note "phase 2, import oci: skipped (fixture make-debian-oci unavailable)"
  fi
else
  note "phase 2 skipped: no C compiler (cc) for the preload library"
fi

# A complete import after all that, compared with GNU tar's view of the tarball.
if [[ -z $(json_names images) ]]; then
  step "strata import tar (complete)" st import tar "$deb_tar" --name deb:1
fi
image=$(json_names images | head -1)
step "GNU tar: extract the Debian tarball (reference)" gnu_extract "$deb_tar" "$WORK/ref"
step "strata export --flatten + GNU tar extract ($image)" flat_tree "$image" "$WORK/flat"
step "compare: import after kills vs GNU tar" tree_cmp --no-root "$WORK/ref" "$WORK/flat"
step "strata fsck" st fsck
((problems == 0)) || fail "$problems problems after killed imports (PROBLEM lines above)"
note "PASS in $(elapsed "$total_start")s"
