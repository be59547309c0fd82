#!/usr/bin/env bash
# fs_mount_helper_test: strata-overlay as a mount helper and as a command.
#   mount(8): `mount -t fuse.strata-overlay strata-overlay MNT -o lowerdir=L1:L2,upperdir=U,
#     workdir=W,rw,noatime,lazytime,dev,suid` goes through mount.fuse3, which runs
#     `strata-overlay strata-overlay MNT -o ...` with /bin/sh: the union is mounted, shows
#     in /proc/mounts as fuse.strata-overlay, and `umount MNT` ends it (and the daemon).
#     util-linux mount drops PATH from the helper's environment, so /bin/sh searches its
#     default PATH: the test runs this in a private mount namespace with the strata-overlay
#     under test bound over the first directory of that PATH (nothing outside changes).
#   fstab style: `mount.fuse3 strata-overlay MNT -o ...` directly (PATH is kept there), with
#     nosuid,nodev,noexec,noatime, which must reach the mount as they do for kernel
#     overlayfs and fuse-overlayfs (an fstab line's nosuid/nodev is a security setting).
#   the command line: --help exits 0; no lowerdir: exit 2 and one line; an unknown option
#     (foo=bar): a warning, and the mount works; uidmapping=...: refused with one line;
#     a missing lower dir: exit 1 and one line naming it; a missing workdir is created
#     private (0700, as fs/union_fs.cc asks), not world-writable.
# Needs root (mount(8) of a FUSE fs, a private mount namespace) and /dev/fuse.
# shellcheck source-path=SCRIPTDIR source=lib.sh disable=SC2001 # sed indents multi-line output
. "$(dirname "$0")/lib.sh"

need_root "mount(8), mount.fuse3 and a private mount namespace"
[[ -c /dev/fuse ]] || skip "needs /dev/fuse (FUSE mounts)"
need_tools mount umount mountpoint unshare
MOUNT_FUSE=$(command -v mount.fuse3 || echo /sbin/mount.fuse3)
[[ -x $MOUNT_FUSE ]] || skip "needs mount.fuse3 (fuse3)"
need_strata
BIN_DIR=$(dirname "$STRATA_BIN")
OVERLAY_BIN=$BIN_DIR/strata-overlay
[[ -x $OVERLAY_BIN ]] || fail "$OVERLAY_BIN is not built (strata-overlay)"
export PATH="$BIN_DIR:$PATH" # mount.fuse3 finds strata-overlay here (run directly)

start=$EPOCHREALTIME
setup_work
T=$STORES
chmod 0755 "$T"
L1=$T/L1 L2=$T/L2 MNT=$T/mnt
U=$T/upper W=$T/work # each mount below has an upper and work dir of its own: $U$N, $W$N
mkdir -p "$L1/dir" "$L2/dir" "$U"{1,2,3,4,5} "$MNT"
echo bottom >"$L2/bottom" && echo top >"$L1/top" && echo l2 >"$L2/dir/l2" && echo l1 >"$L1/dir/l1"
echo old >"$L2/shadowed" && echo new >"$L1/shadowed"
LOWERS="lowerdir=$L1:$L2"
export L1 L2 U W MNT OVERLAY_BIN

# --- helpers shared with the script run in the private mount namespace -----------------------
H=$T/helpers.sh
{
  declare -f pids_naming running wait_gone # from lib.sh
  cat <<'EOF'
RC=0
bad() { printf '  %s\n' "$*"; RC=1; }
want() { [[ $2 == "$3" ]] || bad "$1: expected '$2', seen '$3'"; }
# mount_entry MNT: "SOURCE TYPE OPTIONS" of MNT in /proc/self/mounts
mount_entry() { awk -v m="$1" '$2 == m {print $1, $3, $4}' /proc/self/mounts; }
# union_ok MNT: the merged tree of L1:L2; a write lands in the upper $2
union_ok() {
  want "ls" "bottom dir shadowed top" "$(ls "$1" | tr '\n' ' ' | sed 's/ $//')"
  want "ls dir" "l1 l2" "$(ls "$1/dir" | tr '\n' ' ' | sed 's/ $//')"
  want "shadowed" new "$(cat "$1/shadowed")"
  echo "$3" >"$1/written" || bad "write through $1 failed"
  want "written, in the upper" "$3" "$(cat "$2/written" 2>&1)"
}
# umount_ok MNT: umount; the mount and its daemon are gone (10 s)
umount_ok() {
  local pids pid
  pids=$(pids_naming -x "$1")
  [[ -n $pids ]] || bad "no daemon process names $1"
  umount "$1" || bad "umount $1 failed"
  ! mountpoint -q "$1" || bad "$1 is still mounted after umount"
  # shellcheck disable=SC2086 # pids are numbers
  for pid in $(wait_gone $pids); do
    bad "the daemon (pid $pid) still runs 10 s after umount"
  done
}
EOF
} >"$H"

