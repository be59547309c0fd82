"""Workloads, targets and the report of bench/run: markdown tables, the JSON's
summary and the gnuplot chart. Everything here reads only the measured samples or a
saved JSON, so `bench/run --replot` can redraw an earlier run."""
import shutil
import statistics
import subprocess
from dataclasses import dataclass

from fslib import log

FILESYSTEMS = {  # key: (table heading, chart label)
    "native": ("native", "native"),
    "overlay": ("kernel overlayfs", "overlayfs"),
    "fuse-overlayfs": ("fuse-overlayfs", "fuse-overlayfs"),
    "strata": ("strata mount", "strata mount"),
    "strata-overlay": ("strata-overlay", "strata-overlay"),
}
STRATA_FS = ("strata", "strata-overlay")


@dataclass(frozen=True)
class Workload:
    key: str
    label: str
    unit: str           # MB/s, s, ms, MiB
    higher_better: bool
    phase: str
    ref: str = "native"  # the filesystem the ratio is against ("" = no ratio)
    chart: bool = True


# In the order of the list; the phases run in PHASES order.
WORKLOADS = [
    Workload("seqread-cold", "fio seq read 1 MiB, cold", "MB/s", True, "read"),
    Workload("seqread-warm", "fio seq read 1 MiB, warm", "MB/s", True, "read"),
    Workload("randread-cold", "fio rand read 4 KiB, cold", "MB/s", True, "read"),
    Workload("randread-warm", "fio rand read 4 KiB, warm", "MB/s", True, "read"),
    Workload("seqwrite", "fio seq write 1 MiB + fsync", "MB/s", True, "write"),
    Workload("randwrite-lower", "fio rand write 4 KiB into a lower file (+copy-up)",
             "MB/s", True, "write"),
    Workload("first-write", "first 4 KiB write to the 1 GiB lower file", "ms", False,
             "write", chart=False),
    Workload("find-cold", "find + lstat, whole tree, cold", "s", False, "walk"),
    Workload("find-warm", "find + lstat, whole tree, warm", "s", False, "walk"),
    Workload("ls-lR", "ls -lR, whole tree", "s", False, "walk"),
    Workload("create-unlink", "create + unlink 10,000 files", "s", False, "write"),
    Workload("readdir-first", "readdir of the 10k merged dir, first", "ms", False,
             "tree"),
    Workload("readdir-repeat", "readdir of the 10k merged dir, repeated", "ms", False,
             "tree"),
    Workload("tar-usr", "tar -c /usr", "s", False, "tree"),
    Workload("untar", "untar of a source tree", "s", False, "write"),
    Workload("chown", "chown -R /usr/share", "s", False, "write"),
    Workload("chown-upper", "chown -R: written to the upper", "MiB", False, "write",
             ref="", chart=False),
    Workload("mount-stat", "mount to first stat, this image", "ms", False, "tree",
             ref="overlay"),
    Workload("mount-stat-100k", "mount to first stat, 100k files 10 layers", "ms",
             False, "syn", ref="overlay"),
    Workload("start", "container start to exit, /bin/true, rootless", "ms", False,
             "start"),
    Workload("mem-rss", "daemon RSS after the walk", "MiB", False, "walk",
             ref="fuse-overlayfs", chart=False),
    Workload("mem-anon", "daemon anon memory after the walk", "MiB", False, "walk",
             ref="fuse-overlayfs", chart=False),
]
BY_KEY = {w.key: w for w in WORKLOADS}
PHASES = ["walk", "tree", "read", "write", "syn", "start"]

