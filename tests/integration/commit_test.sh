#!/usr/bin/env bash
# strata commit: a container's changes become a layer, and containers of the new image
# see exactly what the committed container saw. As root and as an unprivileged user
# (full subordinate id map): new, changed, chmod-only (metacopy), chowned, deleted
# (whiteout), replaced (opaque) and renamed (redirect) entries, hardlinks new and lower
# (index), a symlink, a fifo, a renamed lower directory (redirect); the listing (type, mode, owner, size, links, mtime,
# content hash) inside the committed container equals the one in the new image's
# container. Also: a running container is refused, an upper directory of `strata
# mount --upper` commits with --image, and the image has one more layer.
. "$(dirname "$0")/lib.sh"

need_root "commits containers as root and as the user strata-test"
need_strata
[[ -c /dev/fuse ]] || skip "needs /dev/fuse"
setup_work
fixture make-busybox-image "$WORK/bb" >/dev/null

start=$EPOCHREALTIME

# Every entry of the tree but the launcher's mounts and placeholders: path, type and
# mode, owner, size of files, links of non-directories, mtime, and content or target.
# shellcheck disable=SC2016 # expanded inside the container
LIST='find / -xdev ! -path / ! -path "/etc/hostname" ! -path "/etc/hosts" \
  ! -path "/etc/resolv.conf" ! -path "/proc" ! -path "/sys" ! -path "/dev" | sort |
  while read -r f; do
    if [ -d "$f" ] && [ ! -L "$f" ]; then stat -c "%n %f %u:%g" "$f"
    else stat -c "%n %f %u:%g %s %h %Y" "$f"; fi
    if [ -L "$f" ]; then readlink "$f"
    elif [ -f "$f" ]; then md5sum < "$f"; fi
  done'

# The changes a container makes (the image has /bin/busybox, applet symlinks, /etc).
CHANGE='set -e
  echo new > /newfile; ln /newfile /newlink; ln -s /newfile /newsym
  mkdir -p /d/e; echo x > /d/e/f; mkfifo /d/fifo
  echo more >> /etc/passwd; chmod 600 /etc/group; touch -d @1000000000 /etc/motd
  chown 1000:1000 /d/e/f /etc/group
  rm /bin/vi; rm -rf /home; mkdir /home; echo h > /home/h'

suite() { # suite WHO STORE RUNAS...
  local who=$1 store=$2
  shift 2
  local S=("$@" "$STRATA_BIN" --root "$store")
  "${S[@]}" import oci "$WORK/bb:latest" --name bb >/dev/null
  local before after rc out
  before=$("${S[@]}" run --name c1 bb /bin/sh -c "$CHANGE; $LIST")
  "${S[@]}" commit c1 --name bb2:one >/dev/null
  after=$("${S[@]}" run --rm bb2:one /bin/sh -c "$LIST")
  expect "$who: the committed image shows what the container saw" "" \
    "$(diff <(echo "$before") <(echo "$after"))"
  expect "$who: ... which changed something" 1 "$(grep -c '^/d/e/f 81a4 1000:1000' <<<"$after")"
  expect "$who: one more layer" "3 2" "$("${S[@]}" images --json |
    python3 -c 'import json,sys; d={i["name"]:len(i["layers"]) for i in json.load(sys.stdin)}; print(d["bb2:one"], d["bb:latest"])')"
  # A lower hardlink group changed through one name (the index): every name of
  # the group shows the change in the committed image; a renamed lower
  # directory (a redirect) comes whole.
  before=$("${S[@]}" run --name c2 bb2:one /bin/sh -c "echo again >> /newlink; mv /d /d2; $LIST")
  "${S[@]}" commit c2 --name bb2:two >/dev/null
  after=$("${S[@]}" run --rm bb2:two /bin/sh -c "$LIST")
  expect "$who: a lower hardlink group changed through one name, a renamed directory" "" \
    "$(diff <(echo "$before") <(echo "$after"))"
  expect "$who: ... the renamed directory is there, its old name is not" "1 0" \
    "$(grep -c '^/d2/e/f 81a4 1000:1000' <<<"$after") $(grep -c '^/d/' <<<"$after")"
  expect "$who: ... both names show it" "again again" \
    "$("${S[@]}" run --rm bb2:two /bin/sh -c 'tail -n1 /newfile; tail -n1 /newlink' | tr '\n' ' ' | xargs)"
  # A running container is refused with one line.
  "${S[@]}" run --name c3 bb sleep 30 &
  local runner=$!
  BG_PIDS+=("$runner")
  # Not wait_naming: strata run's own argv names "30" before the container exists.
  for _ in $(seq 100); do
    "${S[@]}" ps | grep -q '^c3 .*running' && break
    sleep 0.05
  done
  rc=0
  out=$("${S[@]}" commit c3 --name bad 2>&1) || rc=$?
  expect "$who: commit of a running container is refused (one line)" "1 1" "$rc $(grep -c '' <<<"$out")"
  "${S[@]}" rm -f c3
  wait "$runner" 2>/dev/null || true
  expect "$who: no image made" "" "$("${S[@]}" images | grep '^bad' || true)"
  "${S[@]}" rm c1 c2
}

suite root "$STORES/root-store"
# An upper directory of `strata mount --upper` commits with --image.
S=("$STRATA_BIN" --root "$STORES/root-store")
mkdir -p "$WORK/mnt" "$WORK/up"
"${S[@]}" mount bb "$WORK/mnt" --upper "$WORK/up"
echo plain >"$WORK/mnt/plain"
rm "$WORK/mnt/bin/ls"
"${S[@]}" umount "$WORK/mnt"
"${S[@]}" commit "$WORK/up" --image bb --name bb3 >/dev/null
out=$("${S[@]}" run --rm bb3 /bin/sh -c 'cat /plain; ls /bin/ls 2>&1 || true')
expect "root: an upper directory commits with --image" "plain ls: /bin/ls: No such file or directory" "${out//$'\n'/ }"
rc=0
out=$("${S[@]}" commit "$WORK/nothing" --name bb4 2>&1) || rc=$?
expect "root: an unknown container is one line" "1 1" "$rc $(grep -c '' <<<"$out")"

if id strata-test >/dev/null 2>&1 && [[ $(stat -c %a /dev/fuse) == 666 ]]; then
  udir=$(mktemp -d "$STORES/user.XXXXXX")
  chown strata-test: "$udir" "$WORK"
  chmod 755 "$STORES"
  chmod -R a+rX "$WORK/bb"
  suite rootless "$udir/store" setpriv --reuid=strata-test --regid=strata-test --init-groups
else
  note "rootless part skipped: needs the user strata-test and /dev/fuse mode 0666 (tools/check sets both up)"
fi
finish "$start"
