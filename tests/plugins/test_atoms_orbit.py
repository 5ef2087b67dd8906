"""The orbit evaluation: transformed copies, reused pair lists, autograd forces and stress."""

import numpy as np
import pytest
import torch
from metatomic.torch import ModelOutput, System

import equiscope as eq
from _models import PairPotential, PlantedAnisotropy, atomistic, export, molecule, write_copper
from equiscope_atoms import (
    evaluate_orbit,
    load_model,
    read_structures,
    tiny_pet,
    transformed_system,
    wrap_model,
)


def test_isotropic_model_is_invariant_and_its_forces_equivariant():
    model = wrap_model(atomistic(PlantedAnisotropy(0.0, [0.0, 0.0, 0.0])))
    grid = eq.grid("octahedral", inversion=True)
    system = molecule(torch.Generator().manual_seed(3))
    result = evaluate_orbit(model, system, grid, outputs=["energy"], forces=True, batch_size=7)
    energy = result.responses["energy"]
    assert energy.shape == (48, 1, 1)
    assert float(eq.equivariance_variance(energy[:, 0, 0], grid, "scalar")) < 1e-28
    forces = result.responses["forces"]
    assert float(eq.equivariance_variance(forces, grid, "vector").max()) < 1e-26
    assert result.kinds["forces"].irrep == "vector"


def test_forces_are_minus_the_energy_gradient_in_every_frame():
    module = PlantedAnisotropy(0.5, [0.0, 0.0, 0.0])
    model = wrap_model(atomistic(module))
    grid = eq.grid("tetrahedral")
    system = molecule(torch.Generator().manual_seed(4))
    result = evaluate_orbit(model, system, grid, outputs=["energy"], forces=True)
    for index, matrix in enumerate(grid.rotations):
        copy = transformed_system(system, matrix)
        positions = copy.positions.clone().requires_grad_(True)
        moved = System(types=copy.types, positions=positions, cell=copy.cell, pbc=copy.pbc)
        energy = module([moved], {"energy": ModelOutput(sample_kind="system")}, None)
        energy = energy["energy"].block().values.sum()
        (gradient,) = torch.autograd.grad(energy, positions)
        assert torch.allclose(result.responses["forces"][index], -gradient, atol=1e-12)
        assert float(result.responses["energy"][index, 0, 0]) == pytest.approx(
            float(energy.detach()), rel=1e-12
        )


def test_energy_forces_and_stress_match_metatomic_ase(tmp_path):
    from metatomic_ase import MetatomicCalculator

    path = export(PairPotential(), tmp_path / "lj.pt")
    data = write_copper(tmp_path / "cu.xyz", n=1, disorder=True, labels=False)
    model = load_model(path)
    structure = read_structures(data)[0]
    identity = eq.Grid.identity()
    result = evaluate_orbit(
        model, structure.system, identity, outputs=["energy"], forces=True, stress=True
    )
    import ase.io

    atoms = ase.io.read(str(data))
    atoms.calc = MetatomicCalculator(str(path))
    assert float(result.responses["energy"][0, 0, 0]) == pytest.approx(
        atoms.get_potential_energy(), rel=1e-10
    )
    forces = torch.from_numpy(atoms.get_forces())
    assert torch.allclose(result.responses["forces"][0], forces, atol=1e-10)
    stress = torch.from_numpy(atoms.get_stress(voigt=False))
    assert torch.allclose(result.responses["stress"][0], stress, atol=1e-10)
    assert float(np.abs(atoms.get_stress()).max()) > 1e-4  # a real, non-zero stress


def test_pet_features_do_not_depend_on_batch_size():
    model = wrap_model(tiny_pet([1, 6, 8], width=8, layers=1))
    system = molecule(torch.Generator().manual_seed(5))
    grid = eq.grid("tetrahedral")
    layers = ["gnn_layers.0_node", "gnn_layers.0_edge"]
    one = evaluate_orbit(
        model, system, grid, outputs=["energy"], forces=True, layers=layers, batch_size=1
    )
    all_ = evaluate_orbit(
        model, system, grid, outputs=["energy"], forces=True, layers=layers, batch_size=12
    )
    assert torch.allclose(one.responses["energy"], all_.responses["energy"], atol=1e-10)
    assert torch.allclose(one.responses["forces"], all_.responses["forces"], atol=1e-10)
    for path in layers:
        for sector, value in one.layers[path].items():
            assert value == pytest.approx(all_.layers[path][sector], rel=1e-8, abs=1e-14)
    # an untrained PET is not invariant, yet its energy is nearly so
    a2 = float(eq.equivariance_variance(one.responses["energy"][:, 0, 0], grid, "scalar"))
    assert 0 < a2 < float(one.responses["energy"].square().mean())


