"""Compare two result folders key by key: ``python scripts/compare_results.py A B``.

For every experiment present in either folder it compares ``NAME.json`` (every field of the
record — metrics, claims with their verdicts, seed, config — walked as a tree, so each
difference is printed with its key path) and ``NAME.npz`` (each array's dtype, shape and
values, bit for bit; NaNs compare equal). Keys that hold measured times or machine facts
differ between any two runs; they are skipped by ``--ignore`` (a regular expression matched
against the key path; the default covers wall and compile times). Exits 1 when anything
differs, 0 when the folders agree, and prints one line per difference.
"""

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

# Key paths whose values are timings or machine readings, different in every run.
DEFAULT_IGNORE = r"(^|/)(wall_time_s|provenance)(/|$)|_s$|_seconds$|wall_ratio$"


def _walk(a, b, path: str, ignore: re.Pattern, out: list[str]) -> None:
    if path and ignore.search(path):
        return
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            p = f"{path}/{k}" if path else str(k)
            if ignore.search(p):
                continue
            if k not in a:
                out.append(f"{p}: only in B")
            elif k not in b:
                out.append(f"{p}: only in A")
            else:
                _walk(a[k], b[k], p, ignore, out)
        return
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f"{path}: length {len(a)} vs {len(b)}")
            return
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _walk(x, y, f"{path}[{i}]", ignore, out)
        return
    if type(a) is not type(b) or a != b:
        out.append(f"{path}: {_short(a)} vs {_short(b)}")


def _short(x, n: int = 80) -> str:
    s = json.dumps(x) if not isinstance(x, str) else repr(x)
    return s if len(s) <= n else s[: n - 3] + "..."


def compare_json(a: Path, b: Path, ignore: re.Pattern) -> list[str]:
    out: list[str] = []
    _walk(json.loads(a.read_text()), json.loads(b.read_text()), "", ignore, out)
    return out


def compare_npz(a: Path, b: Path, ignore: re.Pattern) -> list[str]:
    out: list[str] = []
    with np.load(a) as za, np.load(b) as zb:
        for k in sorted(set(za.files) | set(zb.files)):
            if ignore.search(k):
                continue
            if k not in za.files or k not in zb.files:
                out.append(f"{k}: only in {'B' if k not in za.files else 'A'}")
                continue
            x, y = za[k], zb[k]
            if x.dtype != y.dtype or x.shape != y.shape:
                out.append(f"{k}: {x.dtype}{list(x.shape)} vs {y.dtype}{list(y.shape)}")
                continue
            same = np.array_equal(x, y, equal_nan=x.dtype.kind in "fc")
            if not same:
                if x.dtype.kind in "fc":
                    d = np.nanmax(np.abs(x.astype(complex) - y.astype(complex)))
                    out.append(f"{k}: arrays differ (max |A - B| = {d:.3g})")
                else:
                    out.append(f"{k}: arrays differ")
    return out


def compare(
    a: Path, b: Path, ignore: str = DEFAULT_IGNORE, common: bool = False
) -> dict[str, list[str]]:
    """Differences per file name (``NAME.json`` / ``NAME.npz``); empty lists are dropped.
    With ``common``, files present in only one folder are skipped instead of reported."""
    pat = re.compile(ignore)
    diffs: dict[str, list[str]] = {}
    names = sorted(
        {p.name for p in a.glob("*.json")} | {p.name for p in b.glob("*.json")}
        | {p.name for p in a.glob("*.npz")} | {p.name for p in b.glob("*.npz")}
    )  # fmt: skip
    for name in names:
        if name == "timings.json" or name.startswith("bench_"):
            continue
        pa, pb = a / name, b / name
        if not pa.exists() or not pb.exists():
            if common:
                continue
            diffs[name] = [f"only in {'B' if not pa.exists() else 'A'}"]
            continue
        d = compare_json(pa, pb, pat) if name.endswith(".json") else compare_npz(pa, pb, pat)
        if d:
            diffs[name] = d
    return diffs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a", type=Path, help="first results folder")
    p.add_argument("b", type=Path, help="second results folder")
    p.add_argument("--ignore", default=DEFAULT_IGNORE, help="regex of key paths to skip")
    p.add_argument("--common", action="store_true", help="only files present in both")
    args = p.parse_args(argv)
    for d in (args.a, args.b):
        if not d.is_dir():
            raise SystemExit(f"{d} is not a folder of results")
    diffs = compare(args.a, args.b, args.ignore, args.common)
    n_files = len({p.stem for p in args.a.glob("*.json")} - {"timings", "CLAIMS"})
    for name, lines in diffs.items():
        for line in lines:
            print(f"{name}: {line}")
    total = sum(len(v) for v in diffs.values())
    print(f"{total} differences in {len(diffs)} files ({n_files} experiments in {args.a})")
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
