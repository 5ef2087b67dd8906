"""EquiscopeCalculator around any ASE calculator: exact removal of planted sectors,
seeded random frames, diagnostics, ASE drivers, NVE, space-group averaging, and the
metatensor-free import path."""

import subprocess
import sys
import textwrap

import ase.build
import numpy as np
import pytest
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.emt import EMT
from ase.calculators.lj import LennardJones
from ase.stress import voigt_6_to_full_3x3_stress

import equiscope as eq
from _analytic_calculators import PlantedCalculator
from equiscope.groups.frames import random_element
from equiscope_ase import EquiscopeCalculator

AXIS = (0.3, 0.5, 0.8)


def rattled(repeat=(2, 1, 1), seed=1):
    atoms = ase.build.bulk("Cu", "fcc", a=3.61, cubic=True).repeat(repeat)
    atoms.rattle(0.1, seed=seed)
    return atoms


def evaluate(calculator, atoms):
    atoms = atoms.copy()
    atoms.calc = calculator
    return atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()


@pytest.mark.parametrize("grid", ["tetrahedral", "octahedral", "icosahedral"])
def test_the_grid_average_removes_a_planted_p2_exactly(grid):
    """P_2 is a degree-2 function of the orientation: these groups average it out, so
    the averaged EMT-plus-P_2 calculator is EMT to round-off."""
    atoms = rattled()
    planted = PlantedCalculator(p2=0.3, axis=AXIS)
    expected = evaluate(EMT(), atoms)
    raw = evaluate(planted, atoms)
    averaged = evaluate(EquiscopeCalculator(planted, grid=grid, inversion=False), atoms)
    for got, want, before in zip(averaged, expected, raw, strict=True):
        size = np.abs(want).max()
        assert np.abs(np.asarray(before) - want).max() > 1e-3 * size  # planted
        assert np.abs(np.asarray(got) - want).max() < 1e-13 * size


def test_inversion_removes_the_chiral_term_and_rotations_keep_it():
    atoms = rattled()
    planted = PlantedCalculator(p2=0.3, chiral=0.05, axis=AXIS)
    emt = evaluate(EMT(), atoms)
    chiral = evaluate(PlantedCalculator(chiral=0.05), atoms)
    with_inversion = evaluate(EquiscopeCalculator(planted, grid="octahedral"), atoms)
    proper_only = evaluate(EquiscopeCalculator(planted, grid="octahedral", inversion=False), atoms)
    for got, want in zip(with_inversion, emt, strict=True):
        assert np.abs(np.asarray(got) - want).max() < 1e-13 * np.abs(want).max()
    for got, want in zip(proper_only, chiral, strict=True):  # rotation invariant: kept
        assert np.abs(np.asarray(got) - want).max() < 1e-13 * np.abs(want).max()
    assert abs(chiral[0] - emt[0]) > 0.1


def test_random_group_removes_the_planted_sector_in_every_orientation():
    atoms = rattled()
    calculator = EquiscopeCalculator(PlantedCalculator(p2=0.3, axis=AXIS), mode="random-group")
    for step in range(3):
        moved = atoms.copy()
        moved.positions[0, 0] += 0.01 * step  # a new structure: a new orientation
        want = evaluate(EMT(), moved)
        got = evaluate(calculator, moved)
        for a, b in zip(got, want, strict=True):
            assert np.abs(np.asarray(a) - b).max() < 1e-13 * np.abs(b).max()


def test_random_frames_are_seeded_and_reproducible():
    """Each call evaluates the base in frame k of the seed's sequence and
    back-transforms: the chiral energy flips with the frame's determinant."""
    atoms = rattled()
    planted = PlantedCalculator(chiral=0.05)
    emt_energy = evaluate(EMT(), atoms)[0]
    chiral_energy = evaluate(planted, atoms)[0] - emt_energy
    runs = {}
    for seed in (4, 4, 5):
        calculator = EquiscopeCalculator(planted, mode="random", seed=seed)
        energies = []
        for step in range(6):
            moved = atoms.copy()
            moved.positions += 0.01 * step  # a new structure (translated), same energy
            energies.append(evaluate(calculator, moved)[0])
        signs = [np.sign(np.linalg.det(random_element(seed, k, True).numpy())) for k in range(6)]
        expected = emt_energy + chiral_energy * np.array(signs)
        np.testing.assert_allclose(energies, expected, rtol=0, atol=1e-13)
        runs.setdefault(seed, []).append(energies)
    assert runs[4][0] == runs[4][1]
    assert len(set(np.sign(np.array(runs[4][0]) - emt_energy))) == 2  # both parities drawn
    assert runs[4][0] != runs[5][0]