# The targets: (text, workload, bound, reference). The ratio is the median of
# the workload against the reference's median, oriented so that lower is better
# (throughput: reference / strata); `ref` "peers" is the faster of kernel overlayfs
# and fuse-overlayfs; mem-anon is held against fuse-overlayfs's RSS; `ref` None
# makes the bound absolute, in the workload's unit.
TARGETS = [
    ("warm seq read >= 0.8x native", "seqread-warm", 1 / 0.8, "native"),
    ("warm random read >= 0.8x native", "randread-warm", 1 / 0.8, "native"),
    ("cold seq read >= 0.9x native", "seqread-cold", 1 / 0.9, "native"),
    ("seq write >= 0.9x native", "seqwrite", 1 / 0.9, "native"),
    ("4 KiB random writes into a lower file >= 0.9x native", "randwrite-lower",
     1 / 0.9, "native"),
    ("cold find+lstat within 1.3x native", "find-cold", 1.3, "native"),
    ("warm find+lstat within 1.5x native", "find-warm", 1.5, "native"),
    ("ls -lR within 1.5x native", "ls-lR", 1.5, "native"),
    ("tar -c /usr within 1.5x native", "tar-usr", 1.5, "native"),
    ("untar within 2.5x native", "untar", 2.5, "native"),
    ("create+unlink 10k within 3x native", "create-unlink", 3.0, "native"),
    ("first readdir of the 10k merged dir within 5x native", "readdir-first", 5.0,
     "native"),
    ("first 4 KiB write to the 1 GiB lower file no slower than the fastest peer",
     "first-write", 1.0, "peers"),
    ("mount-to-first-stat within 1.2x of kernel overlayfs", "mount-stat", 1.2,
     "overlay"),
    ("mount-to-first-stat (100k files, 10 layers) within 1.2x of kernel overlayfs",
     "mount-stat-100k", 1.2, "overlay"),
    ("daemon anon memory <= 2x fuse-overlayfs RSS", "mem-anon", 2.0,
     "fuse-overlayfs RSS"),
    ("container start at least 1.5x faster than fuse-overlayfs+bwrap (time "
     "ratio <= 0.67)", "start", 1 / 1.5, "fuse-overlayfs"),
    ("container start under 50 ms", "start", 50.0, None),
]

CHART_LABELS = {
    "seqread-cold": "seq read cold", "seqread-warm": "seq read warm",
    "randread-cold": "rand read cold", "randread-warm": "rand read warm",
    "seqwrite": "seq write+fsync", "randwrite-lower": "rand write lower",
    "find-cold": "find cold", "find-warm": "find warm", "ls-lR": "ls -lR",
    "create-unlink": "create+unlink 10k", "readdir-first": "readdir 10k first",
    "readdir-repeat": "readdir 10k again", "tar-usr": "tar -c /usr",
    "untar": "untar", "chown": "chown -R", "mount-stat": "mount-stat (vs ovl)",
    "mount-stat-100k": "mount-stat 100k (vs ovl)", "start": "container start"}

def stats(xs):
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)} if xs else None


def slowdown(w, value, ref_value):
    """>1 means slower than the reference, for every unit."""
    if w.higher_better:
        return ref_value / value
    return value / ref_value


def fmt(v):
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    if v >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def summarize(results, filesystems, only):
    """Median, min, max and the ratio against the reference, per workload and fs."""
    out = {}
    for w in WORKLOADS:
        if w.key not in only:
            continue
        row = {}
        for fs in filesystems:
            st = stats(results[w.key][fs])
            if not st:
                continue
            ref = results[w.key].get(w.ref) if w.ref else None
            if w.key == "mem-anon":
                ref = results["mem-rss"].get("fuse-overlayfs")
            if ref:
                st["ratio"] = st["median"] / statistics.median(ref)
            row[fs] = st
        out[w.key] = row
    return out


def ref_median(summary, key, ref):
    if ref == "peers":
        vals = [summary[key][fs]["median"] for fs in ("overlay", "fuse-overlayfs")
                if fs in summary.get(key, {})]
        return min(vals) if vals else None
    if ref == "fuse-overlayfs RSS":
        return summary.get("mem-rss", {}).get("fuse-overlayfs", {}).get("median")
    return summary.get(key, {}).get(ref, {}).get("median")


def targets(summary):
    rows = []
    for text, key, bound, ref in TARGETS:
        w = BY_KEY[key]
        refv = ref_median(summary, key, ref) if ref else None
        cells = {}
        for fs in STRATA_FS:
            st = summary.get(key, {}).get(fs)
            if st and ref is None:
                cells[fs] = {"value": st["median"], "met": st["median"] < bound}
            if not st or not refv:
                continue
            r = slowdown(w, st["median"], refv)
            shown = 1 / r if w.higher_better else r
            cells[fs] = {"ratio": shown, "met": r <= bound}
        rows.append({"target": text, "workload": key, **cells})
    return rows


