"""Report helpers: Markdown tables, mean ± std, grouping records."""

import numpy as np
import pytest

from jaxspec.experiments import Record, group_records, markdown_table, mean_std


def test_markdown_table_from_dicts_and_lists():
    table = markdown_table([{"name": "a|b", "x": 0.123456}, {"name": "c", "y": np.float32(2)}])
    assert table.splitlines() == [
        "| name | x | y |",
        "|---|---|---|",
        "| a\\|b | 0.1235 |  |",
        "| c |  | 2 |",
    ]
    rows = markdown_table([[1, np.asarray(1e-7)]], headers=["n", "err"], floatfmt=".1e")
    assert rows.splitlines()[-1] == "| 1 | 1.0e-07 |"
    assert markdown_table([]) == "_(no rows)_"
    with pytest.raises(ValueError, match="headers"):
        markdown_table([[1, 2]])


def test_mean_std():
    assert mean_std([0.12, 0.126]) == "0.123 ± 0.004243"
    assert mean_std([np.asarray(2.0)]) == "2 ± 0"
    assert mean_std([1.0, 2.0, 3.0], fmt=".2f") == "2.00 ± 1.00"
    assert mean_std([]) == "n/a"


def test_group_records_by_point_keys_and_config_fields():
    records = [
        Record(
            {"seed": s, "opt.name": n}, {"loss": np.asarray(s + i)}, {"opt": {"name": n}, "d": 4}
        )
        for i, n in enumerate(["adam", "sgd"])
        for s in range(3)
    ]
    by_name = group_records(records, by="opt.name")
    assert list(by_name) == ["adam", "sgd"] and [len(v) for v in by_name.values()] == [3, 3]
    assert [float(r.metrics["loss"]) for r in by_name["sgd"]] == [1.0, 2.0, 3.0]
    pairs = group_records(records, by=("d", "opt.name"))  # `d` is not swept: from the config
    assert list(pairs) == [(4, "adam"), (4, "sgd")]
