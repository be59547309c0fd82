#!/usr/bin/env bash
# fs_rootless_test: strata as an unprivileged user (design §2 "Upper directory" and
# "Rootless ownership"; field notes §7). Runs as the user strata-test (tools/check creates
# it with /etc/subuid ranges): as root the test switches to it with setpriv; as any other
# user it runs as that user. Every file the user touches lives in a directory it owns.
#   (a) strata-overlay mounted through setuid fusermount3: reads, copy-up, unlink → 0/0
#       whiteout (`.wh.NAME` where the kernel refuses it), rm -rf + mkdir → an opaque dir
#       written as user.overlay.opaque, rename of a merged lower directory (no EXDEV) with
#       user.overlay.redirect, chmod of a 1 MiB lower file copying metadata only; (run as
#       root only) rename of a lower file and a lower fifo that root owns: the owner the
#       daemon cannot chown to is kept (override_stat) and shown; `fusermount3 -u`, and a
#       remount that reads it all back.
#   (b) the user's own store: `strata --root DIR import dir`, `strata mount --upper`,
#       `strata umount`.
#   (c) `unshare -Urm` (single-ID map, the user is root inside): the daemon mounts with
#       mount(2) itself; copy-up, whiteouts, opaque dirs, directory rename; a lower char
#       device 1:3 copied up (chmod) becomes a placeholder file with
#       user.containers.override_stat "…:char-1-3" and still shows as a char device
#       1:3 (only when run as root, which can make the lower device); `chown 1000:1000`
#       and `mknod c 1 3` through the mount: the kernel refuses both before FUSE sees
#       them (EINVAL: 1000 is not mapped; EPERM: mknod needs CAP_MKNOD in the initial
#       namespace), so the test accepts that refusal, or a success that must then be
#       presented (override_stat) — the field notes measured EINVAL / EPERM. Everything
#       survives an unmount and a remount in a new namespace.
#   (d) the full subordinate map (newuidmap; skipped with a message if it fails):
#       a daemon mounted through fusermount3 in the host namespace, used from
#       `unshare --map-auto --map-root-user`: `chown 1000:1000` reaches the daemon as host
#       id SUB+999, which it may not chown to, so it records the owner in
#       user.containers.override_stat; the owner survives a remount.
#   (e) the full map with the daemon inside the namespace: chown 1000:1000 is a real chown
#       (the upper file belongs to host id SUB+999, no override_stat).
# Needs /dev/fuse usable by the user (mode 0666) and setuid fusermount3.
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

need_tools fusermount3 unshare getfattr setfattr stat mountpoint python3
need_strata
OVERLAY_BIN=$(dirname "$STRATA_BIN")/strata-overlay
[[ -x $OVERLAY_BIN ]] || fail "$OVERLAY_BIN is not built (strata-overlay)"
[[ -c /dev/fuse ]] || skip "needs /dev/fuse"
[[ $(stat -c %a /dev/fuse) == 666 ]] ||
  skip "/dev/fuse is mode $(stat -c %a /dev/fuse), not 0666: unprivileged users cannot use FUSE here"
[[ -u $(command -v fusermount3) ]] || skip "fusermount3 is not setuid root: no FUSE mounts for unprivileged users"
if ((EUID == 0)); then
  need_tools setpriv
  id strata-test >/dev/null 2>&1 || skip "needs the user strata-test (tools/check creates it)"
  RUSER=strata-test
else
  RUSER=$(id -un)
fi
RUID=$(id -u "$RUSER") RGID=$(id -g "$RUSER")
# user CMD...: run CMD as the unprivileged user.
user() {
  if ((EUID == 0)); then
    setpriv --reuid="$RUID" --regid="$RGID" --init-groups \
      env -u STRATA_ROOT HOME="$D" PATH="$PATH" "$@"
  else
    "$@"
  fi
}

start=$EPOCHREALTIME
setup_work
chmod 0755 "$STORES"
D=$STORES/home
mkdir "$D"
if ((EUID == 0)); then chown "$RUID:$RGID" "$D"; fi
L1=$D/L1 L2=$D/L2
export D L1 L2 OVERLAY_BIN STRATA_BIN

