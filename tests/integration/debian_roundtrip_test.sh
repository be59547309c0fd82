#!/usr/bin/env bash
# Round trips of a real Debian rootfs through the store, checked against independent tools:
#  1. `import tar` of the cached debootstrap tarball, `export --flatten`: equal to GNU tar's
#     extraction of the tarball.
#  2. `import oci` of the cached 3-layer umoci layout (whiteout, opaque dir), `export
#     --flatten`: equal to `umoci unpack` of the layout.
#  3. `import docker-archive` of the same image written by skopeo: the same flattened tree.
#  4. `export IMAGE -o DIR --tag t1` (OCI layout): digests and diff_ids check out, skopeo
#     inspects and copies it, umoci unpacks it to the same tree, and a fresh store imports
#     it back to the same tree.
#  5. Corner cases the Debian tree lacks (xattrs in every namespace, file capabilities,
#     access and default ACLs, devices, fifo, sparse file, huge ids, odd names, long paths,
#     mtimes 0 and 2100), through `import tar` and `import dir`.
# Trees are compared with treecmp.py (type, mode, owner, size, content, symlink target, rdev,
# mtime, xattrs/ACLs, hardlink groups). Needs root: umoci unpack and GNU tar must restore
# owners, devices and trusted.* xattrs.
. "$(dirname "$0")/lib.sh"

need_root "umoci unpack and GNU tar must restore owners, devices and trusted.* xattrs"
need_tools tar python3 umoci skopeo setfattr setfacl mknod mkfifo
need_strata
deb_tar=$(fixture debian-rootfs --tar)
deb_oci=$(fixture make-debian-oci)
setup_work
STORE=$STORES/store
total_start=$EPOCHREALTIME
note "tarball $deb_tar, OCI layout $deb_oci, work $WORK"

# oci_verify LAYOUT TAG: the manifest tagged TAG exists, every blob matches its digest and
# size, layers are gzip and their uncompressed sha256 equal the config's diff_ids.
oci_verify() {
  python3 - "$1" "$2" <<'EOF'
import gzip, hashlib, json, os, sys
layout, tag = sys.argv[1], sys.argv[2]
def fail(msg): sys.exit(f"oci_verify {layout}:{tag}: {msg}")
def blob(desc, what):
    alg, _, hexd = desc["digest"].partition(":")
    path = os.path.join(layout, "blobs", alg, hexd)
    if not os.path.isfile(path): fail(f"{what} {desc['digest']}: blob missing")
    data = open(path, "rb").read()
    if "sha256:" + hashlib.sha256(data).hexdigest() != desc["digest"]:
        fail(f"{what} {desc['digest']}: content does not match its digest")
    if len(data) != desc["size"]:
        fail(f"{what} {desc['digest']}: size {len(data)} != descriptor size {desc['size']}")
    return data
if json.load(open(os.path.join(layout, "oci-layout")))["imageLayoutVersion"] != "1.0.0":
    fail("oci-layout: bad imageLayoutVersion")
index = json.load(open(os.path.join(layout, "index.json")))
found = [m for m in index["manifests"]
         if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag]
if len(found) != 1: fail(f"index.json: {len(found)} manifests tagged {tag!r}")
manifest = json.loads(blob(found[0], "manifest"))
config = json.loads(blob(manifest["config"], "config"))
diff_ids = config["rootfs"]["diff_ids"]
if len(diff_ids) != len(manifest["layers"]):
    fail(f"{len(manifest['layers'])} layers but {len(diff_ids)} diff_ids")
for i, (desc, diff_id) in enumerate(zip(manifest["layers"], diff_ids)):
    if not desc["mediaType"].endswith("tar+gzip"): fail(f"layer {i}: mediaType {desc['mediaType']}")
    raw = gzip.decompress(blob(desc, f"layer {i}"))
    if "sha256:" + hashlib.sha256(raw).hexdigest() != diff_id:
        fail(f"layer {i} {desc['digest']}: uncompressed sha256 != diff_id {diff_id}")
print(f"{layout}:{tag}: {len(diff_ids)} layers, digests, sizes and diff_ids verified")
EOF
}

# --- 1. the Debian tarball ---------------------------------------------------------
step "GNU tar: extract the Debian tarball (reference)" gnu_extract "$deb_tar" "$WORK/ref-tar"
step "strata import tar (Debian tarball)" st import tar "$deb_tar" --name deb-tar:1
json_names images | grep -qx 'deb-tar:1' || fail "strata images does not list deb-tar:1 after importing it"
step "strata export --flatten + GNU tar extract (tar import)" flat_tree deb-tar:1 "$WORK/flat-tar"
check "compare: tar import vs GNU tar" tree_cmp --no-root "$WORK/ref-tar" "$WORK/flat-tar"
rm -rf "$WORK/flat-tar" "$WORK/flat-tar.tar"

