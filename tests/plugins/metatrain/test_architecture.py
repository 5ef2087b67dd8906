"""``experimental.equiscope``: found by plain metatrain, validated options, the
covariant-bias known answer, the solid-harmonic embedding."""

import copy
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from metatrain.utils.architectures import check_architecture_options, get_default_hypers
from metatrain.utils.data import DatasetInfo
from metatrain.utils.data.target_info import get_generic_target_info
from metatrain.utils.pydantic import MetatrainValidationError

import equiscope as eq
from _models import molecule, rotated_system
from equiscope_atoms import audit, wrap_model
from equiscope_atoms.data import Structure
from equiscope_metatrain.edge_embedding import SolidHarmonicEdgeEmbedding

NAME = "experimental.equiscope"
SMALL = {"d_pet": 8, "d_head": 8, "d_node": 8, "d_feedforward": 8, "num_heads": 1}


def test_plain_metatrain_finds_the_architecture():
    """In a fresh interpreter that never imports equiscope: the .pth hook does it."""
    code = (
        "import metatrain.utils.io as io, metatrain.experimental.equiscope as alias, "
        "equiscope_metatrain.architecture as real; "
        "print('experimental.equiscope' in io.find_all_architectures(), alias is real)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["True", "True"]


def test_the_pth_hook_is_silent_when_its_package_is_gone(tmp_path):
    """A removed source checkout must not print a traceback at every Python start."""
    import equiscope_metatrain

    shipped = Path(equiscope_metatrain.__file__).parent / "equiscope_metatrain.pth"
    line = shipped.read_text()
    assert line.startswith("import ")  # site.py executes only lines starting so
    (tmp_path / "gone.pth").write_text(line.replace("equiscope_metatrain", "no_such_package"))
    code = f"import site; site.addsitedir({str(tmp_path)!r}); print('started')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert (result.returncode, result.stdout.strip(), result.stderr) == (0, "started", "")


def options(**model):
    hypers = copy.deepcopy(get_default_hypers(NAME))
    hypers["model"].update(model)
    return {"name": NAME, "model": hypers["model"], "training": hypers["training"]}


@pytest.mark.parametrize(
    ("model", "key"),
    [
        ({"base": {"name": "mace", "model": {}}}, "base.name"),
        ({"edge_embedding": {"kind": "solid_harmonics", "lmax": -1}}, "edge_embedding.lmax"),
        ({"symmetrized_head": {"mode": "sometimes"}}, "symmetrized_head.mode"),
        ({"tensor_basis_max_lambda": 7}, "tensor_basis_max_lambda"),
    ],
)
def test_bad_options_are_validation_errors_naming_the_key(model, key):
    with pytest.raises(MetatrainValidationError) as info:  # what it raises for PET too
        check_architecture_options(NAME, options(**model))
    assert f"model.{key}" in str(info.value), str(info.value)


def target_info(name, kind, quantity="", unit="", sample_kind="atom", subtargets=1):
    """metatrain's generic target of type ``kind`` (``{"cartesian": ...}`` or
    ``{"spherical": ...}``)."""
    options = {"quantity": quantity, "unit": unit, "type": kind}
    options.update(num_subtargets=subtargets, sample_kind=sample_kind)
    return get_generic_target_info(name, options)


def vector_dataset_info() -> DatasetInfo:
    target = target_info("mtt::direct_forces", {"cartesian": {"rank": 1}}, "force", "eV/A")
    return DatasetInfo(
        length_unit="angstrom", atomic_types=[1, 6, 8], targets={"mtt::direct_forces": target}
    )


def test_bad_base_hypers_name_the_key():
    from equiscope_metatrain.architecture import EquiscopeModel

    hypers = options(base={"name": "pet", "model": {"d_pett": 3}})["model"]
    with pytest.raises(ValueError, match=r"architecture\.model\.base\.model\.d_pett"):
        EquiscopeModel(hypers, vector_dataset_info())


def constant_vector_model(bias: bool, value) -> torch.nn.Module:
    """Zero last-layer weights: the vector output is the node bias b (or zero)."""
    from equiscope_metatrain.architecture import EquiscopeModel

    hypers = options(
        base={"name": "pet", "model": {**SMALL, "num_gnn_layers": 1}},
        covariant_readout_bias=bias,
    )["model"]
    model = EquiscopeModel(hypers, vector_dataset_info()).to(torch.float64)
    with torch.no_grad():
        for layers in (model.backend.node_last_layers, model.backend.edge_last_layers):
            for per_key in layers["mtt::direct_forces"]:
                for linear in per_key.values():
                    linear.weight.zero_()
                    if linear.bias is not None:
                        linear.bias.zero_()
        if bias:
            for per_key in model.backend.node_last_layers["mtt::direct_forces"]:
                for linear in per_key.values():
                    linear.bias.copy_(torch.tensor(value, dtype=torch.float64))
    return model.eval()


def test_covariant_bias_gives_a_squared_equal_to_b_squared_and_no_bias_gives_zero():
    b = [0.3, -0.2, 0.5]
    structures = [Structure(system=molecule(torch.Generator().manual_seed(3)), index=0)]
    grid = eq.grid("octahedral", inversion=True)
    results = {}
    for bias in (True, False):
        model = constant_vector_model(bias, b)
        has_bias = any(
            linear.bias is not None
            for per_key in model.backend.node_last_layers["mtt::direct_forces"]
            for linear in per_key.values()
        )
        assert has_bias == bias
        report = audit(
            wrap_model(model),
            structures,
            grid=grid,
            outputs=["mtt::direct_forces"],
            convergence_structures=0,
            progress=False,
        )
        results[bias] = report["outputs"]["mtt::direct_forces"]
    # a readout bias is a constant lab-frame vector b: A^2 = |b|^2 per atom; the
    # report gives the RMSE per Cartesian component, sqrt(|b|^2 / 3), in sector (0,+1)
    with_bias = results[True]
    assert with_bias["equivariance_rmse"] == pytest.approx(
        math.sqrt(sum(x * x for x in b) / 3), rel=1e-9
    )
    assert next(iter(with_bias["breaking_sectors"])) == eq.sector_label((0, 1))
    assert results[False]["equivariance_rmse"] == 0.0


def test_solid_harmonic_embedding_replaces_pets_and_zeroes_padding():
    from equiscope_metatrain.architecture import EquiscopeModel

    hypers = options(
        base={"name": "pet", "model": {**SMALL, "num_gnn_layers": 2}},
        edge_embedding={"kind": "solid_harmonics", "lmax": 4},
    )["model"]
    model = EquiscopeModel(hypers, vector_dataset_info())
    for layer in model.backend.gnn_layers:
        assert isinstance(layer.edge_embedder, SolidHarmonicEdgeEmbedding)
        assert layer.edge_embedder.linear.in_features == 25 + 1
    embedding = SolidHarmonicEdgeEmbedding(2, 4).to(torch.float64)
    padded = torch.zeros(1, 1, 4, dtype=torch.float64)
    assert torch.equal(embedding(padded), embedding.linear.bias.reshape(1, 1, 4))


def test_equivariance_finetuning_shrinks_a_planted_readout_bias():
    """A constant vector b has A^2 = |b|^2 and gradient 2b: minimising A^2 removes it."""
    from metatrain.utils.neighbor_lists import get_system_with_neighbor_lists

    from equiscope_metatrain.finetune import equivariance_finetune

    model = constant_vector_model(True, [0.3, -0.2, 0.5])
    requests = model.requested_neighbor_lists()
    systems = [
        get_system_with_neighbor_lists(molecule(torch.Generator().manual_seed(s)), requests)
        for s in range(4)
    ]
    losses = equivariance_finetune(
        model,
        systems,
        ["mtt::direct_forces"],
        epochs=30,
        learning_rate=0.02,
        grid=eq.grid("octahedral", inversion=True),
        batch_size=2,
    )
    start = 0.3**2 + 0.2**2 + 0.5**2  # A^2 = |b|^2 before the first step
    assert losses[0] < start and losses[-1] < 0.02 * start
    report = audit(
        wrap_model(model.eval()),
        [Structure(system=systems[0], index=0)],
        grid=eq.grid("octahedral", inversion=True),
        outputs=["mtt::direct_forces"],
        convergence_structures=0,
        progress=False,
    )
    after = report["outputs"]["mtt::direct_forces"]["equivariance_rmse"]
    assert after < 0.15 * math.sqrt(start / 3)


SPHERICAL_IRREPS = [  # every sector up to lambda = 3, proper (sigma = 1) and pseudo
    {"o3_lambda": o3_lambda, "o3_sigma": o3_sigma} for o3_lambda in range(4) for o3_sigma in (1, -1)
]


def sector(o3_lambda: int, o3_sigma: int) -> str:
    return f"mtt::tensor[o3_lambda={o3_lambda},o3_sigma={o3_sigma}]"


LAMBDA_2 = sector(2, 1)
ON_THE_BASIS = [  # every block the readout covers: forces, spherical, general rank 2
    "mtt::direct_forces",
    sector(1, 1),
    LAMBDA_2,
    sector(3, 1),
    sector(0, -1),
    sector(1, -1),
    sector(2, -1),
    sector(3, -1),
    "mtt::born_charges",
]


def tensor_dataset_info() -> DatasetInfo:
    """Direct forces (Cartesian vectors), a spherical target of every sector up to
    lambda = 3 and a general rank-2 per-atom target (as Born effective charges), two
    properties each."""
    info = vector_dataset_info()
    spherical = {"spherical": {"irreps": SPHERICAL_IRREPS}}
    info.targets["mtt::tensor"] = target_info("mtt::tensor", spherical, subtargets=2)
    rank_2 = {"cartesian": {"rank": 2}}
    info.targets["mtt::born_charges"] = target_info("mtt::born_charges", rank_2, subtargets=2)
    return info


def tensor_basis_model(readout: bool, lmax, **extra) -> torch.nn.Module:
    from equiscope_metatrain.architecture import EquiscopeModel

    if lmax is not None:
        extra["edge_embedding"] = {"kind": "solid_harmonics", "lmax": lmax}
    hypers = options(
        base={"name": "pet", "model": {**SMALL, "num_gnn_layers": 2}},
        tensor_basis_readout=readout,
        **extra,
    )["model"]
    torch.manual_seed(0)
    return EquiscopeModel(hypers, tensor_dataset_info()).to(torch.float64).eval()


TARGETS = ("mtt::direct_forces", "mtt::tensor", "mtt::born_charges")


def tensor_basis_audit(model):
    """The report's outputs: direct forces, the spherical target's blocks, the rank-2
    target."""
    structures = [Structure(system=molecule(torch.Generator().manual_seed(3)), index=0)]
    report = audit(
        wrap_model(model),
        structures,
        grid=eq.grid("lebedev", degree=8, inversion=True),
        outputs=list(TARGETS),
        convergence_structures=0,
        progress=False,
    )
    return report["outputs"]


@pytest.fixture(scope="module")
def invariant_trunk_audits():
    """Audits of an invariant trunk (lmax = 0 edges: distances only) with the
    tensor-basis readout, and with PET's."""
    return {readout: tensor_basis_audit(tensor_basis_model(readout, 0)) for readout in (1, 0)}


@pytest.mark.parametrize("output", ON_THE_BASIS)
def test_tensor_basis_readout_is_exactly_equivariant_on_an_invariant_trunk(
    output, invariant_trunk_audits
):
    """The trunk's coefficients are invariant, so sum_j c_ij Y_lambda(r_hat_ij) (proper
    blocks), the cross products of the channels sum_j a_ij r_hat_ij (pseudotensors), and
    their sum (the general rank-2 target) rotate and invert exactly; PET's own readout of
    the same invariant features is invariant, far from equivariant."""
    exact = invariant_trunk_audits[1][output]
    assert exact["rms_value"] > 1e-3
    assert exact["equivariance_rmse"] < 1e-12 * exact["rms_value"]
    plain = invariant_trunk_audits[0][output]
    assert plain["equivariance_rmse"] > 0.3 * plain["rms_value"]


def test_pseudotensor_generators_are_normalised_by_the_angular_momentum():
    """The buffer holds ``G / sqrt(lambda (lambda + 1))`` for every lambda up to
    ``tensor_basis_max_lambda``, zero-padded, so the block does not grow with lambda."""
    model = tensor_basis_model(True, None, tensor_basis_max_lambda=4)
    buffer = model.backend.tensor_basis_generators
    assert buffer.shape == (5, 3, 9, 9)
    assert torch.equal(buffer[0], torch.zeros_like(buffer[0]))
    for o3_lambda in range(1, 5):
        size = 2 * o3_lambda + 1
        expected = eq.wigner_generators(o3_lambda) / math.sqrt(o3_lambda * (o3_lambda + 1))
        assert torch.allclose(buffer[o3_lambda, :, :size, :size], expected, atol=1e-15)
        assert buffer[o3_lambda, :, size:].abs().sum() == 0  # zero padding


def test_without_higher_pseudotensors_lambda_3_keeps_pets_readout():
    """``tensor_basis_higher_pseudotensors: false`` (what checkpoints before version 5
    did): lambda = 3, sigma = -1 is PET's readout, invariant on this trunk, while
    lambda = 2, sigma = -1 stays on the basis."""
    model = tensor_basis_model(True, 0, tensor_basis_higher_pseudotensors=False)
    audits = tensor_basis_audit(model)
    block = audits[sector(3, -1)]
    assert block["equivariance_rmse"] > 0.3 * block["rms_value"]
    block = audits[sector(2, -1)]
    assert block["equivariance_rmse"] < 1e-12 * block["rms_value"]


def test_the_general_rank_2_readout_has_an_exact_antisymmetric_part():
    """The rank-2 target's antisymmetric part (the axial vector sum_c u_c x v_c) is
    there, not only its symmetric part from one edge: under a proper rotation R it
    goes to R A R^T and under inversion it stays (a proper tensor, from two edges);
    both properties (the layout [atoms, 3, 3, properties] of PET's blocks)."""
    from metatomic.torch import ModelOutput
    from metatrain.utils.neighbor_lists import get_system_with_neighbor_lists

    model = tensor_basis_model(True, 0)
    requests = model.requested_neighbor_lists()
    system = molecule(torch.Generator().manual_seed(5))
    rotation = torch.as_tensor(eq.grid("octahedral").rotations[7], dtype=torch.float64)
    values = {}
    for name, matrix in (("id", torch.eye(3, dtype=torch.float64)), ("R", rotation)):
        for sign in (1, -1):
            moved = rotated_system(system, sign * matrix)
            moved = get_system_with_neighbor_lists(moved, requests)
            outputs = model([moved], {"mtt::born_charges": ModelOutput(sample_kind="atom")})
            values[name, sign] = outputs["mtt::born_charges"].block().values.detach()
    tensor = values["id", 1]
    assert tensor.shape[1:] == (3, 3, 2)
    scale = float(tensor.norm())
    antisymmetric = 0.5 * (tensor - tensor.transpose(1, 2))
    for p in range(2):  # one edge alone gives exactly 0
        assert antisymmetric[..., p].norm() > 1e-3 * tensor[..., p].norm()
    expected = torch.einsum("ab,ibcp,dc->iadp", rotation, tensor, rotation)
    for sign in (1, -1):
        assert torch.allclose(values["R", sign], expected, rtol=0, atol=1e-12 * scale)
    assert torch.allclose(values["id", -1], tensor, rtol=0, atol=1e-12 * scale)


def test_tensor_basis_max_lambda_1_leaves_lambda_2_on_pets_readout(invariant_trunk_audits):
    """``tensor_basis_max_lambda: 1`` (what checkpoints before version 3 did): the
    lambda = 2 blocks and the rank-2 target are PET's readout again, so an invariant
    trunk gives them no equivariance, while the lambda = 1 blocks stay exact."""
    outputs = tensor_basis_audit(tensor_basis_model(True, 0, tensor_basis_max_lambda=1))
    for name in (LAMBDA_2, sector(2, -1), sector(3, 1), "mtt::born_charges"):
        assert outputs[name]["equivariance_rmse"] > 0.3 * outputs[name]["rms_value"], name
    for name in ("mtt::direct_forces", sector(1, 1), sector(1, -1)):
        exact = outputs[name]
        assert exact["equivariance_rmse"] < 1e-12 * exact["rms_value"], name


def test_without_cross_products_pseudotensors_keep_pets_readout():
    """``tensor_basis_cross_products: false`` (what checkpoints before version 4 did)."""
    model = tensor_basis_model(True, 0, tensor_basis_cross_products=False)
    outputs = tensor_basis_audit(model)
    for name in (sector(0, -1), sector(1, -1), sector(2, -1), "mtt::born_charges"):
        assert outputs[name]["equivariance_rmse"] > 0.3 * outputs[name]["rms_value"], name
    for name in ("mtt::direct_forces", LAMBDA_2, sector(3, 1)):
        exact = outputs[name]
        assert exact["equivariance_rmse"] < 1e-12 * exact["rms_value"], name


def test_tensor_basis_readout_takes_the_blocks_it_covers_and_exports(tmp_path):
    from metatomic.torch import ModelEvaluationOptions, ModelOutput, load_atomistic_model
    from metatrain.utils.neighbor_lists import get_system_with_neighbor_lists

    from equiscope_metatrain.tensor_basis import CROSS_CHANNELS

    model = tensor_basis_model(True, None)
    blocks = {
        name.split("/")[1].replace("mtt::tensor_", ""): kind
        for name, kind in model.backend.tensor_basis_blocks.items()
    }
    assert blocks == {
        "mtt::direct_forces___0": 0,  # VECTOR
        "o3_lambda_1_o3_sigma_1": 1,  # SPHERICAL
        "o3_lambda_2_o3_sigma_1": 1,
        "o3_lambda_3_o3_sigma_1": 1,
        "o3_lambda_0_o3_sigma_-1": 4,  # PSEUDOSCALAR
        "o3_lambda_1_o3_sigma_-1": 5,  # PSEUDOVECTOR
        "o3_lambda_2_o3_sigma_-1": 6,  # PSEUDO_LAMBDA_2
        "o3_lambda_3_o3_sigma_-1": 8,  # PSEUDO_HIGHER
        "mtt::born_charges___0": 7,  # RANK_2
    }
    c = CROSS_CHANNELS
    sizes = {"mtt::direct_forces___0": 1, "mtt::born_charges___0": (2 + 2 * c) * 2}
    sizes.update({f"mtt::tensor_o3_lambda_{lam}_o3_sigma_1": 2 for lam in (1, 2, 3)})
    sizes.update(
        {  # coefficients per edge x 2 properties
            "mtt::tensor_o3_lambda_0_o3_sigma_-1": 3 * c * 2,
            "mtt::tensor_o3_lambda_1_o3_sigma_-1": 2 * c * 2,
            "mtt::tensor_o3_lambda_2_o3_sigma_-1": 3 * c * 2,
            "mtt::tensor_o3_lambda_3_o3_sigma_-1": 2 * c * 2,
        }
    )
    sizes["mtt::tensor_o3_lambda_0_o3_sigma_1"] = 2  # PET's readout: 2 properties
    for target in TARGETS:
        for per_key in model.backend.edge_last_layers[target]:
            for key, linear in per_key.items():
                assert linear.out_features == sizes[key], key
    system = get_system_with_neighbor_lists(
        molecule(torch.Generator().manual_seed(4)), model.requested_neighbor_lists()
    )
    request = {name: ModelOutput(sample_kind="atom") for name in TARGETS}
    eager = model([system], request)
    model.export().save(str(tmp_path / "model.pt"))  # TorchScript happens here
    exported = load_atomistic_model(str(tmp_path / "model.pt"))
    options = ModelEvaluationOptions(length_unit="angstrom", outputs=request)
    scripted = exported([system], options, check_consistency=True)
    for name in request:
        for key, block in eager[name].items():
            expected = block.values
            assert torch.allclose(scripted[name].block(key).values, expected, atol=1e-12)


def test_an_isolated_atom_gets_zero_tensors_from_the_basis(tmp_path):
    """A single atom has no edges, so every block on the basis is zero (PET's readout
    handles the same system); eager and exported alike (a batch without edges once
    failed to reshape)."""
    from metatomic.torch import (
        ModelEvaluationOptions,
        ModelOutput,
        System,
        load_atomistic_model,
    )
    from metatrain.utils.neighbor_lists import get_system_with_neighbor_lists

    model = tensor_basis_model(True, None)
    atom = System(
        types=torch.tensor([6], dtype=torch.int32),
        positions=torch.zeros(1, 3, dtype=torch.float64),
        cell=torch.zeros(3, 3, dtype=torch.float64),
        pbc=torch.zeros(3, dtype=torch.bool),
    )
    atom = get_system_with_neighbor_lists(atom, model.requested_neighbor_lists())
    request = {name: ModelOutput(sample_kind="atom") for name in TARGETS}
    model.export().save(str(tmp_path / "model.pt"))
    exported = load_atomistic_model(str(tmp_path / "model.pt"))
    options = ModelEvaluationOptions(length_unit="angstrom", outputs=request)
    for outputs in (model([atom], request), exported([atom], options, check_consistency=True)):
        blocks = {name: dict(outputs[name].items()) for name in TARGETS}
        on_basis = [blocks["mtt::direct_forces"], blocks["mtt::born_charges"]]
        sectors = {
            (int(k["o3_lambda"]), int(k["o3_sigma"])): b for k, b in blocks["mtt::tensor"].items()
        }
        del sectors[0, 1]  # PET's readout
        on_basis.append(sectors)
        for per_key in on_basis:
            for block in per_key.values():
                assert block.values.shape[0] == 1 and torch.equal(
                    block.values, torch.zeros_like(block.values)
                )


def test_tensor_basis_readout_trains_every_readout_parameter():
    """Node and edge readouts both feed the coefficient: no parameter is left without
    a gradient (DistributedDataParallel would stop on one)."""
    from metatomic.torch import ModelOutput
    from metatrain.utils.neighbor_lists import get_system_with_neighbor_lists

    model = tensor_basis_model(True, None).train()
    system = get_system_with_neighbor_lists(
        molecule(torch.Generator().manual_seed(4)), model.requested_neighbor_lists()
    )
    outputs = model([system], {name: ModelOutput(sample_kind="atom") for name in TARGETS})
    loss = sum(block.values.square().sum() for name in TARGETS for block in outputs[name])
    loss.backward()
    for layers in (model.backend.node_last_layers, model.backend.edge_last_layers):
        for target in TARGETS:
            for per_key in layers[target]:
                for linear in per_key.values():
                    assert linear.weight.grad is not None and linear.weight.grad.abs().sum() > 0


INTRODUCED = {  # the checkpoint version that added each tensor-basis hyper
    "tensor_basis_max_lambda": 3,
    "tensor_basis_cross_products": 4,
    "tensor_basis_higher_pseudotensors": 5,
}


@pytest.mark.parametrize(
    ("version", "old_hypers"),
    [
        (2, {"tensor_basis_max_lambda": 1, "tensor_basis_cross_products": False}),
        (3, {"tensor_basis_max_lambda": 2, "tensor_basis_cross_products": False}),
        (4, {"tensor_basis_higher_pseudotensors": False}),
    ],
)
def test_an_old_checkpoint_keeps_its_readouts_after_the_upgrade(version, old_hypers):
    """Version 2 read only lambda = 1 out on the edge basis, version 3 no pseudotensors
    or general rank-2 targets, version 4 no pseudotensors beyond lambda = 2; the
    upgrades record ``tensor_basis_max_lambda: 1``, ``tensor_basis_cross_products:
    false`` and ``tensor_basis_higher_pseudotensors: false``, so the old weights load
    into the same layers and give the same outputs."""
    from metatomic.torch import ModelOutput
    from metatrain.utils.neighbor_lists import get_system_with_neighbor_lists

    from equiscope_metatrain.architecture import EquiscopeModel

    old = tensor_basis_model(True, None, **old_hypers)
    checkpoint = copy.deepcopy(old.get_checkpoint())
    checkpoint["model_ckpt_version"] = version  # as it was written: without the new hypers
    hypers = checkpoint["model_data"]["model_hypers"]
    for name, introduced in INTRODUCED.items():
        if introduced > version:
            del hypers[name]
    upgraded = EquiscopeModel.upgrade_checkpoint(checkpoint)
    assert upgraded["model_ckpt_version"] == EquiscopeModel.__checkpoint_version__
    model = EquiscopeModel.load_checkpoint(upgraded, "export").to(torch.float64).eval()
    assert model.backend.tensor_basis_blocks == old.backend.tensor_basis_blocks
    blocks = model.backend.tensor_basis_blocks
    assert "mtt::tensor/mtt::tensor_o3_lambda_3_o3_sigma_-1" not in blocks
    assert ("mtt::born_charges/mtt::born_charges___0" in blocks) == (version >= 4)
    system = get_system_with_neighbor_lists(
        molecule(torch.Generator().manual_seed(4)), model.requested_neighbor_lists()
    )
    request = {name: ModelOutput(sample_kind="atom") for name in TARGETS}
    after = model([system], request)
    for name, tensor_map in old([system], request).items():
        for key, block in tensor_map.items():
            assert torch.equal(after[name].block(key).values, block.values)


@pytest.mark.parametrize(("version", "commit"), [(3, "a2657dd"), (4, "98d0729")])
def test_a_tensor_basis_checkpoint_written_by_the_old_code_gives_its_outputs(version, commit):
    """Tiny tensor-basis models saved by the code of checkpoint versions 3 and 4
    (``old_models/``, made by ``make_old_tensor_basis.py`` at the commits named;
    forces, spherical blocks up to lambda = 3 with sigma = +-1, a rank-2 target),
    upgraded and loaded by this code, give the outputs the old code gave, every block."""
    import gzip

    import metatomic.torch  # noqa: F401 - the checkpoint holds its TorchScript classes
    from metatomic.torch import ModelOutput
    from metatrain.utils.neighbor_lists import get_system_with_neighbor_lists

    from equiscope_metatrain.architecture import EquiscopeModel

    path = Path(__file__).parent / "old_models" / f"model-v{version}_tensor_basis.pt.gz"
    with gzip.open(path, "rb") as handle:
        reference = torch.load(handle, weights_only=False)
    checkpoint = reference["checkpoint"]
    assert checkpoint["model_ckpt_version"] == version
    upgraded = EquiscopeModel.upgrade_checkpoint(checkpoint)
    model = EquiscopeModel.load_checkpoint(upgraded, "export").to(torch.float64).eval()
    system = get_system_with_neighbor_lists(
        molecule(torch.Generator().manual_seed(4)), model.requested_neighbor_lists()
    )
    names = list(reference["outputs"])
    assert names == ["mtt::direct_forces", "mtt::tensor", "mtt::born_charges"]
    outputs = model([system], {name: ModelOutput(sample_kind="atom") for name in names})
    for name in names:
        assert len(outputs[name]) == len(reference["outputs"][name]) > 0
        for key, block in outputs[name].items():
            expected = reference["outputs"][name][str(key.values.tolist())]
            scale = float(expected.abs().max())
            assert torch.allclose(block.values, expected, rtol=0, atol=1e-13 * scale), key


def direct_stress_model(readout: bool) -> torch.nn.Module:
    """An invariant trunk (solid-harmonic edges, lmax = 0) with a direct-stress target."""
    from equiscope_metatrain.architecture import EquiscopeModel

    rank_2 = {"cartesian": {"rank": 2}}
    target = target_info("non_conservative_stress", rank_2, "pressure", "eV/A^3", "system")
    info = DatasetInfo(
        length_unit="angstrom", atomic_types=[29], targets={"non_conservative_stress": target}
    )
    hypers = options(
        base={"name": "pet", "model": {**SMALL, "num_gnn_layers": 2}},
        tensor_basis_readout=readout,
        edge_embedding={"kind": "solid_harmonics", "lmax": 0},
    )["model"]
    torch.manual_seed(0)
    return EquiscopeModel(hypers, info).to(torch.float64).eval()


def test_tensor_basis_direct_stress_is_exactly_equivariant_on_an_invariant_trunk(tmp_path):
    """sigma = sum_ij f_c (a_ij r_hat r_hat^T + b_ij 1) / V with invariant coefficients
    rotates exactly, stays symmetric, and takes two coefficients per edge; PET's own
    readout of the same invariant features gives a stress that does not rotate."""
    import ase.build
    from metatomic.torch import (
        ModelEvaluationOptions,
        ModelOutput,
        load_atomistic_model,
        systems_to_torch,
    )
    from metatrain.utils.neighbor_lists import get_system_with_neighbor_lists

    atoms = ase.build.bulk("Cu", "fcc", a=3.61, cubic=True).repeat((1, 1, 2))
    atoms.rattle(0.1, seed=1)
    system = systems_to_torch(atoms, dtype=torch.float64)
    structures = [Structure(system=system, index=0)]
    reports = {}
    for readout in (True, False):
        model = direct_stress_model(readout)
        reports[readout] = audit(
            wrap_model(model),
            structures,
            grid=eq.grid("lebedev", degree=6, inversion=True),
            outputs=["non_conservative_stress"],
            convergence_structures=0,
            progress=False,
        )["outputs"]["non_conservative_stress"]
    exact, plain = reports[True], reports[False]
    assert exact["rms_value"] > 1e-4
    assert exact["equivariance_rmse"] < 1e-12 * exact["rms_value"]
    assert plain["equivariance_rmse"] > 0.3 * plain["rms_value"]

    model = direct_stress_model(True)
    assert dict(model.backend.tensor_basis_blocks) == {
        "non_conservative_stress/non_conservative_stress___0": 3
    }
    for per_key in model.backend.edge_last_layers["non_conservative_stress"]:
        assert per_key["non_conservative_stress___0"].out_features == 2
    with_lists = get_system_with_neighbor_lists(system, model.requested_neighbor_lists())
    request = {"non_conservative_stress": ModelOutput(sample_kind="system")}
    eager = model([with_lists], request)["non_conservative_stress"].block().values
    stress = eager[0, :, :, 0]
    assert torch.allclose(stress, stress.T, atol=1e-15)
    model.export().save(str(tmp_path / "model.pt"))  # TorchScript happens here
    exported = load_atomistic_model(str(tmp_path / "model.pt"))
    options = ModelEvaluationOptions(length_unit="angstrom", outputs=request)
    scripted = exported([with_lists], options, check_consistency=True)
    assert torch.allclose(scripted["non_conservative_stress"].block().values, eager, atol=1e-12)


def test_tensor_basis_reads_out_a_variant_target():
    """A target name holding "/" (a variant, ``mtt::tensor/pbe``): its lambda = 2 block
    is on the basis and exact on an invariant trunk when only it is requested."""
    from equiscope_metatrain.architecture import EquiscopeModel

    info = vector_dataset_info()
    lambda_2 = {"spherical": {"irreps": [{"o3_lambda": 2, "o3_sigma": 1}]}}
    info.targets["mtt::tensor/pbe"] = target_info("mtt::tensor/pbe", lambda_2)
    hypers = options(
        base={"name": "pet", "model": dict(SMALL)},
        tensor_basis_readout=True,
        edge_embedding={"kind": "solid_harmonics", "lmax": 0},
    )["model"]
    torch.manual_seed(0)
    model = EquiscopeModel(hypers, info).to(torch.float64).eval()
    name = "mtt::tensor/pbe/mtt::tensor/pbe_o3_lambda_2_o3_sigma_1"
    assert model.backend.tensor_basis_blocks[name] == 1  # SPHERICAL
    assert model.backend.tensor_basis_lambdas[name] == 2
    report = audit(
        wrap_model(model),
        [Structure(system=molecule(torch.Generator().manual_seed(3)), index=0)],
        grid=eq.grid("lebedev", degree=6, inversion=True),
        outputs=["mtt::tensor/pbe"],
        convergence_structures=0,
        progress=False,
    )["outputs"]["mtt::tensor/pbe"]
    assert report["rms_value"] > 1e-2
    assert report["equivariance_rmse"] < 1e-12 * report["rms_value"]


def test_the_architecture_head_evaluates_every_copy_in_one_call():
    """Training backpropagates through the average (and through forces: a double
    backward), which a chunked head cannot give: the architecture never chunks,
    also once exported."""
    from equiscope_metatrain.architecture import EquiscopeModel

    hypers = options(base={"name": "pet", "model": {**SMALL, "num_gnn_layers": 1}})["model"]
    hypers["symmetrized_head"].update(mode="average", grid="octahedral", inversion=True)
    model = EquiscopeModel(hypers, vector_dataset_info())
    assert model.head_mode == "average" and model.rotations.shape[0] == 48
    assert model.atoms_per_call == 0
    assert torch.jit.script(model.eval()).atoms_per_call == 0
