#!/usr/bin/env bash
# fs_ops_test: the filesystem, one operation family at a time, over both kinds of lower:
#   stored  a 2-layer image in a store (an OCI layout whose top layer has .wh.NAME and
#           .wh..wh..opq entries): `strata --root STORE mount IMAGE MNT --upper U --work W`
#   dir     the same two layers as directories (whiteout = 0/0 char device, opaque =
#           trusted.overlay.opaque=y): `strata-overlay -o lowerdir=L1:L2,upperdir=U,workdir=W`
# The layers hold merged and nested dirs, files of 0/1/4096/1 MiB bytes, a sparse file,
# hardlinks, symlinks, a fifo, a char device, user.*/trusted.* xattrs, POSIX ACLs, a suid
# binary, a file with security.capability, a whiteout and an opaque dir.
# Families (one line each; a failing check prints expected vs seen and the test goes on):
# lookups and readdir, reads, writes and copy-up, metadata, namespace, seekdir/telldir,
# statfs + locks + O_DIRECT, a locked work dir, persistence across a remount, a read-only
# mount, and (once) the one-line errors of `strata mount`.
#
# FS_OPS_SUBJECTS="stored dir" (default) picks the subjects; "kernel" adds kernel overlayfs
# over the directory layers (redirect_dir=on,index=on,metacopy=on) to check the test
# itself against the reference (kernel overlayfs counts merged-dir nlink as 1, so it fails
# that check; the strata-specific families are skipped for it).
# Needs root (mknod, trusted.* xattrs, setcap, chown, mounts) and /dev/fuse.
# shellcheck source-path=SCRIPTDIR source=lib.sh disable=SC2001 # sed indents multi-line output
. "$(dirname "$0")/lib.sh"

need_root "mknod, trusted.* xattrs, setcap, chown and FUSE mounts"
[[ -c /dev/fuse ]] || skip "needs /dev/fuse (FUSE mounts)"
need_tools python3 tar setfattr getfattr setfacl getfacl setcap getcap setpriv flock \
  mountpoint umount mknod du ls stat
need_strata
OVERLAY_BIN=$(dirname "$STRATA_BIN")/strata-overlay
SUBJECTS=${FS_OPS_SUBJECTS:-stored dir}
for s in $SUBJECTS; do
  case $s in
    stored) ;;
    dir) [[ -x $OVERLAY_BIN ]] || fail "$OVERLAY_BIN is not built (strata-overlay)" ;;
    kernel) grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null ||
      skip "FS_OPS_SUBJECTS names kernel, and kernel overlayfs is not available" ;;
    *) fail "FS_OPS_SUBJECTS: unknown subject $s (want stored, dir, kernel)" ;;
  esac
done

start=$EPOCHREALTIME
setup_work
umask 022
# Everything on one disk filesystem ($STORES, as a real store and upper would be; it also
# lets kernel overlayfs keep lower inode numbers). The non-root users of the ACL checks
# must be able to reach the mounts.
chmod 0755 "$STORES"
L1=$STORES/L1 L2=$STORES/L2 REF=$STORES/merged STORE=$STORES/store IMAGE=fsops:latest
PY=$STORES/fs_ops.py
declare -A DAEMONS=() # mount point -> pids of its FUSE daemon

# --- the Python half: one function per family --------------------------------------------
cat >"$PY" <<'PYEOF'
"""fs_ops helper: python3 fs_ops.py FAMILY ARGS... (written by fs_ops_test.sh).
Prints one line per failed check ("label: expected X, seen Y"), exit 1 if any."""
import ctypes
import errno
import fcntl
import hashlib
import json
import mmap
import os
import shutil
import stat
import subprocess
import sys

J = os.path.join
BAD = 0
MIB = 1 << 20


def bad(msg):
    global BAD
    BAD += 1
    if BAD <= 25:
        print("  " + msg, flush=True)
    elif BAD == 26:
        print("  (further failed checks of this family not shown)", flush=True)


def show(v):
    if isinstance(v, (bytes, bytearray)) and len(v) > 40:
        return f"<{len(v)} bytes, sha256 {hashlib.sha256(v).hexdigest()[:12]}, {bytes(v[:16])!r}...>"
    r = repr(v)
    return r if len(r) <= 300 else r[:300] + "..."


def expect(label, want, seen):
    if want != seen:
        bad(f"{label}: expected {show(want)}, seen {show(seen)}")


class step:
    """with step(label): ... an unexpected exception fails the check and the family goes on."""

    def __init__(self, label):
        self.label = label

    def __enter__(self):
        return self

    def __exit__(self, t, v, tb):
        if t is not None and issubclass(t, Exception):
            if isinstance(v, OSError):
                v = f"{errno.errorcode.get(v.errno, v.errno)} {v}"
            bad(f"{self.label}: unexpected {t.__name__}: {v}")
            return True
        return False


def errof(fn, *a, **k):
    """'ok', or the errno name fn raised."""
    try:
        fn(*a, **k)
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
    return "ok"


def rd(p):
    with open(p, "rb") as f:
        return f.read()


def wr(p, data, mode="wb"):
    with open(p, mode) as f:
        f.write(data)


def sha(data):
    return hashlib.sha256(data).hexdigest()


def ino(p):
    return os.lstat(p).st_ino


def kind(mode):
    for test, name in ((stat.S_ISREG, "file"), (stat.S_ISDIR, "dir"), (stat.S_ISLNK, "symlink"),
                       (stat.S_ISCHR, "chardev"), (stat.S_ISBLK, "blockdev"),
                       (stat.S_ISFIFO, "fifo"), (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "?"


def run(*cmd, **kw):
    return subprocess.run(list(cmd), capture_output=True, text=True, **kw)


def du(d):
    """Bytes allocated under d (st_blocks), hardlinks once."""
    seen, total = set(), 0
    for dp, dns, fns in os.walk(d):
        for n in dns + fns + ["."]:
            st = os.lstat(J(dp, n))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


libc = ctypes.CDLL(None, use_errno=True)


def renameat2(old, new, flags):
    try:
        f = libc.renameat2
        f.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
        r = f(-100, os.fsencode(old), -100, os.fsencode(new), flags)
    except AttributeError:  # glibc < 2.28: the x86_64 system call
        r = libc.syscall(316, -100, os.fsencode(old), -100, os.fsencode(new), flags)
    if r != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), old)


NOREPLACE, EXCHANGE = 1, 2


def punch_hole(fd, off, length):
    f = libc.fallocate
    f.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
    if f(fd, 0x01 | 0x02, off, length) != 0:  # FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


# --- identity: st_ino == d_ino, unique, directory and hardlink nlink exact ---------------
def ids(root, label):
    names = {}  # st_ino -> [(rel, stat)]

    def walk(d, rel):
        nsub = 0
        for e in os.scandir(d):
            r = J(rel, e.name) if rel else e.name
            st = os.lstat(e.path)
            if e.inode() != st.st_ino:
                bad(f"{label}: {r}: d_ino from readdir {e.inode()} != st_ino {st.st_ino}")
            dtype = ("dir" if e.is_dir(follow_symlinks=False) else "symlink" if e.is_symlink()
                     else "file" if e.is_file(follow_symlinks=False) else "other")
            ltype = {"dir": "dir", "symlink": "symlink", "file": "file"}.get(kind(st.st_mode), "other")
            if dtype != ltype:
                bad(f"{label}: {r}: d_type from readdir says {dtype}, lstat says {ltype}")
            names.setdefault(st.st_ino, []).append((r, st))
            if stat.S_ISDIR(st.st_mode):
                nsub += 1
                walk(e.path, r)
        st = os.lstat(d)
        if st.st_nlink != 2 + nsub:
            bad(f"{label}: {rel or '.'}: directory nlink: expected {2 + nsub} (2 + {nsub} "
                f"subdirs), seen {st.st_nlink}")

    walk(root, "")
    rst = os.lstat(root)
    if rst.st_ino in names:
        bad(f"{label}: the root's st_ino {rst.st_ino} is also {[r for r, _ in names[rst.st_ino]]}")
    for i, lst in sorted(names.items()):
        paths = [r for r, _ in lst]
        dirs = [r for r, s in lst if stat.S_ISDIR(s.st_mode)]
        if len(lst) > 1 and dirs:
            bad(f"{label}: st_ino {i} shared by {paths}")
        elif not dirs and any(s.st_nlink != len(lst) for _, s in lst):
            bad(f"{label}: st_ino {i} is named by {paths}, whose st_nlink is "
                f"{[s.st_nlink for _, s in lst]}: expected {len(lst)}")


def fam_ids(root, label):
    ids(root, label)


# --- snapshots (persistence) ---------------------------------------------------------------
def snapshot(root):
    snap = {}

    def add(p, rel):
        st = os.lstat(p)
        e = {"type": kind(st.st_mode), "mode": oct(stat.S_IMODE(st.st_mode)), "uid": st.st_uid,
             "gid": st.st_gid, "ino": st.st_ino, "nlink": st.st_nlink}
        if rel != ".":
            e["mtime_ns"] = st.st_mtime_ns
        if not stat.S_ISDIR(st.st_mode):
            e["size"] = st.st_size
        if stat.S_ISREG(st.st_mode):
            e["sha256"] = sha(rd(p))[:16]
        if stat.S_ISLNK(st.st_mode):
            e["target"] = os.readlink(p)
        if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            e["rdev"] = st.st_rdev
        e["xattrs"] = {n: os.getxattr(p, n, follow_symlinks=False).hex()
                       for n in sorted(os.listxattr(p, follow_symlinks=False))}
        snap[rel] = e

    add(root, ".")
    for dp, dns, fns in os.walk(root):
        for n in dns + fns:
            p = J(dp, n)
            add(p, os.path.relpath(p, root))
    return snap


def fam_snapshot(root, out):
    with open(out, "w") as f:
        json.dump(snapshot(root), f, indent=0, sort_keys=True)