def test_more_properties_of_the_same_structure_keep_the_frame():
    atoms = rattled()
    atoms.calc = EquiscopeCalculator(
        PlantedCalculator(LennardJones(sigma=2.0, epsilon=0.2, rc=4.0), p2=0.3, axis=AXIS),
        mode="random",
        seed=2,
    )
    stress = atoms.get_stress().copy()
    stresses = atoms.get_stresses()  # same step: same frame
    np.testing.assert_allclose(stresses.sum(0), stress, rtol=0, atol=1e-14)


def manual_spread(base, atoms, grid, name):
    """Weighted std of the back-transformed copies, computed here from scratch."""
    from equiscope._copies import back_transform_stress, transformed_atoms

    values = []
    for rotation in grid.rotations.numpy():
        copy = transformed_atoms(atoms, rotation)
        copy.calc = base
        if name == "energy":
            values.append(copy.get_potential_energy())
        elif name == "energies":
            values.append(copy.get_potential_energies())
        elif name == "forces":
            values.append(copy.get_forces() @ rotation)
        elif name == "stress":
            values.append(back_transform_stress(copy.get_stress(), rotation))
        else:
            values.append(
                [back_transform_stress(s, rotation) for s in copy.get_stresses(voigt=False)]
            )
    values = np.array(values)
    w = grid.weights.numpy().reshape((-1,) + (1,) * (values.ndim - 1))
    mean = (w * values).sum(0)
    return np.sqrt((w * (values - mean) ** 2).sum(0))


def test_diagnostics_store_every_spread_with_metatomic_ase_names_and_shapes():
    atoms = rattled()
    base = PlantedCalculator(LennardJones(sigma=2.0, epsilon=0.2, rc=4.0), p2=0.3, axis=AXIS)
    grid = eq.grid("octahedral", inversion=True)
    atoms.calc = EquiscopeCalculator(base, grid=grid, diagnostics=True)
    atoms.get_stresses()
    atoms.get_potential_energies()
    results = atoms.calc.results
    n = len(atoms)
    shapes = {"energies": (n,), "forces": (n, 3), "stress": (3, 3), "stresses": (n, 3, 3)}
    assert isinstance(results["energy_rot_std"], float)
    for name, shape in shapes.items():
        assert results[f"{name}_rot_std"].shape == shape
    for name in ("energy", "energies", "forces", "stress", "stresses"):
        expected = manual_spread(base, atoms, grid, name)
        assert np.abs(expected).max() > 1e-4
        np.testing.assert_allclose(results[f"{name}_rot_std"], expected, rtol=1e-10, atol=1e-15)
    # the energy's spread is the audit engine's A (square root of A^2)
    energies = []
    for rotation in grid.rotations.numpy():
        copy = atoms.copy()
        copy.calc = base
        copy.positions = atoms.positions @ rotation.T
        copy.set_cell(atoms.cell.array @ rotation.T * np.sign(np.linalg.det(rotation)))
        energies.append(copy.get_potential_energy())
    a2 = eq.equivariance_variance(np.array(energies), grid, "scalar")
    assert results["energy_rot_std"] == pytest.approx(float(a2) ** 0.5, rel=1e-10)


def test_diagnostics_of_an_equivariant_calculator_are_round_off():
    atoms = rattled()
    atoms.calc = EquiscopeCalculator(EMT(), diagnostics=True)
    atoms.get_stress()
    forces = np.abs(atoms.get_forces()).max()
    assert atoms.calc.results["forces_rot_std"].max() < 1e-13 * forces
    assert atoms.calc.results["energy_rot_std"] < 1e-13 * abs(atoms.get_potential_energy())


