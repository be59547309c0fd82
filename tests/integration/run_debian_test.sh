#!/usr/bin/env bash
# strata run with a real Debian image (the cached debootstrap bookworm minbase as a
# 3-layer OCI layout, its config given an Env entry, a WorkingDir and a Cmd), as root and
# as an unprivileged user with the full subordinate id map: `id`, the uid_map, the
# hostname, the command as PID 1, Env/WorkingDir/Cmd from the image config and from
# flags, and a package install: `dpkg -i` of a local .deb whose files belong to a
# non-root user (and whose postinst makes a system user and chowns a directory to it),
# after which `ls -ln` shows those owners, in the container and in its upper.
. "$(dirname "$0")/lib.sh"

need_root "runs Debian containers as root and as the user strata-test"
need_strata
need_tools umoci dpkg-deb
[[ -c /dev/fuse ]] || skip "needs /dev/fuse"
setup_work
deb_oci=$(fixture make-debian-oci)

start=$EPOCHREALTIME

# The image, with an environment variable, a working directory and a command of its own.
cp -a "$deb_oci" "$WORK/deb"
umoci config --image "$WORK/deb:latest" --tag cfg --config.env STRATA_FROM_IMAGE=yes \
  --config.workingdir /srv --config.cmd /usr/bin/pwd
chmod -R a+rX "$WORK/deb"

# A package whose data belongs to uid/gid 1000 and whose postinst adds a system user.
pkg=$WORK/pkg
mkdir -p "$pkg/DEBIAN" "$pkg/usr/share/strata-app" "$WORK/debs"
cat >"$pkg/DEBIAN/control" <<'CTL'
Package: strata-app
Version: 1.0
Architecture: all
Maintainer: strata tests <strata-tests@example.invalid>
Description: files owned by a non-root user
CTL
cat >"$pkg/DEBIAN/postinst" <<'POST'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
  useradd --system --no-create-home --home-dir /var/lib/strata-app strata-app
  mkdir -p /var/lib/strata-app
  chown strata-app:strata-app /var/lib/strata-app
fi
POST
chmod 0755 "$pkg/DEBIAN/postinst"
echo data >"$pkg/usr/share/strata-app/data"
chown -R 1000:1000 "$pkg/usr/share/strata-app"
dpkg-deb --build "$pkg" "$WORK/debs/strata-app_1.0_all.deb" >/dev/null
chmod -R a+rX "$WORK/debs"

suite() { # suite WHO STORE RUNAS...
  local who=$1 store=$2
  shift 2
  local S=("$@" "$STRATA_BIN" --root "$store")
  "${S[@]}" import oci "$WORK/deb:cfg" --name deb >/dev/null
  expect "$who: id" "uid=0(root) gid=0(root) groups=0(root)" "$("${S[@]}" run --rm deb id)"
  expect "$who: hostname" "h1" "$("${S[@]}" run --rm --hostname h1 deb hostname)"
  expect "$who: the command is PID 1" "cat /proc/1/cmdline" \
    "$("${S[@]}" run --rm deb cat /proc/1/cmdline | tr '\0' ' ' | xargs)"
  expect "$who: Cmd and WorkingDir from the image" "/srv" "$("${S[@]}" run --rm deb)"
  expect "$who: Env from the image, -e and -w from flags" "yes flag /tmp" \
    "$("${S[@]}" run --rm -e FROM_FLAG=flag -w /tmp deb /bin/sh -c 'echo $STRATA_FROM_IMAGE $FROM_FLAG $(pwd)')"
  "${S[@]}" run --name pkg -v "$WORK/debs:/debs:ro" deb dpkg -i /debs/strata-app_1.0_all.deb >/dev/null
  local out
  out=$("${S[@]}" run --rm -v "$WORK/debs:/debs:ro" deb /bin/sh -c \
    'dpkg -i /debs/strata-app_1.0_all.deb >/dev/null && id -u strata-app &&
     ls -ln /usr/share/strata-app/data | cut -d" " -f3,4 &&
     stat -c "%u %g" /var/lib/strata-app && dpkg-query -W -f "\${Status}" strata-app')
  local app_uid
  app_uid=$(head -n1 <<<"$out")
  expect "$who: dpkg -i as root in the container: owners kept" \
    "1000 1000|$app_uid $app_uid|install ok installed" "$(sed -n 2p <<<"$out")|$(sed -n 3p <<<"$out")|$(sed -n 4p <<<"$out")"
  ((app_uid > 0 && app_uid < 1000)) || expect "$who: a system user id" "100..999" "$app_uid"
  # The named container's upper holds the owners, as host ids (rootless: subordinate).
  local upper=$store/containers/pkg/upper
  local base=0
  if [[ $who != root ]]; then base=$(($(awk -F: '$1 == "strata-test" { print $2 }' /etc/subuid) - 1)); fi
  expect "$who: the upper holds the files with their owners (host ids)" "$((base + 1000)) $((base + 1000))" \
    "$(stat -c '%u %g' "$upper/usr/share/strata-app/data")"
  "${S[@]}" rm pkg
}

suite root "$STORES/root-store"
if id strata-test >/dev/null 2>&1 && [[ $(stat -c %a /dev/fuse) == 666 ]]; then
  udir=$(mktemp -d "$STORES/user.XXXXXX")
  chown strata-test: "$udir" "$WORK"
  chmod 755 "$STORES"
  suite rootless "$udir/store" setpriv --reuid=strata-test --regid=strata-test --init-groups
  uid=$(id -u strata-test)
  sub_start=$(awk -F: '$1 == "strata-test" { print $2 }' /etc/subuid)
  expect "rootless: uid_map: root is the user, 1.. the subordinate range" "0 $uid 1|1 $sub_start 65536" \
    "$(setpriv --reuid=strata-test --regid=strata-test --init-groups "$STRATA_BIN" --root "$udir/store" \
      run --rm deb cat /proc/self/uid_map | awk '{print $1, $2, $3}' | paste -sd'|')"
else
  note "rootless part skipped: needs the user strata-test and /dev/fuse mode 0666 (tools/check sets both up)"
fi
finish "$start"
