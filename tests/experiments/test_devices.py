"""The sweep axis sharded over 8 forced host devices gives the numbers of a 1-device run."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from .helpers import FIXTURES

# XLA_FLAGS must be set before JAX initializes: each device count runs in its own process.
# Default precision (float32), as a user would run it.
_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax
    from jaxspec.experiments import run_experiment
    results, experiments = sys.argv[1], sys.argv[2]
    full = run_experiment("toy", layout="grid", results_dir=results,
                          experiments_dir=experiments, progress=False)
    chunked = run_experiment("toy", overrides=["dim=3"], max_batch=3, layout="grid",
                             results_dir=results + "/chunked", experiments_dir=experiments,
                             progress=False)
    flat = run_experiment("toy", layout="flat", results_dir=results + "/flat",
                          experiments_dir=experiments, progress=False)
    auto = run_experiment("toy", results_dir=results + "/auto", experiments_dir=experiments,
                          progress=False)
    mapped = run_experiment("toy", layout="map", results_dir=results + "/map",
                            experiments_dir=experiments, progress=False)
    print(json.dumps({
        "device_count": jax.device_count(),
        "groups": json.loads((full.run_dir / "run.json").read_text())["groups"],
        "chunked_groups": json.loads((chunked.run_dir / "run.json").read_text())["groups"],
        "points": [r.point for r in full.records],
        "curves": [r.metrics["curve"].tolist() for r in full.records],
        "dtype": str(full.records[0].metrics["curve"].dtype),
        "chunked_points": [r.point for r in chunked.records],
        "chunked_curves": [r.metrics["curve"].tolist() for r in chunked.records],
        "flat_groups": json.loads((flat.run_dir / "run.json").read_text())["groups"],
        "flat_curves": [r.metrics["curve"].tolist() for r in flat.records],
        "auto_groups": json.loads((auto.run_dir / "run.json").read_text())["groups"],
        "map_groups": json.loads((mapped.run_dir / "run.json").read_text())["groups"],
        "map_curves": [r.metrics["curve"].tolist() for r in mapped.records],
    }))
    """
)


def _start(devices, results):
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_ENABLE_X64")}
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    return subprocess.Popen(
        [sys.executable, "-c", _SCRIPT, str(results), str(FIXTURES)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _finish(proc):
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.slow
def test_eight_host_devices_give_the_same_numbers(tmp_path):
    procs = [_start(8, tmp_path / "eight"), _start(1, tmp_path / "one")]
    eight, one = (_finish(p) for p in procs)
    assert eight["device_count"] == 8 and one["device_count"] == 1
    assert eight["dtype"] == one["dtype"] == "float32"
    # Each static group (2 seeds x 3 learning rates) runs as a grid: the 2 seed rows are
    # padded to 8 (8 x 3 points per call) and the outputs come back sharded over the 8 devices
    # along the mesh axis "sweep"; on 1 device, one shard.
    for group in eight["groups"]:
        assert group["layout"] == "grid" and group["grid"]["seeds"] == 2
        assert group["batch"] == 8 * 3 and group["calls"] == 1 and group["output_shards"] == 8
        assert "'sweep': 8" in group["output_sharding"]
        assert "spec=P('sweep',)" in group["output_sharding"]
    assert [g["output_shards"] for g in one["groups"]] == [1, 1]
    assert eight["points"] == one["points"] and len(eight["points"]) == 12
    np.testing.assert_array_equal(np.array(eight["curves"]), np.array(one["curves"]))
    # max_batch=3 on 8 devices: one seed row (3 points) per call, 2 calls, padded to 8 rows.
    (chunked,) = eight["chunked_groups"]
    assert chunked["layout"] == "grid" and chunked["calls"] == 2 and chunked["batch"] == 8 * 3
    assert chunked["output_shards"] == 8
    by_point = {json.dumps(p, sort_keys=True): c for p, c in zip(one["points"], one["curves"])}
    assert len(eight["chunked_points"]) == 6
    for point, curve in zip(eight["chunked_points"], eight["chunked_curves"]):
        assert "dim" not in point  # pinned to 3 by the override
        np.testing.assert_array_equal(
            curve, by_point[json.dumps({**point, "dim": 3}, sort_keys=True)]
        )
    # The flat layout: 6 points per group padded to 8, one point per device; the same numbers
    # on 8 devices as on 1, and the grid's to float32 round-off.
    for group in eight["flat_groups"]:
        assert group["layout"] == "flat" and group["batch"] == 8 and group["calls"] == 1
        assert group["output_shards"] == 8
    np.testing.assert_array_equal(np.array(eight["flat_curves"]), np.array(one["flat_curves"]))
    np.testing.assert_allclose(
        np.array(one["flat_curves"]), np.array(one["curves"]), rtol=1e-5, atol=1e-6
    )
    # "auto" (the default) takes the grid only when every device gets a seed row: 2 seeds
    # fill 1 device, not 8.
    assert [g["layout"] for g in one["auto_groups"]] == ["grid", "grid"]
    assert [g["layout"] for g in eight["auto_groups"]] == ["flat", "flat"]
    # "map": each device runs its points one after another; 6 points on 8 devices
    for group in eight["map_groups"]:
        assert group["layout"] == "map" and group["calls"] == 1 and group["output_shards"] == 8
    np.testing.assert_array_equal(np.array(eight["map_curves"]), np.array(one["map_curves"]))
    np.testing.assert_allclose(
        np.array(one["map_curves"]), np.array(one["curves"]), rtol=1e-5, atol=1e-6
    )