# --- the user's side: one function per check, run as `user bash $US FUNCTION ARGS` ------------
# (a FUSE mount made by the user is not reachable by other users, root included)
US=$D/user_side.sh
{
  cat <<'EOF'
# user_side.sh FUNCTION [ARGS]: runs FUNCTION as the unprivileged user (or as root of a
# user namespace) and exits 1 if it reported a problem.
RC=0
bad() { printf '  %s\n' "$*"; RC=1; }
# want LABEL EXPECTED SEEN
want() { [[ $2 == "$3" ]] || bad "$1: expected '$2', seen '$3'"; }
# xattr PATH NAME: its value, or (none)
xattr() { getfattr --absolute-names --only-values -n "$2" "$1" 2>/dev/null || echo '(none)'; }
# listing DIR: the names in DIR on one line
listing() { ls -A "$1" | tr '\n' ' ' | sed 's/ $//'; }
# whiteout_in UPPERDIR NAME: "dev" (0/0 char device), "wh" (.wh.NAME) or "none"
whiteout_in() {
  if [[ -c $1/$2 && $(stat -c %t:%T "$1/$2") == 0:0 ]]; then
    echo dev
  elif [[ -f $1/.wh.$2 ]]; then
    echo wh
  else
    echo none
  fi
}
expect_whiteout() {
  local f
  f=$(whiteout_in "$1" "$2")
  [[ $f != none ]] || bad "$1/$2: expected a whiteout, seen: $(ls -la "$1" | tr '\n' ' ')"
  [[ $f != wh ]] || echo "  note: the kernel refused a 0/0 device; $1/.wh.$2 written instead"
}
EOF
  declare -f pids_naming running wait_gone # from lib.sh
  cat <<'EOF'
# fstype MNT: "TYPE OPTIONS" of MNT in /proc/self/mounts
fstype() { awk -v m="$1" '$2 == m {print $3, $4}' /proc/self/mounts; }
# overlay_mount MNT UP WK: strata-overlay over L1:L2
overlay_mount() {
  "$OVERLAY_BIN" -o "lowerdir=$L1:$L2,upperdir=$2,workdir=$3" "$1" || {
    bad "strata-overlay failed to mount $1"
    exit 1
  }
  mountpoint -q "$1" || {
    bad "$1 is not a mount point after strata-overlay returned"
    exit 1
  }
}
# overlay_umount MNT CMD...: unmount with CMD; the daemon exits
overlay_umount() {
  local mnt=$1 pids pid
  shift
  pids=$(pids_naming -x "$mnt")
  "$@" "$mnt" || bad "$* $mnt failed"
  ! mountpoint -q "$mnt" || bad "$mnt is still mounted after $*"
  # shellcheck disable=SC2086 # pids are numbers
  for pid in $(wait_gone $pids); do
    bad "the daemon (pid $pid) still runs 10 s after unmounting"
  done
}

make_lowers() {
  set -e
  mkdir -p "$L2"/{mdir/sub,rmdir/inner,data} "$L1"/mdir
  echo "from l2" >"$L2/mdir/from_l2" && echo deep >"$L2/mdir/sub/deep"
  echo "from l1" >"$L1/mdir/from_l1"
  echo a >"$L2/a" && echo gone >"$L2/gone" && echo top >"$L1/top"
  echo old >"$L2/rmdir/old" && echo x >"$L2/rmdir/inner/x"
  printf base >"$L2/data/append" && echo own >"$L2/data/own" && echo own2 >"$L2/data/own2"
  head -c 1048576 /dev/urandom >"$L2/data/big"
  cp -a "$L2/mdir" "$L2/mdir_b"
  mkdir -p "$D"/{img,store}
  echo "image file" >"$D/img/hello" && mkdir "$D/img/etc" && echo cfg >"$D/img/etc/cfg"
  mkdir "$A_MNT" "$A_UP" "$B_MNT" "$B_UP" "$C_MNT" "$C_UP" "$D_MNT" "$D_UP" "$E_MNT" "$E_UP"
  set +e
}

# (a) ---------------------------------------------------------------------------------------
a_mount() { overlay_mount "$A_MNT" "$A_UP" "$A_WK"; }
a_umount() { overlay_umount "$A_MNT" fusermount3 -u; }
a_type() {
  local t o
  read -r t o < <(fstype "$A_MNT")
  want "type of $A_MNT" fuse.strata-overlay "$t"
  [[ ,$o, == *,user_id=$(id -u),* && ,$o, == *,nosuid,* && ,$o, == *,nodev,* ]] ||
    bad "options of $A_MNT: expected user_id=$(id -u),nosuid,nodev, seen $o"
}
a_reads() {
  want a a "$(cat "$A_MNT/a")"
  want top top "$(cat "$A_MNT/top")"
  want "ls mdir" "from_l1 from_l2 sub" "$(listing "$A_MNT/mdir")"
  want "mdir/sub/deep" deep "$(cat "$A_MNT/mdir/sub/deep")"
  want "data/big" "$(sha256sum <"$L2/data/big")" "$(sha256sum <"$A_MNT/data/big")"
}
a_writes() {
  printf +more >>"$A_MNT/data/append" && echo new >"$A_MNT/new" || bad "append or create failed"
  want "data/append through the mount" base+more "$(cat "$A_MNT/data/append")"
  want "data/append in the upper" base+more "$(cat "$A_UP/data/append" 2>&1)"
  want "data/append in the lower" base "$(cat "$L2/data/append")"
  want "new in the upper" new "$(cat "$A_UP/new" 2>&1)"
}
a_unlink() {
  rm "$A_MNT/gone" "$A_MNT/top" || bad "rm failed"
  [[ ! -e $A_MNT/gone && ! -e $A_MNT/top ]] || bad "gone or top still visible after rm"
  expect_whiteout "$A_UP" gone
  expect_whiteout "$A_UP" top
}
a_opaque() {
  rm -rf "$A_MNT/rmdir" && mkdir "$A_MNT/rmdir" && echo fresh >"$A_MNT/rmdir/fresh" ||
    bad "rm -rf + mkdir failed"
  want "ls rmdir" fresh "$(listing "$A_MNT/rmdir")"
  want "user.overlay.opaque of $A_UP/rmdir" y "$(xattr "$A_UP/rmdir" user.overlay.opaque)"
}
a_rename_dir() {
  local err
  err=$(mv "$A_MNT/mdir" "$A_MNT/mdir2" 2>&1) || bad "mv mdir mdir2: $err"
  [[ ! -e $A_MNT/mdir ]] || bad "mdir still visible after the rename"
  want "ls mdir2" "from_l1 from_l2 sub" "$(listing "$A_MNT/mdir2")"
  want "mdir2/sub/deep" deep "$(cat "$A_MNT/mdir2/sub/deep")"
  want "user.overlay.redirect of $A_UP/mdir2" /mdir "$(xattr "$A_UP/mdir2" user.overlay.redirect)"
  expect_whiteout "$A_UP" mdir
}
a_chmod() {
  local used
  chmod 0600 "$A_MNT/data/big" || bad "chmod failed"
  want "mode and size through the mount" "600 1048576" "$(stat -c "%a %s" "$A_MNT/data/big")"
  want "content through the mount" "$(sha256sum <"$L2/data/big")" "$(sha256sum <"$A_MNT/data/big")"
  used=$(($(stat -c "%b * %B" "$A_UP/data/big")))
  ((used < 65536)) || bad "$A_UP/data/big takes $used bytes on disk: expected a metadata-only copy-up"
}
a_remount() {
  a_mount
  # (chr and root* exist only when the test runs as root)
  want "ls /" "a data mdir2 mdir_b new rmdir" "$(listing "$A_MNT" | tr ' ' '\n' | grep -v '^chr$\|^root' | tr '\n' ' ' | sed 's/ $//')"
  want "ls mdir2" "from_l1 from_l2 sub" "$(listing "$A_MNT/mdir2")"
  want "ls rmdir" fresh "$(listing "$A_MNT/rmdir")"
  want "data/big" "600 1048576" "$(stat -c "%a %s" "$A_MNT/data/big")"
  want "data/append" base+more "$(cat "$A_MNT/data/append")"
  a_umount
}

# objects of another owner (root), renamed by the user: a metadata copy-up that cannot
# chown, so the owner goes to user.containers.override_stat (or, for a type that cannot
# carry user.* xattrs, some other record), and the union still shows root as the owner
a_foreign() {
  local f err
  for f in rootf rootfifo; do
    err=$(mv "$A_MNT/$f" "$A_MNT/${f}2" 2>&1) || bad "mv $f ${f}2 (a lower $f owned by root): $err"
  done
  want "rootf2 through the mount" "0:0 644 regular file" "$(stat -c "%u:%g %a %F" "$A_MNT/rootf2" 2>&1)"
  want "override_stat of $A_UP/rootf2" 0:0:0644:file "$(xattr "$A_UP/rootf2" user.containers.override_stat)"
  want "rootfifo2 through the mount" "0:0 644 fifo" "$(stat -c "%u:%g %a %F" "$A_MNT/rootfifo2" 2>&1)"
}

# (b) ---------------------------------------------------------------------------------------
b_mount_umount() {
  local t
  "$STRATA_BIN" --root "$D/store" mount rootless:1 "$B_MNT" --upper "$B_UP" --work "$B_WK" || {
    bad "strata mount failed"
    return
  }
  read -r t _ < <(fstype "$B_MNT")
  [[ $t == fuse.* ]] || bad "type of $B_MNT: expected fuse.*, seen ${t:-(not mounted)}"
  want hello "image file" "$(cat "$B_MNT/hello")"
  want etc/cfg cfg "$(cat "$B_MNT/etc/cfg")"
  echo more >>"$B_MNT/etc/cfg" && echo written >"$B_MNT/written" || bad "writes failed"
  overlay_umount "$B_MNT" "$STRATA_BIN" umount
  want "etc/cfg in the upper" "cfg more" "$(tr '\n' ' ' <"$B_UP/etc/cfg" | sed 's/ $//')"
  want "written in the upper" written "$(cat "$B_UP/written" 2>&1)"
}

# (c) run as root of `unshare -Urm` ---------------------------------------------------------
c_userns() {
  local phase=$1 t err ov
  want "uid_map" "0 $RUID 1" "$(awk '{print $1, $2, $3}' /proc/self/uid_map)"
  trap 'umount "$C_MNT" 2>/dev/null' EXIT
  overlay_mount "$C_MNT" "$C_UP" "$C_WK"
  read -r t _ < <(fstype "$C_MNT")
  want "type of $C_MNT" fuse.strata-overlay "$t"
  if [[ $phase == 1 ]]; then
    echo +1 >>"$C_MNT/data/append" && rm "$C_MNT/gone" && mkfifo "$C_MNT/fifo" &&
      rm -rf "$C_MNT/rmdir" && mkdir "$C_MNT/rmdir" && mv "$C_MNT/mdir_b" "$C_MNT/moved" ||
      bad "append, rm, mkfifo, rm -rf + mkdir or mv of a dir failed"
    want "user.overlay.opaque of $C_UP/rmdir" y "$(xattr "$C_UP/rmdir" user.overlay.opaque)"
    want "user.overlay.redirect of $C_UP/moved" /mdir_b "$(xattr "$C_UP/moved" user.overlay.redirect)"
    expect_whiteout "$C_UP" gone
    # 1000 is not mapped: the kernel refuses the chown (EINVAL) before FUSE sees it. Were
    # it let through, the upper would refuse it and strata would record it.
    if err=$(chown 1000:1000 "$C_MNT/data/own" 2>&1); then
      want "owner of data/own after chown" 1000:1000 "$(stat -c %u:%g "$C_MNT/data/own")"
      want "override_stat of $C_UP/data/own" 1000:1000:0644:file \
        "$(xattr "$C_UP/data/own" user.containers.override_stat)"
    else
      [[ $err == *"Invalid argument"* ]] || bad "chown 1000:1000: expected EINVAL (id not mapped), seen: $err"
    fi
    # mknod of a device needs CAP_MKNOD in the initial namespace (vfs_mknod): EPERM.
    if err=$(mknod "$C_MNT/dev0" c 1 3 2>&1); then
      want "dev0 through the mount" "1:3 character special file" "$(stat -c "%t:%T %F" "$C_MNT/dev0")"
      ov=$(xattr "$C_UP/dev0" user.containers.override_stat)
      [[ $ov == *:char-1-3 || -c $C_UP/dev0 ]] ||
        bad "$C_UP/dev0: expected a device or override_stat ...:char-1-3, seen $ov"
    else
      [[ $err == *"Operation not permitted"* ]] || bad "mknod c 1 3: expected EPERM, seen: $err"
    fi
    if ((HAVE_CHR)); then
      # a metadata copy-up of a lower device: the upper refuses mknod, a placeholder
      chmod 0640 "$C_MNT/chr" || bad "chmod of the lower char device failed"
    fi
  fi
  want data/append base+1 "$(cat "$C_MNT/data/append")"
  [[ ! -e $C_MNT/gone ]] || bad "gone is visible"
  want fifo fifo "$(stat -c %F "$C_MNT/fifo")"
  want "ls rmdir" "" "$(listing "$C_MNT/rmdir")"
  want "ls moved" "from_l2 sub" "$(listing "$C_MNT/moved")"
  if ((HAVE_CHR)); then
    want "chr through the mount" "1:3 character special file 640 0:0" \
      "$(stat -c "%t:%T %F %a %u:%g" "$C_MNT/chr")"
    want "chr in the upper" "regular empty file" "$(stat -c %F "$C_UP/chr")"
    want "override_stat of $C_UP/chr" 0:0:0640:char-1-3 "$(xattr "$C_UP/chr" user.containers.override_stat)"
  fi
  overlay_umount "$C_MNT" umount
  trap - EXIT
}

# (d) ---------------------------------------------------------------------------------------
d_mount() { overlay_mount "$D_MNT" "$D_UP" "$D_WK"; }
d_umount() { overlay_umount "$D_MNT" fusermount3 -u; }
d_chown_inside() { # as root of the full-map namespace
  want "uid_map" "1 $SUB" "$(awk '$1 == 1 {print $1, $2}' /proc/self/uid_map)"
  chown 1000:1000 "$D_MNT/data/own2" || bad "chown 1000:1000 failed"
  want "owner inside" 1000:1000 "$(stat -c %u:%g "$D_MNT/data/own2")"
}
d_host_view() {
  want "owner through the mount" "$HOST1000:$HOST1000" "$(stat -c %u:%g "$D_MNT/data/own2")"
  want "content" own2 "$(cat "$D_MNT/data/own2")"
  want "override_stat of $D_UP/data/own2" "$HOST1000:$HOST1000:0644:file" \
    "$(xattr "$D_UP/data/own2" user.containers.override_stat)"
  want "real owner of $D_UP/data/own2" "$(id -u):$(id -g)" "$(stat -c %u:%g "$D_UP/data/own2")"
}
d_remount() {
  d_umount
  d_mount
  d_host_view
  d_umount
}

# (e) run as root of the full-map namespace ---------------------------------------------------
e_userns() {
  trap 'umount "$E_MNT" 2>/dev/null' EXIT
  overlay_mount "$E_MNT" "$E_UP" "$E_WK"
  if [[ $1 == 1 ]]; then
    chown 1000:1000 "$E_MNT/data/own" || bad "chown 1000:1000 of a lower file failed"
    echo +1 >>"$E_MNT/data/append" && chown 1000:1000 "$E_MNT/data/append" ||
      bad "append + chown 1000:1000 failed"
  fi
  want "owner of data/own" 1000:1000 "$(stat -c %u:%g "$E_MNT/data/own")"
  want "data/append" "1000:1000 base+1" "$(stat -c %u:%g "$E_MNT/data/append") $(cat "$E_MNT/data/append")"
  overlay_umount "$E_MNT" umount
  trap - EXIT
}
e_host_view() {
  local f
  for f in own append; do
    want "real owner of $E_UP/data/$f" "$HOST1000:$HOST1000" "$(stat -c %u:%g "$E_UP/data/$f")"
    want "override_stat of $E_UP/data/$f" "(none)" "$(xattr "$E_UP/data/$f" user.containers.override_stat)"
  done
}

"$@"
exit $RC
EOF
} >"$US"
chmod 0644 "$US"
A_MNT=$D/a_mnt A_UP=$D/a_up A_WK=$D/a_work B_MNT=$D/b_mnt B_UP=$D/b_up B_WK=$D/b_work
C_MNT=$D/c_mnt C_UP=$D/c_up C_WK=$D/c_work D_MNT=$D/d_mnt D_UP=$D/d_up D_WK=$D/d_work
E_MNT=$D/e_mnt E_UP=$D/e_up E_WK=$D/e_work
export A_MNT A_UP A_WK B_MNT B_UP B_WK C_MNT C_UP C_WK D_MNT D_UP D_WK E_MNT E_UP E_WK RUID
us() { user bash "$US" "$@"; }

