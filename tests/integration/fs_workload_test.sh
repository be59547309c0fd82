#!/usr/bin/env bash
# shellcheck disable=SC2016,SC2001 # single-quoted $ for dpkg-query and chrooted shells; sed indents
# A real workload on a mounted Debian image. The image is the cached debootstrap bookworm
# minbase rootfs with gcc, libc6-dev, make and git (tests/fixtures/debian-rootfs), imported
# from its tarball. It is mounted with an upper directory, and inside it, as root, in a
# chroot (with /proc, /dev and /sys bound in):
#   - dpkg -i of a .deb built here (a file in /usr/share/strata-test, a postinst that writes
#     /var/lib/strata-test/postinst-ran), dpkg -s/--verify, dpkg -r, dpkg -i again;
#   - apt-cache policy/show of installed packages, dpkg --configure -a, dpkg --audit;
#   - make + gcc of a small C program, run it, make -q, edit a header, rebuild;
#   - git init/add/commit/mv/gc, git log, git fsck --strict, git status;
#   - tar c /usr | tar x into /root/usr-tar, compared with /usr (treecmp.py);
#   - from the host side: cp -a MNT/usr MNT/root/usr-cp, compared with /usr;
#   - find /usr/share/doc -delete: gone from the mount, only a whiteout in the upper;
#   - chown -R 1000:1000 /usr/lib/gcc: the owner is seen, the data reads the same, and the
#     upper grows by far less than the tree's data (metadata-only copy-up).
# Then unmount, remount on the same upper, and check that everything is still there: the
# same listing (type, mode, owner, size, mtime, symlink target of every path) and contents
# of the changed trees, the package installed, the git repository intact, make up to date,
# the chown'd owner, the deleted tree still gone; gcc (chown'd) still compiles.
#
# The filesystem under test, FS_WORKLOAD_SUBJECT=
#   strata          (default) `strata --root STORE mount IMAGE MNT --upper U --work W`,
#                   `strata umount MNT`. Skips while strata has no mount command.
#   fuse-overlayfs  stand-in: the tarball extracted into a lower directory, fuse-overlayfs
#   kernel          stand-in: the same with kernel overlayfs (metacopy=on, redirect_dir=on)
# The stand-ins check the test itself: kernel overlayfs passes every check. fuse-overlayfs
# 1.10 fails three: chown -R copies the data up; tar c /usr says "file changed as we read
# it" (after a copy-up of /usr, stat shows the lower /usr's times until the attribute cache
# expires); the listing after the remount differs (the root's mtime was stale before, and
# files written through it showed mtimes, from the kernel's writeback cache, a little off
# the ones stored in the upper).
# Needs root (chroot, dpkg, chown, mounts). Every mount is undone on exit.
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

SUBJECT=${FS_WORKLOAD_SUBJECT:-strata}
case $SUBJECT in
  strata | fuse-overlayfs | kernel) ;;
  *) fail "FS_WORKLOAD_SUBJECT=$SUBJECT: want strata, fuse-overlayfs or kernel" ;;
esac
need_root "chroot, dpkg -i, chown, and mounts of the filesystem and of /proc, /dev, /sys"
need_tools tar dpkg-deb chroot python3 du find sha256sum mountpoint umount
case $SUBJECT in
  strata)
    need_strata
    mount_help=$("$STRATA_BIN" mount --help 2>&1) || mount_help=''
    # Without a mount subcommand CLI11 prints the top-level help (Usage: strata [OPTIONS]
    # SUBCOMMAND) and exits 0, so look for the subcommand's own usage line.
    if [[ ! $mount_help =~ Usage:[^$'\n']*[[:space:]]mount ]]; then
      fail "$STRATA_BIN has no mount command (\`strata mount --help\` does not describe one);" \
        "FS_WORKLOAD_SUBJECT=kernel or fuse-overlayfs runs this test on a stand-in"
    fi
    ;;
  fuse-overlayfs) need_tools fuse-overlayfs fusermount3 ;;
  kernel) need_kernel_overlay ;;
