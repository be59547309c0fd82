#!/usr/bin/env bash
# strata run --memory / --pids (cgroup limits) on a busybox image. As root: the
# container's PID 1 is in the limited cgroups (seen from inside and from the host, the
# FUSE daemon outside them); a fork loop under --pids 64 gets EAGAIN, the container
# ends and leaves no process; a killed strata run's cgroups are removed by strata rm;
# dd of 64 MiB under --memory 32m is OOM-killed (137) and succeeds without the limit;
# bad flag values are refused in one line. As the user strata-test (nothing
# delegated): --pids 64 prints one warning line and the container still runs; in a v1
# cgroup root delegated to it, --pids applies. After every run the container's cgroup
# directories are gone.
# shellcheck source-path=SCRIPTDIR source=lib.sh disable=SC2016 # $ expanded in the containers
. "$(dirname "$0")/lib.sh"

need_root "sets cgroup limits as root, and checks the warning as the user strata-test"
need_strata
[[ -c /dev/fuse ]] || skip "needs /dev/fuse"

# cgroup_parent CONTROLLER: this shell's cgroup directory in the hierarchy carrying
# CONTROLLER (cgroup v2 where its cgroup.controllers lists it, else the v1 hierarchy),
# where strata run makes strata-<id>; "" when no mounted hierarchy carries it.
cgroup_parent() {
  local want=$1 line ctrls v1path='' v2path='' i
  local -a f
  while IFS= read -r line; do
    ctrls=${line#*:}
    ctrls=${ctrls%%:*}
    if [[ ${line%%:*} == 0 && -z $ctrls ]]; then
      v2path=${line#0::}
    elif [[ ,$ctrls, == *,"$want",* ]]; then
      v1path=${line#*:*:}
    fi
  done </proc/self/cgroup
  while read -r -a f; do
    for ((i = 6; i < ${#f[@]} - 3; i++)); do [[ ${f[i]} == - ]] && break; done
    [[ ${f[i]:-} == - ]] || continue
    if [[ ${f[i + 1]} == cgroup2 && -n $v2path ]] &&
      grep -qw "$want" "${f[4]}${v2path%/}/cgroup.controllers" 2>/dev/null; then
      echo "${f[4]}${v2path%/}"
      return
    fi
    if [[ ${f[i + 1]} == cgroup && ,${f[i + 3]}, == *,"$want",* && -n $v1path ]]; then
      echo "${f[4]}${v1path%/}"
      return
    fi
  done </proc/self/mountinfo
}

MEM=$(cgroup_parent memory)
PIDS=$(cgroup_parent pids)
[[ -n $MEM && -n $PIDS ]] || skip "needs the memory and pids cgroup controllers (memory: '${MEM}', pids: '${PIDS}')"
[[ -w $MEM && -w $PIDS ]] || skip "root cannot write its own cgroups here ($MEM, $PIDS)"
V1=1
[[ -e $PIDS/cgroup.controllers ]] && V1=0
note "cgroups: memory under $MEM, pids under $PIDS ($( ((V1)) && echo v1 || echo v2))"

setup_work
# Container names carry this shell's pid: cgroup names are host-wide, stores are not.
N=lim$$
DELEGATED=$PIDS/$N-delegated # section 7
# The EXIT trap: a strata run killed by the cleanup leaves its cgroups behind (no
# destructor runs), and section 7 makes a cgroup; then lib.sh's cleanup.
cleanup_cgroups() {
  local rc=$? pid d
  set +e
  for pid in "${BG_PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null; done
  for pid in "${BG_PIDS[@]}"; do wait "$pid" 2>/dev/null; done
  for d in "$MEM/strata-$N-"* "$PIDS/strata-$N-"* "$DELEGATED"/strata-* "$DELEGATED"; do
    if [[ -d $d ]]; then
      for _ in $(seq 50); do rmdir "$d" 2>/dev/null && break; sleep 0.1; done
      if [[ -d $d ]]; then echo "could not remove the cgroup $d" >&2; fi
    fi
  done
  (exit "$rc") # cleanup takes the test's status from $?
  cleanup
}
trap cleanup_cgroups EXIT
fixture make-busybox-image "$WORK/bb" >/dev/null
STORE=$STORES/root-store
st import oci "$WORK/bb:latest" --name bb >/dev/null
start=$EPOCHREALTIME

# gone NAME: strata-NAME is in neither hierarchy (prints what is left).
gone() {
  local d kept=""
  for d in "$MEM/strata-$1" "$PIDS/strata-$1"; do
    if [[ -e $d ]]; then kept+="$d "; fi
  done
  echo "${kept:-gone}"
}

# 1. Seen from inside: PID 1's cgroups (no cgroup namespace: host paths).
out=$(st run --rm --name "$N-seen" --memory 32m --pids 64 bb cat /proc/self/cgroup)
expect "PID 1 is in the pids cgroup" 1 "$(grep -c ":pids:.*/strata-$N-seen$\|^0::.*/strata-$N-seen$" <<<"$out" || true)"
expect "PID 1 is in the memory cgroup" 1 "$(grep -c ":memory:.*/strata-$N-seen$\|^0::.*/strata-$N-seen$" <<<"$out" || true)"
expect "seen: cgroups removed" gone "$(gone "$N-seen")"

# 2. Seen from the host while it runs: the limits, and only the container inside.
# Not st: a shell function runs in a subshell when sent to the background.
"$STRATA_BIN" --root "$STORE" run --name "$N-held" --memory 32m --pids 64 bb /bin/sh -c 'sleep 4099 & wait' &
runner=$!
BG_PIDS+=("$runner")
procs=''
for _ in $(seq 100); do
  procs=$(cat "$PIDS/strata-$N-held/cgroup.procs" 2>/dev/null || true)
  [[ $(wc -l <<<"$procs") == 2 ]] && break
  sleep 0.05
done
expect "pids.max from the host" 64 "$(cat "$PIDS/strata-$N-held/pids.max" 2>/dev/null)"
if ((V1)); then
  expect "memory.limit_in_bytes from the host" 33554432 "$(cat "$MEM/strata-$N-held/memory.limit_in_bytes" 2>/dev/null)"
  if [[ -e $MEM/strata-$N-held/memory.memsw.limit_in_bytes ]]; then
    expect "memory.memsw.limit_in_bytes from the host" 33554432 "$(cat "$MEM/strata-$N-held/memory.memsw.limit_in_bytes")"
  fi
else
  expect "memory.max from the host" 33554432 "$(cat "$MEM/strata-$N-held/memory.max" 2>/dev/null)"
fi
cmds=$(for p in $procs; do tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null; echo; done | sort)
expect "in the cgroup: the shell and sleep only (not strata run or its FUSE daemon)" \
  "$(printf '%s\n' "/bin/sh -c sleep 4099 & wait " "sleep 4099 ")" "$cmds"
kill -TERM "$runner"
rc=0
wait "$runner" || rc=$?
expect "held: ends on SIGTERM" 143 "$rc"
expect "held: cgroups removed" gone "$(gone "$N-held")"
st rm "$N-held"

# 2b. strata run killed (no cleanup of its own): the container's processes go with it,
# its cgroups stay, and `strata rm` removes them.
t=$(own_secs 4098)
"$STRATA_BIN" --root "$STORE" run --name "$N-killed" --memory 32m --pids 64 bb /bin/sh -c "exec sleep $t" &
runner=$!
BG_PIDS+=("$runner")
wait_naming -x "$t" || true
kill -KILL "$runner"
wait "$runner" 2>/dev/null || true
wait_gone $(pids_naming -x "$t") >/dev/null || true
expect "killed: its cgroups stay" "$MEM/strata-$N-killed $PIDS/strata-$N-killed " "$(gone "$N-killed")"
st rm "$N-killed"
expect "killed: strata rm removes them" gone "$(gone "$N-killed")"

# 3. A fork loop under --pids 64: fork fails (EAGAIN), the shell ends, and so does
# the container with every process in it.
t0=$EPOCHREALTIME
rc=0
t=$(own_secs 4097)
err=$(st run --rm --name "$N-bomb" --pids 64 -e "T=$t" bb /bin/sh -c \
  'i=0; while [ $i -lt 500 ]; do sleep $T & i=$((i+1)); done; echo all forked' 2>&1) || rc=$?
note "fork loop: exit $rc in $(elapsed "$t0")s: $(tail -1 <<<"$err")"
expect "fork fails under --pids 64" 1 "$(grep -c "can't fork: Resource temporarily unavailable" <<<"$err" || true)"
expect "the loop did not finish" 0 "$(grep -c "all forked" <<<"$err" || true)"
expect "strata run returns the shell's failure" 2 "$rc"
expect "no process is left" "" "$(pids_naming -x "$t")"
expect "bomb: cgroups removed" gone "$(gone "$N-bomb")"

# 4. 64 MiB under --memory 32m is OOM-killed; without the limit it succeeds.
rc=0
st run --rm --name "$N-hog" --memory 32m bb dd if=/dev/zero of=/dev/null bs=64M count=1 2>/dev/null || rc=$?
expect "dd of 64 MiB under --memory 32m is OOM-killed" 137 "$rc"
expect "hog: cgroups removed" gone "$(gone "$N-hog")"
rc=0
st run --rm --name "$N-free" bb dd if=/dev/zero of=/dev/null bs=64M count=1 2>/dev/null || rc=$?
expect "the same without --memory succeeds" 0 "$rc"
rc=0
st run --rm --name "$N-roomy" --memory 256m bb dd if=/dev/zero of=/dev/null bs=64M count=1 2>/dev/null || rc=$?
expect "... and under --memory 256m" 0 "$rc"

# 5. Bad values: one line, nothing created.
bad=0
expect_error "--memory 64q" st run --rm --name "$N-badm" --memory 64q bb true || bad=$((bad + 1))
expect_error "--memory 1k: below the minimum" st run --rm --memory 1k bb true || bad=$((bad + 1))
expect_error "--pids 0" st run --rm --pids 0 bb true || bad=$((bad + 1))
expect "bad values refused in one line" 0 "$bad"
expect "bad values create no container" "" "$(ls "$STORE/containers")"

# 6. As the unprivileged user: no delegated cgroup, so a warning and no limit.
if id strata-test >/dev/null 2>&1 && [[ $(stat -c %a /dev/fuse) == 666 ]]; then
  as_user=(setpriv --reuid=strata-test --regid=strata-test --init-groups)
  udir=$(mktemp -d "$STORES/user.XXXXXX")
  chown strata-test: "$udir" "$WORK"
  chmod 755 "$STORES"
  chmod -R a+rX "$WORK/bb"
  U=("${as_user[@]}" "$STRATA_BIN" --root "$udir/store")
  "${U[@]}" import oci "$WORK/bb:latest" --name bb >/dev/null
  if "${as_user[@]}" test -w "$PIDS"; then
    note "rootless part skipped: strata-test may write $PIDS (a delegated cgroup)"
  else
    rc=0
    out=$("${U[@]}" run --rm --name "$N-user1" --pids 64 bb /bin/sh -c 'echo ran' 2>"$WORK/user.err") || rc=$?
    err=$(cat "$WORK/user.err")
    expect "rootless: the container runs" "0 ran" "$rc $out"
    expect "rootless: one stderr line" 1 "$(grep -c '' <<<"$err")"
    expect "rootless: a warning naming --pids, the errno and the fix" 1 \
      "$(grep -c '^strata: warning: --pids is not applied: .*: Permission denied (run as root, or ' <<<"$err" || true)"
    note "rootless warning: $err"
    expect "rootless: no cgroup made" gone "$(gone "$N-user1")"
  fi
  # 7. As the user, in a v1 pids cgroup root delegated to it (field notes §7: chown of
  # the directory, its cgroup.procs and tasks): --pids applies, from a user namespace.
  if ((V1)); then
    mkdir "$DELEGATED"
    chown strata-test: "$DELEGATED" "$DELEGATED/cgroup.procs" "$DELEGATED/tasks"
    rc=0
    t=$(own_secs 4098)
    out=$("${as_user[@]}" /bin/sh -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' sh "$DELEGATED" \
      "$STRATA_BIN" --root "$udir/store" run --rm --name "$N-user2" --pids 64 -e "T=$t" bb /bin/sh -c \
      'grep -c ":pids:.*/strata-$0\$" /proc/self/cgroup; i=0; while [ $i -lt 500 ]; do sleep $T & i=$((i+1)); done; echo all forked' \
      "$N-user2" 2>"$WORK/user.err") || rc=$?
    err=$(cat "$WORK/user.err")
    expect "delegated: the container is in strata-<id> under the delegated cgroup" 1 "$(head -1 <<<"$out")"
    expect "delegated: fork fails under --pids 64" "2 1" "$rc $(grep -c "can't fork" <<<"$err" || true)"
    expect "delegated: no warning" 0 "$(grep -c warning <<<"$err" || true)"
    expect "delegated: no process is left" "" "$(pids_naming -x "$t")"
    expect "delegated: strata-<id> removed" "" "$(ls -d "$DELEGATED"/strata-* 2>/dev/null || true)"
    rmdir "$DELEGATED"
  fi
else
  note "rootless part skipped: needs the user strata-test and /dev/fuse mode 0666 (tools/check sets both up)"
fi

finish "$start"