def fam_snapcmp(a_file, root, what):
    with open(a_file) as f:
        a = json.load(f)
    b = snapshot(root)
    for rel in sorted(set(a) | set(b)):
        if rel not in b:
            bad(f"{rel}: {what}: expected {show(a[rel])}, seen nothing (missing)")
        elif rel not in a:
            bad(f"{rel}: {what}: expected nothing, seen {show(b[rel])}")
        else:
            for k in sorted(set(a[rel]) | set(b[rel])):
                if a[rel].get(k) != b[rel].get(k):
                    bad(f"{rel}: {what}: {k}: expected {show(a[rel].get(k))}, seen {show(b[rel].get(k))}")


def fam_inokept(pristine_file, root):
    """Every path of the pristine tree still there keeps its st_ino (copy-up keeps it)."""
    with open(pristine_file) as f:
        a = json.load(f)
    b = snapshot(root)
    recreated = {"n/x", "n/y", "n/del", "n/ldir", "n/ex1", "n/ex2", "n/rdst", "rmtree"}  # exchanged, or removed and made anew
    for rel in sorted(set(a) & set(b)):
        if rel in recreated or rel.startswith("rmtree/"):
            continue
        expect(f"{rel}: st_ino since the mount (after the changes made by the families)",
               a[rel]["ino"], b[rel]["ino"])


# --- lookups and readdir -------------------------------------------------------------------
def ls_norm(d):
    r = run("ls", "-lanR", "--time-style=+%s", ".", cwd=d)
    lines = []
    for line in r.stdout.splitlines():
        f = line.split()
        if line.startswith("total ") or (len(f) >= 7 and f[-1] in (".", "..")):
            continue
        if line.startswith("d") and len(f) >= 7:
            f[4] = "SIZE"  # directory sizes are the filesystem's own
        lines.append(" ".join(f))
    return r.returncode, r.stderr.strip(), lines


def fam_lookups(mnt, ref):
    with step("root listing"):
        expect("listing of /", sorted(os.listdir(ref)), sorted(os.listdir(mnt)))
    for d, want in (("common", ["from_l1", "from_l2", "sub"]), ("common/sub", ["deep", "l1file"]),
                    ("opq", ["new"]), ("mdir", ["bottom", "top"]),
                    ("hl", ["a", "b"])):
        with step(f"listing of {d}"):
            expect(f"listing of {d}", want, sorted(os.listdir(J(mnt, d))))
    with step("whiteouts, opaque dir, type change"):
        for rel, want in (("gone", "ENOENT"), ("gonedir", "ENOENT"), ("gonedir/x", "ENOENT"),
                          ("opq/old1", "ENOENT"), ("opq/old2", "ENOENT"),
                          ("typechange/inner", "ENOTDIR")):
            expect(f"lstat {rel}", want, errof(os.lstat, J(mnt, rel)))
        expect("typechange (a file in L1 over a dir in L2): type", "file",
               kind(os.lstat(J(mnt, "typechange")).st_mode))
        expect("shadowed: the top layer's content", b"top\n", rd(J(mnt, "shadowed")))
        expect("common: the top layer's dir mode", 0o775, stat.S_IMODE(os.lstat(J(mnt, "common")).st_mode))
        expect("common: the top layer's xattr", b"top", os.getxattr(J(mnt, "common"), "user.layer"))
        expect("opq: private overlay xattrs hidden", [],
               [n for n in os.listxattr(J(mnt, "opq")) if "overlay." in n or "strata." in n])
    with step("negative lookups"):
        for rel in ("missing", "missing", "common/missing", "common/sub/missing", "opq/missing",
                    "nodir/missing"):
            expect(f"lstat {rel}", "ENOENT", errof(os.lstat, J(mnt, rel)))
            expect(f"open {rel}", "ENOENT", errof(open, J(mnt, rel), "rb"))
        expect("lstat f1/child (f1 is a file)", "ENOTDIR", errof(os.lstat, J(mnt, "f1/child")))
    with step("hardlinks"):
        a, b = os.lstat(J(mnt, "hl/a")), os.lstat(J(mnt, "hl/b"))
        expect("hl/a and hl/b: st_ino equal", True, a.st_ino == b.st_ino)
        expect("hl/a, hl/b: st_nlink", (2, 2), (a.st_nlink, b.st_nlink))
    with step("ls -la"):
        rc, err, got = ls_norm(mnt)
        expect("ls -lanR of the mount: exit status and stderr", (0, ""), (rc, err))
        _, _, want = ls_norm(ref)
        if got != want:
            diff = [f"-{x}" for x in want if x not in got] + [f"+{x}" for x in got if x not in want]
            bad(f"ls -lanR (size of dirs left out): expected the reference tree's listing, "
                f"seen {len(diff)} different lines: {diff[:8]}")
    with step("identity"):
        ids(mnt, "pristine tree")


