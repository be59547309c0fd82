#!/usr/bin/env bash
# Two processes on one store:
#  1. an import of the Debian tarball runs in the background, a `strata gc` starts once it
#     has written blobs, and the foreground loops `strata images`, `layers` and `df`:
#     every command succeeds (gc waits for the import or leaves it alone), the import
#     succeeds, fsck is clean, and the image exports to the tarball's content;
#  2. two imports at once into a fresh store, of different inputs (the tarball and the
#     3-layer OCI layout, which share most file contents): both succeed, fsck is clean,
#     and both export to their references (GNU tar, umoci unpack).
# Needs root for the comparisons (GNU tar and umoci must restore owners and devices).
. "$(dirname "$0")/lib.sh"

need_root "GNU tar and umoci unpack must restore owners and device nodes"
need_tools tar python3 umoci
need_strata
deb_tar=$(fixture debian-rootfs --tar)
deb_oci=$(fixture make-debian-oci)
setup_work
STORE=$STORES/store
total_start=$EPOCHREALTIME

# --- 1. import vs images/layers/df/gc ------------------------------------------------
st gc >/dev/null # create the store first (gc does), so that the loop does not race its creation
"$STRATA_BIN" --root "$STORE" import tar "$deb_tar" --name deb:1 >"$WORK/import.out" 2>"$WORK/import.err" &
pid=$!
BG_PIDS+=("$pid")
start=$EPOCHREALTIME
# gc in a third process once the import has written blobs: it must wait for the import
# (store.lock) or leave what the import wrote alone.
while (($(count_blobs "$STORE") < 50)) && kill -0 "$pid" 2>/dev/null; do sleep 0.01; done
gc_start=$EPOCHREALTIME
"$STRATA_BIN" --root "$STORE" gc >"$WORK/gc.out" 2>"$WORK/gc.err" &
gc_pid=$!
BG_PIDS+=("$gc_pid")
rounds=0 problems=0
while kill -0 "$pid" 2>/dev/null; do
  rounds=$((rounds + 1))
  for cmd in images layers df; do
    rc=0
    out=$(st "$cmd" 2>&1) || rc=$?
    if ((rc != 0)); then
      printf '  round %d: strata %s exited %d during the import:\n%s\n' "$rounds" "$cmd" "$rc" "$out"
      problems=$((problems + 1))
    fi
  done
  if ((problems > 5)); then break; fi
done
rc=0
wait "$pid" || rc=$?
import_s=$(elapsed "$start")
gc_rc=0
wait "$gc_pid" || gc_rc=$?
printf '[%s] %7ss  %s\n' "$TEST_NAME" "$import_s" \
  "import, with gc started beside it (gc took $(elapsed "$gc_start")s) and $rounds rounds of images/layers/df"
((rc == 0)) || fail "the import beside gc and images/layers/df exited $rc: $(cat "$WORK/import.err")"
((gc_rc == 0)) || fail "strata gc beside the import exited $gc_rc: $(cat "$WORK/gc.err")"
note "gc beside the import: $(cat "$WORK/gc.out")"
((problems == 0)) || fail "$problems commands failed while an import was running (above)"
((rounds >= 1)) || fail "the import finished before the first round: nothing ran beside it"
json_names images | grep -qx 'deb:1' || fail "strata images lacks deb:1 after the import: $(json_names images)"
step "strata gc after the import" st gc
step "strata fsck" st fsck
step "GNU tar: extract the Debian tarball (reference)" gnu_extract "$deb_tar" "$WORK/ref-tar"
step "strata export --flatten + GNU tar extract" flat_tree deb:1 "$WORK/flat"
step "compare: import beside gc vs GNU tar" tree_cmp --no-root "$WORK/ref-tar" "$WORK/flat"
rm -rf "$WORK/flat" "$STORE" # keep flat.tar

# --- 2. two imports at once ---------------------------------------------------------------
STORE=$STORES/store2
st gc >/dev/null
start=$EPOCHREALTIME
"$STRATA_BIN" --root "$STORE" import tar "$deb_tar" --name from-tar:1 >"$WORK/a.out" 2>"$WORK/a.err" &
pid_a=$!
"$STRATA_BIN" --root "$STORE" import oci "$deb_oci:latest" --name from-oci:1 >"$WORK/b.out" 2>"$WORK/b.err" &
pid_b=$!
BG_PIDS+=("$pid_a" "$pid_b")
rc_a=0 rc_b=0
wait "$pid_a" || rc_a=$?
wait "$pid_b" || rc_b=$?
printf '[%s] %7ss  %s\n' "$TEST_NAME" "$(elapsed "$start")" "two imports at once (tarball, OCI layout)"
((rc_a == 0)) || fail "import tar beside import oci exited $rc_a: $(cat "$WORK/a.err")"
((rc_b == 0)) || fail "import oci beside import tar exited $rc_b: $(cat "$WORK/b.err")"
images=$(json_names images)
if ! grep -qx from-tar:1 <<<"$images" || ! grep -qx from-oci:1 <<<"$images"; then
  fail "strata images after two concurrent imports: '$images', want from-tar:1 and from-oci:1"
fi
step "strata fsck" st fsck
step "umoci unpack of the OCI layout (reference)" umoci_unpack "$deb_oci:latest" "$WORK/ref-oci"
step "strata export --flatten (from-tar)" st export from-tar:1 --flatten -o "$WORK/flat-a.tar"
# The same tree as in part 1, whose export matched GNU tar: the same bytes (exports are
# deterministic).
if ! cmp -s "$WORK/flat.tar" "$WORK/flat-a.tar"; then
  gnu_extract "$WORK/flat-a.tar" "$WORK/flat-a" || fail "GNU tar cannot extract from-tar:1's export"
  tree_cmp --no-root "$WORK/ref-tar" "$WORK/flat-a" || fail "from-tar:1 (imported beside another import) differs from the tarball"
  fail "from-tar:1's export is not byte-identical to the same tarball's export in part 1 (trees equal)"
fi
step "strata export --flatten + GNU tar extract (from-oci)" flat_tree from-oci:1 "$WORK/flat-b"
step "compare: from-oci vs umoci unpack" tree_cmp --no-root "$WORK/ref-oci/rootfs" "$WORK/flat-b"
note "PASS in $(elapsed "$total_start")s"