esac
deb_tar=$(fixture debian-rootfs --include=gcc,libc6-dev,make,git --tar)
setup_work
umask 022
# shellcheck disable=SC2153 # STORES is set by setup_work
STORE=$STORES/store IMAGE=debian-dev:latest
# The upper directory (and the stand-ins' lower one) in $WORK: a tmpfs with xattrs and ACLs
# when there is one (see setup_work), since deleting the upper's ~30000 files (two copies of
# /usr) from a disk mounted with discard takes longer than the test.
UPPER=$WORK/upper OVL_WORK=$WORK/ovl-work MNT=$WORK/mnt LOWER=$WORK/lower
DEB=$WORK/strata-test_1.0_all.deb PKG_DATA="strata-test package data"
DAEMONS=() # FUSE daemon pids of the current mount
FAILED=()  # labels of the failed checks
mkdir "$UPPER" "$OVL_WORK" "$MNT"

# --- mounting ------------------------------------------------------------------------

fs_mount() {
  case $SUBJECT in
    strata) "$STRATA_BIN" --root "$STORE" mount "$IMAGE" "$MNT" --upper "$UPPER" --work "$OVL_WORK" ;;
    fuse-overlayfs) fuse-overlayfs -o "lowerdir=$LOWER,upperdir=$UPPER,workdir=$OVL_WORK" "$MNT" ;;
    kernel)
      mount -t overlay overlay \
        -o "lowerdir=$LOWER,upperdir=$UPPER,workdir=$OVL_WORK,metacopy=on,redirect_dir=on" "$MNT"
      ;;
  esac
  mountpoint -q "$MNT" || {
    echo "  $MNT is not a mount point after mounting"
    return 1
  }
}
fs_umount() {
  case $SUBJECT in
    strata) "$STRATA_BIN" umount "$MNT" ;;
    fuse-overlayfs) fusermount3 -u "$MNT" ;;
    kernel) umount "$MNT" ;;
  esac
}
bind_system() {
  mount -t proc proc "$MNT/proc"
  mount --bind /dev "$MNT/dev"
  mount --bind /sys "$MNT/sys"
}
unbind_system() {
  local d
  for d in sys dev proc; do
    if mountpoint -q "$MNT/$d"; then umount "$MNT/$d" || umount -l "$MNT/$d"; fi
  done
}
# up: mount, note the daemon, bind the system directories in.
up() {
  step "mount ($SUBJECT)" fs_mount
  mapfile -t DAEMONS < <(pids_naming "$UPPER") # the FUSE daemon names its upper
  step "bind /proc, /dev, /sys into the mount" bind_system
}
# down: unbind, unmount; the FUSE daemon must exit and nothing be left mounted.
down() {
  step "unbind /proc, /dev, /sys" unbind_system
  step "unmount ($SUBJECT)" fs_umount
  record_check "after unmount: nothing mounted under the mount point, the daemon exited" unmounted
  DAEMONS=()
}
unmounted() {
  local left
  left=$(mounts_under "$MNT")
  if [[ -n $left ]]; then
    printf '  expected no mount under %s, saw: %s\n' "$MNT" "$(tr '\n' ' ' <<<"$left")"
    return 1
  fi
  left=$(wait_gone "${DAEMONS[@]}") || {
    printf '  expected the daemon (pid %s) to exit, still running 10 s after unmount\n' "${left//$'\n'/, }"
    return 1
  }
}

# --- helpers for the checks -------------------------------------------------------------

