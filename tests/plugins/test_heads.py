"""Symmetrised heads: exact removal of the sectors a grid averages out, seeded random
frames, export, and the ASE calculator."""

from typing import Dict, List, Optional

import ase
import ase.build
import ase.io
import numpy as np
import pytest
import torch
from ase.calculators.calculator import PropertyNotImplementedError
from ase.stress import voigt_6_to_full_3x3_stress
from metatensor.torch import Labels, TensorBlock, TensorMap
from metatomic.torch import ModelOutput, System, load_atomistic_model, systems_to_torch

import equiscope as eq
from _models import MultipoleAnisotropy, export
from equiscope_ase import EquiscopeCalculator
from equiscope_atoms import evaluate_orbit, wrap_model
from equiscope_atoms.heads import symmetrize_model

OUTPUTS = {
    "energy": ModelOutput(unit="eV", sample_kind="system"),
    "non_conservative_force": ModelOutput(unit="eV/Angstrom", sample_kind="atom"),
}
BIAS = [0.2, -0.1, 0.3]
POSITIONS = [[0.0, 0.0, 0.0], [1.2, 0.1, -0.2], [-0.5, 0.9, 0.3], [0.1, -0.8, 0.7]]


@pytest.fixture(scope="module")
def raw_path(tmp_path_factory):
    module = MultipoleAnisotropy([0.5, 0.4, 0.3, 0.25, 0.2, 0.15], BIAS)
    return export(module, tmp_path_factory.mktemp("heads") / "multi.pt", outputs=OUTPUTS)


@pytest.fixture(scope="module")
def system():
    return systems_to_torch(ase.Atoms("COHH", positions=POSITIONS), dtype=torch.float64)


def energy_spectrum(model, system):
    grid = eq.grid("lebedev", degree=12)  # resolves lambda <= 6
    result = evaluate_orbit(wrap_model(model), system, grid, outputs=["energy"], batch_size=962)
    return eq.spectrum(result.responses["energy"][:, 0, 0], grid, max_lambda=6)


@pytest.mark.parametrize(
    ("name", "removed", "kept"),
    [
        ("octahedral", {1, 2, 3, 5}, {4, 6}),
        # 120 evaluations per point of the Lebedev grid: half a minute
        pytest.param("icosahedral", {1, 2, 3, 4, 5}, {6}, marks=pytest.mark.slow),
    ],
)
def test_average_removes_exactly_the_sectors_the_group_averages_out(
    raw_path, system, name, removed, kept
):
    raw = load_atomistic_model(str(raw_path))
    before = energy_spectrum(raw, system)
    head = symmetrize_model(raw, mode="average", grid=eq.grid(name, inversion=True))
    after = energy_spectrum(head, system)
    for lam in removed | kept:
        assert before[(lam, 0)] > 1e-5 * before.total  # planted in every lambda
    for lam in removed:
        assert after[(lam, 0)] < 1e-26 * after.total, lam
    for lam in kept:
        assert after[(lam, 0)] > 1e-6 * after.total, lam


