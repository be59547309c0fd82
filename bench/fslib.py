"""Fixture, mounts and tree listings for bench/run (the filesystem benchmark).

The fixture is built once and cached (see Fixture); the store, the native copy and
every mount live in a per-run work directory on the same disk.
"""
import fcntl
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIXTURE_VERSION = 1  # bump when the layers below change


@dataclass(frozen=True)
class Sizes:
    """Everything that --quick shrinks."""
    big_mib: int          # the "1 GiB" file
    mid_mib: int          # the "256 MiB" file
    dir_entries: int      # the merged directory bench/dir10k
    dir_old: int          # of which this many also exist (shadowed) in layer 2
    syn_layers: int       # synthetic image: layers ...
    syn_files: int        # ... and files per layer
    seqwrite_mib: int     # fio sequential write
    randwrite_mib: int    # fio 4 KiB random writes into the mid file
    randread_mib: int     # fio 4 KiB random reads from the mid file


FULL = Sizes(1024, 256, 10000, 1000, 10, 10000, 512, 32, 64)
QUICK = Sizes(64, 16, 1000, 100, 10, 1000, 64, 4, 8)

DEBIAN_IMAGE = "bench:latest"
SYN_IMAGE = "syn:latest"
CHOWN_TREE = "usr/share"          # spans layers 1-3 (doc from 2, a whiteout in 3)
SYN_DEEP = "deep/a/b/c/d/e/f/g/h/l0"  # in the bottom layer; the dirs are in all 10


def log(msg):
    print(f"bench/run: {msg}", file=sys.stderr, flush=True)


def die(msg):
    log(msg)
    sys.exit(1)


def sh(argv, **kw):
    """Runs argv; raises RuntimeError with its stderr when it fails."""
    p = subprocess.run([str(a) for a in argv], stdin=subprocess.DEVNULL,
                       stdout=kw.pop("stdout", subprocess.DEVNULL),
                       stderr=subprocess.PIPE, check=False, **kw)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))}: exit {p.returncode}: "
                           f"{p.stderr.decode(errors='replace').strip()}")
    return p.stdout


def drop_caches():
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def settle():
    """Runs before a timed step that creates inodes (create+unlink, untar, copy-up,
    a mount's work files). On an ext4 without a journal (this VM's disk), the inode
    allocator skips every inode deleted in the last 60 s whose inode-table block is
    still cached (recently_deleted() in fs/ext4/ialloc.c); after the benchmark's own
    deletions that made one create cost 0.2-0.9 ms of CPU, 10-20x the normal cost,
    and varied from run to run. Dropping the (synced) caches forgets those blocks."""
    drop_caches()


# ---------------------------------------------------------------- fixture


def fixture_script(name, *args):
    """Path printed by tests/fixtures/NAME; exit 77 means it cannot be built here."""
    p = subprocess.run([REPO / "tests/fixtures" / name, *args], capture_output=True,
                       text=True, check=False)
    if p.returncode != 0:
        die(f"tests/fixtures/{name} {' '.join(args)} failed (exit {p.returncode}):\n"
            f"{p.stderr.strip()}")
    return Path(p.stdout.strip())


def copy_attrs(src, dst):
    st = os.lstat(src)
    os.chown(dst, st.st_uid, st.st_gid)
    os.chmod(dst, stat.S_IMODE(st.st_mode))


def mkparents(layer, rel, rootfs):
    """Makes the directories of `rel` in `layer` with the rootfs's owner and mode,
    so that a layer never changes a lower directory's attributes."""
    cur = Path(layer)
    for part in Path(rel).parts:
        cur = cur / part
        if not cur.exists():
            cur.mkdir()
            src = rootfs / cur.relative_to(layer)
            if src.exists():
                copy_attrs(src, cur)
            else:
                os.chmod(cur, 0o755)


def whiteout(layer, rel, rootfs):
    """A deleted name in kernel overlayfs's format: a 0/0 character device."""
    mkparents(layer, Path(rel).parent, rootfs)
    os.mknod(Path(layer) / rel, stat.S_IFCHR | 0o000, os.makedev(0, 0))