# --- mount(8) -------------------------------------------------------------------------------
HB=$T/helper-bin
mkdir "$HB" && ln -s "$OVERLAY_BIN" "$HB/strata-overlay"
# the first existing directory of the PATH /bin/sh uses when it is given none
SH_PATH1=''
# shellcheck disable=SC2016 # expanded by that /bin/sh
IFS=: read -ra sh_path <<<"$(env -i /bin/sh -c 'echo "$PATH"')"
for dir in "${sh_path[@]}"; do
  if [[ -d $dir ]]; then
    SH_PATH1=$dir
    break
  fi
done
[[ -n $SH_PATH1 ]] || skip "cannot tell where /bin/sh looks for commands (its default PATH: ${sh_path[*]})"
export HB SH_PATH1
cat >"$T/mount8.sh" <<'EOF'
. "$(dirname "$0")/helpers.sh"
# util-linux mount gives its helpers no PATH: make /bin/sh's default PATH find this build
mount --bind "$HB" "$SH_PATH1" || { bad "bind of $HB over $SH_PATH1 failed"; exit 1; }
out=$(mount -t fuse.strata-overlay strata-overlay "$MNT" \
  -o "lowerdir=$L1:$L2,upperdir=${U}1,workdir=${W}1,rw,noatime,lazytime,dev,suid" 2>&1) ||
  { bad "mount -t fuse.strata-overlay failed: $out"; exit 1; }
[[ -z $out ]] || bad "mount printed: $out"
read -r src type _ < <(mount_entry "$MNT")
want "/proc/mounts source and type" "strata-overlay fuse.strata-overlay" "$src $type"
union_ok "$MNT" "${U}1" via-mount8
umount_ok "$MNT"
exit $RC
EOF
check "mount -t fuse.strata-overlay ... -o lowerdir=L1:L2,upperdir,workdir,rw,noatime,lazytime,dev,suid; /proc/mounts; umount" \
  unshare -m --propagation private bash "$T/mount8.sh"

# --- mount.fuse3 directly (fstab style) -----------------------------------------------------------
fstab_mount() {
  local out
  out=$("$MOUNT_FUSE" strata-overlay "$MNT" -o "$LOWERS,upperdir=${U}2,workdir=${W}2,nosuid,nodev,noexec,noatime" 2>&1) || {
    echo "  mount.fuse3 strata-overlay $MNT -o ... failed: $out"
    return 1
  }
  mountpoint -q "$MNT" || {
    echo "  $MNT is not mounted after mount.fuse3"
    return 1
  }
}
step "mount.fuse3 strata-overlay MNT -o lowerdir=L1:L2,upperdir,workdir,nosuid,nodev,noexec,noatime" fstab_mount
# The helpers report through RC; each check below runs in a subshell of its own.
# shellcheck source=/dev/null
. "$H"
fstab_union() {
  local type
  read -r _ type _ < <(mount_entry "$MNT")
  want "/proc/mounts type" fuse.strata-overlay "$type"
  union_ok "$MNT" "${U}2" via-mount.fuse3
  return "$RC"
}
fstab_flags() {
  local opts f
  read -r _ _ opts < <(mount_entry "$MNT")
  for f in nosuid nodev noexec noatime; do
    [[ ,$opts, == *,$f,* ]] || bad "$f given, but the mount has: $opts"
  done
  return "$RC"
}
umount_mnt() {
  umount_ok "$MNT"
  return "$RC"
}
check "... the union, fuse.strata-overlay in /proc/mounts" fstab_union
check "... nosuid,nodev,noexec,noatime reach the mount (as with kernel overlayfs)" fstab_flags
check "... umount; the daemon exits" umount_mnt

# --- `mount -t fuse.strata IMAGE MNT -o root=,upper=,work=`: mount.fuse3 runs "strata IMAGE MNT
# -o OPTS" (strata takes an unknown first word as `strata mount`) ------------------------------
strata_image_mount() {
  local store=$T/store img=$T/imgsrc out type opts
  mkdir -p "$img/etc" && echo from-image >"$img/etc/hello"
  "$STRATA_BIN" --root "$store" import dir "$img" --name helper:latest >/dev/null
  out=$("$MOUNT_FUSE" helper:latest "$MNT" -t fuse.strata \
    -o "root=$store,upper=$T/sup,work=$T/swk,nosuid,nodev" 2>&1) || {
    echo "  mount.fuse3 helper:latest $MNT -t fuse.strata -o ... failed: $out"
    return 1
  }
  read -r _ type opts < <(mount_entry "$MNT")
  [[ $type == fuse.strata && ,$opts, == *,nosuid,* && ,$opts, == *,nodev,* ]] || {
    echo "  want type fuse.strata with nosuid,nodev; seen $type $opts"
    umount "$MNT"
    return 1
  }
  [[ $(cat "$MNT/etc/hello") == from-image ]] || { echo "  image content not seen"; umount "$MNT"; return 1; }
  echo changed >"$MNT/etc/hello"
  [[ -f $T/sup/etc/hello ]] || { echo "  the write did not land in the upper"; umount "$MNT"; return 1; }
  umount "$MNT"
}
check "mount.fuse3 IMAGE MNT -t fuse.strata -o root=,upper=,work=,nosuid,nodev: the image, writable" \
  strata_image_mount