make_all_lowers() {
  us make_lowers
  if ((EUID == 0)); then
    mknod "$L2/chr" c 1 3 && chown "$RUID:$RGID" "$L2/chr" # a device node the user owns
    echo root >"$L2/rootf" && mkfifo "$L2/rootfifo"         # root's, in the user's dir
  fi
}
step "the lowers and an image source, made as $RUSER (uid $RUID)" make_all_lowers
if [[ -e $L2/chr ]]; then HAVE_CHR=1; else HAVE_CHR=0; fi
export HAVE_CHR

# (a)
step "(a) strata-overlay mounted by $RUSER (through fusermount3)" us a_mount
check "(a) a user mount: fuse.strata-overlay, user_id=$RUID, nosuid, nodev" us a_type
check "(a) reads: files of both layers, the merged directory, 1 MiB" us a_reads
check "(a) writes: append copies up, a new file lands in the upper" us a_writes
check "(a) unlink of lower files: whiteouts in the upper (0/0 char device, else .wh.NAME)" us a_unlink
check "(a) rm -rf + mkdir of a lower dir: opaque, user.overlay.opaque=y" us a_opaque
check "(a) rename of a merged lower dir: no EXDEV, user.overlay.redirect=/mdir" us a_rename_dir
check "(a) chmod of a 1 MiB lower file: metadata only (the upper file holds no data)" us a_chmod
if ((HAVE_CHR)); then
  check "(a) rename of a file and a fifo owned by root: works, root still shown as the owner" us a_foreign