@pytest.mark.parametrize(
    ("name", "planted"),
    [("octahedral", [1, 2, 3, 5]), ("icosahedral", [1, 2, 3, 4, 5, 7, 8, 9])],
)
def test_energy_forces_and_stress_are_exactly_equivariant_when_the_group_removes_all(
    tmp_path, name, planted
):
    """Anisotropy planted only in the degrees the group averages out (P_l(z . u) is a
    degree-l function of the rotation): behind the head, energy, forces and stress
    transform exactly under any rotation and inversion, though the raw model does not."""
    coefficients = [0.3 if lam in planted else 0.0 for lam in range(1, max(planted) + 1)]
    module = MultipoleAnisotropy(coefficients, [0.0, 0.0, 0.0])
    path = export(module, tmp_path / "m.pt", outputs={"energy": OUTPUTS["energy"]})
    matrix = -torch.linalg.qr(
        torch.randn(3, 3, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    )[0].numpy()
    matrix *= np.sign(np.linalg.det(matrix))  # a rotation; the grids include -1
    results = {}
    for head in ("raw", name):
        grid = eq.Grid.identity() if head == "raw" else name
        calculator = EquiscopeCalculator(path, grid=grid, inversion=head != "raw")
        values = []
        for transform in (np.eye(3), matrix, -matrix):
            atoms = ase.Atoms("COHH", positions=POSITIONS, cell=4.0 * np.eye(3), pbc=True)
            atoms.set_cell(atoms.cell.array @ transform.T, scale_atoms=True)
            atoms.calc = calculator
            values.append(
                (
                    atoms.get_potential_energy(),
                    atoms.get_forces(),
                    voigt_6_to_full_3x3_stress(atoms.get_stress()),
                )
            )
        (e0, f0, s0) = values[0]
        errors = []
        for (energy, forces, stress), transform in zip(values[1:], (matrix, -matrix), strict=True):
            errors += [
                abs(energy - e0),
                np.abs(forces - f0 @ transform.T).max(),
                np.abs(stress - transform @ s0 @ transform.T).max(),
            ]
        results[head] = max(errors)
    assert results["raw"] > 1e-3
    assert results[name] < 1e-13


def force_output(model, system):
    result = model.module(
        [system], {"non_conservative_force": OUTPUTS["non_conservative_force"]}, None
    )
    return result["non_conservative_force"].block().values[:, :, 0]


def pair_field(positions):
    d = positions[None, :, :] - positions[:, None, :]
    r = d.norm(dim=-1, keepdim=True)
    unit = torch.where(r > 0, d / r.clamp(min=1e-30), 0.0)
    return (torch.exp(-r) * unit).sum(1)


@pytest.mark.parametrize("mode", ["average", "random-group"])
def test_group_heads_remove_a_vector_bias_exactly(raw_path, system, mode):
    raw = load_atomistic_model(str(raw_path))
    head = symmetrize_model(raw, mode=mode, grid=eq.grid("octahedral", inversion=True), seed=3)
    expected = pair_field(system.positions)
    for _ in range(3):  # every call, whatever the random orientation
        assert torch.allclose(force_output(head, system), expected, atol=1e-13)
    assert not torch.allclose(force_output(raw, system), expected, atol=1e-3)


def test_random_frame_turns_the_bias_into_a_rotated_bias(raw_path, system):
    raw = load_atomistic_model(str(raw_path))
    head = symmetrize_model(raw, mode="random", seed=5)
    expected = pair_field(system.positions)
    deviations = [force_output(head, system) - expected for _ in range(4)]
    for deviation in deviations:
        # Q^T b on every atom: same vector for all atoms, with the norm of b
        assert torch.allclose(deviation, deviation[:1].expand_as(deviation), atol=1e-13)
        assert float(deviation[0].norm()) == pytest.approx(float(np.linalg.norm(BIAS)), rel=1e-12)
    assert not torch.allclose(deviations[0], deviations[1])


def run_md(calculator, steps=5):
    from ase.md.verlet import VelocityVerlet

    atoms = ase.Atoms("COHH", positions=POSITIONS)
    atoms.calc = calculator
    atoms.set_velocities(np.full((4, 3), 0.01))
    VelocityVerlet(atoms, timestep=0.5).run(steps)
    return atoms.positions.copy()


def test_same_seed_same_trajectory(raw_path):
    first = run_md(EquiscopeCalculator(raw_path, mode="random", seed=7))
    second = run_md(EquiscopeCalculator(raw_path, mode="random", seed=7))
    other = run_md(EquiscopeCalculator(raw_path, mode="random", seed=8))
    assert np.array_equal(first, second)
    assert not np.allclose(first, other, atol=1e-8)


def test_saved_head_runs_in_metatomic_ase_with_the_same_numbers(raw_path, tmp_path):
    from metatomic_ase import MetatomicCalculator

    raw = load_atomistic_model(str(raw_path))
    head = symmetrize_model(raw, mode="average", grid=eq.grid("icosahedral", inversion=True))
    head.save(str(tmp_path / "head.pt"))
    atoms = ase.Atoms("COHH", positions=POSITIONS)
    atoms.calc = MetatomicCalculator(str(tmp_path / "head.pt"))
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    atoms.calc = EquiscopeCalculator(raw_path, mode="average", grid="icosahedral")
    assert atoms.get_potential_energy() == pytest.approx(energy, rel=1e-12)
    assert np.allclose(atoms.get_forces(), forces, atol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "smooth"}, "unknown mode 'smooth'"),
        ({"grid": "cubic"}, "unknown grid 'cubic'"),
        ({"grid": "lebedev"}, "needs degree="),
        ({"mode": "random", "n_inplane": 7}, "n_inplane applies to a named 'lebedev' grid"),
        ({"grid": "octahedral", "n_inplane": 7}, "n_inplane applies to grid 'lebedev' only"),
    ],
)
def test_bad_head_options(raw_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        EquiscopeCalculator(raw_path, **kwargs)


def test_missing_model_and_axial_grid(raw_path, tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        EquiscopeCalculator(tmp_path / "nope.pt")
    with pytest.raises(ValueError, match="SO\\(3\\) or O\\(3\\) grid"):
        symmetrize_model(load_atomistic_model(str(raw_path)), grid=eq.grid("so2", n=4))


def test_symmetrize_command(raw_path, tmp_path, capsys):
    from equiscope.cli import main

    output = tmp_path / "head.pt"
    code = main(
        ["symmetrize", str(raw_path), "-o", str(output), "--grid", "octahedral", "--inversion"]
    )
    assert code == 0 and "48 evaluations per call" in capsys.readouterr().out
    head = load_atomistic_model(str(output))
    system = systems_to_torch(ase.Atoms("COHH", positions=POSITIONS), dtype=torch.float64)
    assert torch.allclose(force_output(head, system), pair_field(system.positions), atol=1e-13)
    metatomic_ase_grid = ["--grid", "lebedev", "--degree", "3", "--n-inplane", "7", "--inversion"]
    code = main(["symmetrize", str(raw_path), "-o", str(tmp_path / "l3.pt"), *metatomic_ase_grid])
    assert code == 0 and "84 evaluations per call" in capsys.readouterr().out
    assert main(["symmetrize", str(raw_path), "-o", str(tmp_path / "x.pt"), "--mode", "x"]) == 2
    random_grid = ["--mode", "random", "--n-inplane", "7"]
    assert main(["symmetrize", str(raw_path), "-o", str(tmp_path / "x.pt"), *random_grid]) == 2
    assert main(["symmetrize", str(raw_path), "-o", str(tmp_path / "x.txt")]) == 2
    assert not (tmp_path / "x.pt").exists()


def test_exported_diagnostics_give_the_known_variance(raw_path, system, tmp_path):
    raw = load_atomistic_model(str(raw_path))
    grid = eq.grid("octahedral", inversion=True)
    head = symmetrize_model(raw, mode="average", grid=grid, diagnostics=True)
    head.save(str(tmp_path / "diagnostic.pt"))
    head = load_atomistic_model(str(tmp_path / "diagnostic.pt"))
    requests = {
        "equiscope::variance::non_conservative_force": OUTPUTS["non_conservative_force"],
        "equiscope::variance::energy": OUTPUTS["energy"],
        "energy": OUTPUTS["energy"],
    }
    result = head.module([system], requests, None)
    # a constant bias b on a vector output: A^2 = |b|^2 on every atom
    variance = result["equiscope::variance::non_conservative_force"].block().values
    assert torch.allclose(variance, torch.full_like(variance, sum(b * b for b in BIAS)))
    # the energy variance is the audit engine's A^2 on the same grid
    orbit = evaluate_orbit(wrap_model(raw), system, grid, outputs=["energy"])
    expected = eq.equivariance_variance(orbit.responses["energy"][:, 0, 0], grid, "scalar")
    energy_variance = result["equiscope::variance::energy"].block().values
    assert float(energy_variance) == pytest.approx(float(expected), rel=1e-10)
    assert float(result["energy"].block().values) == pytest.approx(
        float(eq.symmetrize(orbit.responses["energy"][:, 0, 0], grid, "scalar")), rel=1e-12
    )
    with pytest.raises(ValueError, match="diagnostics need several copies"):
        symmetrize_model(raw, mode="random", diagnostics=True)


def test_calculator_stores_the_spread(raw_path):
    atoms = ase.Atoms("COHH", positions=POSITIONS)
    atoms.calc = EquiscopeCalculator(raw_path, grid="octahedral", diagnostics=True)
    atoms.get_potential_energy()
    spread = atoms.calc.results["energy_rot_std"]
    raw = load_atomistic_model(str(raw_path))
    system = systems_to_torch(atoms, dtype=torch.float64)
    grid = eq.grid("octahedral", inversion=True)
    orbit = evaluate_orbit(wrap_model(raw), system, grid, outputs=["energy"])
    a2 = eq.equivariance_variance(orbit.responses["energy"][:, 0, 0], grid, "scalar")
    assert spread == pytest.approx(float(a2) ** 0.5, rel=1e-10)


def test_diagnose_mode_passes_raw_outputs_through(raw_path, system, tmp_path):
    raw = load_atomistic_model(str(raw_path))
    grid = eq.grid("octahedral", inversion=True)
    wrapper = symmetrize_model(raw, mode="diagnose", grid=grid)
    wrapper.save(str(tmp_path / "diagnose.pt"))
    wrapper = load_atomistic_model(str(tmp_path / "diagnose.pt"))
    requests = {"energy": OUTPUTS["energy"], "equiscope::variance::energy": OUTPUTS["energy"]}
    result = wrapper.module([system], requests, None)
    plain = raw.module([system], {"energy": OUTPUTS["energy"]}, None)
    assert torch.equal(result["energy"].block().values, plain["energy"].block().values)
    orbit = evaluate_orbit(wrap_model(raw), system, grid, outputs=["energy"])
    expected = eq.equivariance_variance(orbit.responses["energy"][:, 0, 0], grid, "scalar")
    assert float(result["equiscope::variance::energy"].block().values) == pytest.approx(
        float(expected), rel=1e-10
    )
    assert torch.equal(force_output(wrapper, system), force_output(raw, system))


def test_head_on_a_neighbour_list_model_keeps_an_invariant_model_unchanged(tmp_path):
    from metatomic_ase import MetatomicCalculator

    from _models import PairPotential, write_copper

    model = export(PairPotential(), tmp_path / "lj.pt")
    atoms = ase.io.read(str(write_copper(tmp_path / "cu.xyz", n=1, disorder=True, labels=False)))
    atoms.calc = MetatomicCalculator(str(model))
    energy, forces, stress = (
        atoms.get_potential_energy(),
        atoms.get_forces(),
        atoms.get_stress(),
    )
    atoms.calc = EquiscopeCalculator(model, grid="octahedral")
    assert atoms.get_potential_energy() == pytest.approx(energy, rel=1e-12)
    assert np.allclose(atoms.get_forces(), forces, atol=1e-10)
    assert np.allclose(atoms.get_stress(), stress, atol=1e-10)


@pytest.mark.parametrize(
    ("coefficients", "degrees", "grid"),
    [
        ([0.0, 0.5], {2}, "tetrahedral"),
        ([0.3, 0.5, 0.2], {1, 2, 3}, "octahedral"),
        ([0.0, 0.0, 0.0, 0.4], {4}, "icosahedral"),
        ([0.0, 0.0, 0.0, 0.0, 0.0, 0.3], {6}, "lebedev"),
    ],
)
def test_auto_picks_the_cheapest_grid_for_the_planted_sectors(
    tmp_path, system, coefficients, degrees, grid
):
    from equiscope_atoms import load_model
    from equiscope_atoms.grid_choice import breaking_lambdas, cheapest_grid

    path = export(
        MultipoleAnisotropy(coefficients, [0.0, 0.0, 0.0]),
        tmp_path / "planted.pt",
        outputs={"energy": OUTPUTS["energy"]},
    )
    found, odd = breaking_lambdas(load_model(path), [system])
    assert found == degrees and not odd
    chosen = cheapest_grid(found)
    assert chosen.name == grid
    assert set(degrees) <= set(chosen.averages_out)


def test_auto_calculator(raw_path):
    atoms = ase.Atoms("COHH", positions=POSITIONS)
    calculator = EquiscopeCalculator(raw_path, mode="auto", probe=atoms)
    # lambda = 1..6 planted: a Lebedev grid of degree 6 is the cheapest that removes all
    assert calculator.head_options["grid"]["name"] == "lebedev"
    assert set(range(1, 7)) <= set(calculator.head_options["grid"]["averages_out"])
    with pytest.raises(ValueError, match="needs probe="):
        EquiscopeCalculator(raw_path, mode="auto")


class ConstantEnergy(torch.nn.Module):
    """Energy 0.1 eV per atom, independent of the positions and cell (no gradient),
    plus ``mtt::spin``, a per-system output with a ``spin`` component axis that a head
    cannot classify."""

    def forward(
        self,
        systems: List[System],
        outputs: Dict[str, ModelOutput],
        selected_atoms: Optional[Labels],
    ) -> Dict[str, TensorMap]:
        one = torch.zeros(1, 1, dtype=torch.int32)
        samples = Labels("system", torch.arange(len(systems), dtype=torch.int32)[:, None])
        energies = [torch.full((1, 1), 0.1 * len(s), dtype=torch.float64) for s in systems]
        block = TensorBlock(torch.cat(energies), samples, [], Labels("energy", one))
        result = {"energy": TensorMap(Labels("_", one), [block])}
        if "mtt::spin" in outputs:
            spin = Labels("spin", torch.arange(2, dtype=torch.int32)[:, None])
            values = torch.ones(len(systems), 2, 1, dtype=torch.float64)
            block = TensorBlock(values, samples, [spin], Labels("p", one))
            result["mtt::spin"] = TensorMap(Labels("_", one), [block])
        return result


@pytest.fixture(scope="module")
def constant_path(tmp_path_factory):
    outputs = {
        "energy": OUTPUTS["energy"],
        "mtt::spin": ModelOutput(sample_kind="system"),
    }
    return export(ConstantEnergy(), tmp_path_factory.mktemp("const") / "const.pt", outputs=outputs)


def copper():
    return ase.build.bulk("Cu", "fcc", a=3.61, cubic=True)


def test_stress_without_a_lattice_is_a_clear_error(tmp_path):
    from _models import PairPotential

    model = export(PairPotential(), tmp_path / "lj.pt")
    calculator = EquiscopeCalculator(model, grid="octahedral")
    cluster = ase.Atoms("Cu3", positions=[[0, 0, 0], [2.5, 0, 0], [0, 2.4, 0.3]])
    cluster.calc = calculator
    with pytest.raises(
        PropertyNotImplementedError, match=r"'stress' requested from model '.*lj.pt'"
    ):
        cluster.get_stress()
    assert np.isfinite(cluster.get_forces()).all()  # forces still work
    assert "stress" not in calculator.results
    # a 2D cell: no volume either
    slab = ase.Atoms("Cu2", positions=[[0, 0, 0], [1.8, 1.8, 0]], cell=[3.6, 3.6, 0], pbc=False)
    slab.calc = calculator
    with pytest.raises(PropertyNotImplementedError, match="no lattice, no stress"):
        slab.get_stress()
    bulk = copper()
    bulk.calc = calculator
    assert np.isfinite(bulk.get_stress()).all()
    with pytest.raises(PropertyNotImplementedError, match=r"'stresses' requested .* no lattice"):
        cluster.get_stresses()


def rattled_copper():
    atoms = copper().repeat(2)
    atoms.rattle(0.1, seed=1)
    atoms.positions[0] += 0.3  # no two atoms alike
    return atoms


@pytest.mark.parametrize("mode", ["average", "random"])
def test_per_atom_stresses_of_a_pair_potential_are_ase_lennard_jones(tmp_path, mode):
    from ase.calculators.lj import LennardJones

    from _models import PairPotential

    model = export(PairPotential(cutoff=4.0, sigma=2.0, epsilon=0.2), tmp_path / "lj.pt")
    reference = rattled_copper()
    reference.calc = LennardJones(sigma=2.0, epsilon=0.2, rc=4.0)
    expected = reference.get_stresses()
    atoms = rattled_copper()
    atoms.calc = EquiscopeCalculator(model, mode=mode, grid="octahedral")
    stresses = atoms.get_stresses()
    assert stresses.shape == (len(atoms), 6)
    assert np.abs(expected).max() > 1e-3
    np.testing.assert_allclose(stresses, expected, rtol=0, atol=1e-14)
    np.testing.assert_allclose(stresses.sum(0), atoms.get_stress(), rtol=0, atol=1e-15)


@pytest.mark.parametrize("mode", ["average", "random"])
def test_per_atom_stresses_of_a_many_body_model_sum_to_the_stress(tmp_path, mode):
    from _models import EmbeddedAtoms

    model = export(EmbeddedAtoms(anisotropy=0.5), tmp_path / "eam.pt")
    atoms = rattled_copper()
    atoms.calc = EquiscopeCalculator(model, mode=mode, grid="octahedral", seed=3)
    # one call: a random head draws one frame for the stress and the per-atom split
    atoms.calc.calculate(atoms, ["stress", "stresses"], ["positions"])
    stresses, total = atoms.calc.results["stresses"], atoms.calc.results["stress"]
    np.testing.assert_allclose(stresses.sum(0), total, rtol=0, atol=1e-14)
    if mode == "random":  # the next call draws the next frame
        atoms.calc.calculate(atoms, ["stresses"], ["positions"])
        assert np.abs(atoms.calc.results["stresses"].sum(0) - total).max() > 1e-6
    assert np.abs(total).max() > 1e-3
    # many-body: atoms differ, so the split is not the total shared evenly
    assert np.abs(stresses - total / len(atoms)).max() > 1e-3 * np.abs(total).max()


def test_per_atom_stresses_of_a_group_average_rotate_with_the_group(tmp_path):
    from ase.stress import voigt_6_to_full_3x3_stress

    from _models import EmbeddedAtoms

    model = export(EmbeddedAtoms(anisotropy=0.5), tmp_path / "eam.pt")
    quarter = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])  # in O
    errors = {}
    for head in ("none", "octahedral"):
        calculator = (
            EquiscopeCalculator(model, grid=head)
            if head != "none"
            else EquiscopeCalculator(model, grid=eq.Grid.identity(), inversion=False)
        )
        atoms = rattled_copper()
        atoms.calc = calculator
        before = voigt_6_to_full_3x3_stress(atoms.get_stresses())
        turned = rattled_copper()
        turned.set_cell(turned.cell.array @ quarter.T, scale_atoms=True)
        turned.calc = calculator
        after = voigt_6_to_full_3x3_stress(turned.get_stresses())
        expected = np.einsum("ab,ibc,dc->iad", quarter, before, quarter)
        errors[head] = np.abs(after - expected).max() / np.abs(before).max()
    assert errors["none"] > 1e-3  # the planted anisotropy, seen per atom
    assert errors["octahedral"] < 1e-13


