#!/usr/bin/env bash
# A killed import loses nothing and leaves nothing visible: import the Debian tarball and
# SIGKILL strata at a deterministic list of points; after each kill no image or layer of
# the killed run is visible and fsck is clean; gc then removes every leftover blob (and
# temp file); finally a complete import exports to the tarball's content.
#
# Kill points, in order (each round imports into the same store, so later rounds find
# the blobs of earlier ones, as a retried import would):
#   t:MS   MS milliseconds after the start (opening the store, the first members);
#   p:PCT  once strata has read PCT% of the tarball (its file position, from
#          /proc/PID/fdinfo), so that the kills land inside the import however fast the
#          machine is and however many blobs earlier rounds left;
#   e:MS   MS milliseconds after the whole tarball has been read: the commit phase
#          (layer records, the view of the image, the image name);
#   l:0    as soon as `strata layers` lists a new layer: an import that makes its layer
#          and its image visible in one step has completed by then.
# An import may finish before its kill point (likely for e:); it must then be complete.
# Needs root for the final comparison (GNU tar must restore owners and device nodes).
. "$(dirname "$0")/lib.sh"

need_root "GNU tar must restore owners and device nodes for the comparison"
need_tools tar python3
need_strata
deb_tar=$(fixture debian-rootfs --tar)
setup_work
STORE=$WORK/store
total_start=$EPOCHREALTIME

points=(t:20 t:50 p:10 p:25 p:40 p:55 p:70 p:85 p:95 e:0 l:0 e:100 e:300)

# tar_pos PID FILE: strata's read position in FILE (empty if it has no fd on FILE).
tar_pos() {
  local fd k v
  for fd in /proc/"$1"/fd/*; do
    if [[ $(readlink "$fd" 2>/dev/null) == "$2" ]]; then
      while read -r k v; do
        if [[ $k == pos: ]]; then
          echo "$v"
          return
        fi
      done <"/proc/$1/fdinfo/${fd##*/}" 2>/dev/null
    fi
  done
}

# wait_point POINT PID FILE: return at POINT (see above) or when PID has exited.
wait_point() {
  local point=$1 pid=$2 file=$3 size target pos seen=0 ms state
  case $point in
    t:*)
      ms=${point#t:}
      sleep "$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))"
      return
      ;;
    p:*) size=$(stat -c %s "$file") target=$((size * ${point#p:} / 100)) ;;
    e:*) target=$(stat -c %s "$file") ;;
    l:*) # poll the table (no JSON parsing): a few ms a round
      local known n
      known=$(grep -c . <<<"$known_layers" || true)
      while read -r _ _ state _ <"/proc/$pid/stat" 2>/dev/null && [[ $state != Z ]]; do
        n=$(st layers 2>/dev/null | tail -n +2 | grep -c . || true)
        ((n <= known)) || return 0
      done
      return 0
      ;;
  esac
  local deadline=$((SECONDS + 300))
  while ((SECONDS < deadline)); do
    read -r _ _ state _ <"/proc/$pid/stat" 2>/dev/null || break
    [[ $state != Z ]] || break # exited, not yet reaped
    pos=$(tar_pos "$pid" "$file")
    if [[ -n $pos ]]; then
      seen=1
      ((pos < target)) || break
    elif ((seen)); then
      break # the tarball was read and closed
    fi
    sleep 0.005
  done
  if [[ $point == e:* ]]; then
    ms=${point#e:}
    sleep "$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))"
  fi
}

problems=0
problem() {
  printf '[%s] PROBLEM: %s\n' "$TEST_NAME" "$*"
  problems=$((problems + 1))
}

# Layers a round may see: the complete import's, and leftovers already reported.
killed=0 completed=0 known_layers=''
for i in "${!points[@]}"; do
  point=${points[$i]} name=kill$i:1
  "$STRATA_BIN" --root "$STORE" import tar "$deb_tar" --name "$name" >"$WORK/out.$i" 2>"$WORK/err.$i" &
  pid=$!
  BG_PIDS+=("$pid")
  wait_point "$point" "$pid" "$deb_tar"
  kill -KILL "$pid" 2>/dev/null || true
  rc=0
  wait "$pid" 2>/dev/null || rc=$? # (no "Killed" job message)
  # Killed before the store's index was initialised: the store does not exist yet.
  if [[ ! -e $STORE ]] || { ! st fsck >/dev/null 2>&1 && st fsck 2>&1 | grep -q 'no store at'; }; then
    note "round $i: kill at $point: exit $rc before the store existed ($(st fsck 2>&1 || true))"
    continue
  fi
  images=$(json_names images)
  layers=$(json_names layers)
  new_layers=$(comm -13 <(sort <<<"$known_layers") <(sort <<<"$layers") | sed '/^$/d')
  if ((rc == 137)) && grep -qx "$name" <<<"$images"; then
    # Killed after its last commit (while exiting): the import is complete.
    completed=$((completed + 1))
    outcome="killed after its last commit: complete"
  elif ((rc == 137)); then
    killed=$((killed + 1))
    outcome=killed
    if [[ -n $new_layers ]]; then
      problem "round $i (kill at $point): a layer of the killed import is visible without an image: $new_layers (images: ${images:-none})"
    fi
  elif ((rc == 0)); then # it finished before the kill: fine, but then it must be complete
    completed=$((completed + 1))
    outcome="completed before the kill"
    grep -qx "$name" <<<"$images" || problem "round $i: import exited 0 but strata images lacks $name: $images"
    if (($(grep -c . <<<"$new_layers") > 1)); then
      problem "round $i: a complete import of one tarball added several layers: $new_layers"
    fi
  else
    problem "round $i: import exited $rc (neither killed nor successful): $(cat "$WORK/err.$i")"
    outcome="exit $rc"
  fi
  known_layers=$layers
  fsck_rc=0
  fsck_out=$(st fsck 2>&1) || fsck_rc=$?
  if ((fsck_rc != 0)); then
    problem "round $i (kill at $point, $outcome): strata fsck exited $fsck_rc: $fsck_out"
  fi
  note "round $i: kill at $point: $outcome; $(count_blobs "$STORE") blobs; fsck exit $fsck_rc"
done
((killed >= 7)) || problem "only $killed of ${#points[@]} imports were killed: the kill points miss the import"

# Remove the images of the imports that completed, then gc must leave nothing.
for name in $(json_names images); do st rmi "$name" >/dev/null; done
before=$(count_blobs "$STORE")
step "strata gc" st gc
after=$(count_blobs "$STORE")
note "blobs before gc: $before, after: $after"
((after == 0)) || fail "$after blobs left in $STORE/blobs after gc with no image"
leftover=$(find "$STORE/blobs" -type f | head -5)
[[ -z $leftover ]] || fail "files left under $STORE/blobs after gc: $leftover"
[[ -z $(json_names layers) ]] || fail "layers left after gc with no image: $(json_names layers)"
step "strata fsck after gc" st fsck

# A complete import after all that, compared with GNU tar's view of the tarball.
step "strata import tar (complete)" st import tar "$deb_tar" --name deb:1
step "GNU tar: extract the Debian tarball (reference)" gnu_extract "$deb_tar" "$WORK/ref"
step "strata export --flatten + GNU tar extract" flat_tree deb:1 "$WORK/flat"
step "compare: import after kills vs GNU tar" tree_cmp --no-root "$WORK/ref" "$WORK/flat"
step "strata fsck" st fsck
((problems == 0)) || fail "$problems problems after killed imports (PROBLEM lines above)"
note "PASS in $(elapsed "$total_start")s ($killed kills, $completed imports completed before their kill)"