# --- reads ---------------------------------------------------------------------------------
def fam_reads(mnt, ref):
    for rel in ("f0", "f1", "f4k", "f1m", "sparse", "shadowed", "top_only", "typechange",
                "common/from_l1", "common/from_l2", "common/sub/deep/file", "hl/a", "hl/b",
                "suid", "capbin", "xattrs", "acl", "n/ldir/big"):
        with step(f"read {rel}"):
            expect(f"contents of {rel}", rd(J(ref, rel)), rd(J(mnt, rel)))
    with step("sizes"):
        expect("sizes of f0 f1 f4k f1m sparse", [0, 1, 4096, MIB, 4 * MIB],
               [os.lstat(J(mnt, n)).st_size for n in ("f0", "f1", "f4k", "f1m", "sparse")])
    with step("sparse file"):
        with open(J(mnt, "sparse"), "rb") as f:
            f.seek(MIB)
            expect("sparse: 64 KiB at 1 MiB (in the hole)", bytes(65536), f.read(65536))
            expect("sparse: the first 4 bytes", b"head", os.pread(f.fileno(), 4, 0))
            expect("sparse: the last 4 bytes", b"tail", os.pread(f.fileno(), 4, 4 * MIB - 4))
    with step("symlinks"):
        expect("readlink sym", "f4k", os.readlink(J(mnt, "sym")))
        expect("readlink abslink", "/nonexistent/target", os.readlink(J(mnt, "abslink")))
        expect("readlink symdir", "common", os.readlink(J(mnt, "symdir")))
        expect("read through sym", rd(J(ref, "f4k")), rd(J(mnt, "sym")))
        expect("listing through symdir/", sorted(os.listdir(J(mnt, "common"))),
               sorted(os.listdir(J(mnt, "symdir") + "/")))
        expect("stat through abslink", "ENOENT", errof(os.stat, J(mnt, "abslink")))
    with step("mmap read"):
        for rel in ("f1m", "sparse", "f4k"):
            with open(J(mnt, rel), "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as m:
                expect(f"mmap read of {rel}", rd(J(ref, rel)), m[:])
    with step("large read"):
        want = rd(J(ref, "sparse"))
        fd = os.open(J(mnt, "sparse"), os.O_RDONLY)
        try:
            got = os.read(fd, 8 * MIB)
            expect("one read(8 MiB) of the 4 MiB sparse: length", 4 * MIB, len(got))
            expect("one read(8 MiB) of the 4 MiB sparse", want, got)
            expect("pread of 3 MiB at an odd offset", want[123457:123457 + 3 * MIB],
                   os.pread(fd, 3 * MIB, 123457))
        finally:
            os.close(fd)
    with step("special files"):
        expect("fifo: type", "fifo", kind(os.lstat(J(mnt, "fifo")).st_mode))
        st = os.lstat(J(mnt, "chr"))
        expect("chr: type and rdev", ("chardev", os.makedev(1, 3)), (kind(st.st_mode), st.st_rdev))
        expect("read of chr (a char device 1:3, /dev/null)", b"", rd(J(mnt, "chr")))


# --- writes and copy-up --------------------------------------------------------------------
def fam_writes(mnt, up, ref):
    w = J(mnt, "w")
    with step("append"):
        before = ino(J(w, "append"))
        wr(J(w, "append"), b"more\n", "ab")
        expect("w/append after appending", b"base\nmore\n", rd(J(w, "append")))
        expect("w/append: st_ino kept by copy-up", before, ino(J(w, "append")))
    with step("write at an offset"):
        fd = os.open(J(w, "offset"), os.O_WRONLY)
        os.pwrite(fd, b"XYZ", 100)
        os.close(fd)
        expect("w/offset after pwrite(XYZ, 100)", b"a" * 100 + b"XYZ" + b"a" * 8089, rd(J(w, "offset")))
    with step("O_TRUNC"):
        wr(J(w, "trunc"), b"")
        expect("w/trunc after open(O_TRUNC)", (0, b""), (os.lstat(J(w, "trunc")).st_size, rd(J(w, "trunc"))))
        wr(J(w, "trunc2"), b"new\n")
        expect("w/trunc2 after open(O_TRUNC) + write", b"new\n", rd(J(w, "trunc2")))
    with step("truncate up and down"):
        os.truncate(J(w, "grow"), 10000)
        expect("w/grow after truncate to 10000", b"abc" + bytes(9997), rd(J(w, "grow")))
        os.truncate(J(w, "shrink"), 10)
        expect("w/shrink after truncate to 10", b"c" * 10, rd(J(w, "shrink")))
    with step("fallocate"):
        fd = os.open(J(w, "falloc"), os.O_RDWR)
        try:
            os.posix_fallocate(fd, 0, MIB)
            expect("w/falloc after posix_fallocate(0, 1 MiB): size", MIB, os.fstat(fd).st_size)
            expect("w/falloc after posix_fallocate", b"b" * 65536 + bytes(MIB - 65536), rd(J(w, "falloc")))
            punch_hole(fd, 4096, 8192)
            expect("w/falloc after punching 8192 bytes at 4096: size", MIB, os.fstat(fd).st_size)
            expect("w/falloc after punching 8192 bytes at 4096",
                   b"b" * 4096 + bytes(8192) + b"b" * (65536 - 12288) + bytes(MIB - 65536),
                   rd(J(w, "falloc")))
        finally:
            os.close(fd)
    with step("hardlink pair copy-up"):
        a0 = ino(J(mnt, "hl/a"))
        wr(J(mnt, "hl/a"), b"through a\n", "ab")
        expect("hl/b after appending through hl/a", b"hardlinked\nthrough a\n", rd(J(mnt, "hl/b")))
        a, b = os.lstat(J(mnt, "hl/a")), os.lstat(J(mnt, "hl/b"))
        expect("hl/a, hl/b after the copy-up: st_ino", (a0, a0), (a.st_ino, b.st_ino))
        expect("hl/a, hl/b after the copy-up: st_nlink", (2, 2), (a.st_nlink, b.st_nlink))
        wr(J(mnt, "hl/b"), b"through b\n", "ab")
        expect("hl/a after appending through hl/b", b"hardlinked\nthrough a\nthrough b\n", rd(J(mnt, "hl/a")))
    with step("sparse copy-up"):
        before = du(up)
        wr(J(w, "sparse"), b"+", "ab")
        expect("w/sparse after an append", rd(J(ref, "w/sparse")) + b"+", rd(J(w, "sparse")))
        grew = du(up) - before
        if grew > 2 * MIB:  # kernel overlayfs skips holes in 1 MiB chunks
            bad(f"upper growth after appending to the 16 MiB sparse w/sparse (64 KiB of data): "
                f"expected <= 2 MiB (holes kept by the copy-up), seen {grew // 1024} KiB")
    with step("copy_file_range, fsync"):
        src = os.open(J(mnt, "f1m"), os.O_RDONLY)
        dst = os.open(J(w, "cfr"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            done = 0
            while done < MIB:
                k = os.copy_file_range(src, dst, MIB - done)
                if k <= 0:
                    break
                done += k
            os.fsync(dst)
            os.fdatasync(dst)
        finally:
            os.close(src)
            os.close(dst)
        expect("w/cfr (copy_file_range of f1m)", rd(J(ref, "f1m")), rd(J(w, "cfr")))
    with step("st_ino across copy-up"):
        before = ino(J(w, "ino"))
        wr(J(w, "ino"), b"x", "ab")
        expect("w/ino: st_ino after copy-up", before, ino(J(w, "ino")))
    with step("read-only fd opened before the copy-up"):
        fr = os.open(J(w, "rofd"), os.O_RDONLY)
        try:
            expect("w/rofd through the early fd, before", b"r" * 4096, os.pread(fr, 4096, 0))
            fw = os.open(J(w, "rofd"), os.O_WRONLY)
            os.pwrite(fw, b"NEW", 0)
            os.pwrite(fw, b"END", 4096)
            os.close(fw)
            expect("w/rofd through the fd opened read-only before the copy-up",
                   b"NEW" + b"r" * 4093 + b"END", os.pread(fr, 8192, 0))
            expect("fstat of the early fd: size", 4099, os.fstat(fr).st_size)
        finally:
            os.close(fr)
    with step("mmap MAP_SHARED write"):
        fd = os.open(J(w, "mmap"), os.O_RDWR)
        with mmap.mmap(fd, 8192, flags=mmap.MAP_SHARED) as m:
            m[0:5] = b"HELLO"
            m[8190:8192] = b"!!"
            m.flush()
        os.close(fd)
        expect("w/mmap read back through read()", b"HELLO" + b"m" * 8185 + b"!!", rd(J(w, "mmap")))
    with step("mmap MAP_PRIVATE write"):
        fd = os.open(J(w, "mpriv"), os.O_RDONLY)
        with mmap.mmap(fd, 4096, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE) as m:
            m[0:4] = b"PRIV"
            expect("w/mpriv through its private mapping", b"PRIV", m[0:4])
        os.close(fd)
        expect("w/mpriv after a MAP_PRIVATE write (unchanged)", b"p" * 4096, rd(J(w, "mpriv")))
    with step("O_APPEND"):
        fd = os.open(J(w, "oappend"), os.O_WRONLY | os.O_APPEND)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, b"ab")
        os.write(fd, b"cd")
        os.close(fd)
        expect("w/oappend after two O_APPEND writes (after lseek 0)", b"0123abcd", rd(J(w, "oappend")))
    with step("open-unlinked lower file"):
        p = J(w, "unl")
        fd = os.open(p, os.O_RDWR)
        try:
            os.unlink(p)
            expect("lstat w/unl after unlink", "ENOENT", errof(os.lstat, p))
            os.pwrite(fd, b"zz", 0)
            os.pwrite(fd, b"+tail", 9)
            expect("w/unl read back through the open fd", b"zzlinked\n+tail", os.pread(fd, 100, 0))
            expect("fstat(w/unl).st_nlink after unlink", 0, os.fstat(fd).st_nlink)
        finally:
            os.close(fd)
        p = J(w, "unl2")
        fd = os.open(p, os.O_RDONLY)
        os.unlink(p)
        expect("read of w/unl2 (opened read-only, then unlinked)", b"unlinked2\n", os.pread(fd, 100, 0))
        os.close(fd)
    with step("open-unlinked new file"):
        p = J(w, "newunl")
        fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, b"first ")
            os.unlink(p)
            os.write(fd, b"second")
            expect("w/newunl read back after unlink", b"first second", os.pread(fd, 100, 0))
            expect("fstat(w/newunl).st_nlink after unlink", 0, os.fstat(fd).st_nlink)
            expect("w/newunl not listed", False, "newunl" in os.listdir(w))
        finally:
            os.close(fd)


# --- metadata ------------------------------------------------------------------------------
def as_user(uid, *cmd):
    return run("setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *cmd)


def acl_checks(m, when):
    for rel, uid, ok in (("acl_allow", 1000, True), ("acl_allow", 1003, False),
                         ("acl_deny", 1002, False), ("acl_deny", 1003, True)):
        r = as_user(uid, "cat", J(m, rel))
        seen = "read" if r.returncode == 0 else f"denied ({r.stderr.strip()})"
        expect(f"{when}: uid {uid} reads m/{rel} (ACL {'allows' if ok else 'denies'})",
               "read" if ok else "denied (cat: %s: Permission denied)" % J(m, rel), seen)


def fam_metadata(mnt, up, ref):
    m = J(mnt, "m")
    with step("chmod: metadata-only copy-up"):
        before = du(up)
        os.chmod(J(m, "big"), 0o600)
        expect("m/big mode after chmod 0600", 0o600, stat.S_IMODE(os.lstat(J(m, "big")).st_mode))
        expect("m/big contents after chmod", rd(J(ref, "m/big")), rd(J(m, "big")))
        grew = du(up) - before
        if grew > 64 * 1024:
            bad(f"upper growth after chmod of the 1 MiB m/big: expected <= 64 KiB "
                f"(metadata-only copy-up), seen {grew // 1024} KiB")
        wr(J(m, "big"), b"appended", "ab")
        expect("m/big after an append (data copy-up after the metadata one)",
               rd(J(ref, "m/big")) + b"appended", rd(J(m, "big")))
        expect("m/big mode after the append", 0o600, stat.S_IMODE(os.lstat(J(m, "big")).st_mode))
    with step("chown"):
        os.chown(J(m, "own"), 1000, 1000)
        st = os.lstat(J(m, "own"))
        expect("m/own uid:gid after chown 1000:1000", (1000, 1000), (st.st_uid, st.st_gid))
        expect("m/own contents after chown", b"own\n", rd(J(m, "own")))
        os.chown(J(mnt, "symdir"), 1001, 1001, follow_symlinks=False)
        st = os.lstat(J(mnt, "symdir"))
        expect("lchown symdir 1001:1001", (1001, 1001), (st.st_uid, st.st_gid))
        expect("lchown symdir: target", "common", os.readlink(J(mnt, "symdir")))
    with step("utimes (ns)"):
        os.utime(J(m, "time"), ns=(1500000000000000001, 1600000000123456789))
        st = os.lstat(J(m, "time"))
        expect("m/time atime_ns, mtime_ns after utimensat", (1500000000000000001, 1600000000123456789),
               (st.st_atime_ns, st.st_mtime_ns))
        expect("m/time contents after utimensat", b"time\n", rd(J(m, "time")))
        os.utime(J(mnt, "sym"), ns=(1400000000000000000, 1400000000000000007), follow_symlinks=False)
        expect("sym mtime_ns after lutimes", 1400000000000000007, os.lstat(J(mnt, "sym")).st_mtime_ns)
    with step("xattrs"):
        p = J(m, "xa")
        os.setxattr(p, "user.new", b"1")
        os.removexattr(p, "user.color")
        os.setxattr(p, "trusted.other", b"t")
        expect("xattr names of m/xa after set user.new, trusted.other and remove user.color",
               ["trusted.other", "trusted.secret", "user.new"], sorted(os.listxattr(p)))
        expect("user.new", b"1", os.getxattr(p, "user.new"))
        expect("trusted.secret", b"s3", os.getxattr(p, "trusted.secret"))
        expect("getxattr user.color (removed)", "ENODATA", errof(os.getxattr, p, "user.color"))
        expect("removexattr user.color again", "ENODATA", errof(os.removexattr, p, "user.color"))
        expect("setxattr user.new with XATTR_CREATE (exists)", "EEXIST",
               errof(os.setxattr, p, "user.new", b"2", os.XATTR_CREATE))
        expect("m/xa contents", b"xa\n", rd(p))
        # Refused (strata) or escaped (kernel >= 6.7): either way it must not make a dir opaque.
        errof(os.setxattr, J(mnt, "common"), "trusted.overlay.opaque", b"y")
        expect("listing of the merged dir common after setxattr trusted.overlay.opaque=y on it",
               ["from_l1", "from_l2", "sub"], sorted(os.listdir(J(mnt, "common"))))
        expect("private xattrs listed on common", [],
               [x for x in os.listxattr(J(mnt, "common")) if x.startswith(("trusted.strata.", "user.strata."))])
        os.setxattr(J(mnt, "m"), "user.dir", b"d")
        expect("user.dir on the lower dir m", b"d", os.getxattr(J(mnt, "m"), "user.dir"))
    with step("chmod, utime of lower dirs; metadata then truncate"):
        os.chmod(J(mnt, "hl2"), 0o1777)
        expect("hl2 mode after chmod 1777", 0o1777, stat.S_IMODE(os.lstat(J(mnt, "hl2")).st_mode))
        os.chmod(J(mnt, "hl2"), 0o755)
        os.utime(J(mnt, "mdir"), ns=(1300000000000000000, 1300000000000000003))
        expect("mdir (merged) mtime_ns after utimensat", 1300000000000000003, os.lstat(J(mnt, "mdir")).st_mtime_ns)
        expect("listing of mdir after utimensat", ["bottom", "top"], sorted(os.listdir(J(mnt, "mdir"))))
        os.chmod(J(m, "trunc"), 0o640)
        os.truncate(J(m, "trunc"), 100)
        expect("m/trunc after chmod then truncate to 100", b"q" * 100, rd(J(m, "trunc")))
    with step("metadata through one name of a lower hardlink pair"):
        os.chmod(J(mnt, "hl4/a"), 0o600)
        os.chown(J(mnt, "hl4/a"), 1000, 1001)
        os.setxattr(J(mnt, "hl4/a"), "user.via", b"a")
        st = os.lstat(J(mnt, "hl4/b"))
        expect("hl4/b mode, uid, gid after chmod 0600 + chown 1000:1001 of hl4/a",
               (0o600, 1000, 1001), (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid))
        expect("hl4/b user.via (set through hl4/a)", b"a", os.getxattr(J(mnt, "hl4/b"), "user.via"))
        expect("hl4/a, hl4/b st_ino, st_nlink", (ino(J(mnt, "hl4/a")), 2, 2),
               (st.st_ino, os.lstat(J(mnt, "hl4/a")).st_nlink, st.st_nlink))
    with step("chown drops suid and security.capability"):
        os.chown(J(m, "suid3"), 1000, 1000)
        expect("m/suid3 (4755) mode after chown 1000:1000", 0o755, stat.S_IMODE(os.lstat(J(m, "suid3")).st_mode))
        os.chown(J(m, "cap4"), 1000, 1000)
        expect("security.capability of m/cap4 after chown", "ENODATA",
               errof(os.getxattr, J(m, "cap4"), "security.capability"))
    with step("permission checks for other users"):
        denied = lambda r: "denied" if r.returncode != 0 and "Permission denied" in r.stderr else \
            f"exit {r.returncode} ({r.stderr.strip()})"
        r = as_user(1000, "sh", "-c", f"printf y >>{J(mnt, 'f1')}")
        expect("uid 1000 appends to f1 (root's, 0644)", "denied", denied(r))
        r = as_user(1000, "touch", J(mnt, "common/by1000"))
        expect("uid 1000 creates in common (root's, 0775)", "denied", denied(r))
        expect("f1 unchanged", b"x", rd(J(mnt, "f1")))
        os.chmod(J(mnt, "hl2"), 0o1777)
        r = as_user(1000, "sh", "-c", f"echo mine >{J(mnt, 'hl2/by1000')} && rm {J(mnt, 'hl2/by1000')}")
        expect("uid 1000 creates and removes its file in the sticky hl2", (0, ""), (r.returncode, r.stderr.strip()))
        r = as_user(1000, "rm", "-f", J(mnt, "hl2/b"))
        expect("uid 1000 removes root's hl2/b in the sticky hl2", "denied",
               "denied" if r.returncode != 0 and "Operation not permitted" in r.stderr else denied(r))
        expect("hl2/b still there", "ok", errof(os.lstat, J(mnt, "hl2/b")))
    with step("trusted xattr on a symlink"):
        os.setxattr(J(mnt, "abslink"), "trusted.sl", b"1", follow_symlinks=False)
        expect("trusted.sl of abslink", b"1", os.getxattr(J(mnt, "abslink"), "trusted.sl", follow_symlinks=False))
        expect("abslink target", "/nonexistent/target", os.readlink(J(mnt, "abslink")))
    with step("suid kept"):
        os.utime(J(m, "suid"), ns=(1600000000000000000, 1600000000000000000))
        os.setxattr(J(m, "suid"), "user.x", b"1")
        expect("m/suid mode after utime and setxattr", 0o4755, stat.S_IMODE(os.lstat(J(m, "suid")).st_mode))
    with step("suid on writes"):
        wr(J(m, "suid2"), b"", "ab")
        os.close(os.open(J(m, "suid2"), os.O_WRONLY | os.O_APPEND))
        with open(J(m, "suid2"), "ab") as f:
            f.write(b"\0")
        expect("m/suid2 (4755) mode after root appends to it", 0o4755, stat.S_IMODE(os.lstat(J(m, "suid2")).st_mode))
        r = as_user(1000, "sh", "-c", f"printf x >>{J(m, 'suidw')}")
        expect("uid 1000 appends to m/suidw (4777)", (0, ""), (r.returncode, r.stderr.strip()))
        expect("m/suidw mode after a write by uid 1000 (suid dropped)", 0o777,
               stat.S_IMODE(os.lstat(J(m, "suidw")).st_mode))
        expect("m/suidw contents", b"suidw\nx", rd(J(m, "suidw")))
    with step("security.capability kept"):
        os.utime(J(m, "cap"), ns=(1600000000000000000, 1600000000000000000))
        r = run("getcap", J(m, "cap"))
        expect("getcap m/cap after utime (metadata copy-up)", "cap_net_raw=ep", (r.stdout.split() or [r.stderr.strip()])[-1])
        os.close(os.open(J(m, "cap2"), os.O_RDWR))  # open for write: copy-up of the data
        r = run("getcap", J(m, "cap2"))
        expect("getcap m/cap2 after open(O_RDWR) (data copy-up)", "cap_net_raw=ep",
               (r.stdout.split() or [r.stderr.strip()])[-1])
        expect("m/cap2 contents", rd(J(ref, "m/cap2")), rd(J(m, "cap2")))
        with open(J(m, "cap3"), "ab") as f:
            f.write(b"\0")
        expect("security.capability of m/cap3 after a write (the kernel drops it)", "ENODATA",
               errof(os.getxattr, J(m, "cap3"), "security.capability"))
    with step("ACL"):
        r = run("getfacl", "-cn", J(m, "acl_allow"))
        expect("getfacl m/acl_allow", "user::rw-\nuser:1000:r--\ngroup::---\nmask::r--\nother::---",
               r.stdout.strip())
        acl_checks(m, "lower")
        for rel in ("acl_allow", "acl_deny"):
            os.setxattr(J(m, rel), "user.copyup", b"1")
        acl_checks(m, "after a metadata copy-up")
        r = run("setfacl", "-m", "u:1004:r", J(m, "acl_deny"))
        expect("setfacl -m u:1004:r m/acl_deny", (0, ""), (r.returncode, r.stderr.strip()))
        r = as_user(1004, "cat", J(m, "acl_deny"))
        expect("uid 1004 reads m/acl_deny after setfacl", (0, "deny\n"), (r.returncode, r.stdout))
        plain = J(os.path.dirname(up), "plain-dacl")
        subprocess.run(["cp", "-a", J(ref, "m/dacl"), plain], check=True)
        old = os.umask(0o022)
        try:
            got = []
            for d in (plain, J(m, "dacl")):
                wr(J(d, "new"), b"")
                os.mkdir(J(d, "newdir"))
                got.append([(stat.S_IMODE(os.lstat(J(d, x)).st_mode), run("getfacl", "-cn", J(d, x)).stdout)
                            for x in ("new", "newdir")])
            expect("mode and getfacl of a file and a dir made in m/dacl (default ACL), "
                   "as on a plain directory", got[0], got[1])
        finally:
            os.umask(old)
        r = run("getfacl", "-cn", J(mnt, "acl"))
        expect("getfacl acl (untouched lower)", "user::rw-\nuser:1000:r--\ngroup::---\nmask::r--\nother::---",
               r.stdout.strip())


# --- namespace -----------------------------------------------------------------------------
def fam_namespace(mnt, up, ref):
    n = J(mnt, "n")
    with step("create after a negative lookup, unlink"):
        p = J(n, "new")
        expect("lstat n/new before create", "ENOENT", errof(os.lstat, p))
        wr(p, b"new\n")
        expect("n/new after create", b"new\n", rd(p))
        os.unlink(p)
        expect("lstat n/new after unlink", "ENOENT", errof(os.lstat, p))
    with step("unlink of a lower file"):
        os.unlink(J(n, "del"))
        expect("lstat n/del after unlink", "ENOENT", errof(os.lstat, J(n, "del")))
        expect("n/del listed after unlink", False, "del" in os.listdir(n))
        st = os.lstat(J(up, "n", "del"))
        expect("the upper's n/del (a whiteout)", ("chardev", 0), (kind(st.st_mode), st.st_rdev))
        wr(J(n, "del"), b"again\n")
        expect("n/del created again", b"again\n", rd(J(n, "del")))
    with step("mkdir, rmdir"):
        d = J(n, "nd")
        os.mkdir(d, 0o750)
        expect("n/nd mode", 0o750, stat.S_IMODE(os.lstat(d).st_mode))
        wr(J(d, "f"), b"")
        expect("rmdir of n/nd with a file", "ENOTEMPTY", errof(os.rmdir, d))
        os.unlink(J(d, "f"))
        expect("rmdir of n/nd once empty", "ok", errof(os.rmdir, d))
        expect("lstat n/nd after rmdir", "ENOENT", errof(os.lstat, d))
        expect("mkdir of an existing lower dir", "EEXIST", errof(os.mkdir, J(mnt, "common")))
    with step("rmdir of merged and lower dirs"):
        d = J(mnt, "mdir2")
        expect("rmdir mdir2 (entries in both layers)", "ENOTEMPTY", errof(os.rmdir, d))
        os.unlink(J(d, "b"))
        expect("rmdir mdir2 (its top-layer entry left)", "ENOTEMPTY", errof(os.rmdir, d))
        os.unlink(J(d, "t"))
        expect("rmdir mdir2 after deleting every entry", "ok", errof(os.rmdir, d))
        expect("lstat mdir2 after rmdir", "ENOENT", errof(os.lstat, d))
        d = J(mnt, "rmme")
        expect("rmdir rmme (lower entries)", "ENOTEMPTY", errof(os.rmdir, d))
        os.unlink(J(d, "x"))
        os.unlink(J(d, "y"))
        expect("rmdir rmme after deleting every lower entry", "ok", errof(os.rmdir, d))
        expect("lstat rmme after rmdir", "ENOENT", errof(os.lstat, d))
    with step("rename of a file"):
        i = ino(J(n, "file"))
        os.rename(J(n, "file"), J(n, "file2"))
        expect("n/file2 contents after rename", b"file\n", rd(J(n, "file2")))
        expect("n/file2 st_ino (that of n/file)", i, ino(J(n, "file2")))
        expect("lstat n/file after rename", "ENOENT", errof(os.lstat, J(n, "file")))
        os.rename(J(mnt, "f4k"), J(n, "f4k-moved"))
        expect("n/f4k-moved (renamed from /f4k)", rd(J(ref, "f4k")), rd(J(n, "f4k-moved")))
        expect("lstat f4k after rename", "ENOENT", errof(os.lstat, J(mnt, "f4k")))
        expect("sym (-> f4k) after f4k moved away", "ENOENT", errof(os.stat, J(mnt, "sym")))
    with step("rename of a lower dir"):
        before = du(up)
        ia = ino(J(n, "ldir/a"))
        idir = ino(J(n, "ldir"))
        expect("rename n/ldir -> n/ldir2 (a lower dir with a 1 MiB file)", "ok",
               errof(os.rename, J(n, "ldir"), J(n, "ldir2")))
        expect("listing of n/ldir2", ["a", "big", "sub"], sorted(os.listdir(J(n, "ldir2"))))
        expect("listing of n/ldir2/sub", ["b"], sorted(os.listdir(J(n, "ldir2/sub"))))
        expect("n/ldir2/a", b"a\n", rd(J(n, "ldir2/a")))
        expect("n/ldir2/sub/b", b"b\n", rd(J(n, "ldir2/sub/b")))
        expect("n/ldir2/big", rd(J(ref, "n/ldir/big")), rd(J(n, "ldir2/big")))
        expect("st_ino of n/ldir2/a (that of n/ldir/a)", ia, ino(J(n, "ldir2/a")))
        expect("st_ino of n/ldir2 (that of n/ldir)", idir, ino(J(n, "ldir2")))
        expect("lstat n/ldir after rename", "ENOENT", errof(os.lstat, J(n, "ldir")))
        expect("lstat n/ldir/a after rename", "ENOENT", errof(os.lstat, J(n, "ldir/a")))
        grew = du(up) - before
        if grew > 64 * 1024:
            bad(f"upper growth after renaming a lower dir holding 1 MiB: expected <= 64 KiB, seen {grew // 1024} KiB")
        os.mkdir(J(n, "ldir"))
        expect("a new n/ldir (where the renamed lower dir was)", [], os.listdir(J(n, "ldir")))
        wr(J(n, "ldir2/sub/c"), b"c\n")
        expect("listing of n/ldir2/sub after a create", ["b", "c"], sorted(os.listdir(J(n, "ldir2/sub"))))
    with step("rename of a lower subdir across dirs"):
        expect("rename n/ldir2/sub -> common/sub2 (into a merged dir)", "ok",
               errof(os.rename, J(n, "ldir2/sub"), J(mnt, "common/sub2")))
        expect("listing of common/sub2", ["b", "c"], sorted(os.listdir(J(mnt, "common/sub2"))))
        expect("common/sub2/b", b"b\n", rd(J(mnt, "common/sub2/b")))
        expect("listing of n/ldir2", ["a", "big"], sorted(os.listdir(J(n, "ldir2"))))
    with step("RENAME_EXCHANGE of two lower dirs; rename over a non-empty dir"):
        expect("renameat2(n/ex1, n/ex2, RENAME_EXCHANGE)", "ok",
               errof(renameat2, J(n, "ex1"), J(n, "ex2"), EXCHANGE))
        expect("listings of n/ex1, n/ex2 after the exchange", (["b2"], ["a1"]),
               (os.listdir(J(n, "ex1")), os.listdir(J(n, "ex2"))))
        expect("n/ex1/b2", b"b2\n", rd(J(n, "ex1/b2")))
        expect("rename n/ex1 over the non-empty merged dir common", "ENOTEMPTY",
               errof(os.rename, J(n, "ex1"), J(mnt, "common")))
        expect("rename the file n/x over the dir common", "EISDIR", errof(os.rename, J(n, "x"), J(mnt, "common")))
        expect("open(n/lk, O_CREAT|O_EXCL) of a lower file", "EEXIST",
               errof(os.open, J(n, "lk"), os.O_WRONLY | os.O_CREAT | os.O_EXCL))
        os.rename(J(n, "rsrc"), J(n, "rdst"))
        expect("n/rdst after renaming n/rsrc over it (both lower)", b"rsrc\n", rd(J(n, "rdst")))
        expect("listing of n has no rsrc", False, "rsrc" in os.listdir(n))
    with step("rename of one name of a lower hardlink pair"):
        i = ino(J(mnt, "hl3/b"))
        os.rename(J(mnt, "hl3/a"), J(n, "hl3a-moved"))
        wr(J(n, "hl3a-moved"), b"moved\n", "ab")
        expect("hl3/b after appending through the renamed hl3/a", b"trio\nmoved\n", rd(J(mnt, "hl3/b")))
        a, b = os.lstat(J(n, "hl3a-moved")), os.lstat(J(mnt, "hl3/b"))
        expect("st_ino, st_nlink of n/hl3a-moved and hl3/b", (i, i, 2, 2), (a.st_ino, b.st_ino, a.st_nlink, b.st_nlink))
    with step("rename of a lower dir holding a whiteout"):
        os.unlink(J(n, "wdir/drop"))
        os.rename(J(n, "wdir"), J(n, "wdir2"))
        expect("listing of n/wdir2 (n/wdir/drop deleted before the rename)", ["keep"], os.listdir(J(n, "wdir2")))
        expect("lstat n/wdir2/drop", "ENOENT", errof(os.lstat, J(n, "wdir2/drop")))
    with step("rename of a merged dir"):
        os.rename(J(mnt, "mdir"), J(mnt, "mdir_r"))
        expect("listing of mdir_r", ["bottom", "top"], sorted(os.listdir(J(mnt, "mdir_r"))))
        expect("mdir_r/bottom, mdir_r/top", (b"bottom\n", b"top\n"),
               (rd(J(mnt, "mdir_r/bottom")), rd(J(mnt, "mdir_r/top"))))
        expect("lstat mdir after rename", "ENOENT", errof(os.lstat, J(mnt, "mdir")))
    with step("renameat2"):
        x, y = J(n, "x"), J(n, "y")
        ix, iy = ino(x), ino(y)
        expect("renameat2(n/x, n/y, RENAME_NOREPLACE)", "EEXIST", errof(renameat2, x, y, NOREPLACE))
        expect("n/x, n/y after the refused rename", (b"x\n", b"y\n"), (rd(x), rd(y)))
        expect("renameat2(n/x, n/y, RENAME_EXCHANGE)", "ok", errof(renameat2, x, y, EXCHANGE))
        expect("n/x, n/y after RENAME_EXCHANGE", (b"y\n", b"x\n"), (rd(x), rd(y)))
        expect("st_ino of n/x, n/y after RENAME_EXCHANGE", (iy, ix), (ino(x), ino(y)))
        expect("renameat2(n/x, n/nothere, RENAME_EXCHANGE)", "ENOENT",
               errof(renameat2, x, J(n, "nothere"), EXCHANGE))
        expect("renameat2(n/lk, n/lk-new, RENAME_NOREPLACE)", "ok",
               errof(renameat2, J(n, "lk"), J(n, "lk-new"), NOREPLACE))
        os.rename(J(n, "lk-new"), J(n, "lk"))
    with step("link, symlink, mkfifo, mknod"):
        os.link(J(n, "lk"), J(n, "lk2"))
        a, b = os.lstat(J(n, "lk")), os.lstat(J(n, "lk2"))
        expect("n/lk, n/lk2 after link: same st_ino", True, a.st_ino == b.st_ino)
        expect("n/lk, n/lk2 after link: st_nlink", (2, 2), (a.st_nlink, b.st_nlink))
        expect("n/lk2 contents", b"lk\n", rd(J(n, "lk2")))
        os.symlink("../f1", J(n, "sl"))
        expect("readlink n/sl", "../f1", os.readlink(J(n, "sl")))
        expect("read through n/sl", b"x", rd(J(n, "sl")))
        os.mkfifo(J(n, "ff"), 0o640)
        st = os.lstat(J(n, "ff"))
        expect("n/ff type and mode", ("fifo", 0o640), (kind(st.st_mode), stat.S_IMODE(st.st_mode)))
        os.mknod(J(n, "cdev"), 0o600 | stat.S_IFCHR, os.makedev(1, 5))
        st = os.lstat(J(n, "cdev"))
        expect("n/cdev type and rdev", ("chardev", os.makedev(1, 5)), (kind(st.st_mode), st.st_rdev))
    with step("link to a lower file, written through the new name"):
        wr(J(n, "lk2"), b"via lk2\n", "ab")
        expect("n/lk after appending through its new link n/lk2", b"lk\nvia lk2\n", rd(J(n, "lk")))
        os.unlink(J(mnt, "hl/a"))
        st = os.lstat(J(mnt, "hl/b"))
        expect("hl/b after unlinking hl/a (copied up before): nlink, contents",
               (1, b"hardlinked\nthrough a\nthrough b\n"), (st.st_nlink, rd(J(mnt, "hl/b"))))
    with step("unix socket"):
        import socket
        with socket.socket(socket.AF_UNIX) as so:
            so.bind(J(n, "sock"))
        expect("n/sock type", "socket", kind(os.lstat(J(n, "sock")).st_mode))
    with step("unlink of one name of a lower hardlink pair"):
        os.unlink(J(mnt, "hl2/a"))
        st = os.lstat(J(mnt, "hl2/b"))
        expect("hl2/b st_nlink after unlink of hl2/a", 1, st.st_nlink)
        expect("hl2/b contents", b"pair\n", rd(J(mnt, "hl2/b")))
        expect("lstat hl2/a", "ENOENT", errof(os.lstat, J(mnt, "hl2/a")))
    with step("opaque dir after rm -rf + mkdir"):
        d = J(mnt, "rmtree")
        shutil.rmtree(d)
        os.mkdir(d)
        expect("listing of rmtree after rm -rf + mkdir", [], os.listdir(d))
        expect("lstat rmtree/w, rmtree/sub", ("ENOENT", "ENOENT"),
               (errof(os.lstat, J(d, "w")), errof(os.lstat, J(d, "sub"))))
        wr(J(d, "new"), b"new\n")
        expect("listing of rmtree after a create", ["new"], os.listdir(d))
        u = J(up, "rmtree")
        expect("the upper's rmtree: trusted.overlay.opaque", b"y",
               os.getxattr(u, "trusted.overlay.opaque") if "trusted.overlay.opaque" in os.listxattr(u)
               else None)


# --- seekdir / telldir -----------------------------------------------------------------------
class Dirent(ctypes.Structure):
    _fields_ = [("d_ino", ctypes.c_uint64), ("d_off", ctypes.c_int64), ("d_reclen", ctypes.c_ushort),
                ("d_type", ctypes.c_ubyte), ("d_name", ctypes.c_char * 256)]


def fam_seekdir(mnt):
    d = J(mnt, "big")
    want = sorted([f"l1_{i}" for i in range(10)] + [f"l2_{i}" for i in range(10)] +
                  [f"f{i:03d}" for i in range(500)])
    with step("create 500 files"):
        for i in range(500):
            wr(J(d, f"f{i:03d}"), b"")
    with step("scandir twice"):
        n1 = [e.name for e in os.scandir(d)]
        n2 = [e.name for e in os.scandir(d)]
        expect("entries of big (merged dir + 500 new files)", want, sorted(n1))
        if n1 != n2:
            first = next((i for i in range(min(len(n1), len(n2))) if n1[i] != n2[i]), min(len(n1), len(n2)))
            bad(f"scandir of big twice: expected the same order, seen a difference at entry {first} "
                f"({n1[first:first + 3]} vs {n2[first:first + 3]})")
    with step("readdir after deleting half"):
        for i in range(0, 500, 2):
            os.unlink(J(d, f"f{i:03d}"))
        for i in range(0, 10, 2):
            os.unlink(J(d, f"l2_{i}"))
        want = sorted([f"l1_{i}" for i in range(10)] + [f"l2_{i}" for i in range(1, 10, 2)] +
                      [f"f{i:03d}" for i in range(1, 500, 2)])
        n1 = [e.name for e in os.scandir(d)]
        n2 = [e.name for e in os.scandir(d)]
        expect("entries of big after deleting half", want, sorted(n1))
        expect("scandir of big twice after the deletions: the same order", True, n1 == n2)
    with step("telldir/seekdir"):
        libc.opendir.restype = ctypes.c_void_p
        libc.opendir.argtypes = [ctypes.c_char_p]
        libc.readdir.restype = ctypes.POINTER(Dirent)
        libc.readdir.argtypes = [ctypes.c_void_p]
        libc.telldir.restype = ctypes.c_long
        libc.telldir.argtypes = [ctypes.c_void_p]
        libc.seekdir.restype = None
        libc.seekdir.argtypes = [ctypes.c_void_p, ctypes.c_long]
        libc.rewinddir.restype = None
        libc.rewinddir.argtypes = [ctypes.c_void_p]
        libc.closedir.argtypes = [ctypes.c_void_p]
        dp = libc.opendir(os.fsencode(d))
        if not dp:
            raise OSError(ctypes.get_errno(), "opendir")
        try:
            def read_all():
                out = []
                while True:
                    pos = libc.telldir(dp)
                    ent = libc.readdir(dp)
                    if not ent:
                        return out, pos
                    out.append((pos, ent.contents.d_name.decode()))

            entries, end = read_all()
            names = [nm for _, nm in entries if nm not in (".", "..")]
            expect("readdir (libc) after scandir: the same order", n1, names)
            expect("telldir positions are distinct", len(entries), len({p for p, _ in entries}))
            k = len(entries)
            for idx in sorted({0, 1, 2, 3, 57, 100, 255, 256, 257, 400, k // 2, k - 2, k - 1}):
                if idx >= k:
                    continue
                libc.seekdir(dp, entries[idx][0])
                ent = libc.readdir(dp)
                got = ent.contents.d_name.decode() if ent else None
                expect(f"readdir after seekdir(telldir before entry {idx})", entries[idx][1], got)
                ent = libc.readdir(dp)
                got = ent.contents.d_name.decode() if ent else None
                expect(f"the next readdir (entry {idx + 1})", entries[idx + 1][1] if idx + 1 < k else None, got)
            libc.seekdir(dp, end)
            ent = libc.readdir(dp)
            expect("readdir after seekdir(telldir at the end)", None, ent.contents.d_name.decode() if ent else None)
            libc.rewinddir(dp)
            again, _ = read_all()
            expect("readdir after rewinddir: the same entries in the same order",
                   [nm for _, nm in entries], [nm for _, nm in again])
        finally:
            libc.closedir(dp)


# --- statfs, locks, O_DIRECT -----------------------------------------------------------------
def fam_misc(mnt, up):
    with step("statfs"):
        r = run("stat", "-f", "-c", "%b %S %l", mnt)
        f = r.stdout.split()
        expect("stat -f of the mount: exit status, stderr", (0, ""), (r.returncode, r.stderr.strip()))
        if len(f) == 3 and not (int(f[0]) > 0 and int(f[1]) > 0 and int(f[2]) >= 255):
            bad(f"stat -f: expected blocks > 0, block size > 0, name max >= 255, seen {r.stdout.strip()}")
        sv = os.statvfs(J(mnt, "common"))
        expect("statvfs of a subdir: f_blocks > 0", True, sv.f_blocks > 0)
    lock = J(mnt, "locks/f")
    with step("flock"):
        r = run("flock", "-x", lock, "-c", f"flock -n -x {lock} true")
        expect("flock -n while another open file holds the flock: exit status", 1, r.returncode)
        r = run("flock", "-n", "-x", lock, "true")
        expect("flock -n once released: exit status", 0, r.returncode)
        r = run("flock", "-s", lock, "-c", f"flock -n -s {lock} true")
        expect("two shared flocks: exit status", 0, r.returncode)

    def child_try(path):
        pid = os.fork()
        if pid == 0:
            code = 9
            try:
                fd = os.open(path, os.O_RDWR)
                try:
                    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    code = 0
                except OSError as e:
                    code = 1 if e.errno in (errno.EAGAIN, errno.EACCES) else 2
            finally:
                os._exit(code)
        return {0: "acquired", 1: "conflict", 2: "other error"}.get(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), "?")

    with step("fcntl locks"):
        fd = os.open(lock, os.O_RDWR)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX)
            expect("lockf(LOCK_EX|LOCK_NB) in another process while held", "conflict", child_try(lock))
            fcntl.lockf(fd, fcntl.LOCK_UN)
            expect("lockf(LOCK_EX|LOCK_NB) in another process once released", "acquired", child_try(lock))
            fcntl.lockf(fd, fcntl.LOCK_EX, 10, 100)
            expect("lockf(LOCK_EX|LOCK_NB) of the whole file in another process while bytes 100..109 are held",
                   "conflict", child_try(lock))
        finally:
            os.close(fd)
    with step("fcntl lock held across a copy-up"):
        g = J(mnt, "locks/g")
        fd = os.open(g, os.O_RDONLY)
        try:
            fcntl.lockf(fd, fcntl.LOCK_SH)
            expect("lockf(LOCK_EX|LOCK_NB) in another process (opening O_RDWR: a copy-up) "
                   "while a read lock is held on the lower file", "conflict", child_try(g))
        finally:
            os.close(fd)
    with step("O_DIRECT"):
        p = J(mnt, "odirect")
        data = os.urandom(65536)
        wr(p, data)
        buf = mmap.mmap(-1, 65536)
        try:
            fd = os.open(J(up, "odirect"), os.O_RDONLY | os.O_DIRECT)
            os.readv(fd, [buf])
            os.close(fd)
        except OSError as e:
            print(f"  note: O_DIRECT skipped: the upper filesystem refuses it ({e})")
            return
        buf2 = mmap.mmap(-1, 65536)
        fd = os.open(p, os.O_RDONLY | os.O_DIRECT)
        try:
            n = os.readv(fd, [buf2])
            expect("O_DIRECT read of an upper file through the mount", data, bytes(buf2[:n]))
        finally:
            os.close(fd)


# --- read-only mount -------------------------------------------------------------------------
def fam_readonly(mnt, ref):
    with step("reads"):
        expect("f1m contents", rd(J(ref, "f1m")), rd(J(mnt, "f1m")))
        expect("listing of common", ["from_l1", "from_l2", "sub"], sorted(os.listdir(J(mnt, "common"))))
    for label, fn in (("create new", lambda: wr(J(mnt, "new"), b"")),
                      ("open f1 for append", lambda: open(J(mnt, "f1"), "ab").close()),
                      ("open f1 O_RDWR", lambda: os.close(os.open(J(mnt, "f1"), os.O_RDWR))),
                      ("truncate f1", lambda: os.truncate(J(mnt, "f1"), 0)),
                      ("mkdir newdir", lambda: os.mkdir(J(mnt, "newdir"))),
                      ("unlink f1", lambda: os.unlink(J(mnt, "f1"))),
                      ("rmdir emptydir", lambda: os.rmdir(J(mnt, "emptydir"))),
                      ("rename f1 f1b", lambda: os.rename(J(mnt, "f1"), J(mnt, "f1b"))),
                      ("chmod f1", lambda: os.chmod(J(mnt, "f1"), 0o600)),
                      ("chown f1", lambda: os.chown(J(mnt, "f1"), 5, 5)),
                      ("utime f1", lambda: os.utime(J(mnt, "f1"), ns=(1, 1))),
                      ("setxattr f1", lambda: os.setxattr(J(mnt, "f1"), "user.x", b"1")),
                      ("symlink", lambda: os.symlink("x", J(mnt, "sl"))),
                      ("link", lambda: os.link(J(mnt, "f1"), J(mnt, "f1-link")))):
        with step(label):
            expect(f"read-only mount: {label}", "EROFS", errof(fn))
    expect("f1 unchanged", b"x", rd(J(mnt, "f1")))


def fam_mkoci(out, bottom_tar, top_tar):
    """A 2-layer OCI layout (tag latest) from two uncompressed layer tarballs."""
    blobs = J(out, "blobs", "sha256")
    os.makedirs(blobs)

    def put(data):
        d = sha(data)
        with open(J(blobs, d), "wb") as f:
            f.write(data)
        return {"digest": "sha256:" + d, "size": len(data)}

    layers = [dict(put(rd(t)), mediaType="application/vnd.oci.image.layer.v1.tar")
              for t in (bottom_tar, top_tar)]
    config = {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]},
              "rootfs": {"type": "layers", "diff_ids": [x["digest"] for x in layers]}}
    cfg = dict(put(json.dumps(config).encode()), mediaType="application/vnd.oci.image.config.v1+json")
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": cfg, "layers": layers}
    man = dict(put(json.dumps(manifest).encode()), mediaType="application/vnd.oci.image.manifest.v1+json",
               annotations={"org.opencontainers.image.ref.name": "latest"})
    wr(J(out, "index.json"), json.dumps({"schemaVersion": 2, "manifests": [man]}).encode())
    wr(J(out, "oci-layout"), b'{"imageLayoutVersion": "1.0.0"}')