class PairPotentialWithStress(torch.nn.Module):
    """The pair potential plus a direct ``non_conservative_stress`` (zero)."""

    def __init__(self):
        super().__init__()
        from _models import PairPotential

        self.pair = PairPotential()

    def requested_neighbor_lists(self):
        return self.pair.requested_neighbor_lists()

    def forward(
        self,
        systems: List[System],
        outputs: Dict[str, ModelOutput],
        selected_atoms: Optional[Labels],
    ) -> Dict[str, TensorMap]:
        result = self.pair(systems, outputs, selected_atoms)
        if "non_conservative_stress" in outputs:
            one = torch.zeros(1, 1, dtype=torch.int32)
            xyz = torch.arange(3, dtype=torch.int32)[:, None]
            samples = Labels("system", torch.arange(len(systems), dtype=torch.int32)[:, None])
            block = TensorBlock(
                torch.zeros(len(systems), 3, 3, 1, dtype=torch.float64),
                samples,
                [Labels("xyz_1", xyz), Labels("xyz_2", xyz)],
                Labels("non_conservative_stress", one),
            )
            result["non_conservative_stress"] = TensorMap(Labels("_", one), [block])
        return result


def test_per_atom_stresses_with_a_direct_stress_are_refused(tmp_path):
    outputs = {
        "energy": OUTPUTS["energy"],
        "non_conservative_stress": ModelOutput(unit="eV/Angstrom^3", sample_kind="system"),
    }
    model = export(PairPotentialWithStress(), tmp_path / "nc.pt", outputs=outputs)
    atoms = rattled_copper()
    atoms.calc = EquiscopeCalculator(model, grid="octahedral", non_conservative="stress")
    assert np.abs(atoms.get_stress()).max() == 0.0  # the direct (zero) stress
    with pytest.raises(PropertyNotImplementedError, match="direct stress output has no per-atom"):
        atoms.get_stresses()


