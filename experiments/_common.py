"""What every experiment shares: claim records, result writing, the registry contract.

An experiment is a module ``experiments/NAME.py`` with

- ``NAME: str`` and ``TITLE: str``;
- ``run(seed: int, quick: bool) -> dict`` returning ``{"metrics": {...}, "claims": [...],
  "arrays": {...}}`` (``arrays``: numpy arrays the figure needs, saved to
  ``results/NAME.npz``; metrics are JSON numbers/strings/lists);
- ``plot(result: dict, arrays: dict) -> matplotlib.figure.Figure`` drawing only from
  what ``run`` returned, so a figure can be redrawn without recomputing.
"""

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

VERDICTS = ("supported", "refuted", "nuanced")


def claim(
    claim: str, source: str, verdict: str, measured: Any, expected: Any, note: str = ""
) -> dict:
    """One claim record: what was claimed, where, and what we measured."""
    if verdict not in VERDICTS:
        raise ValueError(f"Unknown verdict {verdict!r}; valid: {', '.join(VERDICTS)}.")
    out = {
        "claim": claim,
        "source": source,
        "verdict": verdict,
        "measured": measured,
        "expected": expected,
    }
    if note:
        out["note"] = note
    return out


def _clean(x: Any, digits: int = 6) -> Any:
    """JSON-safe copy with floats rounded to ``digits`` significant digits."""
    if isinstance(x, dict):
        return {str(k): _clean(v, digits) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v, digits) for v in x]
    if isinstance(x, np.ndarray):
        return _clean(x.tolist(), digits)
    if isinstance(x, np.bool_ | bool):
        return bool(x)
    if isinstance(x, np.integer | int):
        return int(x)
    if isinstance(x, np.floating | float):
        v = float(x)
        if not math.isfinite(v):
            return str(v)
        return float(f"{v:.{digits}g}")
    if hasattr(x, "item") and getattr(x, "shape", None) == ():
        return _clean(x.item(), digits)
    return x


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (temp file + rename), floats rounded for reproducibility."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(_clean(obj), f, indent=2, sort_keys=False)
        f.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def write_npz(path: Path, arrays: dict[str, Any]) -> None:
    """Write arrays atomically to an ``.npz``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz")
    os.close(fd)
    np.savez_compressed(tmp, **{k: np.asarray(v) for k, v in arrays.items()})
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