# wcheck LABEL CMD...: check (lib.sh), remembering the labels of failed checks; then the
# filesystem must still be up (a dead daemon fails the test there, not in every later check).
wcheck() {
  local msg
  record_check "$@"
  msg=$(alive) || fail "after \"$1\": $msg"
}
record_check() {
  local before=$PROBLEMS
  check "$@"
  if ((PROBLEMS != before)); then FAILED+=("$1"); fi
}
alive() {
  local pid err
  for pid in "${DAEMONS[@]}"; do
    if ! running "$pid"; then
      echo "the filesystem's daemon (pid $pid) is gone"
      return 1
    fi
  done
  err=$(stat -f -c %T "$MNT" 2>&1) || { # statfs: not answered from the kernel's caches
    echo "the mount does not answer: $err"
    return 1
  }
}
# in_root CMD...: run CMD chrooted into the mount, as root, with a clean environment.
in_root() {
  env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    LC_ALL=C.UTF-8 TERM=dumb DEBIAN_FRONTEND=noninteractive chroot "$MNT" "$@"
}
# quiet CMD...: run CMD, showing its output (the end of it) only when it fails.
quiet() {
  local out rc=0
  out=$("$@" 2>&1) || rc=$?
  if ((rc != 0)); then
    printf '  `%s` exited %d:\n%s\n' "$*" "$rc" "$(tail -n 15 <<<"$out" | sed 's/^/    | /')"
  fi
  return "$rc"
}
# same WHAT EXPECTED SEEN
same() {
  [[ $2 == "$3" ]] && return
  printf '  %s: expected %s, saw %s\n' "$1" "'${2//$'\n'/\\n}'" "'${3//$'\n'/\\n}'"
  return 1
}
# has WHAT TEXT LINE-REGEX: TEXT (a command's output) has a line matching LINE-REGEX.
has() {
  grep -Eq -- "$3" <<<"$2" && return
  printf '  %s: expected a line matching /%s/, saw:\n%s\n' "$1" "$3" "$(head -n 12 <<<"$2" | sed 's/^/    | /')"
  return 1
}
# trees_equal A B: treecmp.py, quiet when equal.
trees_equal() {
  local out
  out=$(tree_cmp "$1" "$2" --max 15) && return
  printf '  expected %s and %s to be equal, they differ:\n%s\n' "$1" "$2" "$(sed 's/^/    | /' <<<"$out")"
  return 1
}
# disk_usage PATH / data_size PATH: bytes allocated / apparent size of the tree at PATH.
disk_usage() { du -s --block-size=1 "$1" | cut -f1; }
data_size() { du -s --apparent-size --block-size=1 "$1" | cut -f1; }
mib() { awk -v b="$1" 'BEGIN { printf "%.2f MiB", b / 1048576 }'; }
# hashes DIR...: sha256 of every regular file under the DIRs (paths relative to the mount).
hashes() {
  (cd "$MNT" && find "$@" -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum)
}
# listing: type, mode, owner, size (not of directories), mtime and symlink target of every
# path in the mount but /proc, /dev and /sys.
listing() {
  (cd "$MNT" && find . \( -path ./proc -o -path ./dev -o -path ./sys \) -prune \
    -o -type d -printf '%p d %#m %U:%G - %T@\n' \
    -o -printf '%p %y %#m %U:%G %s %T@ %l\n' | LC_ALL=C sort)
}
snapshot() { listing >"$WORK/listing-before" && hashes "${HASHED[@]}" >"$WORK/hashes-before"; }
# same_file WHAT EXPECTED-FILE SEEN-FILE: equal, else show the first differences.
same_file() {
  cmp -s "$2" "$3" && return
  printf '  %s: expected the same as before the remount; %d lines differ, first ones (-before +after):\n%s\n' \
    "$1" "$(diff "$2" "$3" | grep -c '^[<>]')" \
    "$(diff -U0 "$2" "$3" | grep '^[-+][^-+]' | head -n 12 | sed 's/^/    | /')"
  return 1
}

# --- the checks, first mount ------------------------------------------------------------

