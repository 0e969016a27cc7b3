"""The benchmark's report, from measurements given to it (the measuring is tests/test_bench.py)."""

from __future__ import annotations

from bench.run import goals


def test_a_load_round_without_answers_is_reported_as_not_measured() -> None:
    # wrk on an overloaded machine may see no request answered in a round.
    load = {
        "status_rps": 0.0,
        "constant_rps": 0.0,
        "status_runs": [0.0, 0.0],
        "constant_runs": [0.0, 0.0],
    }

    report = list(goals({}, {}, load, None))

    assert (
        "| status endpoint ≥ 0.8x a constant DRF view (requests/s) | not measured | - |" in report
    )


def test_answered_load_rounds_are_judged() -> None:
    load = {
        "status_rps": 900.0,
        "constant_rps": 1000.0,
        "status_runs": [900.0, 900.0],
        "constant_runs": [1000.0, 1000.0],
    }

    report = "\n".join(goals({}, {}, load, None))

    assert "900 vs 1,000 req/s = 0.90x" in report
    assert "0.90x to 0.90x) | yes |" in report