if __name__ == "__main__":
    globals()["fam_" + sys.argv[1]](*sys.argv[2:])
    sys.exit(1 if BAD else 0)
PYEOF
py() { python3 "$PY" "$@"; }

# --- the two layers ------------------------------------------------------------------------
# fill CHAR COUNT FILE: COUNT copies of CHAR.
fill() { head -c "$2" /dev/zero | tr '\0' "$1" >"$3"; }
make_bottom() {
  local d=$1
  mkdir -p "$d"/{common/sub/deep,hl,hl2,opq,gonedir,typechange,w,m,n/ldir/sub,mdir,mdir2}
  mkdir -p "$d"/{rmme,rmtree/sub,big,locks,emptydir}
  : >"$d/f0"
  printf x >"$d/f1"
  head -c 4096 /dev/urandom >"$d/f4k"
  head -c 1M /dev/urandom >"$d/f1m"
  truncate -s 4M "$d/sparse"
  printf head | dd of="$d/sparse" conv=notrunc status=none
  printf tail | dd of="$d/sparse" bs=1 seek=$((4 * 1024 * 1024 - 4)) conv=notrunc status=none
  echo bottom >"$d/shadowed"
  echo "from l2" >"$d/common/from_l2"
  echo deep >"$d/common/sub/deep/file"
  setfattr -n user.layer -v bottom "$d/common"
  echo hardlinked >"$d/hl/a" && ln "$d/hl/a" "$d/hl/b"
  echo pair >"$d/hl2/a" && ln "$d/hl2/a" "$d/hl2/b"
  ln -s f4k "$d/sym"
  ln -s /nonexistent/target "$d/abslink"
  ln -s common "$d/symdir"
  mkfifo "$d/fifo"
  mknod "$d/chr" c 1 3
  echo xattrs >"$d/xattrs"
  setfattr -n user.color -v blue "$d/xattrs"
  setfattr -n trusted.secret -v s3 "$d/xattrs"
  echo acl >"$d/acl" && chmod 0600 "$d/acl" && setfacl -m u:1000:r "$d/acl"
  cp /bin/true "$d/suid" && chmod 4755 "$d/suid"
  cp /bin/true "$d/capbin" && setcap cap_net_raw+ep "$d/capbin"
  echo gone >"$d/gone"
  echo x >"$d/gonedir/x"
  echo old1 >"$d/opq/old1" && echo old2 >"$d/opq/old2"
  echo inner >"$d/typechange/inner"
  # writes
  printf 'base\n' >"$d/w/append"
  fill a 8192 "$d/w/offset"
  echo "some content" >"$d/w/trunc" && echo "some content" >"$d/w/trunc2"
  printf abc >"$d/w/grow"
  fill c 8192 "$d/w/shrink"
  fill b 65536 "$d/w/falloc"
  echo ino >"$d/w/ino"
  fill r 4096 "$d/w/rofd"
  fill m 8192 "$d/w/mmap"
  fill p 4096 "$d/w/mpriv"
  printf 0123 >"$d/w/oappend"
  echo unlinked >"$d/w/unl" && echo unlinked2 >"$d/w/unl2"
  truncate -s 16M "$d/w/sparse"
  head -c 65536 /dev/urandom | dd of="$d/w/sparse" bs=64K seek=10 conv=notrunc status=none
  # metadata
  head -c 1M /dev/urandom >"$d/m/big"
  echo own >"$d/m/own" && echo time >"$d/m/time" && echo xa >"$d/m/xa"
  setfattr -n user.color -v blue "$d/m/xa" && setfattr -n trusted.secret -v s3 "$d/m/xa"
  cp /bin/true "$d/m/suid" && chmod 4755 "$d/m/suid"
  cp /bin/true "$d/m/cap" && setcap cap_net_raw+ep "$d/m/cap"
  cp /bin/true "$d/m/cap2" && setcap cap_net_raw+ep "$d/m/cap2"
  cp /bin/true "$d/m/cap3" && setcap cap_net_raw+ep "$d/m/cap3"
  cp /bin/true "$d/m/suid2" && chmod 4755 "$d/m/suid2"
  echo suidw >"$d/m/suidw" && chmod 4777 "$d/m/suidw"
  fill q 65536 "$d/m/trunc"
  cp /bin/true "$d/m/suid3" && chmod 4755 "$d/m/suid3"
  cp /bin/true "$d/m/cap4" && setcap cap_net_raw+ep "$d/m/cap4"
  mkdir "$d/hl4" && echo quad >"$d/hl4/a" && ln "$d/hl4/a" "$d/hl4/b"
  mkdir "$d/m/dacl" && setfacl -m d:u:1000:rwx,d:g::rx "$d/m/dacl"
  echo allow >"$d/m/acl_allow" && chmod 0600 "$d/m/acl_allow" && setfacl -m u:1000:r "$d/m/acl_allow"
  echo deny >"$d/m/acl_deny" && chmod 0644 "$d/m/acl_deny" && setfacl -m u:1002:- "$d/m/acl_deny"
  # namespace
  echo file >"$d/n/file" && echo a >"$d/n/ldir/a" && echo b >"$d/n/ldir/sub/b"
  head -c 1M /dev/urandom >"$d/n/ldir/big"
  echo x >"$d/n/x" && echo y >"$d/n/y" && echo lk >"$d/n/lk" && echo del >"$d/n/del"
  mkdir "$d/n/ex1" "$d/n/ex2" && echo a1 >"$d/n/ex1/a1" && echo b2 >"$d/n/ex2/b2"
  echo rsrc >"$d/n/rsrc" && echo rdst >"$d/n/rdst"
  mkdir "$d/n/wdir" && echo keep >"$d/n/wdir/keep" && echo drop >"$d/n/wdir/drop"
  mkdir "$d/hl3" && echo trio >"$d/hl3/a" && ln "$d/hl3/a" "$d/hl3/b"
  echo bottom >"$d/mdir/bottom" && echo b >"$d/mdir2/b"
  echo x >"$d/rmme/x" && echo y >"$d/rmme/y"
  echo w >"$d/rmtree/w" && echo z >"$d/rmtree/sub/z"
  for i in {0..9}; do : >"$d/big/l2_$i"; done
  echo lock >"$d/locks/f" && echo lock >"$d/locks/g"
}
# make_top DIR FORM: the top layer; FORM dir (0/0 char device whiteouts, opaque xattr),
# tar (.wh. files) or merged (applied to a copy of the bottom layer: the reference tree).
make_top() {
  local d=$1 form=$2
  mkdir -p "$d"/{common/sub,opq,mdir,mdir2,big}
  chmod 0775 "$d/common"
  setfattr -n user.layer -v top "$d/common"
  echo "from l1" >"$d/common/from_l1"
  echo l1 >"$d/common/sub/l1file"
  echo top >"$d/shadowed" && chmod 0600 "$d/shadowed"
  echo "top only" >"$d/top_only"
  if [[ $form == merged ]]; then rm -rf "$d/typechange"; fi
  echo "now a file" >"$d/typechange"
  echo top >"$d/mdir/top" && echo t >"$d/mdir2/t"
  for i in {0..9}; do : >"$d/big/l1_$i"; done
  case $form in
    dir)
      mknod "$d/gone" c 0 0 && mknod "$d/gonedir" c 0 0
      setfattr -n trusted.overlay.opaque -v y "$d/opq"
      ;;
    tar) : >"$d/.wh.gone" && : >"$d/.wh.gonedir" && : >"$d/opq/.wh..wh..opq" ;;
    merged) rm -rf "$d/gone" "$d/gonedir" "$d/opq/old1" "$d/opq/old2" ;;
  esac
  echo new >"$d/opq/new"
}
same_times() { find "$@" -exec touch -h -d @1700000000 {} +; }
build_image() {
  mkdir "$L1" "$L2" "$STORES/L1tar"
  make_bottom "$L2"
  make_top "$L1" dir
  make_top "$STORES/L1tar" tar
  cp -a "$L2" "$REF"
  make_top "$REF" merged
  same_times "$L1" "$L2" "$STORES/L1tar" "$REF"
  local t
  for t in L2 L1tar; do
    tar --xattrs --xattrs-include='*' --acls --numeric-owner --sort=name \
      -C "$STORES/$t" -cf "$STORES/$t.tar" .
  done
  py mkoci "$STORES/oci" "$STORES/L2.tar" "$STORES/L1tar.tar"
  st import oci "$STORES/oci:latest" --name "$IMAGE" >/dev/null
}
step "build two layers (dirs, and a 2-layer OCI image imported into the store)" build_image

