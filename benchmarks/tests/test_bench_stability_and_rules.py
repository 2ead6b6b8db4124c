"""benchmarks/bench_stability.py and bench_rules.py: what they report (the target line, the
panel's strategies agreeing with the pipeline), not how fast or how faithful a run is."""

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import bench_rules  # noqa: E402
import bench_stability  # noqa: E402


def _record(ratio):
    run = {"case": "1m", "rows": 1_000_000, "features": 12, "k": 8, "resamples": 20,
           "stability_method": "bootstrap of 100,000 rows sampled from 1,000,000", "fit_s": 10.0,
           "stability_s": 10.0 * ratio, "ratio": ratio, "stability": [0.91, 0.5]}
    from machine import machine_info

    return {"machine": machine_info(), "device": "cpu", "resamples": 20, "runs": [run]}


@pytest.mark.parametrize("ratio, verdict", [(0.78, "passes"), (3.0, "passes"), (3.2, "fails")])
def test_the_stability_table_says_whether_the_target_is_met(ratio, verdict):
    text = bench_stability.markdown(_record(ratio))
    assert f"Measured {ratio:.2f}: {verdict}." in text
    assert "| 1m | 1,000,000 | 12 | bootstrap of 100,000 rows sampled from 1,000,000 |" in text
    assert "0.91, 0.50" in text


def test_an_unknown_stability_case_is_refused(capsys):
    with pytest.raises(SystemExit):
        bench_stability.main(["--only", "5m"])
    assert "unknown case(s) 5m" in capsys.readouterr().err


def test_the_pipelines_way_is_one_of_the_panels_and_scores_the_same():
    frame, k, options = bench_rules.panel()["axis-aligned boxes (k=4)"]
    measured = bench_rules.measure(frame, k, options)
    assert set(measured["fidelity"]) == {f"{trees}, {weight or 'as they come'}"
                                         for trees, weight in bench_rules.STRATEGIES}
    assert measured["fidelity"]["both, balanced"] == pytest.approx(measured["pipeline"], abs=1e-12)
    assert len(measured["rules"]) == k