fi
step "(a) fusermount3 -u; the daemon exits" us a_umount
check "(a) remount: rename, opaque dir, whiteouts, chmod, append read back" us a_remount

# (b)
b_import() { user "$STRATA_BIN" --root "$D/store" import dir "$D/img" --name rootless:1 >/dev/null; }
step "(b) strata --root DIR import dir, as $RUSER" b_import
check "(b) strata mount IMAGE --upper, read, write, strata umount (as $RUSER)" us b_mount_umount

# (c)
chr_note=''
if ((!HAVE_CHR)); then chr_note=' (device placeholder skipped: only root can make the lower device)'; fi
check "(c) unshare -Urm: mount(2) by the daemon; copy-up, whiteout, opaque, dir rename; chown/mknod refused by the kernel; a lower device copied up as an override_stat placeholder$chr_note" \
  user unshare -Urm bash "$US" c_userns 1
check "(c) unshare -Urm again: a remount reads it all back" user unshare -Urm bash "$US" c_userns 2

# (d), (e): the full subordinate map
FULLMAP=() out=''
for flags in "--map-auto --map-root-user" "-U --map-users=auto --map-groups=auto -r"; do
  # shellcheck disable=SC2086,SC2016 # flags split on purpose; awk's $1
  if out=$(user unshare $flags awk '$1 == 1 {print $2}' /proc/self/uid_map 2>&1) && [[ $out =~ ^[0-9]+$ ]]; then
    read -ra FULLMAP <<<"$flags"
    break
  fi
done
if ((${#FULLMAP[@]} == 0)); then
  note "(d), (e) skipped: unshare with the full subordinate map fails as $RUSER (newuidmap, /etc/subuid): $out"
  finish "$start"
  exit 0
fi
SUB=$out HOST1000=$((out + 999))
export SUB HOST1000
ns="unshare ${FULLMAP[*]}"
step "(d) strata-overlay mounted by $RUSER through fusermount3" us d_mount
check "(d) chown 1000:1000 from $ns (host id $HOST1000, which the daemon may not chown to)" \
  user unshare "${FULLMAP[@]}" bash "$US" d_chown_inside
check "(d) ... recorded as user.containers.override_stat=$HOST1000:$HOST1000:0644:file, shown" us d_host_view
check "(d) fusermount3 -u, remount: the recorded owner is read back" us d_remount
check "(e) the daemon in $ns -m: chown 1000:1000 through the mount" \
  user unshare "${FULLMAP[@]}" -m bash "$US" e_userns 1
check "(e) ... is a real chown on the upper (host id $HOST1000, no override_stat)" us e_host_view
check "(e) a remount in a new namespace reads the owners back" \
  user unshare "${FULLMAP[@]}" -m bash "$US" e_userns 2
finish "$start"