def test_bad_options_for_an_ase_calculator():
    with pytest.raises(ValueError, match="unknown mode 'auto' for an ASE calculator"):
        EquiscopeCalculator(EMT(), mode="auto")
    with pytest.raises(ValueError, match="diagnostics need several copies"):
        EquiscopeCalculator(EMT(), mode="random", diagnostics=True)
    with pytest.raises(TypeError, match="metatomic models only, given an ASE calculator: device"):
        EquiscopeCalculator(EMT(), device="cpu")
    with pytest.raises(ValueError, match="SO\\(3\\) or O\\(3\\) grid"):
        EquiscopeCalculator(EMT(), grid=eq.grid("so2", n=4))
    cluster = ase.Atoms("Cu3", positions=[[0, 0, 0], [2.5, 0, 0], [0, 2.4, 0.3]])
    cluster.calc = EquiscopeCalculator(EMT())
    with pytest.raises(PropertyNotImplementedError, match="no lattice, no stress"):
        cluster.get_stress()
    assert np.isfinite(cluster.get_forces()).all()
    bulk = rattled()
    bulk.calc = EquiscopeCalculator(EMT())
    with pytest.raises(PropertyNotImplementedError):  # EMT has no per-atom stresses
        bulk.get_stresses()


def test_ase_md_optimizers_and_cell_filters_run():
    from ase.filters import FrechetCellFilter
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import thermalize_momenta
    from ase.md.verlet import VelocityVerlet
    from ase.optimize import BFGS, FIRE
    from ase.units import fs

    planted = PlantedCalculator(p2=0.05, axis=AXIS)
    atoms = rattled((1, 1, 1))
    atoms.calc = EquiscopeCalculator(planted, grid="tetrahedral", inversion=False)
    thermalize_momenta(atoms, temperature_K=300, rng=np.random.default_rng(0))
    VelocityVerlet(atoms, 1 * fs).run(3)
    atoms.calc = EquiscopeCalculator(planted, mode="random", seed=1)
    Langevin(atoms, 1 * fs, temperature_K=300, friction=0.02, rng=np.random.default_rng(1)).run(3)
    assert atoms.get_temperature() > 0
    atoms = rattled((1, 1, 1))
    atoms.calc = EquiscopeCalculator(planted, grid="tetrahedral", inversion=False)
    start = atoms.get_potential_energy()
    BFGS(atoms, logfile=None).run(fmax=0.05, steps=5)
    assert atoms.get_potential_energy() < start
    atoms = rattled((1, 1, 1))
    atoms.calc = EquiscopeCalculator(planted, grid="tetrahedral", inversion=False)
    volume = atoms.get_volume()
    FIRE(FrechetCellFilter(atoms), logfile=None).run(fmax=0.05, steps=5)
    assert atoms.get_volume() != pytest.approx(volume, rel=1e-8)  # the cell moved


def total_energy_spread(calculator, steps=200):
    from ase.md.velocitydistribution import thermalize_momenta
    from ase.md.verlet import VelocityVerlet
    from ase.units import fs

    atoms = ase.build.bulk("Cu", "fcc", a=3.61, cubic=True)
    thermalize_momenta(atoms, temperature_K=600, rng=np.random.default_rng(0))
    atoms.calc = calculator
    energies = []
    dynamics = VelocityVerlet(atoms, 1 * fs)
    dynamics.attach(lambda: energies.append(atoms.get_total_energy()))
    dynamics.run(steps)
    energies = np.array(energies)
    return np.ptp(energies), abs(energies[-1] - energies[0])


def test_nve_with_the_averaged_calculator_conserves_energy_as_well_as_the_raw_one():
    planted = PlantedCalculator(p2=0.3, axis=AXIS)
    raw_spread, raw_drift = total_energy_spread(planted)
    spread, drift = total_energy_spread(
        EquiscopeCalculator(planted, grid="tetrahedral", inversion=False)
    )
    assert raw_spread < 1e-3  # a conserving integration to begin with
    assert spread <= 1.5 * raw_spread
    assert drift <= 1.5 * raw_drift + 1e-6