# --- mounting ------------------------------------------------------------------------------
# fs_mount SUBJECT MNT [UPPER WORK]: mount (read-only without UPPER); prints why on failure.
fs_mount() {
  local subject=$1 mnt=$2 up=${3:-} wk=${4:-} opts pids
  case $subject in
    stored)
      if [[ -n $up ]]; then
        st mount "$IMAGE" "$mnt" --upper "$up" --work "$wk"
      else
        st mount "$IMAGE" "$mnt"
      fi
      ;;
    dir)
      opts="lowerdir=$L1:$L2${up:+,upperdir=$up,workdir=$wk}"
      "$OVERLAY_BIN" -o "$opts" "$mnt"
      ;;
    kernel)
      opts="lowerdir=$L1:$L2${up:+,upperdir=$up,workdir=$wk,redirect_dir=on,index=on,metacopy=on}"
      mount -t overlay overlay -o "$opts" "$mnt"
      ;;
  esac
  mountpoint -q "$mnt" || {
    echo "  $mnt is not a mount point after mounting ($subject)"
    return 1
  }
  pids=$(pids_naming "$mnt" | tr '\n' ' ')
  DAEMONS[$mnt]=$pids
  # shellcheck disable=SC2206 # pids are numbers
  BG_PIDS+=($pids)
}
# fs_umount SUBJECT MNT: unmount; the FUSE daemon must exit (within 10 s).
fs_umount() {
  local subject=$1 mnt=$2 left
  case $subject in
    stored) "$STRATA_BIN" umount "$mnt" ;;
    *) umount "$mnt" ;;
  esac
  if mountpoint -q "$mnt"; then
    echo "  $mnt is still mounted after unmounting"
    return 1
  fi
  # shellcheck disable=SC2086 # pids are numbers
  left=$(wait_gone ${DAEMONS[$mnt]:-}) || {
    echo "  the daemon of $mnt (pid ${left//$'\n'/, }) still runs 10 s after unmounting"
    return 1
  }
  DAEMONS[$mnt]=''
}