make_deb() {
  local p=$WORK/pkg
  mkdir -p "$p/DEBIAN" "$p/usr/share/strata-test"
  cat >"$p/DEBIAN/control" <<'EOF'
Package: strata-test
Version: 1.0
Architecture: all
Maintainer: strata tests <strata-tests@example.invalid>
Section: misc
Priority: optional
Description: strata filesystem workload test package
 One data file in /usr/share/strata-test; the postinst writes
 /var/lib/strata-test/postinst-ran.
EOF
  cat >"$p/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
  mkdir -p /var/lib/strata-test
  echo "configured $DPKG_MAINTSCRIPT_PACKAGE" >/var/lib/strata-test/postinst-ran
fi
EOF
  chmod 0755 "$p/DEBIAN/postinst"
  echo "$PKG_DATA" >"$p/usr/share/strata-test/data.txt"
  dpkg-deb --root-owner-group --build "$p" "$DEB" >/dev/null
}

pkg_installed() {
  same "dpkg-query -W strata-test" "install ok installed 1.0" \
    "$(in_root dpkg-query -W -f='${Status} ${Version}' strata-test 2>&1)"
  has "dpkg -s strata-test" "$(in_root dpkg -s strata-test 2>&1)" '^Status: install ok installed$'
  same "/usr/share/strata-test/data.txt" "$PKG_DATA" "$(cat "$MNT/usr/share/strata-test/data.txt" 2>&1)"
  same "/var/lib/strata-test/postinst-ran" "configured strata-test" \
    "$(cat "$MNT/var/lib/strata-test/postinst-ran" 2>&1)"
  has "dpkg -L strata-test" "$(in_root dpkg -L strata-test 2>&1)" '^/usr/share/strata-test/data.txt$'
  quiet in_root dpkg --verify strata-test
}
dpkg_install() {
  cp "$DEB" "$MNT/tmp/"
  quiet in_root dpkg -i "/tmp/${DEB##*/}"
  pkg_installed
}
dpkg_remove_reinstall() {
  quiet in_root dpkg -r strata-test
  local status
  status=$(in_root dpkg -s strata-test 2>/dev/null || true)
  status=$(grep '^Status:' <<<"$status" || echo "(not known to dpkg)")
  if [[ $status == "Status: install ok installed" ]]; then
    printf '  expected strata-test not installed after dpkg -r, dpkg -s says %s\n' "$status"
    return 1
  fi
  if [[ -e $MNT/usr/share/strata-test/data.txt || -e $MNT/usr/share/strata-test ]]; then
    printf '  expected /usr/share/strata-test to be gone after dpkg -r, it is there\n'
    return 1
  fi
  quiet in_root dpkg -i "/tmp/${DEB##*/}"
  pkg_installed
}
apt_cache() {
  local v
  v=$(in_root dpkg-query -W -f='${Version}' dpkg)
  has "apt-cache policy dpkg" "$(in_root apt-cache policy dpkg 2>&1)" "^ +Installed: ${v//./\\.}\$"
  has "apt-cache show dpkg" "$(in_root apt-cache show dpkg 2>&1)" "^Version: ${v//./\\.}\$"
  has "apt-cache policy strata-test" "$(in_root apt-cache policy strata-test 2>&1)" '^ +Installed: 1\.0$'
  has "apt-cache show strata-test" "$(in_root apt-cache show strata-test 2>&1)" '^Maintainer: strata tests'
}
dpkg_configure() {
  quiet in_root dpkg --configure -a
  same "dpkg --audit (packages in a bad state)" "" "$(in_root dpkg --audit 2>&1)"
}

