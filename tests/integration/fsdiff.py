#!/usr/bin/env python3
"""fsdiff: differential test of a userspace union filesystem against kernel overlayfs.

A seeded random generator of filesystem operations is applied in lockstep to two unions
mounted over the same lower layers, each with its own upper and work directory:

  oracle   kernel overlayfs (mount -t overlay), the reference for union semantics
  subject  strata-overlay (default), fuse-overlayfs, or a second kernel overlayfs
           ("kernel": a self-check of the harness, which must never diverge)

Every operation's outcome is compared: success and the data it returned, or the errno
name. Every K operations, before and after an unmount/remount of both unions, and at the
end, the whole trees are compared (type, mode, owner, size, content, symlink target,
nlink, user.* xattrs, readdir, hardlink groups) and each union is checked on its own for
st_ino == d_ino and for st_ino kept across copy-up and across remount. The first
divergence is minimized by delta debugging (replaying subsequences of the operations on
fresh uppers) and printed as a small Python reproducer. Exit status: 0 no divergence,
1 divergence (or harness error), 77 cannot run here (not root, no overlayfs, no subject).

Comparison rules worth knowing:
  * st_ino values are never compared across the unions. Outcome keys named inv_* are
    invariants each union must keep on its own: stat st_ino == readdir d_ino, st_ino
    kept across copy-up (write, chmod, rename ...) and across remount, link() names
    share st_ino. The subject must keep them even where the oracle does not (kernel
    overlayfs breaks st_ino == d_ino for a merged directory whose upper part has no
    overlay.origin; that is reported as a note), except with --subject kernel.
  * mtime: all lower-layer files and all times set by utime ops are "pinned" values
    (before PIN_LIMIT, years ago); a time after it is shown as "recent". So a pinned
    mtime must be kept exactly (copy-up, chmod, rename ...), and a time the union itself
    set (now) is compared only as "recent". atime is compared only right after utime.
  * Directory st_nlink: kernel overlayfs reports 1 for merged directories (a convention
    `find` understands), else the real count. A directory's nlink is shown as "X" when
    it is exact (2 + number of subdirectories); where the oracle shows 1 the subject may
    show 1 or the exact count, anything else is a divergence.
  * Operations run in a child process chrooted into each union, so symlinks with ".."
    can never reach outside the mount, and all opens use O_NONBLOCK (fifos). An op that
    gets no answer in FSDIFF_OP_TIMEOUT seconds (30) is a "hang": the subject's daemon
    is killed (which aborts its FUSE connection) and the run fails.
  * --allow-known (fuse-overlayfs only) tolerates the divergences in KNOWN_RULES and
    avoids generating the ops in KNOWN_AVOID; strata-overlay is always compared
    strictly.

Usage (as root):
  fsdiff.py --seeds 1-6 --ops 300 --subject fuse-overlayfs [--allow-known] [--keep] [-v]
  fsdiff.py --replay REPRO.py --subject ...    re-run a reproducer with full checking
  fsdiff.py --make-lower DIR                   build the lower layers (l1 top, l2, upper0)
"""

import argparse
import atexit
import ctypes
import errno
import hashlib
import os
import pickle
import random
import select
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
NS = 10**9
PIN_BASE_NS = 1_400_000_000 * NS  # lower-layer timestamps: 2014
UTIME_BASE_NS = 1_300_000_000 * NS  # timestamps set by utime ops: 2011
PIN_LIMIT_NS = 1_500_000_000 * NS  # anything later is "recent"
NSLOTS = 4  # open file descriptors kept per union
OP_TIMEOUT = float(os.environ.get("FSDIFF_OP_TIMEOUT", "30"))  # seconds; then "hung"

# --------------------------------------------------------------------------------------
# The operations, as run inside each union (by a worker chrooted there, or by a
# reproducer run in a union's root). An op is a tuple (kind, args...) of plain values; the
# outcome is ("ok", payload) or ("err", "ENAME") or ("noslot",).

RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2
XATTR_CREATE, XATTR_REPLACE = 1, 2
OPEN_FLAGS = {
    "r": os.O_RDONLY,
    "w": os.O_WRONLY,
    "rw": os.O_RDWR,
    "a": os.O_WRONLY | os.O_APPEND,
    "rwa": os.O_RDWR | os.O_APPEND,
    "rwc": os.O_RDWR | os.O_CREAT,
}
OPEN_BASE = os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
_libc = ctypes.CDLL(None, use_errno=True)


