"""The symmetry monitor measures what a target is: per-structure targets as totals.

PET declares every target per atom. For a per-structure target (a dipole, a direct
stress) the per-atom split is not observable, so the monitor must measure the total:
the same number as ``equiscope audit --totals``, not the per-atom audit's.
"""

import ase.build
import pytest
import torch
from metatomic.torch import systems_to_torch
from metatrain.utils.architectures import get_default_hypers
from metatrain.utils.data import DatasetInfo
from metatrain.utils.data.target_info import get_generic_target_info
from metatrain.utils.neighbor_lists import get_system_with_neighbor_lists

import equiscope as eq
from equiscope_atoms import audit, wrap_model
from equiscope_atoms.data import Structure
from equiscope_metatrain.architecture import EquiscopeModel
from equiscope_metatrain.monitor import SymmetryMonitor

VECTOR = {"quantity": "", "unit": "", "type": {"cartesian": {"rank": 1}}, "num_subtargets": 1}


@pytest.fixture(scope="module")
def model():
    targets = {
        "mtt::dipole": get_generic_target_info("mtt::dipole", {**VECTOR, "sample_kind": "system"}),
        "mtt::field": get_generic_target_info("mtt::field", {**VECTOR, "sample_kind": "atom"}),
    }
    info = DatasetInfo(length_unit="angstrom", atomic_types=[1, 6, 8], targets=targets)
    hypers = get_default_hypers("experimental.equiscope")["model"]
    hypers["base"]["model"] = {"d_pet": 8, "d_head": 8, "d_node": 8, "d_feedforward": 8}
    hypers["base"]["model"].update(num_heads=1, num_gnn_layers=1)
    torch.manual_seed(0)
    return EquiscopeModel(hypers, info).to(torch.float64).eval()


def test_per_structure_targets_are_monitored_as_totals(model, tmp_path):
    molecules = []
    for index, name in enumerate(["CH3OH", "H2CO", "CH3CHO"]):
        atoms = ase.build.molecule(name)
        atoms.rattle(0.05, seed=index)
        system = systems_to_torch(atoms, dtype=torch.float64)
        molecules.append(get_system_with_neighbor_lists(system, model.requested_neighbor_lists()))
    hypers = dict(get_default_hypers("experimental.equiscope")["training"]["monitor"])
    hypers.update(interval=1, structures=3, grid="octahedral", layers=False)
    targets = ["mtt::dipole", "mtt::field"]
    monitor = SymmetryMonitor(hypers, [[{"system": s} for s in molecules]], targets, tmp_path, 0)
    row = monitor.measure(model, 0)

    structures = [Structure(system=s, index=i) for i, s in enumerate(molecules)]
    options = dict(
        grid=eq.grid("octahedral", inversion=True),
        outputs=targets,
        layers=[],
        batch_size=48,
        convergence_structures=0,
        progress=False,
    )
    per_atom = audit(wrap_model(model), structures, **options)["outputs"]
    loaded = wrap_model(model)
    loaded.totals = {"mtt::dipole"}
    totals = audit(loaded, structures, **options)["outputs"]
    assert totals["mtt::dipole"]["per_atom"] and not per_atom["mtt::dipole"]["per_atom"]
    assert row["A:mtt::dipole"] == pytest.approx(totals["mtt::dipole"]["equivariance_rmse"])
    assert row["A:mtt::dipole"] != pytest.approx(per_atom["mtt::dipole"]["equivariance_rmse"])
    # a per-atom target stays per atom
    assert row["A:mtt::field"] == pytest.approx(per_atom["mtt::field"]["equivariance_rmse"])
    assert row["A:mtt::dipole"] > 1e-6  # an untrained PET: far from equivariant


def test_the_figure_has_units_and_its_path_is_logged(model, tmp_path, caplog, monkeypatch):
    import logging

    import matplotlib.pyplot as plt

    system = systems_to_torch(ase.build.molecule("CH3OH"), dtype=torch.float64)
    system = get_system_with_neighbor_lists(system, model.requested_neighbor_lists())
    hypers = dict(get_default_hypers("experimental.equiscope")["training"]["monitor"])
    hypers.update(interval=1, structures=1, grid="tetrahedral", layers=True)
    monitor = SymmetryMonitor(hypers, [[{"system": system}]], ["mtt::field"], tmp_path, 0)
    monitor.measure(model, 0)
    assert monitor.units == {"mtt::field": ""}  # the fixture's targets declare no unit
    monitor.units["mtt::field"] = "V/Å"
    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    with caplog.at_level(logging.INFO, logger="equiscope_metatrain.monitor"):
        path = monitor.plot()
    assert f"symmetry monitor: figure written to {path}" in caplog.text
    left, right = figures[0].axes
    assert [t.get_text() for t in left.get_legend().get_texts()] == ["mtt::field (V/Å)"]
    assert "unit" in left.get_ylabel() and "invariant sector" in right.get_ylabel()
    assert path.stat().st_size > 5000