# the CUDA case exists only where CUDA does (the GPU check runs this file there)
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_orbit_on_a_device_matches_the_cpu(device):
    pet = tiny_pet([1, 6, 8], width=8, layers=1)
    system = molecule(torch.Generator().manual_seed(7))
    grid = eq.grid("tetrahedral")
    layers = ["gnn_layers.0_node"]
    options = dict(outputs=["energy"], forces=True, layers=layers, batch_size=5)
    on_cpu = evaluate_orbit(wrap_model(pet), system, grid, **options)
    moved = wrap_model(pet).to(device)
    on_device = evaluate_orbit(moved, system, grid, **options)
    assert on_device.responses["forces"].device.type == "cpu"
    for name in ("energy", "forces"):
        assert torch.allclose(on_device.responses[name], on_cpu.responses[name], atol=1e-9)
    for sector, value in on_cpu.layers[layers[0]].items():
        assert on_device.layers[layers[0]][sector] == pytest.approx(value, rel=1e-6, abs=1e-12)


def test_forward_hooks_capture_the_same_features_as_pet_feature_outputs():
    model = wrap_model(tiny_pet([1, 6, 8], width=8, layers=2))
    system = molecule(torch.Generator().manual_seed(5))
    hooked = ["backend.gnn_layers.1[0]", "backend.gnn_layers.1[1]", "backend.node_embedders.0"]
    result = evaluate_orbit(
        model,
        system,
        eq.grid("octahedral"),
        outputs=["energy"],
        layers=["gnn_layers.1_node", "gnn_layers.1_edge", *hooked],
        batch_size=7,
    )
    for kind, index in (("node", 0), ("edge", 1)):
        feature = result.layers[f"gnn_layers.1_{kind}"]
        hook = result.layers[f"backend.gnn_layers.1[{index}]"]
        assert hook.total == pytest.approx(feature.total, rel=1e-12)
        for sector, value in feature.items():
            assert hook[sector] == pytest.approx(value, rel=1e-9, abs=1e-12)
    # the type embedding sees no geometry: all of it is invariant
    embedding = result.layers["backend.node_embedders.0"]
    assert embedding[(0, 0)] == pytest.approx(embedding.total, rel=1e-12)
    assert embedding[(1, 0)] < 1e-12 * embedding.total


def test_hook_layers_are_validated():
    model = wrap_model(tiny_pet([1, 6, 8], width=8, layers=1))
    assert model.hook_target("backend.gnn_layers.0[1]") is not None
    assert model.hook_target("backend.no_such_module") is None
    assert model.hook_target("backend.gnn_layers.0[x]") is None
    assert wrap_model(tiny_pet([1], width=8, layers=1).export()).hook_target("backend") is None


def test_exported_models_run_through_their_inner_module_unless_a_name_is_translated(tmp_path):
    from metatomic.torch import ModelEvaluationOptions
    from metatrain.utils.neighbor_lists import get_system_with_neighbor_lists

    model = load_model(export(PairPotential(), tmp_path / "lj.pt"))
    energy = {"energy": ModelOutput(sample_kind="system")}
    assert model._direct(energy)
    # a name the inner module does not declare goes through AtomisticModel's renaming
    assert not model._direct({"non_conservative_forces": ModelOutput(sample_kind="atom")})
    structure = read_structures(write_copper(tmp_path / "cu.xyz", n=1, labels=False))[0]
    requests = model.requested_neighbor_lists()
    system = get_system_with_neighbor_lists(structure.system, requests)
    direct = model.evaluate([system], energy)["energy"].block().values
    options = ModelEvaluationOptions(length_unit="angstrom", outputs=energy)
    wrapped = model.module([system], options, check_consistency=True)["energy"].block().values
    assert torch.equal(direct, wrapped)


def test_unknown_atomic_types_are_refused_before_any_copy_is_evaluated():
    model = wrap_model(atomistic(PlantedAnisotropy(0.0, [0.0, 0.0, 0.0])))
    system = molecule(torch.Generator().manual_seed(3))
    gold = System(
        types=torch.tensor([6, 79, 1, 79, 1], dtype=torch.int32),
        positions=system.positions,
        cell=system.cell,
        pbc=system.pbc,
    )
    with pytest.raises(ValueError, match=r"atomic types Au \(79\) are not known to the model"):
        evaluate_orbit(model, gold, eq.grid("octahedral"), outputs=["energy"])
