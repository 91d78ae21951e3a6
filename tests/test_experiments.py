"""Smoke tests: every registered experiment runs small, writes the agreed shapes, and the
same seed gives the same JSON."""

import json

import pytest

from experiments import EXPERIMENTS
from experiments.__main__ import main, write_claims

VERDICTS = {"supported", "refuted", "nuanced"}


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_quick_run_is_well_formed_and_reproducible(name, tmp_path):
    res, fig = tmp_path / "results", tmp_path / "figures"
    args = ["--only", name, "--quick", "--results", str(res), "--figures", str(fig)]
    assert main(args) == 0
    first = (res / f"{name}.json").read_text()
    rec = json.loads(first)
    assert rec["name"] == name and rec["quick"] is True and isinstance(rec["seed"], int)
    assert isinstance(rec["metrics"], dict) and rec["metrics"]
    assert rec["claims"], f"{name} records no claims"
    for c in rec["claims"]:
        assert {"claim", "source", "verdict", "measured", "expected"} <= set(c)
        assert c["verdict"] in VERDICTS
    png = fig / f"{name}.png"
    assert png.stat().st_size > 10_000
    assert (res / "CLAIMS.md").read_text().count("|") > 10
    timings = json.loads((res / "timings.json").read_text())
    assert timings[name]["wall_time_s"] > 0

    # a rerun without --force skips (the file is untouched) ...
    mtime = (res / f"{name}.json").stat().st_mtime_ns
    assert main(args) == 0
    assert (res / f"{name}.json").stat().st_mtime_ns == mtime
    # ... and with --force reproduces the same JSON from the same seed
    assert main([*args, "--force"]) == 0
    assert (res / f"{name}.json").read_text() == first


def test_unknown_experiment_lists_valid_names(capsys):
    with pytest.raises(SystemExit, match="valid"):
        main(["--only", "no_such_experiment"])


def test_claims_ledger_counts_verdicts(tmp_path):
    rec = {
        "name": EXPERIMENTS[0],
        "title": "t",
        "seed": 0,
        "metrics": {"x": 1},
        "claims": [
            {"claim": "a|b", "source": "s", "verdict": "refuted", "measured": 1, "expected": 2}
        ],
    }
    (tmp_path / f"{EXPERIMENTS[0]}.json").write_text(json.dumps(rec))
    text = write_claims(tmp_path).read_text()
    assert "1 refuted" in text and "a\\|b" in text and "**refuted**" in text