def write_file(path, data, mode=0o644):
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def write_big(path, mib):
    """A non-sparse file of `mib` MiB: one random chunk of up to 64 MiB, repeated
    (each file draws its own chunk)."""
    chunk = os.urandom(min(mib, 64) << 20)
    with open(path, "wb") as f:
        for _ in range(mib // (len(chunk) >> 20)):
            f.write(chunk)
    os.chmod(path, 0o644)


class Fixture:
    """The cached input, built once per FIXTURE_VERSION and size set:

      layers/1..4   directory lowers (bottom first) in kernel overlayfs's format:
        1  the debootstrap bookworm minbase rootfs without usr/share/doc, var/lib/apt
        2  usr/share/doc and var/lib/apt back, a new etc/hostname, and the last
           `dir_old` names of bench/dir10k (older content, shadowed by layer 4)
        3  whiteouts (0/0 char devices) of usr/share/doc/dpkg (a directory) and
           etc/issue.net, a new etc/motd, var/cache/apt made opaque
           (trusted.overlay.opaque=y) with one new file
        4  bench/big1g, bench/big256m (random, not sparse) and bench/dir10k with
           `dir_entries` small files
      oci/          the same four layers as an OCI layout (uncompressed tars, .wh.
                    whiteouts, .wh..wh..opq), for `strata import oci`
      syn/layers/0..N-1, syn/oci/   the synthetic image: N layers of `syn_files`
                    files each, in 100 directories merged across all layers, and
                    a directory chain deep/a/.../h present in every layer
      src.tar       the "source tree" to untar: usr/include and usr/share/perl of
                    the cached gcc/libc6-dev/make/git Debian rootfs
      meta.json     what run needs to know (deep path, sizes)
    """

    def __init__(self, sizes, quick):
        cache = Path(os.environ.get("STRATA_TEST_CACHE", "/var/cache/strata-test"))
        self.dir = cache / ("bench-fixture-quick" if quick else "bench-fixture")
        self.sizes = sizes
        self.stamp = json.dumps({"version": FIXTURE_VERSION, "sizes": asdict(sizes)})

    def layer_dirs(self):
        """Lower directories, topmost first (the lowerdir= order)."""
        return [self.dir / "layers" / str(i) for i in (4, 3, 2, 1)]

    def syn_layer_dirs(self):
        return [self.dir / "syn/layers" / str(i)
                for i in reversed(range(self.sizes.syn_layers))]

    def meta(self):
        return json.loads((self.dir / "meta.json").read_text())

    def ensure(self):
        stamp = self.dir / "stamp"
        if stamp.exists() and stamp.read_text() == self.stamp:
            return
        self.dir.parent.mkdir(parents=True, exist_ok=True)
        with open(self.dir.parent / f".{self.dir.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if stamp.exists() and stamp.read_text() == self.stamp:
                return
            t0 = time.monotonic()
            log(f"building the fixture in {self.dir} (once)")
            if self.dir.exists():
                shutil.rmtree(self.dir)
            tmp = self.dir.with_name(self.dir.name + ".tmp")
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir()
            self._build(tmp)
            (tmp / "stamp").write_text(self.stamp)
            tmp.rename(self.dir)
            log(f"fixture built in {time.monotonic() - t0:.0f} s")

    def _build(self, out):
        s = self.sizes
        rootfs = fixture_script("debian-rootfs")
        gccroot = fixture_script("debian-rootfs", "--include=gcc,libc6-dev,make,git")
        layers = out / "layers"
        l1, l2, l3, l4 = (layers / str(i) for i in (1, 2, 3, 4))
        layers.mkdir()
        sh(["cp", "-a", rootfs, l1])
        shutil.rmtree(l1 / "usr/share/doc")
        shutil.rmtree(l1 / "var/lib/apt")

        l2.mkdir()
        copy_attrs(rootfs, l2)
        for rel in ("usr/share/doc", "var/lib/apt"):
            mkparents(l2, Path(rel).parent, rootfs)
            sh(["cp", "-a", rootfs / rel, l2 / rel])
        mkparents(l2, "etc", rootfs)
        write_file(l2 / "etc/hostname", b"strata-bench\n")
        mkparents(l2, "bench/dir10k", rootfs)
        for n in range(s.dir_entries - s.dir_old, s.dir_entries):
            write_file(l2 / f"bench/dir10k/f{n:05}", f"old {n}\n".encode())

        l3.mkdir()
        copy_attrs(rootfs, l3)
        whiteout(l3, "usr/share/doc/dpkg", rootfs)
        whiteout(l3, "etc/issue.net", rootfs)
        write_file(l3 / "etc/motd", b"strata filesystem benchmark (layer 3)\n")
        mkparents(l3, "var/cache/apt", rootfs)
        os.setxattr(l3 / "var/cache/apt", "trusted.overlay.opaque", b"y")
        write_file(l3 / "var/cache/apt/replaced", b"the only file in /var/cache/apt\n")

        l4.mkdir()
        copy_attrs(rootfs, l4)
        mkparents(l4, "bench/dir10k", rootfs)
        write_big(l4 / "bench/big1g", s.big_mib)
        write_big(l4 / "bench/big256m", s.mid_mib)
        for n in range(s.dir_entries):
            write_file(l4 / f"bench/dir10k/f{n:05}", (f"{n:05} " * 16 + "\n").encode())
        write_oci(out / "oci", [l1, l2, l3, l4])

        syn_dirs = []
        for i in range(s.syn_layers):
            d = out / "syn/layers" / str(i)
            self._syn_layer(d, i)
            syn_dirs.append(d)
        write_oci(out / "syn/oci", syn_dirs)

        sh(["tar", "--create", "--file", out / "src.tar", "--sort=name",
            "--numeric-owner", "-C", gccroot, "usr/include", "usr/share/perl"])
        deep = max((p for p in (l1 / "usr").rglob("*") if p.is_file()
                    and not p.is_symlink()),
                   key=lambda p: (len(p.parts), str(p)))
        src_files = len(sh(["tar", "-tf", out / "src.tar"],
                           stdout=subprocess.PIPE).splitlines())
        (out / "meta.json").write_text(json.dumps({
            "deep": str(deep.relative_to(l1)), "src_tar_entries": src_files,
            "src_tar_bytes": (out / "src.tar").stat().st_size,
            "rootfs": str(rootfs), "gccroot": str(gccroot)}, indent=1) + "\n")

    def _syn_layer(self, d, i):
        per_dir = 100
        for j in range(self.sizes.syn_files // per_dir):
            sub = d / "s" / f"d{j:03}"
            sub.mkdir(parents=True)
            for k in range(per_dir):
                (sub / f"l{i}_{k:03}").write_bytes(f"{i} {j} {k}\n".encode())
        deep = d / Path(SYN_DEEP).parent
        deep.mkdir(parents=True)
        (deep / f"l{i}").write_bytes(f"layer {i}\n".encode())
        for p in [d, *d.rglob("*")]:
            os.chmod(p, 0o755 if p.is_dir() else 0o644)


def oci_stage(layer, stage):
    """A copy of `layer` with whiteouts and opaque directories in the OCI form."""
    sh(["cp", "-a", layer, stage])
    for dirpath, dirnames, filenames in os.walk(stage):
        d = Path(dirpath)
        try:
            opaque = os.getxattr(d, "trusted.overlay.opaque", follow_symlinks=False)
        except OSError:
            opaque = b""
        if opaque == b"y":
            os.removexattr(d, "trusted.overlay.opaque", follow_symlinks=False)
            (d / ".wh..wh..opq").touch()
        for name in filenames + dirnames:
            st = os.lstat(d / name)
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                os.unlink(d / name)
                (d / f".wh.{name}").touch()


def has_overlay_marks(layer):
    for dirpath, dirnames, filenames in os.walk(layer):
        try:
            os.getxattr(dirpath, "trusted.overlay.opaque", follow_symlinks=False)
            return True
        except OSError:
            pass
        for name in filenames + dirnames:
            st = os.lstat(os.path.join(dirpath, name))
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                return True
    return False


def write_oci(out, layers):
    """An OCI layout (tag latest) of the directory layers, bottom first, as
    uncompressed tars: strata import oci reads it, no gzip in the way."""
    blobs = out / "blobs/sha256"
    blobs.mkdir(parents=True)

    def put(path_or_bytes):
        if isinstance(path_or_bytes, bytes):
            tmp = blobs / "tmp"
            tmp.write_bytes(path_or_bytes)
        else:
            tmp = path_or_bytes
        h = hashlib.sha256()
        with open(tmp, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        tmp.rename(blobs / h.hexdigest())
        return "sha256:" + h.hexdigest(), (blobs / h.hexdigest()).stat().st_size

    descs = []
    for layer in layers:
        src = layer
        if has_overlay_marks(layer):
            src = out / "stage"
            oci_stage(layer, src)
        tar = blobs / "layer.tar"
        sh(["tar", "--create", "--file", tar, "--sort=name", "--numeric-owner",
            "--xattrs", "--xattrs-include=*", "--acls", "-C", src, "."])
        if src != layer:
            shutil.rmtree(src)
        descs.append(put(tar))
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/bash"]},
        "rootfs": {"type": "layers", "diff_ids": [d for d, _ in descs]}}).encode()
    cd, cs = put(config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": cd, "size": cs},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": d, "size": n} for d, n in descs]}).encode()
    md, ms = put(manifest)
    (out / "index.json").write_text(json.dumps({
        "schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md,
            "size": ms, "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}))
    (out / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')


# ---------------------------------------------------------------- mounts


FUSE_DAEMONS = {"fuse-overlayfs", "strata", "strata-overlay"}


class Mount:
    """One filesystem serving the Debian image or the synthetic one at `root`.
    Each mount gets a fresh upper and work directory; native is the flat copy
    itself (no mount, no upper)."""

    def __init__(self, env, fs, image="debian"):
        self.env, self.fs, self.image = env, fs, image
        self.pid = None
        self.mounted = False
        if fs == "native":
            self.root = env.native
            self.upper = None
            return
        env.seq += 1
        base = env.work / "m" / f"{fs}-{image}-{env.seq}"
        self.root, self.upper, self.wdir = base / "mnt", base / "upper", base / "work"
        for d in (self.root, self.upper, self.wdir):
            d.mkdir(parents=True)

    def argv(self):
        env = self.env
        lowers = ":".join(map(str, env.fixture.layer_dirs() if self.image == "debian"
                              else env.fixture.syn_layer_dirs()))
        opts = f"lowerdir={lowers},upperdir={self.upper},workdir={self.wdir}"
        if self.fs == "overlay":
            return ["mount", "-t", "overlay", "overlay", "-o", opts, self.root]
        if self.fs == "fuse-overlayfs":
            return ["fuse-overlayfs", "-o", opts, self.root]
        if self.fs == "strata-overlay":
            return [env.strata_overlay, "-o", opts, self.root]
        image = DEBIAN_IMAGE if self.image == "debian" else SYN_IMAGE
        return [env.strata, "--root", env.store, "mount", image, self.root,
                "--upper", self.upper, "--work", self.wdir]

    def mount(self, ready=None):
        """Mounts; then calls `ready` (e.g. waits for a stat to succeed) and notes
        the time in ready_at, before looking for the daemon's PID."""
        if self.fs != "native":
            self.env.live.append(self)
            sh(self.argv())
            self.mounted = True
        if ready:
            ready()
        self.ready_at = time.perf_counter()
        if self.fs in FUSE_DAEMONS:
            self.pid = self.find_daemon()

    def find_daemon(self):
        """The process serving this mount: its argv names our (unique) mountpoint."""
        want = str(self.root)
        for _ in range(200):
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                    exe = os.path.basename(os.readlink(f"/proc/{pid}/exe"))
                except OSError:
                    continue
                if exe in FUSE_DAEMONS and want.encode() in args:
                    return int(pid)
            time.sleep(0.01)
        raise RuntimeError(f"no daemon found for {want}")

    def memory(self):
        """(VmRSS, RssAnon) of the daemon in KiB."""
        f = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            k, _, v = line.partition(":")
            f[k] = v.strip()
        return int(f["VmRSS"].split()[0]), int(f["RssAnon"].split()[0])

    def umount(self):
        if self.fs == "native" or self not in self.env.live:
            return
        if self.mounted:
            p = subprocess.run(["umount", self.root], capture_output=True, check=False)
            if p.returncode != 0:
                log(f"umount {self.root} failed ({p.stderr.decode().strip()}); "
                    "detaching it lazily")
                subprocess.run(["umount", "-l", self.root], check=False)
            self.mounted = False
        if self.pid:
            for _ in range(1000):  # let the daemon exit before the next measurement
                if not Path(f"/proc/{self.pid}").exists():
                    break
                time.sleep(0.01)
        self.env.live.remove(self)
        shutil.rmtree(self.root.parent, ignore_errors=True)

    def upper_bytes(self):
        """Disk usage of the upper directory (du: allocated blocks)."""
        out = sh(["du", "-s", "--block-size=1", self.upper], stdout=subprocess.PIPE)
        return int(out.split()[0])


def unmount_under(work):
    """Leftover mounts below `work` (an interrupted run), lazily."""
    for line in reversed(Path("/proc/self/mountinfo").read_text().splitlines()):
        mnt = line.split()[4]
        if mnt.startswith(str(work) + "/"):
            subprocess.run(["umount", "-l", mnt], check=False)


# ---------------------------------------------------------------- listings


def file_digest(path, size):
    """Hash of a regular file: all of it below 1 MiB, else three 1 MiB samples."""
    h = hashlib.blake2b(digest_size=12)
    with open(path, "rb") as f:
        if size < 1 << 20:
            h.update(f.read())
        else:
            for off in (0, size // 2, max(size - (1 << 20), 0)):
                f.seek(off)
                h.update(f.read(1 << 20))
    return h.hexdigest()


def listing(root, hash_files=True):
    """One line per object below root: path, type and mode, uid, gid, size (not
    for directories), symlink target or device number, content hash."""
    out = []
    stack = [""]
    while stack:
        rel = stack.pop()
        path = os.path.join(root, rel) if rel else root
        st = os.lstat(path)
        extra = ""
        if stat.S_ISLNK(st.st_mode):
            extra = os.readlink(path)
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            extra = f"{os.major(st.st_rdev)},{os.minor(st.st_rdev)}"
        elif stat.S_ISREG(st.st_mode) and hash_files:
            extra = file_digest(path, st.st_size)
        size = "-" if stat.S_ISDIR(st.st_mode) else st.st_size
        out.append(f"/{rel}\t{st.st_mode:o}\t{st.st_uid}\t{st.st_gid}\t{size}\t{extra}")
        if stat.S_ISDIR(st.st_mode):
            stack.extend(os.path.join(rel, n) if rel else n
                         for n in sorted(os.listdir(path), reverse=True))
    return out