def test_per_atom_stresses_need_per_atom_energies(tmp_path):
    model = export(MultipoleAnisotropy([0.1] * 6, BIAS), tmp_path / "multipole.pt", outputs=OUTPUTS)
    atoms = rattled_copper()
    atoms.calc = EquiscopeCalculator(model, grid="octahedral")
    with pytest.raises(
        PropertyNotImplementedError,
        match=r"'stresses' requested from model '.*multipole.pt': it gives no per-atom 'energy'",
    ):
        atoms.get_stresses()


def test_per_atom_stresses_of_pet_sum_to_the_stress(tmp_path):
    """PET rebuilds its pair vectors from the positions: the split by per-atom energies
    covers it, behind a head too."""
    from equiscope_atoms import tiny_pet

    path = tmp_path / "pet.pt"
    tiny_pet([29], dtype=torch.float64).export().save(str(path))
    atoms = ase.build.bulk("Cu", "fcc", a=3.61, cubic=True)
    atoms.rattle(0.05, seed=2)
    atoms.calc = EquiscopeCalculator(path, grid="tetrahedral", inversion=False)
    atoms.calc.calculate(atoms, ["stress", "stresses"], ["positions"])
    stresses, total = atoms.calc.results["stresses"], atoms.calc.results["stress"]
    assert np.abs(total).max() > 1e-6
    np.testing.assert_allclose(stresses.sum(0), total, rtol=0, atol=1e-12 * np.abs(total).max())


