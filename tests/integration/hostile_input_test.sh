#!/usr/bin/env bash
# Hostile and broken inputs (tests/fixtures/hostile/make-corpus): every one is refused with
# exit 1 and one stderr line "strata: ..." naming the member or digest at fault, nothing is
# written outside the store, and the store is left with no image, no layer, a clean fsck
# and (after gc) no blob. Then the positive controls import, and the flattened export of
# good.tar shows the whiteout/opaque rules: a whiteout of a missing name hides nothing and
# leaves no trace; an opaque directory keeps its own children.
. "$(dirname "$0")/lib.sh"

need_tools python3 tar zstd
need_strata
setup_work
STORE=$STORES/store
corpus=$WORK/corpus
step "make-corpus" python3 "$FIXTURES/hostile/make-corpus" "$corpus"

# Places a member could reach if paths were not contained: the importer runs in
# $WORK/cwd, the store is $STORES/store.
escapes=("$WORK/evil" "$WORK/cwd/evil" "$WORK/tmp/evil" "$STORES/evil" "$STORES/etc/passwd" "$STORES/tmp/evil"
  /etc/evil /evil /tmp/evil "$WORK/etc/passwd")
preexisting=()
for f in "${escapes[@]}"; do
  if [[ -e $f ]]; then preexisting+=("$f"); fi
done
mkdir "$WORK/cwd"

# layer_digest LAYOUT: the digest of the layer blob named by the layout's only manifest.
layer_digest() {
  python3 -c '
import json, os, sys
root = sys.argv[1]
def blob(d): return os.path.join(root, "blobs", *d["digest"].split(":"))
index = json.load(open(os.path.join(root, "index.json")))
print(json.load(open(blob(index["manifests"][0])))["layers"][0]["digest"])' "$1"
}

long_n=$(printf 'n%.0s' {1..20})
deep_a=$(printf 'a/%.0s' {1..8})
bad_digest=$(layer_digest "$corpus/oci-bad-digest")
missing_digest=$(layer_digest "$corpus/oci-missing-blob")
# input|import kind|what the error must name ("A|B": either)
cases=(
  "dotdot.tar|tar|../evil"
  "absolute.tar|tar|/etc/evil"
  "symlink-escape.tar|tar|lib/passwd|up/tmp/evil"
  "hardlink-missing.tar|tar|does-not-exist|d/link"
  "truncated.tar.gz|tar|truncated.tar.gz"
  "corrupt.tar.zst|tar|corrupt.tar.zst"
  "longname.tar|tar|$long_n"
  "deep.tar|tar|$deep_a"
  "empty-whiteout.tar|tar|.wh."
  "oci-bad-digest|oci|$bad_digest|${bad_digest:7:12}"
  "oci-missing-blob|oci|$missing_digest|${missing_digest:7:12}"
)
problems=0 i=0
start=$EPOCHREALTIME
cd "$WORK/cwd" || fail "cannot cd to $WORK/cwd"
for c in "${cases[@]}"; do
  IFS='|' read -r input kind want <<<"$c"
  i=$((i + 1))
  note "import $kind $input (must name ${want//|/ or })"
  if ! expect_error "$want" st import "$kind" "$corpus/$input" --name "hostile$i:1"; then
    problems=$((problems + 1))
  fi
done
cd "$WORK" || fail "cannot cd to $WORK"
printf '[%s] %7ss  %s\n' "$TEST_NAME" "$(elapsed "$start")" "${#cases[@]} hostile imports"

for f in "${escapes[@]}"; do
  if [[ -e $f && " ${preexisting[*]} " != *" $f "* ]]; then
    echo "  $f was created by a hostile import"
    problems=$((problems + 1))
  fi
done
if [[ -n $(ls -A "$WORK/cwd") ]]; then
  echo "  the importer's working directory is not empty: $(ls -A "$WORK/cwd" | tr '\n' ' ')"
  problems=$((problems + 1))
fi