def report(res):
    """The markdown tables, from a result (the JSON)."""
    info, summary = res, res["stats"]
    m = info["machine"]
    print(f"Machine: {m['cores']} cores ({m['cpu']}), {m['mem_gib']} GiB, kernel "
          f"{m['kernel']}, {m['disk']}; load {' '.join(info['load_before'])} before, "
          f"{' '.join(info['load_after'])} after; {info['date']}")
    v = info["versions"]
    print(f"strata {v['strata']}; {v['fuse-overlayfs']}; {v['fio']}; {v['tar']}; "
          f"overlay module: {v['overlay_params']}")
    if "tree" in info:
        s = info["sizes"]
        print(f"Image: {info['tree']['objects']} objects (4 layers; {s['big_mib']} MiB "
              f"and {s['mid_mib']} MiB files, a {s['dir_entries']}-entry merged "
              "directory).")
    if "start" in info:
        st = info["start"]
        print(f"Container start: `/bin/true` in a rootless container (as "
              f"{st['user']}) over {st['image']} ({st['files']} files): strata mount "
              f"= `strata run --rm`; native = bwrap over a flat copy; kernel "
              f"overlayfs = `unshare -Urm`, overlay mount, bwrap; fuse-overlayfs and "
              f"strata-overlay = mount, bwrap, `fusermount3 -u` (bench/start_bench's "
              f"bwrap flags; {st['bwrap']}). Each run: {st['warmup']} untimed, then "
              f"{st['rounds']} timed starts per filesystem, interleaved "
              f"({res['runs'] * st['rounds']} samples each)."
              + "".join(f" Not measured on {fs}: {why}" for fs, why in
                        st.get("dropped", {}).items()))
    print(f"Medians of {res['runs']} runs (min-max) and ratio against native "
          f"(mount to first stat: against kernel overlayfs; daemon memory: against "
          f"fuse-overlayfs's RSS); {info['wall_min']} min in all.\n")
    fss = res["filesystems"]
    print("| workload | unit | " + " | ".join(FILESYSTEMS[f][0] for f in fss) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in fss) + " |")
    for w in WORKLOADS:
        if w.key not in summary:
            continue
        cells = []
        for fs in fss:
            st = summary[w.key].get(fs)
            if not st:
                cells.append("—")
                continue
            c = f"{fmt(st['median'])} ({fmt(st['min'])}-{fmt(st['max'])})"
            if "ratio" in st:
                c += f" {st['ratio']:.2f}x"
            cells.append(c)
        arrow = "↑" if w.higher_better else "↓"
        print(f"| {w.label} | {w.unit} {arrow} | " + " | ".join(cells) + " |")
    rows = [r for r in res["targets"] if any(fs in r for fs in STRATA_FS)]
    if not rows:
        return
    print("\n| target | strata mount | strata-overlay |")
    print("| --- | --- | --- |")
    for r in rows:
        cells = [target_cell(r[fs], BY_KEY[r["workload"]]) if fs in r else "—"
                 for fs in STRATA_FS]
        print(f"| {r['target']} | " + " | ".join(cells) + " |")


def target_cell(c, w):
    shown = f"{fmt(c['value'])} {w.unit}" if "value" in c else f"{c['ratio']:.2f}"
    return f"{shown} {'met' if c['met'] else '**missed**'}"


def chart(path, res):
    """Slowdown per workload and filesystem against the workload's reference."""
    if not shutil.which("gnuplot"):
        log("no gnuplot: no chart")
        return
    summary = res["stats"]
    shown = [fs for fs in res["filesystems"] if fs != "native"]
    rows = []
    for w in WORKLOADS:
        if not w.chart or w.key not in summary:
            continue
        refst = summary[w.key].get(w.ref)
        if not refst:
            continue
        vals = []
        for fs in shown:
            st = summary[w.key].get(fs)
            vals.append(f"{slowdown(w, st['median'], refst['median']):.4f}"
                        if st else "NaN")
        rows.append(f'"{CHART_LABELS[w.key]}" ' + " ".join(vals))
    if not rows:
        return
    plots = ", ".join(f'$d using {i + 2}{":xtic(1)" if i == 0 else ""} title '
                      f'"{FILESYSTEMS[fs][1]}" lc rgb "{c}"'
                      for i, (fs, c) in enumerate(zip(shown, [
                          "#bbbbbb", "#ee7733", "#0077bb", "#33bbee"][:len(shown)])))
    script = f"""set terminal pngcairo size 1200,600 noenhanced
set output "{path}"
set title "Slowdown against native (time ratio; throughput inverted), median of {res['runs']} runs; 1 = native, lower is better"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set logscale y
set ylabel "x native (log)"
set grid ytics
set key top left
set xtics rotate by -35 font ",10"
set bmargin 6
set rmargin 14
$d << EOD
{chr(10).join(rows)}
EOD
plot {plots}, 1 with lines dt 2 lc rgb "#000000" notitle
"""
    subprocess.run(["gnuplot"], input=script, text=True, check=True)