def data(tag, n):
    """n bytes of a recognizable pattern: <tag><tag>..."""
    unit = b"<%d>" % tag
    return (unit * (n // len(unit) + 1))[:n]


def ftype(mode):
    for test, ch in ((stat.S_ISREG, "f"), (stat.S_ISDIR, "d"), (stat.S_ISLNK, "l"),
                     (stat.S_ISFIFO, "p"), (stat.S_ISCHR, "c"), (stat.S_ISBLK, "b"),
                     (stat.S_ISSOCK, "s")):
        if test(mode):
            return ch
    return "?"


def tval(ns):
    return ns if ns < PIN_LIMIT_NS else "recent"


def exact_nlink(dirpath):
    """2 + the number of subdirectories of dirpath (a path or a directory fd), or None."""
    try:
        with os.scandir(dirpath) as it:
            return 2 + sum(1 for e in it if e.is_dir(follow_symlinks=False))
    except OSError:
        return None


def summ(st, exact=None):
    """The comparable part of a stat result (see the module doc for nlink and mtime)."""
    t = ftype(st.st_mode)
    d = {"type": t, "mode": "%04o" % stat.S_IMODE(st.st_mode), "uid": st.st_uid,
         "gid": st.st_gid, "mtime": tval(st.st_mtime_ns)}
    if t == "d":
        d["nlink"] = ("dirnlink", "X" if st.st_nlink == exact else st.st_nlink)
    else:
        d["nlink"] = st.st_nlink
        d["size"] = st.st_size
    if t in "cb":
        d["rdev"] = (os.major(st.st_rdev), os.minor(st.st_rdev))
    return d


def bsum(b):
    """Bytes read: length, digest and the first bytes (for the report)."""
    return ("bytes", len(b), hashlib.sha1(b).hexdigest()[:12], b[:48])


def ino(path, follow=True):
    try:
        return os.stat(path, follow_symlinks=follow).st_ino
    except OSError:
        return None


def _open(path, flags, mode=0o644):
    return os.open(path, flags | OPEN_BASE, mode)


def _with_fd(path, flags, fn):
    fd = _open(path, flags)
    try:
        return fn(fd)
    finally:
        os.close(fd)


def _xattr_names(path, follow):
    return sorted(n for n in os.listxattr(path, follow_symlinks=follow)
                  if n.startswith("user.") or "overlay" in n)


def _renameat2(src, dst, flags):
    if flags == 0:
        os.rename(src, dst)
        return
    if _libc.renameat2(-100, os.fsencode(src), -100, os.fsencode(dst), flags) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def _after(path, before, follow=True):
    """Stat summary of path after a write-like op, and whether st_ino was kept."""
    st = os.stat(path, follow_symlinks=follow)
    d = summ(st, exact_nlink(path) if stat.S_ISDIR(st.st_mode) else None)
    d["inv_ino_changed"] = before != st.st_ino
    return d


def op_create(fds, path, mode):
    fd = _open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, mode)
    try:
        return summ(os.fstat(fd))
    finally:
        os.close(fd)


def op_write(fds, path, off, n, tag):
    before = ino(path)
    w = _with_fd(path, os.O_WRONLY, lambda fd: os.pwrite(fd, data(tag, n), off))
    return {"written": w, **_after(path, before)}


def op_append(fds, path, n, tag):
    before = ino(path)

    def go(fd):
        w = os.write(fd, data(tag, n))
        return w, os.lseek(fd, 0, os.SEEK_CUR)
    w, pos = _with_fd(path, os.O_WRONLY | os.O_APPEND, go)
    return {"written": w, "pos": pos, **_after(path, before)}


def op_truncate(fds, path, size):
    before = ino(path)
    os.truncate(path, size)
    return _after(path, before)


def op_open_trunc(fds, path):
    before = ino(path)
    _with_fd(path, os.O_WRONLY | os.O_TRUNC, lambda fd: None)
    return _after(path, before)


def op_fallocate(fds, path, off, n):
    before = ino(path)
    _with_fd(path, os.O_WRONLY, lambda fd: os.posix_fallocate(fd, off, n))
    return _after(path, before)


def op_unlink(fds, path):
    os.unlink(path)
    return None


def op_rmdir(fds, path):
    os.rmdir(path)
    return None


def op_mkdir(fds, path, mode):
    os.mkdir(path, mode)
    return summ(os.lstat(path), exact_nlink(path))


def op_mkfifo(fds, path, mode):
    os.mkfifo(path, mode)
    return summ(os.lstat(path))


def op_rename(fds, src, dst, flags):
    a, b = ino(src, False), ino(dst, False)
    _renameat2(src, dst, flags)
    st = os.lstat(dst)
    d = summ(st, exact_nlink(dst) if stat.S_ISDIR(st.st_mode) else None)
    d["inv_ino_changed"] = st.st_ino != a
    if flags == RENAME_EXCHANGE:
        d["inv_src_ino_changed"] = ino(src, False) != b
    else:
        d["src_gone"] = not os.path.lexists(src) or os.path.samefile(src, dst)
    return d


def op_link(fds, src, dst):
    os.link(src, dst, follow_symlinks=False)
    a, b = os.lstat(src), os.lstat(dst)
    return {"inv_ino_differs": a.st_ino != b.st_ino, "nlink": (a.st_nlink, b.st_nlink)}


def op_symlink(fds, target, path):
    os.symlink(target, path)
    return {"target": os.readlink(path), **summ(os.lstat(path))}


def op_chmod(fds, path, mode):
    before = ino(path)
    os.chmod(path, mode)
    return _after(path, before)


def op_chown(fds, path, uid, gid, follow):
    before = ino(path, follow)
    os.chown(path, uid, gid, follow_symlinks=follow)
    return _after(path, before, follow)


def op_utime(fds, path, atime_ns, mtime_ns, follow):
    before = ino(path, follow)
    os.utime(path, ns=(atime_ns, mtime_ns), follow_symlinks=follow)
    st = os.stat(path, follow_symlinks=follow)
    return {"atime": st.st_atime_ns, **_after(path, before, follow)}


def op_setxattr(fds, path, name, value, flags, follow):
    before = ino(path, follow)
    os.setxattr(path, name, value, flags, follow_symlinks=follow)
    return {"names": _xattr_names(path, follow),
            "inv_ino_changed": ino(path, follow) != before}


def op_removexattr(fds, path, name, follow):
    os.removexattr(path, name, follow_symlinks=follow)
    return {"names": _xattr_names(path, follow)}


def op_getxattr(fds, path, name, follow):
    return os.getxattr(path, name, follow_symlinks=follow)


def op_listxattr(fds, path, follow):
    return _xattr_names(path, follow)


def op_readlink(fds, path):
    return os.readlink(path)


def op_stat(fds, path, follow):
    st = os.stat(path, follow_symlinks=follow)
    return summ(st, exact_nlink(path) if stat.S_ISDIR(st.st_mode) else None)


def op_read(fds, path):
    def go(fd):
        chunks = []
        while True:
            b = os.read(fd, 1 << 20)
            if not b:
                return b"".join(chunks)
            chunks.append(b)
    return bsum(_with_fd(path, os.O_RDONLY, go))


def op_readdir(fds, path):
    names, bad = [], []
    with os.scandir(path) as it:
        for e in it:
            t = ("l" if e.is_symlink() else "d" if e.is_dir(follow_symlinks=False)
                 else "f" if e.is_file(follow_symlinks=False) else "o")
            names.append((e.name, t))
            try:
                if os.lstat(e.path).st_ino != e.inode():
                    bad.append(e.name)
            except OSError as ex:
                bad.append((e.name, errno.errorcode.get(ex.errno, ex.errno)))
    return {"entries": sorted(names), "inv_d_ino_differs_from_st_ino": sorted(bad, key=str)}


def op_access(fds, path, mode):
    return os.access(path, mode)


def op_fd_open(fds, slot, path, flags):
    if slot in fds:
        os.close(fds.pop(slot))
    fd = _open(path, OPEN_FLAGS[flags])
    fds[slot] = fd
    st = os.fstat(fd)
    return summ(st, exact_nlink(fd) if stat.S_ISDIR(st.st_mode) else None)


def op_open_unlink(fds, slot, path):
    if slot in fds:
        os.close(fds.pop(slot))
    fd = _open(path, os.O_RDWR)
    fds[slot] = fd
    os.unlink(path)
    return {**summ(os.fstat(fd)), "name_gone": not os.path.lexists(path)}


def _slot(fn):
    def wrapped(fds, slot, *args):
        if slot not in fds:
            return NOSLOT
        return fn(fds, fds[slot], *args)
    wrapped.__name__ = fn.__name__
    return wrapped


NOSLOT = object()


@_slot
def op_fd_read(fds, fd, off, n):
    return bsum(os.pread(fd, n, off))


@_slot
def op_fd_write(fds, fd, off, n, tag):
    if off is None:
        return os.write(fd, data(tag, n))
    return os.pwrite(fd, data(tag, n), off)


@_slot
def op_fd_fstat(fds, fd):
    st = os.fstat(fd)
    return summ(st, exact_nlink(fd) if stat.S_ISDIR(st.st_mode) else None)


@_slot
def op_fd_fsync(fds, fd):
    os.fsync(fd)


@_slot
def op_fd_ftruncate(fds, fd, size):
    os.ftruncate(fd, size)
    return os.fstat(fd).st_size


def op_fd_close(fds, slot):
    if slot not in fds:
        return NOSLOT
    os.close(fds.pop(slot))
    return None


OPS = {name[3:]: fn for name, fn in globals().items() if name.startswith("op_")}


def run_op(op, fds):
    """Run op in the current directory (a union's root); return its outcome."""
    try:
        r = OPS[op[0]](fds, *op[1:])
    except OSError as e:
        return ("err", errno.errorcode.get(e.errno, str(e.errno)))
    if r is NOSLOT:
        return ("noslot",)
    return ("ok", r)


# --------------------------------------------------------------------------------------
# Comparing outcomes.

def same(a, b, key=None):
    """Outcome equality; a is the oracle's. A directory nlink of 1 (overlayfs's "merged
    directory") in the oracle also accepts the exact count ("X") in the subject. Keys
    named inv_* are invariants each union must keep on its own (st_ino == d_ino, st_ino
    kept across copy-up and remount, hardlinks share st_ino): the subject's value must be
    empty or false, whatever the oracle's (see ORACLE_QUIRKS)."""
    if key is not None and key.startswith("inv_") and STRICT_INVARIANTS[0]:
        if a:
            ORACLE_QUIRKS.setdefault(key, a)
        return not b
    if isinstance(a, tuple) and len(a) == 2 and a[:1] == ("dirnlink",):
        return a == b or (a[1] == 1 and b == ("dirnlink", "X"))
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k], k) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


ORACLE_QUIRKS = {}  # invariants the oracle itself broke: {key: first value}
# Hold the subject to the inv_* invariants even where the oracle breaks them; off for
# --subject kernel, which must only behave like the oracle. (Kernel overlayfs 6.18 breaks
# st_ino == d_ino for the merged directory "d", whose upper part comes from upper0 with
# no overlay.origin xattr, when the root is listed before "d" is looked up.)
STRICT_INVARIANTS = [True]


def diff_fields(a, b):
    """Names of what differs between two outcomes (for the divergence signature)."""
    if a[0] != b[0] or a[0] != "ok":
        return {"status"} if a[0] != b[0] else {"errno"}
    pa, pb = a[1], b[1]
    if isinstance(pa, dict) and isinstance(pb, dict):
        keys = {k for k in pa.keys() | pb.keys() if not same(pa.get(k), pb.get(k), k)}
        return keys or {"value"}
    return {"value"}


def show(o):
    s = repr(o)
    return s if len(s) < 600 else s[:600] + "..."


# --------------------------------------------------------------------------------------
# Lower layers.

