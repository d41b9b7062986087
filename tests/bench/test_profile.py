"""bench.profile: py-spy's collapsed stacks summed by package, self and inclusive, start-up imports left out."""

from __future__ import annotations

from bench.profile import package_of, summarize

RAW = "\n".join(
    [
        # Two samples in the pipeline calling pydantic, one in the pipeline itself, one in pika.
        'process 1:"python -m bench.consumer";run (threading.py:1);__call__ (workers/runtime/pipeline.py:10);'
        "model_validate (pydantic/main.py:5) 2",
        'process 1:"python -m bench.consumer";run (threading.py:1);__call__ (workers/runtime/pipeline.py:12) 1',
        'process 1:"python -m bench.consumer";poll (pika/adapters/select_connection.py:3) 1',
        # Start-up: importing, before the first message.
        'process 1:"python -m bench.consumer";_find_and_load (<frozen importlib._bootstrap>:1176);'
        "<module> (sqlalchemy/__init__.py:1) 7",
        "not a stack line",
    ]
)


def test_samples_are_counted_for_the_innermost_package_and_for_every_package_on_the_stack() -> None:
    summary = summarize(RAW)

    assert (summary.samples, summary.importing) == (4, 7)
    assert summary.self_by_package == {"pydantic": 2, "workers.runtime": 1, "pika": 1}
    assert summary.inclusive_by_package["workers.runtime"] == 3
    assert summary.inclusive_by_package["stdlib:threading"] == 3
    assert "sqlalchemy" not in summary.inclusive_by_package
    assert summary.self_by_function["model_validate (pydantic)"] == 2


def test_file_names_as_py_spy_writes_them_map_to_packages() -> None:
    assert package_of("workers/runtime/pipeline.py") == "workers.runtime"
    assert package_of("workers/fleet.py") == "workers"
    assert package_of("json/decoder.py") == "stdlib:json"
    assert package_of("threading.py") == "stdlib:threading"
    assert package_of("<frozen runpy>") == "stdlib:runpy"
    assert package_of("/usr/lib/python3/site-packages/psycopg/cursor.py") == "psycopg"
    assert package_of("sqlalchemy/engine/base.py") == "sqlalchemy"