# --- shell-side families ---------------------------------------------------------------------
# mount_error WANT CMD...: CMD must exit 1 with one line on stderr naming WANT.
mount_error() {
  local want=$1 rc=0 err
  shift
  err=$("$@" 2>&1 >/dev/null) || rc=$?
  if ((rc != 1)) || [[ $(grep -c '' <<<"$err") != 1 || $err != "strata: "*"$want"* ]]; then
    printf '  %s: expected exit 1 and one line "strata: ...%s...", seen exit %d and:\n%s\n' \
      "strata ${*:2}" "$want" "$rc" "$(sed 's/^/    | /' <<<"$err")"
    return 1
  fi
}
fam_lookups() {
  local out rc=0
  out=$(tree_cmp "$MNT" "$REF" --no-root 2>&1) || rc=$?
  if ((rc != 0)); then
    echo "  the mounted tree differs from the expected merged tree (mount vs reference):"
    sed 's/^/    /' <<<"$out"
  fi
  py lookups "$MNT" "$REF" || rc=1
  py snapshot "$MNT" "$SNAPS/pristine.json" || rc=1
  return "$rc"
}
fam_worklock() {
  local mnt2=$SUBJ_DIR/mnt2 up2=$SUBJ_DIR/up2 rc=0 out
  mkdir -p "$mnt2" "$up2"
  case $SUBJECT in
    stored) mount_error "$WK" st mount "$IMAGE" "$mnt2" --upper "$up2" --work "$WK" || rc=1 ;;
    dir)
      if out=$("$OVERLAY_BIN" -o "lowerdir=$L1:$L2,upperdir=$up2,workdir=$WK" "$mnt2" 2>&1); then
        printf '  strata-overlay with the work dir of a live mount: expected a refusal, seen exit 0 (%s)\n' "$out"
        rc=1
      elif [[ $(grep -c '' <<<"$out") != 1 || $out != *"$WK"* ]]; then
        printf '  strata-overlay with the work dir of a live mount: expected one line naming %s, seen:\n%s\n' "$WK" "$out"
        rc=1
      fi
      ;;
  esac
  if mountpoint -q "$mnt2"; then
    echo "  $mnt2: expected no mount after the refusal, seen one"
    fs_umount "$SUBJECT" "$mnt2" || true
    rc=1
  fi
  [[ $(cat "$MNT/f1" 2>&1) == x ]] || {
    echo "  the first mount: expected f1 to read x after the refused mount, seen $(cat "$MNT/f1" 2>&1)"
    rc=1
  }
  return "$rc"
}
fam_persistence() {
  local rc=0
  py ids "$MNT" "after the changes" || rc=1
  py inokept "$SNAPS/pristine.json" "$MNT" || rc=1
  py snapshot "$MNT" "$SNAPS/before-remount.json" || rc=1
  fs_umount "$SUBJECT" "$MNT" || return 1
  fs_mount "$SUBJECT" "$MNT" "$UP" "$WK" || return 1
  py snapcmp "$SNAPS/before-remount.json" "$MNT" "after unmount + remount on the same upper" || rc=1
  py ids "$MNT" "after the remount" || rc=1
  fs_umount "$SUBJECT" "$MNT" || rc=1
  return "$rc"
}
fam_readonly() {
  local mnt=$SUBJ_DIR/ro rc=0
  mkdir -p "$mnt"
  fs_mount "$SUBJECT" "$mnt" || return 1
  py readonly "$mnt" "$REF" || rc=1
  fs_umount "$SUBJECT" "$mnt" || rc=1
  return "$rc"
}
fam_errors() {
  local rc=0 mnt=$STORES/errors-mnt
  mkdir -p "$mnt"
  mount_error "nosuch" st mount nosuch:1 "$mnt" --upper "$STORES/errors-up" --work "$STORES/errors-wk" || rc=1
  mount_error "nosuch" st mount nosuch:1 "$mnt" || rc=1
  mount_error "$STORES/no-such-dir" st mount "$IMAGE" "$STORES/no-such-dir" \
    --upper "$STORES/errors-up" --work "$STORES/errors-wk" || rc=1
  : >"$STORES/a-file"
  mount_error "$STORES/a-file" st mount "$IMAGE" "$STORES/a-file" || rc=1
  if mountpoint -q "$STORES/a-file"; then
    echo "  $STORES/a-file: expected no mount on a regular file, seen one"
    umount "$STORES/a-file" || true
    rc=1
  fi
  if mountpoint -q "$mnt"; then
    echo "  $mnt: expected no mount after the errors, seen one"
    umount "$mnt" || true
    rc=1
  fi
  return "$rc"
}