def make_layers(base):
    """Build base/l2 (bottom lower), base/l1 (top lower) and base/upper0 (the initial
    upper of both unions). Returns the list of layer dirs [l1, l2, upper0]."""
    l1, l2, up = (os.path.join(base, n) for n in ("l1", "l2", "upper0"))
    for d in (l1, l2, up):
        os.makedirs(d)

    def f(root, rel, content=b"", mode=0o644, xattrs=None, owner=None):
        p = os.path.join(root, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as fh:
            fh.write(content)
        os.chmod(p, mode)
        for k, v in (xattrs or {}).items():
            os.setxattr(p, k, v)
        if owner:
            os.chown(p, *owner)
        return p

    def d(root, rel, mode=0o755, xattrs=None):
        p = os.path.join(root, rel)
        os.makedirs(p, exist_ok=True)
        os.chmod(p, mode)
        for k, v in (xattrs or {}).items():
            os.setxattr(p, k, v)
        return p

    # bottom layer l2
    d(l2, "d", xattrs={"user.layer": b"l2"})
    f(l2, "d/f_l2", b"bottom file\n")
    f(l2, "d/shadowed", b"from l2 (hidden by l1)\n")
    f(l2, "d/sub/deep_l2", b"deep in l2\n")
    d(l2, "d/sub/sub2")
    f(l2, "lonly/a", b"lower only a\n")
    f(l2, "lonly/b/c", b"lower only c\n")
    f(l2, "opq/lower_hidden", b"hidden by the opaque dir\n")
    f(l2, "opq/lower_dir/x", b"hidden too\n")
    f(l2, "wh_file", b"whited out\n")
    f(l2, "wh_dir/inner", b"whited out dir\n")
    f(l2, "under_upper", b"lower version, hidden by the upper\n")
    f(l2, "tconf", b"a file in l2, a directory in l1\n")
    f(l2, "hl_a", b"hardlinked in l2\n")
    os.link(os.path.join(l2, "hl_a"), os.path.join(l2, "d/hl_b"))
    f(l2, "sizes/zero", b"")
    f(l2, "sizes/one", b"1")
    f(l2, "sizes/s4095", data(1, 4095))
    f(l2, "sizes/s4096", data(2, 4096))
    f(l2, "sizes/s70000", data(3, 70000))
    p = f(l2, "sizes/sparse", b"")
    with open(p, "r+b") as fh:
        fh.truncate(1 << 20)
        fh.seek(512 * 1024)
        fh.write(b"middle of a sparse file")
    f(l2, "modes/m600", b"secret\n", 0o600)
    f(l2, "modes/m755", b"#!/bin/sh\necho hi\n", 0o755)
    f(l2, "modes/suid", b"setuid\n", 0o4755)
    d(l2, "modes/sticky", 0o1777)
    d(l2, "modes/sgid", 0o2775)
    f(l2, "xa_file", b"with xattrs\n", xattrs={"user.k": b"v1", "user.empty": b""})
    d(l2, "xa_dir", xattrs={"user.k": b"dir"})
    f(l2, "owned", b"owned by 1234:5678\n", 0o640, owner=(1234, 5678))
    os.mkfifo(os.path.join(l2, "fifo"), 0o644)
    os.symlink("d/f_l2", os.path.join(l2, "link_rel"))
    os.symlink("no/such/target", os.path.join(l2, "dangling"))
    os.symlink("d", os.path.join(l2, "link_dir"))
    os.symlink("../f_l2", os.path.join(l2, "d/sub/up"))
    os.symlink("wh_file", os.path.join(l2, "link_wh"))

    # top layer l1
    d(l1, "d", xattrs={"user.layer": b"l1"})
    f(l1, "d/f_l1", b"top file\n")
    f(l1, "d/shadowed", b"from l1 (wins)\n")
    f(l1, "d/sub/deep_l1", b"deep in l1\n", xattrs={"user.layer": b"l1"})
    d(l1, "opq", xattrs={"trusted.overlay.opaque": b"y"})
    f(l1, "opq/top_only", b"in the opaque dir\n")
    for name in ("wh_file", "wh_dir"):
        os.mknod(os.path.join(l1, name), stat.S_IFCHR | 0o000, os.makedev(0, 0))
    f(l1, "tconf/inside", b"l1 dir over an l2 file\n")
    f(l1, "top_only/t1", b"t1\n")
    f(l1, "top_only/hl_x", b"hardlinked in l1\n")
    os.link(os.path.join(l1, "top_only/hl_x"), os.path.join(l1, "top_only/hl_y"))
    os.symlink("../../lonly/a", os.path.join(l1, "d/sub/link_up2"))

    # the initial upper: a file hiding a lower one, and an upper part of a merged dir
    f(up, "under_upper", b"upper version\n")
    f(up, "d/u_file", b"in the upper\n")

    # pinned timestamps, deepest first so that a directory's is set after its children
    k = 0
    for root in (l1, l2, up):
        for dirpath, dirnames, filenames in os.walk(root, topdown=False):
            for n in sorted(filenames + dirnames) + [""]:
                k += 1
                t = PIN_BASE_NS + k * NS + k * 1001
                os.utime(os.path.join(dirpath, n) if n else dirpath, ns=(t, t),
                         follow_symlinks=False)
    return [l1, l2, up]


def layer_paths(layers):
    """Every relative path in any layer (candidate names: whited out, hidden ...)."""
    out = set()
    for root in layers:
        for dirpath, dirnames, filenames in os.walk(root):
            for n in dirnames + filenames:
                out.add(os.path.relpath(os.path.join(dirpath, n), root))
    return sorted(out)


def digest_tree(root):
    """A digest of everything in a directory tree that a union must never change."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for n in [""] + sorted(dirnames + filenames):
            p = os.path.join(dirpath, n) if n else dirpath
            st = os.lstat(p)
            h.update(repr((os.path.relpath(p, root), st.st_mode, st.st_uid, st.st_gid,
                           st.st_size, st.st_mtime_ns, st.st_rdev, st.st_nlink)).encode())
            h.update(repr(sorted((x, os.getxattr(p, x, follow_symlinks=False))
                                 for x in os.listxattr(p, follow_symlinks=False))).encode())
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as fh:
                    h.update(hashlib.sha256(fh.read()).digest())
            elif stat.S_ISLNK(st.st_mode):
                h.update(os.readlink(p).encode())
    return h.hexdigest()


# --------------------------------------------------------------------------------------
# Mounts, daemons, cleanup.

MOUNTED = []  # Union objects currently mounted (cleanup unmounts them all)


def log(*a):
    print(*a, flush=True)


def mountinfo():
    """{mountpoint: (fstype, "major:minor", super options)} of this mount namespace."""
    out = {}
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            pre, post = line.split(" - ", 1)
            f = pre.split()
            g = post.split()
            mp = f[4].encode().decode("unicode_escape")
            out[mp] = (g[0], f[2], g[2] if len(g) > 2 else "")
    return out


def pids_with_arg(arg):
    """Processes (other than us) with arg as one of their command-line arguments."""
    pids = []
    for p in os.listdir("/proc"):
        if not p.isdigit() or int(p) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % p, "rb") as fh:
                argv = fh.read().split(b"\0")
        except OSError:
            continue
        if os.fsencode(arg) in argv:
            pids.append(int(p))
    return pids


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def fuse_abort(mnt, daemons=()):
    """Abort the FUSE connection of mnt, which unblocks every process waiting on a hung
    daemon: through fusectl where it is mounted, and by killing the daemon's pids (a
    FUSE connection dies with its daemon's /dev/fuse fd)."""
    info = mountinfo().get(mnt)
    if info and info[0].startswith("fuse"):
        try:
            with open("/sys/fs/fuse/connections/%s/abort" % info[1].split(":")[1], "w") as fh:
                fh.write("1")
        except OSError:
            pass
    for pid in daemons:
        if alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


class Worker:
    """A child process chrooted into a union that runs ops sent to it over a pipe."""

    def __init__(self, root):
        r1, w1 = os.pipe()
        r2, w2 = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            try:
                keep = {0, 1, 2, r1, w2}
                for fd in [int(x) for x in os.listdir("/proc/self/fd")]:
                    if fd not in keep:
                        try:
                            os.close(fd)
                        except OSError:
                            pass
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGHUP, signal.SIG_DFL)
                _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
                os.chroot(root)
                os.chdir("/")
                os.umask(0o022)
                fds = {}
                while True:
                    op = _recv(r1, None)
                    if op is None:
                        break
                    _send(w2, run_op(op, fds))
                for fd in fds.values():
                    os.close(fd)
            finally:
                os._exit(0)
        os.close(r1)
        os.close(w2)
        self.pid, self.wfd, self.rfd = pid, w1, r2

    def send(self, op):
        _send(self.wfd, op)

    def recv(self, timeout):
        return _recv(self.rfd, timeout)

    def stop(self, timeout=10.0):
        if self.pid is None:
            return
        try:
            _send(self.wfd, None)
        except OSError:
            pass
        deadline = time.time() + timeout
        while time.time() < deadline:
            if os.waitpid(self.pid, os.WNOHANG)[0]:
                break
            time.sleep(0.005)
        else:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        os.close(self.wfd)
        os.close(self.rfd)
        self.pid = None


class Timeout(Exception):
    pass


def _send(fd, obj):
    b = pickle.dumps(obj, protocol=4)
    b = struct.pack("<I", len(b)) + b
    while b:
        b = b[os.write(fd, b):]


def _recv(fd, timeout):
    def read(n):
        buf = b""
        deadline = None if timeout is None else time.time() + timeout
        while len(buf) < n:
            if deadline is not None:
                left = deadline - time.time()
                if left <= 0 or not select.select([fd], [], [], left)[0]:
                    raise Timeout()
            chunk = os.read(fd, n - len(buf))
            if not chunk:
                raise EOFError()
            buf += chunk
        return buf
    (n,) = struct.unpack("<I", read(4))
    return pickle.loads(read(n))


