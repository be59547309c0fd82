#!/usr/bin/env python3
"""treecmp.py [options] A B: compare two directory trees, metadata and content.

For every path under A and B (symlinks are never followed; names are bytes, so
non-UTF-8 names work) it compares: file type, permission bits including
setuid/setgid/sticky, uid, gid, size (not for directories), sha256 of regular
file contents, symlink target, rdev of devices, mtime in whole seconds, every
xattr (os.listxattr/getxattr with follow_symlinks=False; POSIX ACLs appear as
system.posix_acl_access / system.posix_acl_default), and hardlink groups: the set
of paths that share an inode with a path must be the same set in both trees.

Prints one line per difference, "PATH: what: A-value != B-value" (PATH relative,
"." for the roots), at most --max lines plus a count, and exits 1 if the trees
differ, 0 if they are equal, 2 on a usage error.

Options:
  --exclude REL      leave out REL and everything under it (repeatable)
  --no-root          do not compare the two root directories themselves
  --no-mtime REL     do not compare the mtime of REL (repeatable; "." for roots)
  --max N            print at most N differences (default 40)
  --summary          print "N paths compared, equal" on success
"""

import argparse
import hashlib
import os
import stat
import sys

TYPES = [
    (stat.S_ISREG, "file"),
    (stat.S_ISDIR, "dir"),
    (stat.S_ISLNK, "symlink"),
    (stat.S_ISCHR, "chardev"),
    (stat.S_ISBLK, "blockdev"),
    (stat.S_ISFIFO, "fifo"),
    (stat.S_ISSOCK, "socket"),
]


def kind(mode):
    for test, name in TYPES:
        if test(mode):
            return name
    return "unknown"


def show(rel):
    """A printable path: bytes as UTF-8 where valid, \\xNN otherwise."""
    if not rel:
        return "."
    text = rel.decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                return h.hexdigest()
            h.update(chunk)


def xattrs(path):
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as e:
        return {"<listxattr error>": str(e).encode()}
    out = {}
    for name in sorted(names):
        try:
            out[name] = os.getxattr(path, name, follow_symlinks=False)
        except OSError as e:
            out[name] = f"<getxattr error {e}>".encode()
    return out


def fmt_xattr(value):
    if value is None:
        return "(absent)"
    if len(value) > 64:
        return f"{len(value)} bytes sha256:{hashlib.sha256(value).hexdigest()[:16]}"
    return repr(value)


def scan(root, excludes):
    """rel path (bytes, b"" for the root) -> (lstat result, absolute path)."""
    root = os.fsencode(root)
    out = {b"": (os.lstat(root), root)}
    stack = [b""]
    while stack:
        rel = stack.pop()
        base = os.path.join(root, rel) if rel else root
        with os.scandir(base) as it:
            for entry in it:
                sub = os.path.join(rel, entry.name) if rel else entry.name
                if sub in excludes:
                    continue
                st = entry.stat(follow_symlinks=False)
                out[sub] = (st, entry.path)
                if stat.S_ISDIR(st.st_mode):
                    stack.append(sub)
    return out


def link_groups(tree):
    """rel -> frozenset of rels sharing its inode (non-directories with nlink > 1)."""
    by_inode = {}
    for rel, (st, _) in tree.items():
        if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
            by_inode.setdefault((st.st_dev, st.st_ino), []).append(rel)
    groups = {}
    for rels in by_inode.values():
        group = frozenset(rels)
        for rel in rels:
            groups[rel] = group
    return groups


def compare(a, b, opts):
    excludes = {os.fsencode(e.strip("/")) for e in opts.exclude}
    no_mtime = {b"" if m in (".", "./", "/") else os.fsencode(m.strip("/")) for m in opts.no_mtime}
    ta, tb = scan(a, excludes), scan(b, excludes)
    if opts.no_root:
        del ta[b""], tb[b""]
    ga, gb = link_groups(ta), link_groups(tb)
    diffs = []

    def diff(rel, what, va, vb):
        diffs.append(f"{show(rel)}: {what}: {va} != {vb}")

    for rel in sorted(set(ta) | set(tb)):
        if rel not in tb:
            diffs.append(f"{show(rel)}: only in A ({kind(ta[rel][0].st_mode)})")
            continue
        if rel not in ta:
            diffs.append(f"{show(rel)}: only in B ({kind(tb[rel][0].st_mode)})")
            continue
        (sa, pa), (sb, pb) = ta[rel], tb[rel]
        ka, kb = kind(sa.st_mode), kind(sb.st_mode)
        if ka != kb:
            diff(rel, "type", ka, kb)
            continue
        if stat.S_IMODE(sa.st_mode) != stat.S_IMODE(sb.st_mode):
            diff(rel, "mode", f"{stat.S_IMODE(sa.st_mode):04o}", f"{stat.S_IMODE(sb.st_mode):04o}")
        if sa.st_uid != sb.st_uid:
            diff(rel, "uid", sa.st_uid, sb.st_uid)
        if sa.st_gid != sb.st_gid:
            diff(rel, "gid", sa.st_gid, sb.st_gid)
        if ka != "dir" and sa.st_size != sb.st_size:
            diff(rel, "size", sa.st_size, sb.st_size)
        if ka == "file" and sa.st_size == sb.st_size:
            ha, hb = sha256(pa), sha256(pb)
            if ha != hb:
                diff(rel, "sha256", ha[:16], hb[:16])
        if ka == "symlink":
            la, lb = os.readlink(pa), os.readlink(pb)
            if la != lb:
                diff(rel, "symlink target", show(la), show(lb))
        if ka in ("chardev", "blockdev") and sa.st_rdev != sb.st_rdev:
            diff(rel, "rdev", f"{os.major(sa.st_rdev)},{os.minor(sa.st_rdev)}",
                 f"{os.major(sb.st_rdev)},{os.minor(sb.st_rdev)}")
        if rel not in no_mtime and int(sa.st_mtime) != int(sb.st_mtime):
            diff(rel, "mtime", int(sa.st_mtime), int(sb.st_mtime))
        xa, xb = xattrs(pa), xattrs(pb)
        for name in sorted(set(xa) | set(xb)):
            if xa.get(name) != xb.get(name):
                diff(rel, f"xattr {name}", fmt_xattr(xa.get(name)), fmt_xattr(xb.get(name)))
        grp_a, grp_b = ga.get(rel, frozenset([rel])), gb.get(rel, frozenset([rel]))
        if grp_a != grp_b:
            diff(rel, "hardlink group", sorted(show(r) for r in grp_a), sorted(show(r) for r in grp_b))

    return len(ta), diffs


def main():
    p = argparse.ArgumentParser(description="compare two directory trees", add_help=True)
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--exclude", action="append", default=[])
    p.add_argument("--no-mtime", action="append", default=[])
    p.add_argument("--no-root", action="store_true")
    p.add_argument("--max", type=int, default=40)
    p.add_argument("--summary", action="store_true")
    opts = p.parse_args()
    for d in (opts.a, opts.b):
        if not os.path.isdir(d):
            print(f"treecmp: {d}: not a directory", file=sys.stderr)
            return 2
    n, diffs = compare(opts.a, opts.b, opts)
    for line in diffs[: opts.max]:
        print(line)
    if len(diffs) > opts.max:
        print(f"... and {len(diffs) - opts.max} more differences")
    if diffs:
        print(f"treecmp: {opts.a} and {opts.b} differ ({len(diffs)} differences)", file=sys.stderr)
        return 1
    if opts.summary:
        print(f"treecmp: {n} paths compared, equal")
    return 0


if __name__ == "__main__":
    sys.exit(main())