write_program() {
  local d=$MNT/root/hello
  mkdir -p "$d"
  printf '%s\n' 'CFLAGS = -O2 -Wall -Wextra -Werror' '' 'hello: hello.o sum.o' \
    $'\t$(CC) $(CFLAGS) -o $@ hello.o sum.o' '' 'hello.o: hello.c sum.h config.h' \
    'sum.o: sum.c sum.h' '' 'clean:' $'\trm -f hello *.o' >"$d/Makefile"
  echo '#define N 1000' >"$d/config.h"
  echo 'long long sum_of_squares(int n);' >"$d/sum.h"
  cat >"$d/sum.c" <<'EOF'
#include "sum.h"
long long sum_of_squares(int n) {
  long long s = 0;
  for (int i = 1; i <= n; i++) s += (long long)i * i;
  return s;
}
EOF
  cat >"$d/hello.c" <<'EOF'
#include <stdio.h>
#include "config.h"
#include "sum.h"
int main(void) {
  printf("hello from gcc %d: sum of squares 1..%d = %lld\n", __GNUC__, N, sum_of_squares(N));
  return 0;
}
EOF
}
GCC_MAJOR=''
hello_says() { # N SUM
  same "output of /root/hello/hello" "hello from gcc $GCC_MAJOR: sum of squares 1..$1 = $2" \
    "$(in_root /root/hello/hello 2>&1)"
}
make_gcc() {
  write_program
  quiet in_root make -C /root/hello
  hello_says 1000 333833500
  local rc=0
  in_root make -q -C /root/hello || rc=$?
  same "make -q right after make (0: up to date)" 0 "$rc"
  sed -i 's/1000/2000/' "$MNT/root/hello/config.h"
  rc=0
  in_root make -q -C /root/hello || rc=$?
  same "make -q after editing config.h (1: hello.o out of date)" 1 "$rc"
  quiet in_root make -C /root/hello
  hello_says 2000 2668667000
}

git_work() {
  quiet in_root bash -ec '
    mkdir /root/repo && cd /root/repo
    git init -q -b main
    git config user.name "Strata Test"
    git config user.email strata-tests@example.invalid
    cp -a /usr/include include
    echo "strata workload" >README
    git add -A
    git commit -q -m "first commit"
    echo "second line" >>README
    rm include/stdio.h
    git mv include/stdlib.h include/stdlib-renamed.h
    git commit -q -a -m "second commit"
    git gc -q'
  git_intact
}
git_intact() {
  same "git log --format=%s" $'second commit\nfirst commit' \
    "$(in_root git -C /root/repo log --format=%s 2>&1)"
  same "git fsck --full --strict (output)" "" "$(in_root git -C /root/repo fsck --full --strict 2>&1)"
  same "git status --porcelain" "" "$(in_root git -C /root/repo status --porcelain 2>&1)"
  same "git show HEAD:README" $'strata workload\nsecond line' \
    "$(in_root git -C /root/repo show HEAD:README 2>&1)"
  same "git ls-files include/stdlib-renamed.h include/stdio.h" "include/stdlib-renamed.h" \
    "$(in_root git -C /root/repo ls-files include/stdlib-renamed.h include/stdio.h 2>&1)"
}

tar_roundtrip() {
  quiet in_root bash -o pipefail -ec '
    mkdir /root/usr-tar
    opts=(--xattrs --xattrs-include="*" --acls --numeric-owner)
    tar -C /usr "${opts[@]}" -cf - . | tar -C /root/usr-tar "${opts[@]}" -xpf -'
  trees_equal "$MNT/usr" "$MNT/root/usr-tar"
}
cp_roundtrip() {
  quiet cp -a "$MNT/usr" "$MNT/root/usr-cp"
  trees_equal "$MNT/usr" "$MNT/root/usr-cp"
}