class Union:
    """One union mount: kind "kernel" or a FUSE binary taking fuse-overlayfs's options."""

    def __init__(self, name, kind, binary, layers, base, opts):
        self.name, self.kind, self.binary, self.opts = name, kind, binary, opts
        self.lowers = layers[:2]
        self.upper = os.path.join(base, name + "-upper")
        self.work = os.path.join(base, name + "-work")
        self.mnt = os.path.join(base, name + "-mnt")
        self.log = os.path.join(base, name + ".log")
        subprocess.run(["cp", "-a", "--", layers[2], self.upper], check=True)
        os.mkdir(self.work)
        os.mkdir(self.mnt)
        self.worker = None
        self.daemons = []

    def mount(self):
        o = "lowerdir=%s,upperdir=%s,workdir=%s" % (":".join(self.lowers), self.upper,
                                                     self.work)
        if self.opts:
            o += "," + self.opts
        if self.kind == "kernel":
            cmd = ["mount", "-t", "overlay", "overlay", "-o", o, self.mnt]
        else:
            cmd = [self.binary, "-o", o, self.mnt]
        # A union lazily detached by the last umount (its worker was slow to let
        # go of it) keeps its upper in use until its last user is gone: kernel
        # overlayfs (index=on) and strata both refuse the upper meanwhile, so
        # retry for a while before calling it a failure.
        deadline = time.time() + 15
        while True:
            with open(self.log, "ab") as lf:
                try:
                    r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=lf,
                                       stderr=lf, timeout=60)
                except subprocess.TimeoutExpired:
                    self.daemons = pids_with_arg(self.mnt)
                    MOUNTED.append(self)
                    raise RuntimeError("%s: `%s` did not return in 60s (it must daemonize)"
                                       % (self.name, " ".join(cmd)))
            if r.returncode == 0 or time.time() > deadline:
                break
            time.sleep(0.2)
        if r.returncode != 0:
            raise RuntimeError("%s: `%s` exited %d: %s" % (self.name, " ".join(cmd),
                                                          r.returncode, self.tail()))
        MOUNTED.append(self)
        deadline = time.time() + 10
        while self.mnt not in mountinfo():
            if time.time() > deadline:
                raise RuntimeError("%s: %s is not mounted after `%s`" % (
                    self.name, self.mnt, " ".join(cmd)))
            time.sleep(0.01)
        if self.kind != "kernel":
            self.daemons = pids_with_arg(self.mnt)
        self.worker = Worker(self.mnt)

    def abort(self):
        if self.kind != "kernel":
            fuse_abort(self.mnt, self.daemons)

    def tail(self):
        try:
            with open(self.log, "rb") as fh:
                return fh.read()[-800:].decode(errors="replace").strip()
        except OSError:
            return ""

    def umount(self):
        if self.worker:
            w, self.worker = self.worker, None
            try:
                w.stop(timeout=5)
            except Exception:
                self.abort()
                w.stop(timeout=5)
        if self.mnt in mountinfo():
            # umount waits for a FUSE daemon's answer: give it 10s, then abort
            p = subprocess.Popen(["umount", self.mnt], stderr=subprocess.DEVNULL)
            try:
                rc = p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.abort()
                rc = p.wait()
            if rc != 0 and self.mnt in mountinfo():
                self.abort()
                subprocess.run(["umount", "-l", self.mnt], stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        for pid in self.daemons:
            while alive(pid) and time.time() < deadline:
                time.sleep(0.01)
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        self.daemons = []
        if self in MOUNTED:
            MOUNTED.remove(self)


def cleanup_mounts():
    for u in reversed(list(MOUNTED)):
        try:
            u.umount()
        except Exception as e:  # keep going: every mount must go
            print("cleanup of %s: %s" % (u.mnt, e), file=sys.stderr)
            u.abort()
            subprocess.run(["umount", "-l", u.mnt], stderr=subprocess.DEVNULL)


# --------------------------------------------------------------------------------------
# Whole-tree snapshots.

def snapshot(root):
    """{relpath: record} of a mounted union (walked from the host, never following
    symlinks), and {relpath: st_ino}."""
    recs, inos = {}, {}

    def visit(rel, path):
        st = os.lstat(path)
        t = ftype(st.st_mode)
        r = summ(st)
        inos[rel] = st.st_ino
        if t == "f":
            with open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | OPEN_BASE), "rb") as fh:
                b = fh.read()
            r["content"] = bsum(b)
        elif t == "l":
            r["target"] = os.readlink(path)
        try:
            r["xattrs"] = sorted((n, os.getxattr(path, n, follow_symlinks=False))
                                 for n in _xattr_names(path, False))
        except OSError as e:
            r["xattrs"] = errno.errorcode.get(e.errno)
        recs[rel] = r
        if t == "d":
            kids, bad, subdirs = [], [], 0
            with os.scandir(path) as it:
                ents = sorted(it, key=lambda e: e.name)
            for e in ents:
                kst = os.lstat(e.path)
                kids.append((e.name, ftype(kst.st_mode)))
                if kst.st_ino != e.inode():
                    bad.append(e.name)
                if stat.S_ISDIR(kst.st_mode):
                    subdirs += 1
            r["entries"] = kids
            if bad:
                r["inv_d_ino_differs_from_st_ino"] = bad
            r["nlink"] = ("dirnlink", "X" if st.st_nlink == 2 + subdirs else st.st_nlink)
            for e in ents:
                visit(e.name if not rel else rel + "/" + e.name, e.path)

    visit("", root)
    groups = {}
    for rel, r in recs.items():
        if r["type"] != "d":
            groups.setdefault(inos[rel], []).append(rel)
    for names in groups.values():
        if len(names) > 1:
            for n in names:
                recs[n]["hardlinks"] = sorted(names)
    return recs, inos


def compare_snapshots(a, b):
    """Differences between the oracle's (a) and the subject's (b) snapshot records."""
    out = []
    for rel in sorted(a.keys() | b.keys()):
        shown = rel or "."
        if rel not in b:
            out.append((shown, "only in the oracle", a[rel]["type"], None))
            continue
        if rel not in a:
            out.append((shown, "only in the subject", None, b[rel]["type"]))
            continue
        ra, rb = a[rel], b[rel]
        for k in sorted(ra.keys() | rb.keys()):
            if not same(ra.get(k), rb.get(k), k):
                out.append((shown, k, ra.get(k), rb.get(k)))
    return out


# --------------------------------------------------------------------------------------
# The generator.

MODES = [0o600, 0o644, 0o755, 0o4755, 0o2755, 0o1777, 0o000, 0o444, 0o700]
OFFSETS = [0, 1, 100, 4095, 4096, 4097, 65536, 70000, 1 << 20]
LENGTHS = [1, 10, 100, 4096, 5000, 70000]
SIZES = [0, 1, 100, 4095, 4096, 5000, 70000, 1 << 20]
XNAMES = ["user.k", "user.a", "user.empty", "user.layer", "user.big"]
XVALUES = [b"v1", b"v2", b"", b"x" * 300]
WEIGHTS = {
    "create": 6, "write": 8, "append": 4, "truncate": 4, "open_trunc": 2, "fallocate": 1,
    "unlink": 5, "rmdir": 3, "mkdir": 5, "mkfifo": 1, "rename": 12, "link": 4,
    "symlink": 3, "chmod": 4, "chown": 2, "utime": 4, "setxattr": 4, "removexattr": 2,
    "getxattr": 3, "listxattr": 2, "readlink": 2, "stat": 6, "read": 6, "readdir": 5,
    "access": 1, "fd_open": 3, "fd_read": 3, "fd_write": 3, "fd_fstat": 2, "fd_fsync": 1,
    "fd_ftruncate": 1, "fd_close": 2, "open_unlink": 1,
    "sc_stale": 3, "sc_unlinked": 2, "sc_hardlink": 2, "sc_dirrename": 2,
}
NAMESPACE_OPS = {"create", "unlink", "rmdir", "mkdir", "mkfifo", "rename", "link",
                 "symlink", "fd_open", "open_unlink"}
HARD_OPS = {"check_tree", "remount"}