# --- 2. the 3-layer OCI layout -----------------------------------------------------
step "umoci unpack of the OCI layout (reference)" umoci_unpack "$deb_oci:latest" "$WORK/ref-oci"
ref_oci=$WORK/ref-oci/rootfs
step "strata import oci (3 layers)" st import oci "$deb_oci:latest" --name deb-oci:1
inspect=$(st inspect deb-oci:1)
grep -q '/bin/bash' <<<"$inspect" ||
  fail "strata inspect deb-oci:1 does not show the image's Cmd (/bin/bash)"
step "strata export --flatten + GNU tar extract (OCI import)" flat_tree deb-oci:1 "$WORK/flat-oci"
check "compare: OCI import vs umoci unpack" tree_cmp --no-root "$ref_oci" "$WORK/flat-oci"
# The fixture's layer 3 in the result: a whiteout, a new file, an opaque directory.
[[ ! -e $WORK/flat-oci/usr/share/doc/dpkg && -d $WORK/flat-oci/usr/share/doc/apt ]] ||
  fail "layer 3's whiteout usr/share/doc/.wh.dpkg is not applied (or hides too much)"
[[ $(ls -A "$WORK/flat-oci/var/cache/apt") == replaced ]] ||
  fail "opaque /var/cache/apt holds $(ls -A "$WORK/flat-oci/var/cache/apt" | tr '\n' ' '), want only 'replaced'"

# --- 3. the same image as a docker-archive -----------------------------------------
step "skopeo copy oci → docker-archive" \
  skopeo copy --quiet "oci:$deb_oci:latest" "docker-archive:$WORK/deb.docker.tar:deb:1"
step "strata import docker-archive" st import docker-archive "$WORK/deb.docker.tar"
json_names images | grep -qx 'deb:1' ||
  fail "strata images does not list deb:1 (the archive's RepoTags) after import docker-archive"
step "strata export --flatten (docker-archive import)" \
  st export deb:1 --flatten -o "$WORK/flat-docker.tar"
if ! cmp -s "$WORK/flat-oci.tar" "$WORK/flat-docker.tar"; then
  # Same layers, same view: the export is documented to be byte-identical. Show how the
  # trees differ too.
  gnu_extract "$WORK/flat-docker.tar" "$WORK/flat-docker"
  tree_cmp --no-root "$WORK/flat-oci" "$WORK/flat-docker" || true
  fail "the flattened exports of deb-oci:1 and deb:1 (same image) differ"
fi
note "docker-archive import: flattened export byte-identical to the OCI import's"
rm -f "$WORK/deb.docker.tar" "$WORK/flat-docker.tar"

# --- 4. OCI export, checked by umoci and skopeo, and imported back -----------------
step "strata export -o DIR --tag t1 (OCI layout)" st export deb-oci:1 -o "$WORK/oci-out" --tag t1
check "verify the exported layout (digests, sizes, diff_ids)" oci_verify "$WORK/oci-out" t1
skopeo_inspect() { skopeo inspect "oci:$WORK/oci-out:t1" >"$WORK/inspect.json"; }
step "skopeo inspect oci:OUT:t1" skopeo_inspect
python3 - "$WORK/inspect.json" <<'EOF' ||
import json, sys
doc = json.load(open(sys.argv[1]))
assert len(doc["Layers"]) == 3, f"skopeo inspect: {len(doc['Layers'])} layers, want 3"
path = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
assert path in doc["Env"], f"skopeo inspect: Env {doc['Env']} lacks {path}"
EOF
  fail "skopeo inspect of the exported layout: unexpected content (above)"
check "skopeo copy oci:OUT:t1 oci:COPY:t1" \
  skopeo copy --quiet "oci:$WORK/oci-out:t1" "oci:$WORK/oci-copy:t1"
step "umoci unpack of the exported layout" umoci_unpack "$WORK/oci-out:t1" "$WORK/unpack-out"
check "compare: umoci unpack of strata's export vs of the original" \
  tree_cmp "$ref_oci" "$WORK/unpack-out/rootfs"
rm -rf "$WORK/unpack-out" "$WORK/oci-copy"
STORE=$STORES/store2 step "strata import oci of the export into a fresh store" \
  st import oci "$WORK/oci-out:t1" --name back:1
STORE=$STORES/store2 step "strata export --flatten + GNU tar extract (re-import)" \
  flat_tree back:1 "$WORK/flat-back"
check "compare: re-imported export vs umoci unpack" tree_cmp --no-root "$ref_oci" "$WORK/flat-back"
rm -rf "$WORK/flat-back" "$WORK/flat-back.tar" "$STORES/store2" "$WORK/flat-oci" "$WORK/flat-oci.tar"