def test_per_atom_stresses_after_forces_keep_the_step_and_its_frame(tmp_path):
    """ase asks for 'stresses' after the forces of the same step: the random head must
    not draw a new frame (the forces already used stay, the split matches them)."""
    from _models import EmbeddedAtoms

    model = export(EmbeddedAtoms(anisotropy=0.5), tmp_path / "eam.pt")
    atoms = rattled_copper()
    atoms.calc = EquiscopeCalculator(model, mode="random", seed=5)
    forces = atoms.get_forces().copy()
    stress = atoms.get_stress().copy()
    stresses = atoms.get_stresses()
    np.testing.assert_array_equal(atoms.get_forces(), forces)
    np.testing.assert_allclose(stresses.sum(0), stress, rtol=0, atol=1e-14)
    # and the frame sequence goes on as without the extra pass
    atoms.positions[0] += 0.01
    moved = atoms.get_forces().copy()
    reference = rattled_copper()
    reference.calc = EquiscopeCalculator(model, mode="random", seed=5)
    reference.get_forces()
    reference.positions[0] += 0.01
    np.testing.assert_array_equal(reference.get_forces(), moved)


def test_stress_and_forces_from_an_energy_without_gradient(constant_path):
    atoms = copper()
    atoms.calc = EquiscopeCalculator(constant_path, grid="octahedral")
    assert atoms.get_potential_energy() == pytest.approx(0.4)
    with pytest.raises(PropertyNotImplementedError, match=r"'stresses' requested .* no per-atom"):
        atoms.get_stresses()
    with pytest.raises(PropertyNotImplementedError, match=r"'stress' requested .* no gradient"):
        atoms.get_stress()
    with pytest.raises(PropertyNotImplementedError, match=r"'forces' requested .* no gradient"):
        atoms.get_forces()