class Generator:
    """Yields ops, choosing paths from the oracle's current tree (re-listed after every
    op that changes names) plus fresh and ghost names. Deterministic for a seed."""

    def __init__(self, seed, n_ops, check_every, remount_at, oracle, ghosts, avoid=()):
        self.rng = random.Random(seed)
        self.n_ops, self.check_every = n_ops, check_every
        self.remount_at = sorted(x for x in remount_at if x > 0)
        self.next_check = check_every
        self.oracle = oracle
        self.avoid = set(a for a in avoid if not a.startswith("/"))
        self.exclude = set(a[1:] for a in avoid if a.startswith("/"))
        self.ghosts = [g for g in ghosts if not self.excluded(g)]
        if "rename_dir" in self.avoid:
            self.avoid.add("sc_dirrename")
        self.kinds = [k for k in WEIGHTS if k not in self.avoid]
        self.weights = [WEIGHTS[k] for k in self.kinds]
        self.emitted = 0  # fs ops emitted so far
        self.queue = []
        self.slots = {}
        self.fresh = 0
        self.finished = False
        self.refresh()

    def refresh(self):
        self.model = {}
        byino = {}

        def walk(rel, path):
            try:
                with os.scandir(path) as it:
                    ents = sorted(it, key=lambda e: e.name)
            except OSError:
                return
            for e in ents:
                r = e.name if not rel else rel + "/" + e.name
                st = e.stat(follow_symlinks=False)
                t = ftype(st.st_mode)
                self.model[r] = t
                if t != "d":
                    byino.setdefault(st.st_ino, []).append(r)
                else:
                    walk(r, e.path)
        walk("", self.oracle.mnt)
        self.paths = sorted(p for p in self.model if not self.excluded(p))
        self.by_type = {}
        for p in self.paths:
            self.by_type.setdefault(self.model[p], []).append(p)
        self.dirs = ["."] + self.by_type.get("d", [])
        self.linkgroups = sorted(sorted(v) for v in byino.values()
                                 if len(v) > 1 and not any(map(self.excluded, v)))

    def excluded(self, path):
        return any(path == x or (x.endswith("/") and (path + "/").startswith(x))
                   for x in self.exclude)

    def observe(self, op, outcome):
        k = op[0]
        if k == "remount":
            self.slots = {}
        if outcome is None or outcome[0] != "ok":
            return
        if k in ("fd_open", "open_unlink"):
            self.slots[op[1]] = op[2]
        elif k == "fd_close":
            self.slots.pop(op[1], None)
        if k in NAMESPACE_OPS:
            self.refresh()

    # -- choices
    def pick(self, seq):
        return self.rng.choice(seq) if seq else None

    def existing(self, types=None):
        if types is None:
            return self.pick(self.paths) or "nothing"
        cands = [p for t in types for p in self.by_type.get(t, [])]
        return self.pick(sorted(cands)) or self.pick(self.paths) or "nothing"

    def fresh_name(self):
        r = self.rng.random()
        if r < 0.25 and self.ghosts:
            return os.path.basename(self.pick(self.ghosts))
        self.fresh += 1
        return "n%d" % self.fresh

    def new_path(self, ghosts=True):
        r = self.rng.random()
        if r < 0.1 and self.ghosts and ghosts:
            return self.pick(self.ghosts)  # a name that exists in some layer
        if r < 0.14:
            parent = self.existing("f")  # ENOTDIR
        elif r < 0.17:
            parent = "nx%d" % self.rng.randrange(3)  # ENOENT
        else:
            parent = self.pick(self.dirs)
        name = self.fresh_name()
        return name if parent == "." else parent + "/" + name

    def file_path(self):
        r = self.rng.random()
        if r < 0.85:
            return self.existing("f")
        if r < 0.93:
            return self.existing("l")
        return self.existing()

    def any_path(self, fresh=0.1):
        return self.new_path() if self.rng.random() < fresh else self.existing()

    def slot(self):
        used = sorted(self.slots)
        if used and self.rng.random() < 0.85:
            return self.pick(used)
        return self.rng.randrange(NSLOTS)

    def free_slot(self):
        free = [s for s in range(NSLOTS) if s not in self.slots]
        return self.pick(free) if free else self.rng.randrange(NSLOTS)

    def tag(self):
        return self.rng.randrange(1, 1000)

    def utimes(self):
        return (UTIME_BASE_NS + self.rng.randrange(10**6) * NS + self.rng.randrange(NS),
                UTIME_BASE_NS + self.rng.randrange(10**6) * NS + self.rng.randrange(NS))

    def symlink_target(self, linkpath):
        r = self.rng.random()
        parent = os.path.dirname(linkpath)
        if r < 0.6 and self.paths:
            return os.path.relpath(self.existing(), parent or ".")
        if r < 0.8:
            return "dangling%d" % self.rng.randrange(5)
        return self.pick(["..", ".", "../..", "a/b/../c"])

    # -- ops
    def next(self):
        if self.queue:
            return self.queue.pop(0)
        if self.emitted >= self.n_ops:
            if self.finished:
                return None
            self.finished = True
            return ("remount",)  # compares the trees before and after
        if self.remount_at and self.emitted >= self.remount_at[0]:
            self.remount_at.pop(0)
            return ("remount",)
        if self.emitted >= self.next_check:
            self.next_check += self.check_every
            return ("check_tree",)
        self.emitted += 1
        return self.make()

    def make(self):
        kind = self.rng.choices(self.kinds, self.weights)[0]
        if kind.startswith("sc_"):
            ops = getattr(self, kind)()
            self.emitted += len(ops) - 1
            self.queue = ops[1:] + self.queue
            return ops[0]
        return getattr(self, "g_" + kind)()

    def g_create(self):
        return ("create", self.any_path(0.85), self.pick(MODES))

    def g_write(self):
        return ("write", self.file_path(), self.pick(OFFSETS), self.pick(LENGTHS), self.tag())

    def g_append(self):
        return ("append", self.file_path(), self.pick(LENGTHS), self.tag())

    def g_truncate(self):
        return ("truncate", self.file_path(), self.pick(SIZES))

    def g_open_trunc(self):
        return ("open_trunc", self.file_path())

    def g_fallocate(self):
        return ("fallocate", self.file_path(), self.pick(OFFSETS), self.pick(LENGTHS))

    def g_unlink(self):
        if self.rng.random() < 0.8:
            return ("unlink", self.existing("flpc"))
        return ("unlink", self.any_path(0.3))

    def g_rmdir(self):
        if "rmdir_opaque" in self.avoid:
            return ("rmdir", self.pick([p for p in self.by_type.get("d", [])
                                        if not p.startswith("opq/")]) or "nx")
        if self.rng.random() < 0.8:
            return ("rmdir", self.existing("d"))
        return ("rmdir", self.any_path(0.3))

    def g_mkdir(self):
        return ("mkdir", self.any_path(0.85), self.pick([0o755, 0o700, 0o1777, 0o2755]))

    def g_mkfifo(self):
        return ("mkfifo", self.any_path(0.85), 0o644)

    def g_rename(self):
        if "rename_dir" in self.avoid:
            return self.rename_no_dirs()
        r = self.rng.random()
        src = self.existing("d") if r < 0.4 else self.existing()
        r = self.rng.random()
        if r < 0.4:
            dst = self.new_path()
        elif r < 0.65:
            dst = self.existing()
        elif r < 0.85:
            dst = self.existing(self.model.get(src, "f"))
        elif r < 0.95:
            dst = src + "/" + self.fresh_name()
        else:
            dst = src
        flags = self.rng.choices([0, RENAME_NOREPLACE, RENAME_EXCHANGE], [70, 15, 15])[0]
        return ("rename", src, dst, flags)

    def rename_no_dirs(self):
        """For --allow-known: files only, onto fresh names, no RENAME_EXCHANGE."""
        return ("rename", self.existing("flpc"), self.new_path(),
                self.rng.choice([0, RENAME_NOREPLACE]))

    def g_link(self):
        src = self.existing("flp") if self.rng.random() < 0.9 else self.existing()
        if "link_lower" in self.avoid:  # only files already in the (oracle's) upper
            src = self.pick([p for p in self.paths if self.model[p] in "flp" and
                             os.path.lexists(os.path.join(self.oracle.upper, p))]) or src
        ghosts = "link_ghost" not in self.avoid
        dst = self.new_path(ghosts) if self.rng.random() < 0.85 else self.existing()
        return ("link", src, dst)

    def g_symlink(self):
        path = self.any_path(0.85)
        return ("symlink", self.symlink_target(path), path)

    def g_chmod(self):
        return ("chmod", self.any_path(0.05), self.pick(MODES))

    def g_chown(self):
        uid, gid = self.pick([(0, 0), (1234, 5678), (1000, 1000), (0, 1000)])
        return ("chown", self.any_path(0.05), uid, gid, self.rng.random() < 0.7)

    def g_utime(self):
        a, m = self.utimes()
        return ("utime", self.any_path(0.05), a, m, self.rng.random() < 0.7)

    def g_setxattr(self):
        flags = self.rng.choices([0, XATTR_CREATE, XATTR_REPLACE], [70, 15, 15])[0]
        return ("setxattr", self.any_path(0.05), self.pick(XNAMES), self.pick(XVALUES), flags,
                self.rng.random() < 0.8)

    def g_removexattr(self):
        return ("removexattr", self.any_path(0.05), self.pick(XNAMES), self.rng.random() < 0.8)

    def g_getxattr(self):
        return ("getxattr", self.any_path(0.05), self.pick(XNAMES), self.rng.random() < 0.8)

    def g_listxattr(self):
        return ("listxattr", self.any_path(0.05), self.rng.random() < 0.8)

    def g_readlink(self):
        return ("readlink", self.existing("l") if self.rng.random() < 0.8 else self.existing())

    def g_stat(self):
        return ("stat", self.any_path(0.1), self.rng.random() < 0.5)

    def g_read(self):
        return ("read", self.file_path())

    def g_readdir(self):
        return ("readdir", self.pick(self.dirs) if self.rng.random() < 0.85
                else self.any_path(0.2))

    def g_access(self):
        return ("access", self.any_path(0.1), self.pick([os.F_OK, os.R_OK, os.W_OK, os.X_OK]))

    def g_fd_open(self):
        flags = self.pick(sorted(OPEN_FLAGS))
        path = self.new_path() if flags == "rwc" and self.rng.random() < 0.5 else \
            self.file_path()
        return ("fd_open", self.free_slot(), path, flags)

    def g_fd_read(self):
        return ("fd_read", self.slot(), self.pick(OFFSETS), self.pick(LENGTHS))

    def g_fd_write(self):
        off = None if self.rng.random() < 0.3 else self.pick(OFFSETS)
        return ("fd_write", self.slot(), off, self.pick(LENGTHS), self.tag())

    def g_fd_fstat(self):
        return ("fd_fstat", self.slot())

    def g_fd_fsync(self):
        return ("fd_fsync", self.slot())

    def g_fd_ftruncate(self):
        return ("fd_ftruncate", self.slot(), self.pick(SIZES))

    def g_fd_close(self):
        return ("fd_close", self.slot())

    def g_open_unlink(self):
        return ("open_unlink", self.free_slot(), self.file_path())

    # -- scenarios: short sequences that reach the interesting cases more often
    def lower_file(self):
        """A regular file not yet copied up in the oracle (or any file)."""
        cands = [p for p in self.by_type.get("f", [])
                 if not os.path.lexists(os.path.join(self.oracle.upper, p))]
        return self.pick(cands) or self.existing("f")

    def copy_up_trigger(self, p):
        r = self.rng.randrange(6)
        if r == 0:
            return ("write", p, self.pick([0, 1, 4096]), self.pick(LENGTHS), self.tag())
        if r == 1:
            return ("append", p, self.pick(LENGTHS), self.tag())
        if r == 2:
            return ("truncate", p, self.pick(SIZES))
        if r == 3:
            return ("chmod", p, self.pick(MODES))
        if r == 4:
            return ("open_trunc", p)
        a, m = self.utimes()
        return ("utime", p, a, m, True)

    def sc_stale(self):
        """An fd opened read-only before a copy-up, read and fstat'ed after it."""
        s, p = self.free_slot(), self.lower_file()
        return [("fd_open", s, p, "r"), self.copy_up_trigger(p),
                ("fd_read", s, 0, 100), ("fd_fstat", s), ("read", p)]

    def sc_unlinked(self):
        """An open file unlinked, then used through its fd."""
        s = self.free_slot()
        p = self.lower_file() if self.rng.random() < 0.6 else self.existing("f")
        ops = [("open_unlink", s, p), ("fd_write", s, self.pick([0, 4096]), 100, self.tag()),
               ("fd_read", s, 0, 200), ("fd_fstat", s), ("fd_fsync", s)]
        if self.rng.random() < 0.5:
            ops.append(("stat", p, False))
        if self.rng.random() < 0.5:
            ops.append(("fd_close", s))
        return ops

    def sc_hardlink(self):
        """Change one name of a hardlink group, look through another."""
        if not self.linkgroups:
            return [self.g_link()]
        g = self.pick(self.linkgroups)
        a, b = self.rng.sample(g, 2)
        return [self.copy_up_trigger(a), ("read", b), ("stat", b, False), ("stat", a, False)]

    def sc_dirrename(self):
        """Rename a directory (often a lower or merged one), then look inside."""
        src = self.existing("d")
        dst = self.new_path() if self.rng.random() < 0.7 else self.existing("d")
        flags = self.rng.choices([0, RENAME_NOREPLACE, RENAME_EXCHANGE], [70, 10, 20])[0]
        return [("rename", src, dst, flags), ("readdir", dst), ("stat", dst, False),
                ("readdir", src)]


