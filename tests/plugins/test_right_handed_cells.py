"""Improper copies of periodic structures get right-handed cells (the same lattice):
a model using the signed cell volume audits at its noise floor with inversion."""

import ase
import ase.io
import numpy as np
import pytest
import torch
from metatomic.torch import ModelOutput, System

import equiscope as eq
from _models import SignedVolume, export, write_copper
from equiscope_atoms import audit, evaluate_orbit, load_model, read_structures, transformed_system
from equiscope_atoms.heads import symmetrize_model

GRID = eq.grid("lebedev", degree=4, inversion=True)


def triclinic() -> ase.Atoms:
    generator = np.random.default_rng(3)
    cell = np.array([[4.1, 0.0, 0.0], [1.3, 3.9, 0.0], [-0.7, 0.9, 4.4]])
    fractions = generator.random((6, 3))
    atoms = ase.Atoms("Cu6", scaled_positions=fractions, cell=cell, pbc=True)
    keep = [0]  # keep atoms at least 1.8 A apart
    for index in range(1, len(atoms)):
        if atoms.get_distances(index, keep, mic=True).min() > 1.8:
            keep.append(index)
    return atoms[keep]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return export(SignedVolume(), tmp_path_factory.mktemp("signed") / "signed.pt")


@pytest.fixture(scope="module", params=["cubic", "triclinic"])
def structure(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    if request.param == "cubic":
        return read_structures(write_copper(folder / "cu.xyz", n=1, labels=False))[0]
    ase.io.write(str(folder / "tri.xyz"), triclinic())
    return read_structures(folder / "tri.xyz")[0]


def test_improper_copies_have_right_handed_cells_spanning_the_same_lattice(structure):
    system = structure.system
    for matrix in GRID.rotations:
        copy = transformed_system(system, matrix)
        det = float(torch.linalg.det(matrix))
        assert float(torch.det(copy.cell)) == pytest.approx(float(torch.det(system.cell)))
        assert torch.allclose(copy.cell, det * system.cell @ matrix.T)
        assert torch.allclose(copy.positions, system.positions @ matrix.T)


def _energy(model, system: System) -> float:
    from metatrain.utils.neighbor_lists import get_system_with_neighbor_lists

    system = get_system_with_neighbor_lists(system, model.requested_neighbor_lists())
    result = model.module([system], {"energy": ModelOutput(sample_kind="system")}, None)
    return float(result["energy"].block().values.sum())


def test_the_model_sees_left_handed_cells(model_path, structure):
    """The test model is sensitive: a left-handed description of the inverted
    structure flips its pressure term, 2 p V."""
    model = load_atomistic(model_path)
    system = structure.system
    inversion = -torch.eye(3, dtype=torch.float64)
    right = transformed_system(system, inversion)
    left = System(types=right.types, positions=right.positions, cell=-right.cell, pbc=right.pbc)
    volume = abs(float(torch.det(system.cell)))
    assert _energy(model, right) == pytest.approx(_energy(model, system), rel=1e-12)
    assert _energy(model, right) - _energy(model, left) == pytest.approx(2 * 0.05 * volume)


def load_atomistic(path):
    from metatomic.torch import load_atomistic_model

    return load_atomistic_model(str(path))


def test_orbit_of_a_signed_volume_model_is_exactly_equivariant(model_path, structure):
    model = load_model(model_path)
    result = evaluate_orbit(
        model, structure.system, GRID, outputs=["energy"], forces=True, stress=True
    )
    for name, irrep in (("energy", "scalar"), ("forces", "vector"), ("stress", "rank2")):
        responses = result.responses[name]
        a2 = float(eq.equivariance_variance(responses, GRID, irrep).sum())
        rms2 = float(responses.square().sum()) / responses.shape[0]
        assert a2 < 1e-24 * rms2, name
    stress = result.responses["stress"]
    sectors, norms = eq.sector_norms(stress, GRID, 2)
    shares = norms.reshape(len(sectors), -1).sum(1) / norms.sum()
    fractions = dict(zip(sectors, shares.tolist(), strict=True))
    assert fractions[(0, -1)] < 1e-20
    assert fractions[(0, 1)] > 0.01  # the hydrostatic pressure term is there


def test_audit_with_inversion_is_at_the_noise_floor(model_path, structure):
    report = audit(load_model(model_path), [structure], grid=GRID, progress=False)
    for name, out in report["outputs"].items():
        assert out["equivariance_rmse"] <= 10 * out["noise_floor"], name
        assert "0,-1" not in out["breaking_sectors"] or out["breaking_sectors"]["0,-1"] < 1e-20


def test_averaging_head_keeps_the_invariant_model_unchanged(model_path, structure, tmp_path):
    from metatomic.torch import load_atomistic_model
    from metatomic_ase import MetatomicCalculator

    atoms = ase.Atoms(
        numbers=structure.system.types.numpy(),
        positions=structure.system.positions.numpy(),
        cell=structure.system.cell.numpy(),
        pbc=True,
    )
    atoms.calc = MetatomicCalculator(str(model_path))
    energy, forces, stress = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
    head = symmetrize_model(
        load_atomistic_model(str(model_path)),
        mode="average",
        grid=eq.grid("octahedral", inversion=True),
    )
    head.save(str(tmp_path / "head.pt"))
    atoms.calc = MetatomicCalculator(str(tmp_path / "head.pt"))
    assert atoms.get_potential_energy() == pytest.approx(energy, rel=1e-12)
    assert np.allclose(atoms.get_forces(), forces, atol=1e-10)
    assert np.allclose(atoms.get_stress(), stress, atol=1e-10)
    assert abs(stress[:3]).min() > 1e-3  # a real stress, pressure term included