def test_missing_non_conservative_stress_is_refused_at_construction(raw_path):
    # metatomic-ase's own check, kept: the model has forces but no stress output
    for option in (True, "stress"):
        with pytest.raises(ValueError, match="'non_conservative_stress' not found"):
            EquiscopeCalculator(raw_path, grid="octahedral", non_conservative=option)
    atoms = ase.Atoms("COHH", positions=POSITIONS, cell=np.eye(3) * 8.0, pbc=True)
    atoms.calc = EquiscopeCalculator(raw_path, grid="octahedral", non_conservative="forces")
    assert np.isfinite(atoms.get_stress()).all()  # stress from the energy gradient


def test_an_output_of_unknown_symmetry_is_a_clear_error(constant_path):
    requests = {"mtt::spin": ModelOutput(sample_kind="system")}
    atoms = copper()
    atoms.calc = EquiscopeCalculator(constant_path, grid="octahedral", additional_outputs=requests)
    with pytest.raises(
        ValueError, match=r"cannot symmetrise output 'mtt::spin': block components \['spin'\]"
    ):
        atoms.get_potential_energy()


@pytest.mark.parametrize("mode", ["random", "random-group"])
def test_random_heads_back_rotate_spherical_outputs_with_the_right_wigner_d(mode, tmp_path):
    """Random frames need D(R) for rotations drawn at run time (computed from spherical
    harmonics at fixed points inside TorchScript): equal to the engine's Wigner D of
    the proper part, for proper and improper elements."""
    from scipy.spatial.transform import Rotation

    from equiscope_atoms.heads import SymmetrizedHead

    grid = None if mode == "random" else eq.grid("octahedral", inversion=True)
    head = SymmetrizedHead(
        torch.nn.Identity(),
        grid,
        mode=mode,
        seed=0,
        inversion=True,
        max_lambda=6,
        dtype=torch.float64,
    )
    elements = torch.from_numpy(Rotation.random(4, random_state=1).as_matrix())
    elements[1] = -elements[1]
    elements[3] = -elements[3]
    proper = elements * torch.linalg.det(elements).reshape(-1, 1, 1)
    for lam in range(7):
        expected = eq.wigner_d(lam, proper)
        assert torch.allclose(head._wigner_for(lam, elements), expected, atol=1e-13), lam
    # and it compiles: a head on a real model exports with the random-mode path
    from _models import PairPotential, export

    raw = load_atomistic_model(str(export(PairPotential(), tmp_path / "lj.pt")))
    symmetrize_model(raw, mode=mode, grid=grid, max_lambda=3).save(str(tmp_path / "head.pt"))