# --- 5. corner cases ------------------------------------------------------------------
# make_edge_tree DIR: one of each thing the Debian tree lacks.
make_edge_tree() {
  local d=$1 i long=''
  mkdir -p "$d"/{sub/deeper,sgid-dir,sticky,acl-dir,empty-dir}
  echo "plain file" >"$d/plain"
  : >"$d/empty"
  printf '#!/bin/sh\n' >"$d/suid" && chmod 4755 "$d/suid"
  printf '#!/bin/sh\n' >"$d/sgid" && chmod 2711 "$d/sgid"
  chmod 2775 "$d/sgid-dir"
  chmod 1777 "$d/sticky"
  chmod 0000 "$d/empty"
  echo "big ids" >"$d/big-ids" && chown 1000000:4000000 "$d/big-ids"
  echo "nobody" >"$d/nobody" && chown 65534:65534 "$d/nobody"
  echo "xattrs" >"$d/xattrs"
  setfattr -n user.demo -v hello "$d/xattrs"
  setfattr -n user.empty "$d/xattrs"
  setfattr -n user.binary -v 0x00ff00fe0a "$d/xattrs"
  setfattr -n trusted.demo -v "trusted value" "$d/xattrs"
  setfattr -n user.big -v "$(head -c 3000 /dev/zero | tr '\0' x)" "$d/xattrs"
  echo "capability" >"$d/cap"
  # security.capability v2: effective, permitted cap_net_raw (bit 13).
  setfattr -n security.capability -v 0x0100000200200000000000000000000000000000 "$d/cap"
  echo "acl" >"$d/acl-file"
  setfacl -m u:1:rwx,u:54321:r--,g:100:r-x,m::rwx "$d/acl-file"
  setfacl -m u:54321:r-x "$d/acl-dir"
  setfacl -d -m u:1:rwx,g:100:r-x,g::r-x,o::--- "$d/acl-dir"
  setfattr -n user.on-dir -v yes "$d/sub"
  mknod "$d/chr" c 1 3
  mknod "$d/blk" b 7 200
  mknod "$d/chr-big" c 300 70000
  mkfifo "$d/fifo"
  echo "three names" >"$d/hl-a"
  ln "$d/hl-a" "$d/sub/hl-b"
  ln "$d/hl-a" "$d/sub/deeper/hl-c"
  echo "two names" >"$d/sub/pair-1" && ln "$d/sub/pair-1" "$d/pair-2"
  ln -s /etc/passwd "$d/sym-abs"
  ln -s ../nowhere/at/all "$d/sub/sym-dangling"
  ln -s "$(printf 'x%.0s' {1..1000})" "$d/sym-long"
  truncate -s 8M "$d/sparse" && printf 'middle' | dd of="$d/sparse" bs=1 seek=4194304 conv=notrunc status=none
  head -c 3000000 /dev/urandom >"$d/random-3m"
  touch "$d/$(printf 'n%.0s' {1..255})"
  touch "$d/"$'caf\xe9' "$d/"$'new\nline' "$d/with space" "$d/-dash" "$d/.hidden"
  for i in $(seq -w 1 30); do long+="segment-$i/"; done
  mkdir -p "$d/$long" && echo "long path" >"$d/${long}file"
  echo "epoch" >"$d/epoch" && touch -d @0 "$d/epoch"
  echo "future" >"$d/future" && touch -d @4102444800 "$d/future"
  touch -h -d @1000000000 "$d/sym-abs"
  # Directory mtimes last, deepest first (touching a directory leaves its parent alone).
  find "$d" -depth -type d -exec touch -d @1700000000 {} +
}
step "make the corner-case tree" make_edge_tree "$WORK/edge"
edge_tar_ref() {
  tar --create --file "$WORK/edge.tar" --xattrs --xattrs-include='*' --acls --numeric-owner \
    -C "$WORK/edge" . &&
    gnu_extract "$WORK/edge.tar" "$WORK/ref-edge"
}
step "GNU tar: create and extract the corner-case tarball" edge_tar_ref
# The reference itself: GNU tar must reproduce the source tree exactly.
tree_cmp "$WORK/edge" "$WORK/ref-edge" ||
  fail "GNU tar does not round-trip the corner-case tree (a fixture problem, not strata's)"
step "strata import dir (corner cases)" st import dir "$WORK/edge" --name edge-dir:1
step "strata export --flatten + GNU tar extract (corner cases, dir)" flat_tree edge-dir:1 "$WORK/flat-edge-dir"
check "compare: corner cases, dir import vs the directory" tree_cmp --no-root "$WORK/edge" "$WORK/flat-edge-dir"
# Last: the tar import depends on how GNU tar writes ACLs (SCHILY.acl.* with user and
# group names, plus SCHILY.xattr.system.posix_acl_* with numeric ids).
step "strata import tar (corner cases)" st import tar "$WORK/edge.tar" --name edge-tar:1
step "strata export --flatten + GNU tar extract (corner cases, tar)" flat_tree edge-tar:1 "$WORK/flat-edge-tar"
check "compare: corner cases, tar import vs GNU tar" tree_cmp --no-root "$WORK/ref-edge" "$WORK/flat-edge-tar"
step "strata fsck" st fsck
finish "$total_start"