# whiteout_only REL: the upper holds a whiteout for REL (a 0/0 character device, or a
# .wh.NAME file) and nothing else under that name.
whiteout_only() {
  local rel=$1 up=$UPPER/$1 wh
  wh=$UPPER/$(dirname "$rel")/.wh.$(basename "$rel")
  if [[ -c $up && ! -e $wh && $(stat -c '%t:%T' "$up") == 0:0 ]]; then return; fi
  if [[ ! -e $up && ! -L $up && -f $wh && ! -s $wh ]]; then return; fi
  printf '  expected the upper to hold only a whiteout for %s, saw: %s; %s\n' "$rel" \
    "$(stat -c '%n: %F %t:%T %s bytes' "$up" 2>&1 | sed "s|$UPPER/||")" \
    "$(stat -c '%n: %F %s bytes' "$wh" 2>&1 | sed "s|$UPPER/||")"
  if [[ -d $up ]]; then
    printf '  under it in the upper: %d entries, %s of data\n' "$(find "$up" | wc -l)" \
      "$(mib "$(data_size "$up")")"
  fi
  return 1
}
find_delete() {
  local tree=usr/share/doc before after size
  size=$(data_size "$MNT/$tree")
  before=$(disk_usage "$UPPER")
  quiet in_root find "/$tree" -delete
  after=$(disk_usage "$UPPER")
  if [[ -e $MNT/$tree || -L $MNT/$tree ]]; then
    printf '  expected /%s to be gone after find -delete, stat shows: %s\n' "$tree" "$(stat -c %F "$MNT/$tree" 2>&1)"
    return 1
  fi
  same "readdir of /usr/share lists doc" "" "$(find "$MNT/usr/share" -mindepth 1 -maxdepth 1 -name doc)"
  whiteout_only "$tree"
  if ((after - before > 256 * 1024)); then
    printf '  expected the upper to grow by at most 256 KiB (whiteouts, no data) for deleting /%s (%s),' "$tree" "$(mib "$size")"
    printf ' it grew by %s\n' "$(mib $((after - before)))"
    return 1
  fi
}

CHOWN_TREE=usr/lib/gcc
chown_tree() {
  local before after size growth
  size=$(data_size "$MNT/$CHOWN_TREE")
  hashes "$CHOWN_TREE" >"$WORK/chown-before.sha256"
  before=$(disk_usage "$UPPER")
  quiet in_root chown -R 1000:1000 "/$CHOWN_TREE"
  after=$(disk_usage "$UPPER")
  growth=$((after - before))
  echo "$size $growth" >"$WORK/chown-sizes"
  chowned_owner
  hashes "$CHOWN_TREE" >"$WORK/chown-after.sha256"
  same_file "sha256 of the files under /$CHOWN_TREE after chown" "$WORK/chown-before.sha256" "$WORK/chown-after.sha256"
}
chowned_owner() {
  local bad
  bad=$(cd "$MNT" && find "$CHOWN_TREE" \( ! -user 1000 -o ! -group 1000 \) -printf '%p %U:%G\n')
  if [[ -n $bad ]]; then
    printf '  expected every path under /%s to be owned by 1000:1000, %d are not, e.g.:\n%s\n' \
      "$CHOWN_TREE" "$(grep -c '' <<<"$bad")" "$(head -n 5 <<<"$bad" | sed 's/^/    | /')"
    return 1
  fi
}
chown_metadata_only() {
  local size growth
  read -r size growth <"$WORK/chown-sizes"
  if ((growth * 10 > size)); then
    printf '  expected the upper to grow by far less than the data of /%s (at most 10%% of %s),' \
      "$CHOWN_TREE" "$(mib "$size")"
    printf ' it grew by %s: the data was copied up, not only the metadata\n' "$(mib "$growth")"
    return 1
  fi
}

# --- the checks after the remount ---------------------------------------------------------

remount_listing() { listing >"$WORK/listing-after"; same_file "listing of the mount" "$WORK/listing-before" "$WORK/listing-after"; }
remount_contents() { hashes "${HASHED[@]}" >"$WORK/hashes-after"; same_file "contents of ${HASHED[*]}" "$WORK/hashes-before" "$WORK/hashes-after"; }
remount_gone() {
  if [[ -e $MNT/usr/share/doc || -L $MNT/usr/share/doc ]]; then
    printf '  expected /usr/share/doc to stay deleted, stat shows: %s\n' "$(stat -c %F "$MNT/usr/share/doc" 2>&1)"
    return 1
  fi
}
remount_make() {
  local rc=0
  in_root make -q -C /root/hello || rc=$?
  same "make -q after the remount (0: up to date)" 0 "$rc"
  hello_says 2000 2668667000
  quiet in_root make -C /root/hello clean
  quiet in_root make -C /root/hello # gcc's own files under /usr/lib/gcc are the chown'd ones
  hello_says 2000 2668667000
}