# --------------------------------------------------------------------------------------
# Running ops on both unions.

class Divergence:
    def __init__(self, index, op, oracle, subject, fields, lines=None):
        self.index, self.op, self.oracle, self.subject = index, op, oracle, subject
        self.fields, self.lines = fields, lines or []

    def signature(self):
        return (self.op[0], frozenset(self.fields))

    def matches(self, sig):
        return self.op[0] == sig[0] and bool(frozenset(self.fields) & sig[1])

    def report(self):
        out = ["op #%d: %r" % (self.index, self.op)]
        if self.lines:
            for path, field, a, b in self.lines[:30]:
                out.append("  %s: %s: oracle=%s subject=%s" % (path, field, show(a), show(b)))
            if len(self.lines) > 30:
                out.append("  ... and %d more differences" % (len(self.lines) - 30))
        else:
            out.append("  oracle : %s" % show(self.oracle))
            out.append("  subject: %s" % show(self.subject))
        return "\n".join(out)


class Session:
    """The oracle and the subject, mounted over the same lowers with fresh uppers."""

    def __init__(self, cfg, tag):
        self.cfg = cfg
        self.base = os.path.join(cfg.work, tag)
        if os.path.exists(self.base):  # from an earlier --keep run; never a mount point
            if any(m.startswith(self.base + "/") for m in mountinfo()):
                raise RuntimeError("%s holds mounts: unmount them first" % self.base)
            shutil.rmtree(self.base)
        os.makedirs(self.base)
        self.oracle = Union("oracle", "kernel", None, cfg.layers, self.base, cfg.oracle_opts)
        skind = "kernel" if cfg.subject == "kernel" else "fuse"
        sopts = cfg.oracle_opts if cfg.subject == "kernel" else cfg.subject_opts
        self.subject = Union("subject", skind, cfg.subject_bin, cfg.layers, self.base, sopts)
        self.unions = (self.oracle, self.subject)
        for u in self.unions:
            u.mount()

    def close(self):
        for u in self.unions:
            u.umount()
        if not self.cfg.keep:
            shutil.rmtree(self.base, ignore_errors=True)

    def apply(self, op):
        for u in self.unions:
            u.worker.send(op)
        outs = []
        for u in self.unions:
            try:
                outs.append(u.worker.recv(OP_TIMEOUT))
            except Timeout:
                outs.append(("hang", "no answer in %ds" % OP_TIMEOUT))
                u.abort()
            except EOFError:
                outs.append(("worker died",))
        return outs

    def snapshots(self):
        """Both unions' snapshots; a walk that fails (or hangs: the subject is aborted
        after OP_TIMEOUT) gives a (None, error) pair instead."""
        out = []
        for u in self.unions:
            timer = threading.Timer(OP_TIMEOUT, u.abort)
            timer.start()
            try:
                out.append(snapshot(u.mnt))
            except OSError as e:
                out.append((None, "walking the tree failed: %s" % e))
            finally:
                timer.cancel()
        return out

    def compare(self, snaps, label=""):
        (a, ea), (b, eb) = snaps
        if a is None or b is None:
            return [(label + "(tree walk)", "error", None if a else ea, None if b else eb)]
        return [(label + p, f, x, y) for p, f, x, y in compare_snapshots(a, b)]

    def check_tree(self):
        return self.compare(self.snapshots())

    def remount(self):
        snaps = self.snapshots()
        lines = self.compare(snaps)
        before = [ino for _, ino in snaps]
        for u in self.unions:
            u.umount()
        for u in self.unions:
            u.mount()
        snaps = self.snapshots()
        lines += self.compare(snaps, "(after remount) ")
        after = [ino for _, ino in snaps]
        if any(isinstance(x, str) for x in before + after):  # a walk failed
            return lines
        changed = [sorted(p for p in b4 if p in af and b4[p] != af[p])
                   for b4, af in zip(before, after)]
        if not same(changed[0], changed[1], "inv_st_ino_changed"):
            lines.append(("(remount)", "inv_st_ino_changed", changed[0], changed[1]))
        return lines


def run_ops(cfg, tag, ops=None, make_gen=None, verbose=False, allow=None):
    """Run a fixed op list, or the ops of the Generator make_gen(session) returns, on a
    fresh Session. Returns (Divergence or None, ops run, counts)."""
    sess = Session(cfg, tag)
    gen = make_gen(sess) if make_gen else None
    done = []
    counts = {"ops": 0, "checks": 0, "remounts": 0, "allowed": 0}
    try:
        i = 0
        while True:
            if gen is not None:
                op = gen.next()
                if op is None:
                    break
            else:
                if i >= len(ops):
                    break
                op = ops[i]
            done.append(op)
            if op[0] in HARD_OPS:
                lines = sess.check_tree() if op[0] == "check_tree" else sess.remount()
                counts["checks" if op[0] == "check_tree" else "remounts"] += 1
                if allow:
                    lines = [ln for ln in lines if not allow(op, ln)]
                if verbose:
                    log("%4d %r -> %d differences" % (i, op, len(lines)))
                if lines:
                    fields = {ln[1] for ln in lines}
                    return Divergence(i, op, None, None, fields, lines), done, counts
                if gen is not None:
                    gen.observe(op, ("ok", None))
            else:
                counts["ops"] += 1
                a, b = sess.apply(op)
                if verbose:
                    log("%4d %r\n       oracle : %s" % (i, op, show(a)))
                    if not same(a, b):
                        log("       subject: %s" % show(b))
                if not same(a, b):
                    fields = diff_fields(a, b)
                    if allow and allow(op, (a, b, fields)):
                        counts["allowed"] += 1
                    else:
                        return Divergence(i, op, a, b, fields), done, counts
                if gen is not None:
                    gen.observe(op, a)
            i += 1
        return None, done, counts
    finally:
        sess.close()
        check_lowers(cfg)