# --- run every family on every subject --------------------------------------------------------
for SUBJECT in $SUBJECTS; do
  SUBJ_DIR=$STORES/$SUBJECT
  MNT=$SUBJ_DIR/mnt UP=$SUBJ_DIR/upper WK=$SUBJ_DIR/work SNAPS=$SUBJ_DIR/snaps
  mkdir -p "$MNT" "$UP" "$WK" "$SNAPS"
  chmod 0755 "$SUBJ_DIR"
  fs_mount "$SUBJECT" "$MNT" "$UP" "$WK" || fail "[$SUBJECT] mount failed"
  check "[$SUBJECT] lookups and readdir: merged tree, whiteouts, opaque, ls -la, d_ino, nlink, ENOENT" fam_lookups
  check "[$SUBJECT] reads: contents, sparse, symlinks, mmap, large reads" py reads "$MNT" "$REF"
  check "[$SUBJECT] writes and copy-up: append, offsets, truncate, fallocate, hardlinks, fds, mmap, O_APPEND, unlinked" \
    py writes "$MNT" "$UP" "$REF"
  check "[$SUBJECT] metadata: chmod (metadata-only), chown, utimes, xattrs, suid, capability, ACL" \
    py metadata "$MNT" "$UP" "$REF"
  check "[$SUBJECT] namespace: create/unlink/mkdir/rmdir, rename, renameat2, link/symlink/mknod, whiteout, opaque" \
    py namespace "$MNT" "$UP" "$REF"
  check "[$SUBJECT] seekdir/telldir over 520 entries, then 265" py seekdir "$MNT"
  check "[$SUBJECT] statfs, flock, fcntl locks, O_DIRECT" py misc "$MNT" "$UP"
  if [[ $SUBJECT != kernel ]]; then
    check "[$SUBJECT] a second mount with the same work dir is refused" fam_worklock
  fi
  check "[$SUBJECT] persistence: unmount, remount, the same tree and st_ino" fam_persistence
  check "[$SUBJECT] read-only mount: EROFS" fam_readonly
  if [[ $SUBJECT == stored ]]; then
    check "[$SUBJECT] strata mount errors: missing image, missing mount point, a file as mount point" fam_errors
  fi
done
finish "$start"