class _DeprecatedForceName(torch.nn.Module):
    """A model that knows its direct forces only as ``non_conservative_forces`` (as
    metatrain models trained on that target do)."""

    def __init__(self):
        super().__init__()
        self.inner = MultipoleAnisotropy([0.0] * 6, [0.1, -0.2, 0.3])

    def forward(
        self,
        systems: List[System],
        outputs: Dict[str, ModelOutput],
        selected_atoms: Optional[Labels],
    ) -> Dict[str, TensorMap]:
        asked: Dict[str, ModelOutput] = {}
        for name, output in outputs.items():
            if name == "non_conservative_forces":
                asked["non_conservative_force"] = output
            else:
                asked[name] = output
        result = self.inner(systems, asked, selected_atoms)
        renamed: Dict[str, TensorMap] = {}
        for name, tensor in result.items():
            if name == "non_conservative_force":
                renamed["non_conservative_forces"] = tensor
            else:
                renamed[name] = tensor
        return renamed


def test_heads_ask_the_model_by_the_name_it_knows(tmp_path):
    """The engine asks for 'non_conservative_force'; a model trained on the deprecated
    'non_conservative_forces' target only answers to that: the head translates."""
    from metatomic_ase import MetatomicCalculator

    outputs = {
        "energy": ModelOutput(unit="eV", sample_kind="system"),
        "non_conservative_forces": ModelOutput(unit="eV/Angstrom", sample_kind="atom"),
    }
    path = export(_DeprecatedForceName(), tmp_path / "old.pt", outputs=outputs)
    atoms = ase.Atoms("COHH", positions=POSITIONS, cell=np.eye(3) * 8.0, pbc=True)
    atoms.calc = EquiscopeCalculator(path, grid="octahedral", non_conservative="forces")
    averaged = atoms.get_forces()
    atoms.calc = EquiscopeCalculator(path, mode="random", seed=3, non_conservative="forces")
    randomised = atoms.get_forces()
    # the pair part is equivariant and the constant b (or Q^T b) is a net force, which
    # metatomic-ase removes: every head gives the raw model's forces
    atoms.calc = MetatomicCalculator(str(path), non_conservative="forces")
    raw = atoms.get_forces()
    assert np.abs(raw).max() > 1e-3
    np.testing.assert_allclose(averaged, raw, atol=1e-10)
    np.testing.assert_allclose(randomised, raw, atol=1e-10)


