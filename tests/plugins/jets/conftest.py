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


@pytest.fixture(scope="session")
def mixed_jets(top_jets, qcd_jets):
    from equiscope_jets import JetData

    return JetData.concatenate([top_jets, qcd_jets])


@pytest.fixture(scope="session")
def small_momenta(mixed_jets):
    from equiscope_jets import prepare_momenta

    return prepare_momenta(mixed_jets, 16)


@pytest.fixture(scope="session")
def jet_files(tmp_path_factory, top_jets, qcd_jets):
    from equiscope_jets import save_jets

    folder = tmp_path_factory.mktemp("jetfiles")
    return save_jets(top_jets, folder / "top.npz"), save_jets(qcd_jets, folder / "qcd.npz")
