#!/usr/bin/env bash
# fs_killpriv_test: a write, truncate or O_TRUNC open by a user without CAP_FSETID drops
# suid, sgid (when group-executable) and security.capability, as kernel overlayfs does
# (file_remove_privs). strata negotiates FUSE_HANDLE_KILLPRIV_V2 (fs/fuse_wire.h), so
# this is the daemon's job: the kernel only flags the request. The same operations run on
# strata-overlay and on kernel overlayfs over the same lower directory, and each file's
# mode and capability must come out the same, and as written below:
#   w-suid 4777, w-sgid 2777, w-sgid-nox 2766 (group root), w-sgid-member 2766 (group
#     nogroup), w-cap (cap_net_raw) written by nobody: 0777, 0777, 0766, 2766 (sgid without
#     group execute stays for a member of the file's group), 0666 and no capability;
#   t-suid 4777 truncated (ftruncate) by nobody; o-suid 4777 opened O_TRUNC by nobody;
#   r-suid 4777 written by root (CAP_FSETID): keeps 4777;
#   again  4777 written by nobody, chmod 4777 again, written again: 0777 both times (the
#     daemon remembers a file it found clean only until its mode changes).
# Needs root (setcap, setpriv, mounts) and /dev/fuse.
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

need_root "setcap, setpriv and mounts"
[[ -c /dev/fuse ]] || skip "needs /dev/fuse"
need_tools setpriv setcap getcap stat mountpoint dd truncate
need_overlay_bin
need_kernel_overlay
start=$EPOCHREALTIME
setup_work
# On disk, reachable by nobody.
chmod 0755 "$STORES"
L=$STORES/lower
mkdir -p "$L" "$STORES"/{su,sw,sm,ku,kw,km}
umask 022
for f in w-suid:4777 w-sgid:2777 w-sgid-nox:2766 w-sgid-member:2766 w-cap:0666 t-suid:4777 o-suid:4777 \
  r-suid:4777 again:4777; do
  echo data >"$L/${f%%:*}"
  chmod "${f#*:}" "$L/${f%%:*}"
done
chgrp 65534 "$L/w-sgid-member"
chmod 2766 "$L/w-sgid-member" # chgrp drops sgid
setcap cap_net_raw+ep "$L/w-cap" || fail "setcap on the lower file failed"

"$OVERLAY" -f -o "lowerdir=$L,upperdir=$STORES/su,workdir=$STORES/sw" "$STORES/sm" \
  2>"$WORK/err" &
BG_PIDS+=("$!")
wait_mounted "$STORES/sm" "$WORK/err"
mount -t overlay overlay -o "lowerdir=$L,upperdir=$STORES/ku,workdir=$STORES/kw" \
  "$STORES/km" || fail "kernel overlayfs did not mount"

as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
write_at_end() { printf x | dd of="$1" bs=1 seek=5 conv=notrunc status=none; }
export -f write_at_end
# operate MNT: the operations above, on the mount MNT.
operate() {
  local m=$1
  as_nobody bash -c "write_at_end $m/w-suid && write_at_end $m/w-sgid &&
    write_at_end $m/w-sgid-nox && write_at_end $m/w-sgid-member &&
    write_at_end $m/w-cap" || return 1
  as_nobody truncate -s 2 "$m/t-suid" || return 1
  as_nobody bash -c ": >$m/o-suid" || return 1
  write_at_end "$m/r-suid" || return 1
  as_nobody bash -c "write_at_end $m/again" || return 1
  chmod 4777 "$m/again" || return 1
  as_nobody bash -c "write_at_end $m/again" || return 1
}
# state MNT: "name mode capability" per file, one a line.
state() {
  local f
  for f in w-suid w-sgid w-sgid-nox w-sgid-member w-cap t-suid o-suid r-suid again; do
    printf '%s %s %s\n' "$f" "$(stat -c %a "$1/$f")" "$(getcap "$1/$f" | awk '{print $2}')"
  done
}

step "the operations on strata-overlay" operate "$STORES/sm"
step "the operations on kernel overlayfs" operate "$STORES/km"
want=$'w-suid 777 \nw-sgid 777 \nw-sgid-nox 766 \nw-sgid-member 2766 \nw-cap 666 \nt-suid 777 \no-suid 777 \nr-suid 4777 \nagain 777 '
expect "kernel overlayfs: modes and capabilities after the writes" "$want" "$(state "$STORES/km")"
expect "strata: modes and capabilities after the writes" "$want" "$(state "$STORES/sm")"
umount "$STORES/sm" "$STORES/km"
# What reached the upper directory (the next mount's truth) is the same.
expect "strata's upper: modes and capabilities" "$want" "$(state "$STORES/su")"
finish "$start"
