"""Small generated jet samples shared by the jet tests (fixed seeds: deterministic)."""

import pytest

from equiscope_jets import generate_jets


@pytest.fixture(scope="session")
def top_jets():
    return generate_jets("top", 20, seed=7, progress=False)


@pytest.fixture(scope="session")
def qcd_jets():
    return generate_jets("qcd", 20, seed=7, progress=False)


@pytest.fixture(scope="session", params=["top", "qcd"])
def jets(request, top_jets, qcd_jets):
    return top_jets if request.param == "top" else qcd_jets