def test_calculator_drives_ase_thermostats_barostats_and_optimizers(tmp_path):
    """Langevin (with a random frame, the recommended pairing), an MTK NPT barostat
    (needs the stress) and FIRE with a cell filter all run on the calculator."""
    from ase.filters import FrechetCellFilter
    from ase.md.langevin import Langevin
    from ase.md.nose_hoover_chain import IsotropicMTKNPT
    from ase.md.velocitydistribution import thermalize_momenta
    from ase.optimize import FIRE
    from ase.units import GPa, fs

    from _models import PairPotential

    path = export(PairPotential(), tmp_path / "lj.pt")
    atoms = rattled_copper()
    atoms.calc = EquiscopeCalculator(path, mode="random", seed=2)
    thermalize_momenta(atoms, temperature_K=300, rng=np.random.default_rng(0))
    rng = np.random.default_rng(1)
    Langevin(atoms, 2 * fs, temperature_K=300, friction=0.02, fixcm=False, rng=rng).run(5)
    assert np.isfinite(atoms.get_potential_energy()) and atoms.get_temperature() > 0

    atoms = rattled_copper()
    atoms.calc = EquiscopeCalculator(path, grid="octahedral")
    volume = atoms.get_volume()
    thermalize_momenta(atoms, temperature_K=300, rng=np.random.default_rng(0))
    IsotropicMTKNPT(
        atoms, 2 * fs, temperature_K=300, pressure_au=1.0 * GPa, tdamp=50 * fs, pdamp=200 * fs
    ).run(10)
    assert atoms.get_volume() != pytest.approx(volume, rel=1e-6)  # the cell responded

    atoms = rattled_copper()
    atoms.calc = EquiscopeCalculator(path, grid="octahedral")
    assert FIRE(FrechetCellFilter(atoms), logfile=None).run(fmax=0.02, steps=500)
    assert np.abs(atoms.get_forces()).max() < 0.02
    # the filter's cell 'forces' are -V sigma / N
    assert np.abs(atoms.get_stress()).max() * atoms.get_volume() / len(atoms) < 0.02


def test_the_audit_asks_a_model_with_a_deprecated_name_through_its_wrapper(tmp_path):
    """The audit requests current names; a model that declares only the deprecated
    'non_conservative_forces' is called through AtomisticModel, which translates (the
    inner-module shortcut would not know the name)."""
    from equiscope_atoms import load_model

    outputs = {
        "energy": ModelOutput(unit="eV", sample_kind="system"),
        "non_conservative_forces": ModelOutput(unit="eV/Angstrom", sample_kind="atom"),
    }
    model = load_model(export(_DeprecatedForceName(), tmp_path / "old.pt", outputs=outputs))
    assert "non_conservative_force" in model.auditable_outputs()
    request = {"non_conservative_force": ModelOutput(sample_kind="atom")}
    assert not model._direct(request)
    system = systems_to_torch(ase.Atoms("COHH", positions=POSITIONS), dtype=torch.float64)
    result = evaluate_orbit(model, system, eq.Grid.identity(), outputs=["non_conservative_force"])
    forces = result.responses["non_conservative_force"][0, :, 0]  # [atoms, xyz]
    bias = torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64)  # _DeprecatedForceName's
    expected = pair_field(system.positions) + bias
    assert torch.allclose(forces, expected, atol=1e-12)