def cubic_copper(repeat=(1, 1, 1)):
    return ase.build.bulk("Cu", "fcc", a=3.61, cubic=True).repeat(repeat)


@pytest.mark.parametrize("repeat", [(1, 1, 1), (2, 2, 2)])
def test_space_group_average_known_answers(repeat):
    """Perfect fcc: every site has full cubic symmetry (m-3m), so the symmetrised
    forces vanish and the stress is isotropic, to round-off, though the planted
    chiral term puts forces on four atoms and the P_2 term makes the stress
    anisotropic. Pure lattice translations (a supercell) are part of the group; a
    supercell that breaks the cubic lattice (2x1x1) keeps only the tetragonal ops."""
    atoms = cubic_copper(repeat)
    planted = PlantedCalculator(p2=0.3, chiral=0.05, axis=AXIS)
    energy, forces, stress = evaluate(planted, atoms)
    assert np.abs(forces).max() > 0.1
    matrix = voigt_6_to_full_3x3_stress(stress)
    assert np.ptp(np.diag(matrix)) > 1e-4 and np.abs(matrix - np.diag(np.diag(matrix))).max() > 1e-4
    calculator = EquiscopeCalculator(planted, grid=None, space_group=True)
    got_energy, got_forces, got_stress = evaluate(calculator, atoms)
    assert got_energy == pytest.approx(energy, rel=1e-14)
    assert np.abs(got_forces).max() < 1e-14 * np.abs(forces).max()
    matrix = voigt_6_to_full_3x3_stress(got_stress)
    size = np.abs(stress).max()
    assert np.abs(matrix - np.eye(3) * np.trace(matrix) / 3).max() < 1e-14 * size
    assert np.trace(matrix) / 3 == pytest.approx(stress[:3].mean(), rel=1e-12)
    if repeat == (1, 1, 1):  # a 2x1x1 supercell: yy = zz, but xx differs
        tetragonal = evaluate(calculator, atoms.repeat((2, 1, 1)))[2]
        assert abs(tetragonal[1] - tetragonal[2]) < 1e-14 * size
        assert abs(tetragonal[0] - tetragonal[1]) > 1e-4 * size


def test_space_group_average_on_top_of_a_grid_and_without_symmetry():
    atoms = cubic_copper()
    planted = PlantedCalculator(p2=0.3, chiral=0.05, axis=AXIS)
    both = EquiscopeCalculator(planted, grid="octahedral", space_group=True, diagnostics=True)
    _, forces, stress = evaluate(both, atoms)
    assert np.abs(forces).max() < 1e-13
    assert np.ptp(stress[:3]) < 1e-13 and np.abs(stress[3:]).max() < 1e-13
    # a rattled cell has no symmetry but the identity: nothing changes
    atoms = rattled()
    plain = evaluate(planted, atoms)
    symmetrised = evaluate(EquiscopeCalculator(planted, grid=None, space_group=True), atoms)
    for a, b in zip(symmetrised, plain, strict=True):
        np.testing.assert_array_equal(a, b)
    cluster = ase.Atoms("Cu4", positions=[[0, 0, 0], [2.5, 0, 0], [0, 2.4, 0.3], [1, 1, 2]])
    cluster.calc = EquiscopeCalculator(planted, grid=None, space_group=True)
    with pytest.warns(UserWarning, match="no space-group average: .*periodic in 3D"):
        cluster.get_forces()


def test_the_ase_path_imports_neither_metatensor_nor_metatomic():
    code = textwrap.dedent(
        """
        import sys
        try:
            import torch_geometric  # noqa: F401  (the import order that breaks metatensor)
        except ImportError:
            pass
        import ase.build
        from ase.calculators.emt import EMT
        from equiscope_ase import EquiscopeCalculator
        atoms = ase.build.bulk("Cu", "fcc", a=3.61, cubic=True)
        atoms.calc = EquiscopeCalculator(EMT(), space_group=True, diagnostics=True)
        atoms.get_forces()
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("metatensor", "metatomic"))
        print(loaded)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
