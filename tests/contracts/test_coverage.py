"""The contract registry covers every public name of every module (or says why not)."""

import importlib

from tests.contracts.registry import EXEMPT, REGISTRY, covered_names

MODULES = ("spectral", "frank_wolfe", "sbl", "pursuit", "manifolds", "frank_wolfe.lmo")


def public_names() -> set[str]:
    names = set()
    for module in MODULES:
        mod = importlib.import_module(f"jaxspec.{module}")
        names.update(f"{module}.{name}" for name in mod.__all__)
    return names


def test_every_public_name_is_under_contract_or_exempt():
    public = public_names()
    missing = sorted(public - covered_names() - set(EXEMPT))
    assert not missing, f"public names with neither a contract nor an exemption: {missing}"


def test_exemptions_and_contracts_name_real_public_callables():
    public = public_names()
    assert not sorted(set(EXEMPT) - public), "stale exemptions"
    assert not sorted(set(EXEMPT) & covered_names()), "exempt names that are under contract"
    assert not sorted(covered_names() - public), "registry ids that name no public callable"


def test_registry_ids_are_unique():
    ids = [c.name for c in REGISTRY]
    assert len(ids) == len(set(ids))
