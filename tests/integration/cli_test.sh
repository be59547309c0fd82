#!/usr/bin/env bash
# cli_test: drives the real `strata` binary on a small directory tree:
# import dir/tar, images (table and --json), layers, inspect, tag, rmi, df,
# gc, export --flatten, fsck (clean, then with a corrupted blob, then
# --repair), and the one-line errors for a missing image, a missing store and
# a store of a newer format.
#
# Environment (set by ctest): STRATA_BIN, the binary. Exit 77 = skipped.
set -euo pipefail

if [[ -z ${STRATA_BIN:-} || ! -x ${STRATA_BIN:-} ]]; then
  echo "SKIP: STRATA_BIN is not set to an executable strata binary" >&2
  exit 77
fi
if ! command -v python3 >/dev/null; then
  echo "SKIP: needs python3 to parse --json output" >&2
  exit 77
fi

work=$(mktemp -d /tmp/strata-cli-test.XXXXXX)
cleanup() {
  chmod -R u+w "$work" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

export STRATA_ROOT=$work/store
unset SPDLOG_LEVEL

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
step() { echo "--- $*"; }

# run CMD...: runs strata, keeping stdout in $out; fails on a non-zero exit.
run() {
  local rc=0
  out=$("$STRATA_BIN" "$@" 2>"$work/err") || rc=$?
  ((rc == 0)) || fail "strata $*: exit $rc: $(cat "$work/err")"
}

# expect_error WANT CMD...: strata must exit 1 with exactly one line on
# stderr, and that line must contain WANT.
expect_error() {
  local want=$1 rc=0
  shift
  out=$("$STRATA_BIN" "$@" 2>"$work/err") || rc=$?
  ((rc == 1)) || fail "strata $*: exit $rc, want 1 (stderr: $(cat "$work/err"))"
  (($(wc -l <"$work/err") == 1)) ||
    fail "strata $*: want one line on stderr, got: $(cat "$work/err")"
  grep -qF -- "$want" "$work/err" ||
    fail "strata $*: stderr does not name '$want': $(cat "$work/err")"
  [[ $(cat "$work/err") == strata:* ]] ||
    fail "strata $*: error line does not start with 'strata:'"
}

# json EXPR: evaluates a Python expression over the JSON in $out (as `j`).
json() { python3 -c "import json,sys; j=json.loads(sys.stdin.read()); print($1)" <<<"$out"; }

step "an empty store lists nothing and df explains"
run images
[[ $out == "NAME"*"ID"*"LAYERS"*"SIZE"*"CREATED" ]] || fail "images header: $out"
run images --json
[[ $(json 'len(j)') == 0 ]] || fail "images --json on no store: $out"
run layers --root "$work/nowhere"
[[ $(wc -l <<<"$out") == 1 ]] || fail "layers on no store: $out"
expect_error "no store at $STRATA_ROOT" df

step "import dir"
src=$work/src
mkdir -p "$src/etc" "$src/bin" "$src/usr/share/doc" "$src/empty"
echo "box" >"$src/etc/hostname"
head -c 100000 /dev/urandom >"$src/bin/tool"
ln "$src/bin/tool" "$src/bin/tool-hardlink"
ln -s tool "$src/bin/alias"
printf 'read me\n' >"$src/usr/share/doc/README"
run import dir "$src" --name app:1
id=$out
[[ $id =~ ^sha256:[0-9a-f]{64}$ ]] || fail "import dir printed '$id', want an image id"

step "images"
run images
grep -q "^app:1 .* ${id:7:12} .* 1 " <<<"$out" || fail "images lacks app:1 with its id: $out"
run images --json
[[ $(json 'j[0]["name"]') == app:1 ]] || fail "images --json name: $out"
[[ $(json 'j[0]["id"]') == "$id" ]] || fail "images --json id: $out"
[[ $(json 'j[0]["size"] >= 100000') == True ]] || fail "images --json size: $out"

step "layers and inspect"
run layers
grep -q "dir:$src" <<<"$out" || fail "layers lacks the source: $out"
run inspect app:1
[[ $(json 'j["name"]') == app:1 ]] || fail "inspect name: $out"
[[ $(json 'len(j["layers"])') == 1 ]] || fail "inspect layers: $out"
[[ $(json 'j["view"]["inodes"]') -ge 8 ]] || fail "inspect view inodes: $out"
[[ $(json '"rootfs" in j["config"]') == True ]] || fail "inspect config: $out"

step "tag"
run tag app:1 copy
run images --json
[[ $(json 'sorted(i["name"] for i in j)') == "['app:1', 'copy:latest']" ]] ||
  fail "images after tag: $out"
[[ $(json 'len(set(i["id"] for i in j))') == 1 ]] || fail "tag changed the id: $out"

step "import tar and df see the shared content once"
tar -C "$src" -cf "$work/src.tar" .
run import tar "$work/src.tar" --name fromtar:1
run df --json
[[ $(json 'j["images"]') == 3 ]] || fail "df images: $out"
# Three names, two distinct images (a tag is a name, not a copy): the
# shared content is stored once, so one copy is saved.
[[ $(json 'j["dedup_saved"] >= 100000 and j["logical_bytes"] < 2 * 100000 + 1000') == True ]] ||
  fail "df: two images of the same files should save one copy: $out"
run df
[[ $(head -1 <<<"$out") == "IMAGES"*"LAYERS"*"BLOBS"*"LOGICAL"*"STORED"*"SAVED BY DEDUP" ]] ||
  fail "df header: $out"

step "export --flatten"
run export fromtar:1 --flatten -o "$work/flat.tar"
# Listed first, then searched: `tar | grep -q` under pipefail fails when grep
# exits early and tar gets SIGPIPE.
members=$(tar -tf "$work/flat.tar")
grep -q "bin/tool$" <<<"$members" || fail "flat export lacks bin/tool: $members"

step "rmi and gc"
run rmi app:1 copy
grep -q "app:1" <<<"$out" || fail "rmi output: $out"
run images --json
[[ $(json '[i["name"] for i in j]') == "['fromtar:1']" ]] || fail "images after rmi: $out"
run gc
[[ $out == "removed 1 layer, 1 view, "* ]] || fail "gc: $out"
run gc
[[ $out == "removed 0 layers, 0 views, 0 blobs; freed 0B" ]] || fail "second gc: $out"

step "fsck: clean, corrupt, repaired"
run fsck
grep -q "0 problems" <<<"$out" || fail "fsck of a clean store: $out"
blob=$(find "$STRATA_ROOT/blobs" -type f -size +90k | head -1)
[[ -n $blob ]] || fail "no blob file for bin/tool"
chmod u+w "$blob"
head -c 100000 /dev/zero >"$blob"
expect_error "fsck" fsck
grep -q "^problem: blob .*(corrupt)" <<<"$out" || fail "fsck missed the corrupt blob: $out"
grep -q "^problem: image fromtar:1" <<<"$out" || fail "fsck did not name the image: $out"
run fsck --repair
grep -q "removed image fromtar:1" <<<"$out" || fail "fsck --repair did not say what it did: $out"
[[ ! -e $blob ]] || fail "fsck --repair left the corrupt blob"
run images --json
[[ $(json 'len(j)') == 0 ]] || fail "images after repair: $out"
run fsck
grep -q "0 problems" <<<"$out" || fail "fsck after repair: $out"

step "errors name the object"
expect_error 'image "missing:1" not found' inspect missing:1
expect_error 'image "missing" not found' rmi missing
expect_error 'image "missing" not found' tag missing other
expect_error "image name" import dir "$src" --name 'Bad Name'
expect_error "$work/does-not-exist" import dir "$work/does-not-exist" --name x

step "a store of a newer format is refused"
if command -v mdb_dump >/dev/null && command -v mdb_load >/dev/null; then
  # meta["format"] is a big-endian u32; mdb_load overwrites existing keys.
  mdb_dump -s meta "$STRATA_ROOT/index" >"$work/meta.dump"
  python3 - "$work/meta.dump" <<'EOF'
import sys
lines = open(sys.argv[1]).read().split("\n")
i = lines.index(" 666f726d6174")  # "format"
lines[i + 1] = " 00000063"        # 99
# mdb_load 0.9.24 does not know this header line that mdb_dump writes.
lines = [l for l in lines if not l.startswith("db_pagesize=")]
open(sys.argv[1], "w").write("\n".join(lines))
EOF
  mdb_load -s meta "$STRATA_ROOT/index" <"$work/meta.dump"
  expect_error "store format 99 is newer" images
  expect_error "store format 99 is newer" import dir "$src" --name app:1
else
  echo "(skipped: mdb_dump/mdb_load from lmdb-utils not installed)"
fi

echo "PASS"
