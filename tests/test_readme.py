"""The README's quick example runs as written, and its commands match .ci/run."""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_quick_example_runs_and_is_short():
    blocks = _python_blocks((ROOT / "README.md").read_text())
    assert blocks, "README has no python example"
    example = blocks[0]
    assert len(example.strip().splitlines()) <= 15
    namespace: dict = {}
    exec(compile(example, "README.md", "exec"), namespace)  # noqa: S102
    assert namespace["q"].shape == (256, 512)


@pytest.mark.slow
def test_frank_wolfe_example_runs_and_is_short():
    blocks = _python_blocks((ROOT / "README.md").read_text())
    example = next(b for b in blocks if "frank_wolfe" in b)
    assert len(example.strip().splitlines()) <= 15
    namespace: dict = {}
    exec(compile(example, "README.md", "exec"), namespace)  # noqa: S102
    assert int(namespace["sol"].status) == 0  # converged
    assert namespace["path"].shape == (8,)
    assert float(namespace["dr"]) < 0  # a larger ball fits better


@pytest.mark.slow
def test_manifolds_example_runs_and_is_short():
    blocks = _python_blocks((ROOT / "README.md").read_text())
    example = next(b for b in blocks if "manifolds" in b)
    assert len(example.strip().splitlines()) <= 15
    namespace: dict = {}
    exec(compile(example, "README.md", "exec"), namespace)  # noqa: S102
    import jax.numpy as jnp
    import numpy as np

    sol, a, mu = namespace["sol"], namespace["A"], namespace["mu"]
    f_star = float(jnp.sum(mu * jnp.linalg.eigvalsh(a)[:10]))
    assert int(sol.status) == 0 and abs(float(sol.value) - f_star) < 1e-3 * abs(f_star)
    r = np.asarray(namespace["r"])
    np.testing.assert_allclose(r.T @ r, np.eye(10), atol=1e-5)


@pytest.mark.slow
def test_sbl_example_runs_and_is_short():
    blocks = _python_blocks((ROOT / "README.md").read_text())
    example = next(b for b in blocks if "from jaxspec import sbl" in b)
    assert len(example.strip().splitlines()) <= 15
    namespace: dict = {}
    exec(compile(example, "README.md", "exec"), namespace)  # noqa: S102
    import numpy as np

    sols, x = namespace["sols"], np.asarray(namespace["x"])
    assert np.all(np.asarray(sols.status) == 0)
    nmse = np.sum((np.asarray(sols.mean) - x) ** 2, 1) / np.sum(x**2, 1)
    assert np.median(nmse) < 1e-3
    kro = namespace["kro"]
    assert int(kro.status) == 0
    assert int(np.argmax(np.abs(np.asarray(kro.mean)))) == int(np.argmax(namespace["xk"]))


@pytest.mark.slow
def test_pursuit_example_runs_and_is_short():
    blocks = _python_blocks((ROOT / "README.md").read_text())
    example = next(b for b in blocks if "from jaxspec import pursuit" in b)
    assert len(example.strip().splitlines()) <= 15
    namespace: dict = {}
    exec(compile(example, "README.md", "exec"), namespace)  # noqa: S102
    import numpy as np

    codes, x = np.asarray(namespace["codes"]), np.asarray(namespace["x"])
    np.testing.assert_allclose(codes, x, atol=1e-4)  # exact recovery of the 16-sparse codes
    assert np.all(np.asarray(namespace["sol"].status) == 0)
    hist = namespace["hist"]
    assert float(hist["fvu"][-1]) < float(hist["fvu"][0])


def test_ci_runs_the_readme_commands():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'pip install -e ".[dev]"' in readme and 'pip install -q -e ".[dev]"' in ci
    assert "pytest -n auto" in readme and "\npytest -n auto" in ci
    assert "jaxspec reproduce --quick" in readme and "jaxspec reproduce --quick" in ci