# The store: nothing visible, consistent, and gc leaves no blob behind.
images=$(json_names images)
layers=$(json_names layers)
if [[ -n $images ]]; then
  printf '  strata images --json lists images after only failed imports:\n%s\n' "$images"
  problems=$((problems + 1))
fi
if [[ -n $layers ]]; then
  printf '  strata layers --json lists layers after only failed imports:\n%s\n' "$layers"
  problems=$((problems + 1))
fi
if st images | grep -q hostile; then
  echo "  strata images lists a hostile image: $(st images | grep hostile)"
  problems=$((problems + 1))
fi
if ! out=$(st fsck 2>&1); then
  printf '  strata fsck fails after the hostile imports:\n%s\n' "$out"
  problems=$((problems + 1))
fi
if ! out=$(st gc 2>&1); then
  printf '  strata gc fails after the hostile imports:\n%s\n' "$out"
  problems=$((problems + 1))
fi
if (($(count_blobs "$STORE") != 0)); then
  echo "  $(count_blobs "$STORE") blobs left in $STORE/blobs after gc with no image"
  problems=$((problems + 1))
fi
if ((problems == 0)); then
  note "every hostile input refused; store empty and clean"
else
  note "$problems problems with hostile inputs (listed above); going on with the positive controls"
fi

# --- the positive controls ------------------------------------------------------------
step "strata import tar good.tar" st import tar "$corpus/good.tar" --name good:1
step "strata export --flatten + GNU tar extract (good.tar)" flat_tree good:1 "$WORK/good"
g=$WORK/good
listing=$(cd "$g" && find . -mindepth 1 | LC_ALL=C sort | tr '\n' ' ')
[[ $listing == './d ./d/file ./d/hard ./d/sub ./d/sub/link ' ]] ||
  fail "good.tar flattened: entries are '$listing', want ./d ./d/file ./d/hard ./d/sub ./d/sub/link (the opaque dir keeps its own children; the whiteout .wh.gone hides nothing and is not exported)"
[[ $(cat "$g/d/file") == "positive control" ]] || fail "good.tar: d/file content is '$(cat "$g/d/file")'"
[[ $(stat -c %i "$g/d/file") == $(stat -c %i "$g/d/hard") ]] || fail "good.tar: d/hard is not a hardlink of d/file"
[[ $(readlink "$g/d/sub/link") == ../file ]] || fail "good.tar: d/sub/link -> $(readlink "$g/d/sub/link"), want ../file"
[[ $(stat -c '%a %Y' "$g/d/file") == '644 1700000000' ]] ||
  fail "good.tar: d/file mode and mtime are $(stat -c '%a %Y' "$g/d/file"), want 644 1700000000"
python3 -c 'import os, sys; v = os.getxattr(sys.argv[1], "user.demo"); assert v == b"hello", v' "$g/d/file" ||
  fail "good.tar: d/file lacks xattr user.demo=hello"

# The layer itself keeps its whiteout and opaque marker.
diff_id=sha256:$(sha256sum "$corpus/good.tar" | cut -d' ' -f1)
step "strata export --layer (good.tar's layer)" st export --layer "$diff_id" -o "$WORK/good-layer.tar"
members=$(tar -tf "$WORK/good-layer.tar" | sed 's|^\./||; s|/$||' | LC_ALL=C sort | tr '\n' ' ')
[[ $members == *'.wh.gone '* && $members == *'d/.wh..wh..opq '* ]] ||
  fail "export --layer of good.tar: members '$members' lack .wh.gone or d/.wh..wh..opq"

step "strata import oci oci-good" st import oci "$corpus/oci-good" --name oci-good:1
step "strata export --flatten + GNU tar extract (oci-good)" flat_tree oci-good:1 "$WORK/oci-good"
step "compare: oci-good vs good.tar" tree_cmp --no-root "$WORK/good" "$WORK/oci-good"
step "strata fsck" st fsck
((problems == 0)) || fail "$problems problems with hostile inputs (listed above); positive controls fine"
note PASS
