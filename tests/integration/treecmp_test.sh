#!/usr/bin/env bash
# treecmp.py is the oracle of the round-trip tests, so check that it sees what it must:
# a tree equals its `cp -a` copy, and each single perturbation of the copy (mode, content
# of the same size, mtime, owner, xattr, ACL, symlink target, hardlink group, file type,
# an extra or a missing name) is reported on exactly one line naming the path.
# Needs no strata binary; owner and trusted.* checks run as root only.
. "$(dirname "$0")/lib.sh"

need_tools python3 setfattr
setup_work
a=$WORK/a
mkdir -p "$a/d/sub"
echo "same size 1" >"$a/d/file"
echo "hardlinked" >"$a/d/h1" && ln "$a/d/h1" "$a/d/sub/h2"
ln -s file "$a/d/link"
setfattr -n user.k -v v1 "$a/d/file"
mkfifo "$a/d/fifo"
touch -d @1700000000 "$a/d/file" "$a/d/h1"
have_acl=0
if command -v setfacl >/dev/null && setfacl -m u:1:r "$a/d/file" 2>/dev/null; then have_acl=1; fi

copy() {
  rm -rf "$WORK/b"
  cp -a "$a" "$WORK/b"
}
problems=0
# expect_one PATH WHAT: treecmp reports exactly one difference, on PATH, about WHAT.
expect_one() {
  local out rc=0
  out=$(python3 "$TREECMP" "$a" "$WORK/b" 2>/dev/null) || rc=$?
  if ((rc != 1)) || [[ $(grep -c '' <<<"$out") != 1 || $out != "$1: $2"* ]]; then
    printf '  after perturbing %s (%s): exit %d, output:\n%s\n' "$1" "$2" "$rc" "$out"
    problems=$((problems + 1))
  fi
}

copy
python3 "$TREECMP" --summary "$a" "$WORK/b" || fail "a tree differs from its cp -a copy"

copy && chmod 4644 "$WORK/b/d/file" && expect_one d/file mode
copy && echo "same size 2" >"$WORK/b/d/file" && touch -d @1700000000 "$WORK/b/d/file" &&
  expect_one d/file sha256
copy && touch -d @1700000001 "$WORK/b/d/file" && expect_one d/file mtime
copy && setfattr -n user.k -v v2 "$WORK/b/d/file" && expect_one d/file "xattr user.k"
copy && setfattr -x user.k "$WORK/b/d/file" && expect_one d/file "xattr user.k"
if ((have_acl)); then
  copy && setfacl -m u:2:r "$WORK/b/d/file" && expect_one d/file "xattr system.posix_acl_access"
fi
copy && ln -sfn fild "$WORK/b/d/link" && touch -h -r "$a/d/link" "$WORK/b/d/link" &&
  touch -r "$a/d" "$WORK/b/d" && expect_one d/link "symlink target"
copy && rm "$WORK/b/d/fifo" && touch "$WORK/b/d/fifo" && touch -r "$a/d/fifo" "$WORK/b/d/fifo" &&
  touch -r "$a/d" "$WORK/b/d" && expect_one d/fifo type
copy && touch "$WORK/b/d/extra" && touch -r "$a/d" "$WORK/b/d" && expect_one d/extra "only in B"
copy && rm "$WORK/b/d/fifo" && touch -r "$a/d" "$WORK/b/d" && expect_one d/fifo "only in A"
# Splitting a hardlink pair changes the group of both names: two lines, both named.
copy && cp -p "$WORK/b/d/h1" "$WORK/b/d/h1.new" && mv "$WORK/b/d/h1.new" "$WORK/b/d/h1" &&
  touch -r "$a/d" "$WORK/b/d"
out=$(python3 "$TREECMP" "$a" "$WORK/b" 2>/dev/null || true)
if [[ $out != *"d/h1: hardlink group"* || $out != *"d/sub/h2: hardlink group"* ]]; then
  printf '  after splitting the hardlink d/h1 = d/sub/h2:\n%s\n' "$out"
  problems=$((problems + 1))
fi
if ((EUID == 0)); then
  copy && chown -h 5 "$WORK/b/d/file" && expect_one d/file uid
  copy && setfattr -n trusted.k -v x "$WORK/b/d/file" && expect_one d/file "xattr trusted.k"
fi
((problems == 0)) || fail "$problems perturbations misreported (above)"
note PASS