# --- the command line ---------------------------------------------------------------------------
# run_cli ARGS...: runs strata-overlay ARGS; sets CLI_RC, CLI_OUT, CLI_ERR.
run_cli() {
  CLI_RC=0
  "$OVERLAY_BIN" "$@" >"$T/cli.out" 2>"$T/cli.err" || CLI_RC=$?
  CLI_OUT=$(cat "$T/cli.out") CLI_ERR=$(cat "$T/cli.err")
}
# cli_error WANT_RC WANT_TEXT ARGS...: exit WANT_RC, one stderr line containing WANT_TEXT, no mount.
cli_error() {
  local want_rc=$1 want=$2 rc=0
  shift 2
  run_cli "$@"
  if ((CLI_RC != want_rc)); then
    echo "  strata-overlay $*: exit $CLI_RC, want $want_rc"
    rc=1
  fi
  if [[ $(grep -c '' <<<"$CLI_ERR") != 1 || $CLI_ERR != *"$want"* ]]; then
    printf '  strata-overlay %s: want one stderr line naming %s, seen:\n%s\n' "$*" "$want" "$(sed 's/^/    | /' <<<"$CLI_ERR")"
    rc=1
  fi
  if mountpoint -q "$MNT"; then
    echo "  strata-overlay $*: mounted $MNT anyway"
    umount "$MNT"
    rc=1
  fi
  return "$rc"
}
cli_help() {
  run_cli --help
  ((CLI_RC == 0)) || { echo "  --help: exit $CLI_RC"; return 1; }
  [[ $CLI_OUT == usage:* && $CLI_OUT == *lowerdir* ]] || { echo "  --help: no usage on stdout: $CLI_OUT"; return 1; }
}
check "strata-overlay --help: exit 0, usage on stdout" cli_help
check "no lowerdir: exit 2, one line" cli_error 2 lowerdir -o "upperdir=${U}3,workdir=${W}3" "$MNT"
check "uidmapping=0:1000:1: refused, exit 2, one line" \
  cli_error 2 uidmapping -o "$LOWERS,upperdir=${U}3,workdir=${W}3,uidmapping=0:1000:1" "$MNT"
check "a missing lower dir: exit 1, one line naming it" cli_error 1 "$T/no-such-lower" \
  -o "lowerdir=$L1:$T/no-such-lower,upperdir=${U}3,workdir=${W}3" "$MNT"
cli_unknown() {
  local rc=0
  run_cli -o "$LOWERS,upperdir=${U}4,workdir=${W}4,foo=bar" "$MNT"
  ((CLI_RC == 0)) || { echo "  foo=bar: exit $CLI_RC: $CLI_ERR"; return 1; }
  [[ $(grep -c '' <<<"$CLI_ERR") == 1 && $CLI_ERR == *foo* ]] || {
    printf '  foo=bar: want one warning naming foo on stderr, seen:\n%s\n' "$(sed 's/^/    | /' <<<"$CLI_ERR")"
    if [[ -n $CLI_OUT ]]; then printf '  and on stdout:\n%s\n' "$(sed 's/^/    | /' <<<"$CLI_OUT")"; fi
    rc=1
  }
  union_ok "$MNT" "${U}4" with-foo
  umount_ok "$MNT"
  ((RC == 0)) || rc=1
  return "$rc"
}
check "an unknown option foo=bar: one warning, and the mount works" cli_unknown
cli_new_work() {
  local nw=$T/new-parent/work mode
  run_cli -o "$LOWERS,upperdir=${U}5,workdir=$nw" "$MNT"
  ((CLI_RC == 0)) || { echo "  workdir=$nw: exit $CLI_RC: $CLI_ERR"; return 1; }
  umount_ok "$MNT"
  ((RC == 0)) || return 1
  mode=$(stat -c %a "$nw")
  [[ $mode == 700 ]] || {
    echo "  $nw: created with mode $mode, want 700 (parent $(stat -c %a "$T/new-parent"))"
    return 1
  }
}
check "a missing workdir is created 0700" cli_new_work
finish "$start"