# image_unchanged: the mount wrote nothing to the image (strata: fsck of the store; the
# stand-ins: the lower directory still has /usr/share/doc and root's /usr/lib/gcc).
image_unchanged() {
  if [[ $SUBJECT == strata ]]; then
    quiet st fsck
    return
  fi
  if [[ ! -d $LOWER/usr/share/doc ]]; then
    echo "  expected the lower directory's usr/share/doc to be there, it is gone"
    return 1
  fi
  same "owner of the lower directory's $CHOWN_TREE" 0:0 "$(stat -c %u:%g "$LOWER/$CHOWN_TREE")"
}

# --- the run ----------------------------------------------------------------------------

total_start=$EPOCHREALTIME
note "subject $SUBJECT; image $deb_tar; upper $UPPER; mount point $MNT"
if [[ $SUBJECT == strata ]]; then
  import_image() { st import tar "$deb_tar" --name "$IMAGE" >/dev/null; }
  step "strata import tar (the image)" import_image
else
  step "extract the image into the lower directory (stand-in)" gnu_extract "$deb_tar" "$LOWER"
fi
step "dpkg-deb --build strata-test_1.0_all.deb" make_deb

up
GCC_MAJOR=$(in_root gcc -dumpversion) || fail "gcc -dumpversion failed in the chroot"
wcheck "dpkg -i: strata-test installed (dpkg -s, -L, --verify, postinst output)" dpkg_install
wcheck "dpkg -r: strata-test removed, its files gone; dpkg -i again" dpkg_remove_reinstall
wcheck "apt-cache policy/show of installed packages" apt_cache
wcheck "dpkg --configure -a, dpkg --audit clean" dpkg_configure
wcheck "make + gcc: build, run, make -q, edit config.h, rebuild" make_gcc
wcheck "git init/add/commit/mv/gc, git log, git fsck --strict, git status clean" git_work
wcheck "tar c /usr | tar x /root/usr-tar (xattrs, ACLs): equal to /usr" tar_roundtrip
wcheck "cp -a MNT/usr MNT/root/usr-cp from the host: equal to /usr" cp_roundtrip
wcheck "find /usr/share/doc -delete: gone, only a whiteout in the upper" find_delete
wcheck "chown -R 1000:1000 /$CHOWN_TREE: owner seen, data unchanged" chown_tree
wcheck "chown -R: metadata-only copy-up (the upper grew by far less than the data)" chown_metadata_only
if [[ -f $WORK/chown-sizes ]]; then
  read -r size growth <"$WORK/chown-sizes"
  note "chown -R /$CHOWN_TREE: $(mib "$size") of data, the upper grew by $(mib "$growth")"
fi
HASHED=(root usr/lib/gcc var/lib/dpkg usr/share/strata-test var/lib/strata-test)
step "listing of the mount, hashes of the changed trees (before unmounting)" snapshot
down

up
wcheck "remount: the same listing (type, mode, owner, size, mtime, target of every path)" remount_listing
wcheck "remount: the same contents of /root, /usr/lib/gcc, /var/lib/dpkg, the package's files" remount_contents
wcheck "remount: strata-test still installed" pkg_installed
wcheck "remount: git log, fsck, status unchanged" git_intact
wcheck "remount: /usr/share/doc still gone" remount_gone
wcheck "remount: /$CHOWN_TREE still owned by 1000:1000" chowned_owner
wcheck "remount: make -q up to date, program runs, rebuilds with the chown'd gcc" remount_make
down
record_check "the image is unchanged ($([[ $SUBJECT == strata ]] && echo 'strata fsck' || echo 'lower directory'))" image_unchanged

if ((${#FAILED[@]})); then
  note "failed with $SUBJECT:"
  printf '  - %s\n' "${FAILED[@]}"
fi
finish "$total_start"
