"""The benchmark's report, from measurements given to it (the measuring is tests/test_bench.py)."""

from __future__ import annotations

from pathlib import Path

from bench.run import Method, Outcome, Run, Shape, count_items, goals


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


def outcome(key: str, seconds: float, export_format: str = "json", path: str = "") -> Outcome:
    method = Method(key, key, "postgresql", export_format, path=path)
    return Outcome(method, [Run(wall=seconds, seconds=seconds, rss_kib=90 * 1024, rows=10)])


def test_document_goals_are_judged_against_the_document_copy_and_drf() -> None:
    pg = [
        outcome("copy-documents-jsonl", 2.0, "jsonl"),
        outcome("job-json", 1.0, path="fast"),
        outcome("job-xml", 4.0, "xml", path="fast"),
        outcome("job-json", 5.0, path="generic"),
        outcome("drf-nested-json", 20.0),
    ]

    report = "\n".join(goals({"postgresql": pg}, {}, None, 2.0, document=True))

    copy, drf = "documents job ≥ 1.0x the document COPY's throughput", "the nested DRF serializer"
    assert f"| PostgreSQL JSON {copy} | 2.00x | yes |" in report
    assert f"| PostgreSQL XML {copy} | 0.50x | **no** |" in report
    assert f"| PostgreSQL JSON documents job ≥ 10x {drf} | 20.0x | yes |" in report
    assert f"| PostgreSQL XML documents job ≥ 10x {drf} | 5.0x | **no** |" in report
    assert (
        f"| generic JSON documents job (PostgreSQL, fast path off) ≥ 3x {drf} | 4.0x | yes |"
        in report
    )
    assert "naive loop" not in report
    assert "django-import-export" not in report


def test_items_of_documents_are_counted_in_every_file(tmp_path: Path) -> None:
    shape = Shape(["json", "xml", "jsonl"], document=True, collection="lines", item="line")
    array = tmp_path / "documents.json"
    array.write_text('[\n{"lines": [{"a": 1}, {"a": 2}]},\n{"lines": []}\n]\n')
    # COPY's text format: json_agg's line break between items as \n, a backslash doubled.
    copy = tmp_path / "documents.jsonl"
    copy.write_bytes(b'{"note" : "a\\\\"b", "lines" : [{"a" : 1}, \\n {"a" : 2}]}\n')
    xml = tmp_path / "documents.xml"
    xml.write_text("<orderList><order><lines><line><a>1</a></line></lines></order></orderList>")

    assert count_items(array, "json", shape) == 2
    assert count_items(copy, "jsonl", shape, copy_text=True) == 2
    assert count_items(xml, "xml", shape) == 1