def check_lowers(cfg):
    if digest_tree(cfg.lower_base) != cfg.lower_digest:
        raise SystemExit("FAIL: a lower layer under %s was modified by a union" %
                         cfg.lower_base)


# --------------------------------------------------------------------------------------
# Minimization (delta debugging) and reproducers.

def minimize(cfg, ops, div, budget, allow=None):
    """Shrink ops[:div.index] (keeping the diverging op last) while the replay still
    diverges the same way (same op kind, a common differing field)."""
    sig = div.signature()
    last = ops[div.index]
    start = time.time()
    runs = [0]

    def test(cand):
        runs[0] += 1
        d, _, _ = run_ops(cfg, "min%d" % runs[0], cand + [last], allow=allow)
        return d is not None and d.index == len(cand) and d.matches(sig), d

    cur = ops[:div.index]
    best = div
    n = 2
    while len(cur) >= 1 and time.time() - start < budget:
        chunk = -(-len(cur) // n)
        reduced = False
        for k in range(n):
            cand = cur[:k * chunk] + cur[(k + 1) * chunk:]
            if len(cand) == len(cur):
                continue
            ok, d = test(cand)
            if ok:
                cur, best, reduced = cand, d, True
                n = max(n - 1, 2)
                break
            if time.time() - start > budget:
                break
        if not reduced:
            if n >= len(cur):
                break
            n = min(len(cur), 2 * n)
    complete = time.time() - start < budget
    return cur + [last], best, runs[0], complete


FLAGNAMES = {RENAME_NOREPLACE: "RENAME_NOREPLACE", RENAME_EXCHANGE: "RENAME_EXCHANGE"}


def reproducer(cfg, seed, ops, div):
    lines = [
        "#!/usr/bin/env python3",
        "# fsdiff reproducer: seed %s, subject %s, oracle kernel overlayfs (-o %s)." % (
            seed, cfg.subject, cfg.oracle_opts),
        "# The last op diverges:",
    ]
    lines += ["#   " + ln for ln in div.report().splitlines()]
    lines += [
        "# Full check (builds the lowers, mounts both unions, replays, compares):",
        "#   python3 %s --replay THIS_FILE --subject %s" % (os.path.join(HERE, "fsdiff.py"),
                                                         cfg.subject),
        "# By hand: build the layers with `fsdiff.py --make-lower DIR`, mount each union",
        "# (lowerdir=DIR/l1:DIR/l2, upper = a copy of DIR/upper0), then run",
        "#   python3 THIS_FILE --here MOUNTPOINT    (prints each op's outcome)",
        "import sys",
        "sys.dont_write_bytecode = True",
        "sys.path.insert(0, %r)" % HERE,
        "from fsdiff import replay_main  # noqa: E402",
        "",
        "OPS = [",
    ]
    for op in ops:
        note = ""
        if op[0] == "rename" and op[3]:
            note = "  # " + FLAGNAMES.get(op[3], str(op[3]))
        lines.append("    %r,%s" % (op, note))
    lines += ["]", "", "if __name__ == '__main__':", "    replay_main(OPS)", ""]
    return "\n".join(lines)


def replay_main(ops, argv=None):
    """Entry point of a reproducer: --here DIR runs the ops in DIR (a mounted union) and
    prints outcomes; otherwise it is fsdiff.py --replay (arguments passed on)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--here"]:
        os.chdir(argv[1])
        fds = {}
        for i, op in enumerate(ops):
            if op[0] in HARD_OPS:
                print("%3d %r (skipped: fsdiff only)" % (i, op))
                continue
            print("%3d %r\n    -> %s" % (i, op, show(run_op(op, fds))))
        return
    sys.exit(main(["--replay-ops"] + argv, replay_ops=ops))


# --------------------------------------------------------------------------------------
# Configuration, known divergences, main.

def probe_oracle_opts(cfg):
    """The kernel overlayfs options of the oracle.

    index=on (hardlinks survive copy-up) and redirect_dir=on (directory renames instead
    of EXDEV) are required. xino=on is added when the kernel keeps it; it drops it when
    all layers are on one filesystem (as here: st_ino is unique already) and says so in
    the kernel log. metacopy=on is NOT used, although this kernel accepts it: it changes
    what a program sees. After a metadata-only copy-up (utime, chmod ...), the data
    copy-up done by a later open for write sets mtime to now (6.18: utimensat, then
    open(O_RDWR) and close without writing: mtime is the time of the open), while
    without metacopy the mtime is kept, as POSIX and strata's design (metadata-only
    copy-up with no visible difference) want. --oracle-opts overrides all this."""
    base = os.path.join(cfg.work, "probe")
    want = "index=on,redirect_dir=on"
    for opts in (want + ",xino=on", want):
        os.makedirs(base)
        u = Union("probe", "kernel", None, cfg.layers, base, opts)
        try:
            u.mount()
            if "xino=on" not in opts or "xino=on" in mountinfo()[u.mnt][2].split(","):
                return opts
        except RuntimeError:
            if opts == want:
                raise
        finally:
            u.umount()
            shutil.rmtree(base, ignore_errors=True)
    return want


# Divergences of fuse-overlayfs 1.10 from kernel overlayfs, tolerated with --allow-known
# (for --subject fuse-overlayfs only: strata-overlay is compared strictly). Each rule is
# (name, test on an op outcome pair, test on a tree-compare line); KNOWN_AVOID lists op
# kinds not generated in that mode because their divergence changes the tree for good:
# "rename_dir": fuse-overlayfs returns EXDEV for the rename of a directory that has a
# lower layer (kernel overlayfs with redirect_dir=on renames it); in that mode renames
# are also only of non-directories onto fresh names without RENAME_EXCHANGE (after an
# exchange of a lower file with an upper one, or a rename onto a name that hides a lower
# file, removing that name makes the lower file visible again); "link_ghost": no link
# onto a whited-out name, "link_lower": no link of a file not yet copied up (after a
# remount the new link is a separate file); "fallocate": none (after a copy-up by
# truncate with an fd open read-only, fallocate beyond EOF leaves other data than the
# kernel's); "rmdir_opaque": no rmdir in the opaque directory opq (after mkdir+rmdir
# there, the directory hidden in the lower layer shows through: mkdir gives EEXIST);
# "/PATH" (or "/DIR/": DIR and all below): never chosen: the opaque directory opq (names
# hidden in the lower layer show through after some changes: EISDIR, EEXIST, wrong
# content),
# chosen: the lower hardlinks (fuse-overlayfs breaks the link on copy-up, and after a
# remount the other name shows the old data) and the lower fifo (chown, chmod, utime of
# it fail with EIO).
KNOWN_AVOID = ("rename_dir", "link_ghost", "link_lower", "fallocate", "rmdir_opaque",
               "/hl_a", "/d/hl_b", "/top_only/hl_x", "/top_only/hl_y",
               "/fifo", "/opq/")


def _recent_mtime(line):
    return line[1] == "mtime" and line[3] == "recent" and line[2] != "recent"


def _ops_recent_mtime(op, a, b, fields):
    return fields == {"mtime"} and isinstance(b[1], dict) and b[1].get("mtime") == "recent"


def _unlinked_nlink(op, a, b, fields):
    return (op[0] in ("open_unlink", "fd_fstat") and fields == {"nlink"}
            and a[1]["nlink"] == 0 and b[1]["nlink"] == 1)


def _sgid_lost(a, b):
    return (isinstance(a, str) and isinstance(b, str) and a != b
            and int(a, 8) & ~0o2000 == int(b, 8))


def _ops_sgid(op, a, b, fields):
    return fields == {"mode"} and _sgid_lost(a[1]["mode"], b[1]["mode"])


def _remount_links(line):
    return line[0].startswith("(after remount) ") and line[1] in ("hardlinks", "nlink")


def _remount_ino(line):
    return line[0] == "(remount)" and line[1] == "inv_st_ino_changed"


def _ops_mtime_kept(op, a, b, fields):
    return fields == {"mtime"} and isinstance(a[1], dict) and a[1]["mtime"] == "recent"


KNOWN_RULES = [
    ("truncate to the current size does not update mtime (seen later too)", _ops_mtime_kept,
     lambda ln: ln[1] == "mtime" and ln[2] == "recent" and ln[3] != "recent"),
    ("st_ino of lower files is not kept across unmount/remount", None, _remount_ino),
    ("a remount splits some hardlinks made by link()", None, _remount_links),
    ("copy-up of a directory drops its setgid bit", _ops_sgid,
     lambda ln: ln[1] == "mode" and _sgid_lost(ln[2], ln[3])),
    ("copy-up sets the mtime of the parent directory (or of a symlink) to now",
     _ops_recent_mtime, _recent_mtime),
    ("fstat of an open-unlinked file shows st_nlink 1, not 0", _unlinked_nlink, None),
]
TOLERATED = {}


def known_fuse_overlayfs(op, x):
    """True (and counted) when a divergence matches a KNOWN_RULES entry."""
    for name, on_op, on_line in KNOWN_RULES:
        if op[0] in HARD_OPS:
            hit = on_line is not None and on_line(x)
        else:
            hit = on_op is not None and on_op(op, *x)
        if hit:
            TOLERATED[name] = TOLERATED.get(name, 0) + 1
            return True
    return False


def parse_seeds(s):
    out = []
    for part in s.split(","):
        if "-" in part:
            a, b = part.split("-")
            out += range(int(a), int(b) + 1)
        elif part:
            out.append(int(part))
    return out


def main(argv=None, replay_ops=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="1", help="e.g. 1,2,3 or 1-6")
    ap.add_argument("--ops", type=int, default=400, help="operations per seed")
    ap.add_argument("--subject", default=os.environ.get("FSDIFF_SUBJECT", "strata-overlay"),
                    choices=["strata-overlay", "fuse-overlayfs", "kernel"])
    ap.add_argument("--subject-bin", help="the subject's binary (default: "
                    "$STRATA_BUILD/bin/strata-overlay, or fuse-overlayfs from PATH)")
    ap.add_argument("--subject-opts", default="", help="extra -o options for the subject")
    ap.add_argument("--oracle-opts", help="kernel overlayfs options (default: probed)")
    ap.add_argument("--check-every", type=int, default=25, help="whole-tree compare period")
    ap.add_argument("--remount-at", default="half",
                    help="op indices at which both unions are remounted ('half', or a "
                    "comma list; a remount is always done at the end)")
    ap.add_argument("--work", help="scratch dir (default: a new one in /dev/shm or $TMPDIR)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch dir")
    ap.add_argument("--allow-known", action="store_true",
                    help="tolerate known fuse-overlayfs divergences (fuse-overlayfs only)")
    ap.add_argument("--keep-going", action="store_true",
                    help="after a divergence (minimized), go on with the next seed")
    ap.add_argument("--no-minimize", action="store_true")
    ap.add_argument("--minimize-time", type=float, default=240, help="seconds")
    ap.add_argument("--repro-dir", help="also write reproducers here")
    ap.add_argument("--replay", help="run a reproducer's OPS (a .py file) with checking")
    ap.add_argument("--replay-ops", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--make-lower", metavar="DIR", help="only build the layers in DIR")
    ap.add_argument("-v", "--verbose", action="store_true")
    cfg = ap.parse_args(argv)

    if cfg.make_lower:
        make_layers(cfg.make_lower)
        log("layers: %s/l1 (top lower), %s/l2 (bottom lower), %s/upper0 (initial upper)" %
            ((cfg.make_lower,) * 3))
        return 0
    if os.geteuid() != 0:
        log("SKIP: fsdiff needs root (kernel overlayfs and FUSE mounts)")
        return 77
    if cfg.replay:
        ns = {"__name__": "fsdiff_replay"}
        with open(cfg.replay) as fh:
            exec(compile(fh.read(), cfg.replay, "exec"), ns)
        replay_ops = ns["OPS"]
    if cfg.subject == "strata-overlay":
        build = os.environ.get("STRATA_BUILD", os.path.join(HERE, "..", "..", "build"))
        cfg.subject_bin = cfg.subject_bin or os.path.join(build, "bin", "strata-overlay")
    elif cfg.subject == "fuse-overlayfs":
        cfg.subject_bin = cfg.subject_bin or shutil.which("fuse-overlayfs")
    if cfg.subject != "kernel":
        if not cfg.subject_bin or not os.access(cfg.subject_bin, os.X_OK):
            log("SKIP: the subject %s is not built or installed (%s)" % (
                cfg.subject, cfg.subject_bin or "not in PATH"))
            return 77
        if not os.path.exists("/dev/fuse"):
            log("SKIP: no /dev/fuse")
            return 77
    if cfg.allow_known and cfg.subject != "fuse-overlayfs":
        ap.error("--allow-known is for --subject fuse-overlayfs only")
    allow = known_fuse_overlayfs if cfg.allow_known else None
    STRICT_INVARIANTS[0] = cfg.subject != "kernel"

    made_work = False
    if not cfg.work:
        base = "/dev/shm" if os.path.isdir("/dev/shm") else None
        cfg.work = tempfile.mkdtemp(prefix="fsdiff.", dir=base)
        made_work = True
    else:
        os.makedirs(cfg.work, exist_ok=True)
    cfg.work = os.path.abspath(cfg.work)

    def on_signal(signum, frame):
        raise SystemExit(128 + signum)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # SIGINT even if ignored
        signal.signal(sig, on_signal)
    atexit.register(cleanup_mounts)
    try:
        return run_main(cfg, replay_ops, allow)
    finally:
        cleanup_mounts()
        if cfg.keep:
            log("kept %s" % cfg.work)
        elif made_work:
            shutil.rmtree(cfg.work, ignore_errors=True)
        elif getattr(cfg, "lower_base", None):
            shutil.rmtree(cfg.lower_base, ignore_errors=True)


def run_main(cfg, replay_ops, allow):
    cfg.lower_base = os.path.join(cfg.work, "layers")
    if os.path.exists(cfg.lower_base):
        shutil.rmtree(cfg.lower_base)
    cfg.layers = make_layers(cfg.lower_base)
    cfg.lower_digest = digest_tree(cfg.lower_base)
    ghosts = layer_paths(cfg.layers)
    try:
        cfg.oracle_opts = cfg.oracle_opts or probe_oracle_opts(cfg)
    except RuntimeError as e:
        log("SKIP: kernel overlayfs does not mount here: %s" % e)
        return 77
    log("fsdiff: subject %s (%s), oracle kernel overlayfs -o %s" % (
        cfg.subject, cfg.subject_bin or "mount -t overlay", cfg.oracle_opts))

    if replay_ops is not None:
        div, done, counts = run_ops(cfg, "replay", ops=list(replay_ops), verbose=True,
                                    allow=allow)
        if div:
            log("DIVERGENCE " + div.report())
            return 1
        log("replay: no divergence")
        return 0

    total = time.time()
    failed = []
    for seed in parse_seeds(cfg.seeds):
        t0 = time.time()
        if cfg.remount_at == "half":
            remount_at = [cfg.ops // 2]
        else:
            remount_at = [int(x) for x in cfg.remount_at.split(",") if x]

        def make_gen(sess, seed=seed, remount_at=remount_at):
            return Generator(seed, cfg.ops, cfg.check_every, remount_at, sess.oracle, ghosts,
                             avoid=KNOWN_AVOID if allow else ())
        div, done, counts = run_ops(cfg, "seed%d" % seed, make_gen=make_gen,
                                    verbose=cfg.verbose, allow=allow)
        dt = time.time() - t0
        if not div:
            log("seed %d: %d ops, %d tree checks, %d remounts%s: no divergence (%.1fs)" % (
                seed, counts["ops"], counts["checks"], counts["remounts"],
                ", %d known divergences tolerated" % counts["allowed"] if allow else "", dt))
            continue
        log("DIVERGENCE seed %d (after %.1fs) at %s" % (seed, dt, div.report()))
        failed.append(seed)
        if cfg.no_minimize:
            if cfg.keep_going:
                continue
            return 1
        log("minimizing (at most %ds) ..." % cfg.minimize_time)
        t1 = time.time()
        ops, best, runs, complete = minimize(cfg, done, div, cfg.minimize_time, allow)
        log("minimized %d ops to %d in %d replays, %.1fs%s" % (
            len(done), len(ops), runs, time.time() - t1,
            "" if complete else " (time budget spent: not minimal)"))
        text = reproducer(cfg, seed, ops, best)
        log("----- reproducer (python3) -----\n%s----- end of reproducer -----" % text)
        if cfg.repro_dir:
            os.makedirs(cfg.repro_dir, exist_ok=True)
            p = os.path.join(cfg.repro_dir, "fsdiff-repro-%s-seed%d.py" % (cfg.subject, seed))
            with open(p, "w") as fh:
                fh.write(text)
            log("reproducer written to %s" % p)
        if not cfg.keep_going:
            return 1
    for key, val in sorted(ORACLE_QUIRKS.items()):
        log("note: the oracle itself broke the invariant %s (e.g. %s); only the subject "
            "is held to it" % (key, show(val)))
    for name, n in sorted(TOLERATED.items()):
        log("tolerated %d times (--allow-known): %s" % (n, name))
    if failed:
        log("fsdiff: seeds that diverged: %s (%.1fs)" % (
            ",".join(map(str, failed)), time.time() - total))
        return 1
    log("fsdiff: all seeds passed (%.1fs)" % (time.time() - total))
    return 0


if __name__ == "__main__":
    sys.exit(main())
