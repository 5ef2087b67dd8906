"""Symmetrised heads evaluated in chunks (``atoms_per_call``): the same energies,
forces, stress and variances as one call, inner calls bounded by the rule, every
chunk's graph freed during the forward, the documented fallbacks, and the CLI
option."""

import math
from typing import Dict, List, Optional

import ase.build
import numpy as np
import pytest
import torch
from metatensor.torch import Labels, TensorBlock, TensorMap
from metatomic.torch import ModelOutput, System, load_atomistic_model
from metatomic_ase import MetatomicCalculator

import equiscope as eq
from _models import EmbeddedAtoms, SignedVolume, export
from equiscope.heads import DEFAULT_ATOMS_PER_CALL
from equiscope_ase import EquiscopeCalculator
from equiscope_atoms._chunks import chunk_moments, copies_per_call, finish_moments
from equiscope_atoms.heads import SymmetrizedHead, head_description, symmetrize_model

ENERGY = ModelOutput(unit="eV", sample_kind="system")
PER_ATOM = ModelOutput(unit="eV", sample_kind="atom")
VARIANCE = "equiscope::variance::energy"


class SelectedAnisotropy(torch.nn.Module):
    """Per-atom energies with anisotropy planted in lambda = 1, 2, 3, honouring
    ``selected_atoms`` (no neighbour list, so every copy is cheap):

    e_i = 1/2 sum_{j != i} exp(-r_ij) (1 + a c_ij^2) + exp(-|u_i|) (b c_i + d c_i^3)
          + p det(cell) / N,

    with ``c`` the z component of the unit pair vector / of ``u_i``, the position
    relative to the centroid."""

    def forward(
        self,
        systems: List[System],
        outputs: Dict[str, ModelOutput],
        selected_atoms: Optional[Labels],
    ) -> Dict[str, TensorMap]:
        rows: List[torch.Tensor] = []
        values: List[torch.Tensor] = []
        totals: List[torch.Tensor] = []
        for index, system in enumerate(systems):
            p = system.positions
            n = p.shape[0]
            d = p[None, :, :] - p[:, None, :]
            mask = (~torch.eye(n, dtype=torch.bool)).to(p.dtype)
            r = torch.sqrt((d**2).sum(-1) + (1.0 - mask))
            cos = d[:, :, 2] / r
            e = 0.5 * (torch.exp(-r) * (1.0 + 0.4 * cos**2) * mask).sum(1)
            u = p - p.mean(0, keepdim=True)
            distance = torch.sqrt((u**2).sum(-1))
            c = u[:, 2] / distance
            e = e + torch.exp(-distance) * (0.3 * c + 0.2 * c**3)
            e = e + 0.05 * torch.linalg.det(system.cell) / n
            atoms = torch.arange(n)
            if selected_atoms is not None:
                mine = selected_atoms.values[selected_atoms.values[:, 0] == index]
                atoms = mine[:, 1].long()
            rows.append(torch.stack([torch.full_like(atoms, index), atoms], 1).to(torch.int32))
            values.append(e[atoms])
            totals.append(e[atoms].sum().reshape(1))
        one = torch.zeros(1, 1, dtype=torch.int32)
        if outputs["energy"].sample_kind == "atom":
            samples = Labels(["system", "atom"], torch.cat(rows))
            block = TensorBlock(torch.cat(values)[:, None], samples, [], Labels("energy", one))
        else:
            index = torch.arange(len(systems), dtype=torch.int32)[:, None]
            block = TensorBlock(
                torch.cat(totals)[:, None], Labels("system", index), [], Labels("energy", one)
            )
        return {"energy": TensorMap(Labels("_", one), [block])}


def rattled_copper(n_repeat: int = 2):
    atoms = ase.build.bulk("Cu", "fcc", a=3.61, cubic=True).repeat(n_repeat)
    atoms.rattle(0.1, seed=1)
    atoms.positions[0] += 0.3
    return atoms


MODELS = {
    "embedded-atoms": lambda: EmbeddedAtoms(anisotropy=0.5),  # neighbour-list vectors
    "signed-volume": lambda: SignedVolume(),  # positions, cell and cell shifts
    "positions-and-cell": SelectedAnisotropy,  # positions and det(cell), no list
}


@pytest.fixture(scope="module")
def model_paths(tmp_path_factory):
    folder = tmp_path_factory.mktemp("chunks")
    outputs = {"energy": PER_ATOM}
    return {
        name: export(make(), folder / f"{name}.pt", outputs=outputs)
        for name, make in MODELS.items()
    }


def engine_results(path, atoms, mode, atoms_per_call, folder):
    """Energy, forces, stress (and the energy variance in diagnose mode) of the saved
    and reloaded head in metatomic-ase's own calculator."""
    head = symmetrize_model(
        load_atomistic_model(str(path)),
        mode=mode,
        grid=eq.grid("octahedral", inversion=True),
        seed=4,
        atoms_per_call=atoms_per_call,
    )
    saved = folder / f"head-{mode}-{atoms_per_call}.pt"
    head.save(str(saved))
    extra = {VARIANCE: ModelOutput(sample_kind="system")} if mode == "diagnose" else {}
    atoms = atoms.copy()
    atoms.calc = MetatomicCalculator(str(saved), additional_outputs=extra)
    results = {
        "energy": np.array(atoms.get_potential_energy()),
        "forces": atoms.get_forces(),
        "stress": atoms.get_stress(),
    }
    if mode == "diagnose":
        results["variance"] = (
            atoms.calc.additional_outputs[VARIANCE].block().values.detach().numpy()
        )
    return results


@pytest.mark.parametrize("mode", ["average", "random-group", "diagnose"])
@pytest.mark.parametrize("model", sorted(MODELS))
def test_chunked_head_in_metatomic_ase_gives_the_numbers_of_one_call(
    model_paths, tmp_path, mode, model
):
    """32 atoms, 48 copies: atoms_per_call=1 evaluates one copy per call (48 chunks),
    100 three copies (16 chunks): both equal to one call."""
    atoms = rattled_copper()
    path = model_paths[model]
    reference = engine_results(path, atoms, mode, 0, tmp_path)
    assert np.abs(reference["forces"]).max() > 1e-3
    assert np.abs(reference["stress"]).max() > 1e-4
    # round-off of a variance: (round-off of a sum over 32 atoms, ~1e-13 relative)^2
    floor = (1e-13 * float(reference["energy"])) ** 2
    if mode == "diagnose":
        if model == "signed-volume":  # exactly invariant for right-handed cells
            assert reference["variance"].max() < floor
        else:
            assert reference["variance"].max() > 1e-8  # the planted anisotropy
    for atoms_per_call in (1, 100):
        chunked = engine_results(path, atoms, mode, atoms_per_call, tmp_path)
        assert chunked.keys() == reference.keys()
        for name, expected in reference.items():
            scale = np.abs(expected).max()
            if name == "variance":
                scale = max(scale, floor * 1e12)
            np.testing.assert_allclose(chunked[name], expected, rtol=0, atol=1e-12 * scale)


def two_systems(requires_grad: bool):
    """A periodic copper cell and a 5-atom molecule, as a direct call gets them."""
    generator = torch.Generator().manual_seed(11)
    cell = torch.tensor(rattled_copper(1).cell.array, dtype=torch.float64)
    crystal = torch.tensor(rattled_copper(1).positions, dtype=torch.float64)
    molecule = 1.5 * torch.randn(5, 3, dtype=torch.float64, generator=generator)
    systems = []
    for positions, lattice in ((crystal, cell), (molecule, torch.zeros(3, 3))):
        positions = positions.clone().requires_grad_(requires_grad)
        lattice = lattice.to(torch.float64).clone().requires_grad_(requires_grad)
        types = torch.full((len(positions),), 29, dtype=torch.int32)
        pbc = torch.full((3,), bool(lattice.abs().sum() > 0))
        systems.append(System(types=types, positions=positions, cell=lattice, pbc=pbc))
    return systems


def energies_and_gradients(head, selected=None):
    systems = two_systems(requires_grad=True)
    energy = head(systems, {"energy": ENERGY}, selected)["energy"].block().values
    inputs = [t for s in systems for t in (s.positions, s.cell)]
    gradients = torch.autograd.grad(energy.sum(), inputs)
    return energy.detach(), gradients


@pytest.mark.parametrize("selection", [False, True])
def test_two_systems_in_one_direct_call(model_paths, selection):
    """Two systems (4 + 5 atoms) with and without selected atoms, through the loaded
    head's module: energies and their gradients w.r.t. positions and cells equal one
    call's, with one copy of each system per call (atoms_per_call=9) or 5 (45)."""
    raw = load_atomistic_model(str(model_paths["positions-and-cell"]))
    selected = None
    if selection:
        pairs = [[0, 1], [0, 3], [1, 0], [1, 2], [1, 4]]
        selected = Labels(["system", "atom"], torch.tensor(pairs, dtype=torch.int32))
    results = {}
    for atoms_per_call in (0, 9, 45):
        head = symmetrize_model(raw, atoms_per_call=atoms_per_call).module
        results[atoms_per_call] = energies_and_gradients(head, selected)
    energy, gradients = results[0]
    assert energy.shape == (2, 1)
    assert all(g.abs().max() > 1e-3 for g in gradients[:3])  # the molecule's cell: 0 ** 2
    for atoms_per_call in (9, 45):
        chunked_energy, chunked_gradients = results[atoms_per_call]
        torch.testing.assert_close(chunked_energy, energy, rtol=1e-12, atol=0)
        for chunked, expected in zip(chunked_gradients, gradients, strict=True):
            torch.testing.assert_close(
                chunked, expected, rtol=0, atol=1e-12 * float(expected.abs().max() + 1e-300)
            )


class Tracked(torch.autograd.Function):
    """Identity whose backward counts its calls."""

    backward_calls = 0

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        Tracked.backward_calls += 1
        return grad


class Recorder(torch.nn.Module):
    """The inner model of an eager head: records the systems per call and passes the
    positions through :class:`Tracked`."""

    def __init__(self):
        super().__init__()
        self.inner = SelectedAnisotropy()
        self.calls: List[int] = []

    def forward(self, systems, outputs, selected_atoms):
        self.calls.append(len(systems))
        tracked = [
            System(types=s.types, positions=Tracked.apply(s.positions), cell=s.cell, pbc=s.pbc)
            for s in systems
        ]
        return self.inner(tracked, outputs, selected_atoms)


def eager_head(atoms_per_call, grid="octahedral"):
    recorder = Recorder()
    head = SymmetrizedHead(
        recorder,
        eq.grid(grid, inversion=True),
        mode="average",
        seed=0,
        inversion=True,
        max_lambda=3,
        dtype=torch.float64,
        atoms_per_call=atoms_per_call,
    ).eval()
    return head, recorder


def one_system():
    return two_systems(requires_grad=True)[:1]  # the 4-atom copper cell


@pytest.mark.parametrize(("atoms_per_call", "per_call"), [(1, 1), (4, 1), (20, 5), (28, 7)])
def test_chunks_bound_the_inner_calls(atoms_per_call, per_call):
    head, recorder = eager_head(atoms_per_call)
    head(one_system(), {"energy": ENERGY}, None)
    assert max(recorder.calls) == per_call == copies_per_call(48, 4, atoms_per_call)
    assert len(recorder.calls) == math.ceil(48 / per_call)
    assert sum(recorder.calls) == 48


def test_copies_per_call_rule():
    assert copies_per_call(48, 32, 512) == 16
    assert copies_per_call(48, 500, 512) == 1
    assert copies_per_call(48, 1000, 512) == 1  # at least one copy
    assert copies_per_call(48, 4, 512) == 48  # at most all of them
    assert copies_per_call(48, 1000, 0) == 48  # 0: no chunks


def test_every_chunk_is_differentiated_during_the_forward():
    """Chunked: the inner model's backward runs (once per copy) inside the forward and
    never in the engine's backward (no chunk's graph survives the forward); one call:
    all of it in the engine's backward. Same gradient."""
    gradients = {}
    for atoms_per_call in (0, 8):
        head, recorder = eager_head(atoms_per_call)
        systems = one_system()
        Tracked.backward_calls = 0
        energy = head(systems, {"energy": ENERGY}, None)["energy"].block().values
        during_forward = Tracked.backward_calls
        energy.sum().backward()
        during_backward = Tracked.backward_calls - during_forward
        gradients[atoms_per_call] = systems[0].positions.grad
        if atoms_per_call == 0:
            assert (len(recorder.calls), during_forward, during_backward) == (1, 0, 48)
        else:  # 2 copies per call
            assert (len(recorder.calls), during_forward, during_backward) == (24, 48, 0)
    torch.testing.assert_close(gradients[8], gradients[0], rtol=0, atol=1e-13)


@pytest.mark.parametrize("case", ["training", "per-atom"])
def test_fallbacks_evaluate_once_and_stay_right(case):
    """Training mode, and per-atom outputs wanted with gradients, take one call (with
    the full graph); per-atom outputs without gradients are chunked."""
    request = {"energy": PER_ATOM if case == "per-atom" else ENERGY}
    results = {}
    for atoms_per_call in (0, 16):
        head, recorder = eager_head(atoms_per_call)
        if case == "training":
            head.train()
        systems = one_system()
        values = head(systems, request, None)["energy"].block().values
        (gradient,) = torch.autograd.grad(values.sum(), [systems[0].positions])
        results[atoms_per_call] = (values.detach(), gradient, len(recorder.calls))
    assert results[16][2] == 1  # one call, where 16 atoms per call means 12
    torch.testing.assert_close(results[16][0], results[0][0], rtol=1e-13, atol=0)
    torch.testing.assert_close(results[16][1], results[0][1], rtol=0, atol=1e-13)
    head, recorder = eager_head(16)
    if case == "training":
        head.train()
    with torch.no_grad():
        values = head(one_system(), request, None)["energy"].block().values
    assert len(recorder.calls) == (1 if case == "training" else 12)
    torch.testing.assert_close(values, results[0][0], rtol=1e-13, atol=0)


def test_moments_of_chunks_are_exact_and_stable_in_float32():
    """Float32 outputs with a large offset (|mean|^2 / A^2 ~ 1e10) and the signed
    weights of a Lebedev rule: every split into chunks gives the float64 two-pass
    mean and variance of the same float32 values (E|z|^2 - |Ez|^2 in float32 gives
    nothing but noise here)."""
    grid = eq.grid("lebedev", degree=13)  # negative weights
    weights = grid.weights.to(torch.float64)
    assert weights.min() < 0
    n = weights.shape[0]
    generator = torch.Generator().manual_seed(5)
    # [systems, copies, rows, xyz, properties]
    z = (3e4 + 0.1 * torch.randn(2, n, 1, 3, 2, generator=generator)).to(torch.float32)
    exact = z.to(torch.float64)
    mean = torch.einsum("i,sir...->sr...", weights, exact)
    variance = torch.einsum("i,sir...->sr...", weights, (exact - mean.unsqueeze(1)).square().sum(3))
    naive = torch.einsum("i,sir...->sr...", weights.float(), z.square().sum(3)) - torch.einsum(
        "i,sir...->sr...", weights.float(), z
    ).square().sum(2)
    assert (naive - variance).abs().max() > 10 * variance.abs().max()
    total = weights.sum()
    for size in (1, 7, 100, n):
        reference = z[:, 0]
        first = torch.zeros_like(mean)
        second = torch.zeros_like(variance)
        for start in range(0, n, size):
            part = slice(start, start + size)
            s, q = chunk_moments(z[:, part], weights[part], reference, 1)
            first, second = first + s, second + q
        got_mean, got_variance = finish_moments(reference, first, second, total, 1)
        torch.testing.assert_close(got_mean, mean, rtol=1e-14, atol=0)
        torch.testing.assert_close(got_variance, variance, rtol=1e-9, atol=0)


def test_round_off_below_zero_variance_is_clamped():
    """Copies that agree but for round-off can leave Q - |S|^2 / W a few ulps below
    zero: the variance is zero then, never negative (an engine may take its root)."""
    one = torch.ones(1, 1, dtype=torch.float64)
    mean, variance = finish_moments(0 * one, one, (1 - 2**-52) * one, one.sum(), 0)
    assert float(mean) == 1.0 and float(variance) == 0.0
    _, variance = finish_moments(0 * one, one, 1.5 * one, one.sum(), 0)
    assert float(variance) == 0.5


def test_chunked_gradients_have_no_second_derivative():
    """First derivatives only: differentiating the forces of a chunked head fails
    loudly (no silent zero Hessian); atoms_per_call=0 gives the Hessian."""
    hessians = {}
    for atoms_per_call in (0, 8):
        head, _ = eager_head(atoms_per_call)
        systems = one_system()
        energy = head(systems, {"energy": ENERGY}, None)["energy"].block().values.sum()
        (gradient,) = torch.autograd.grad(energy, systems[0].positions, create_graph=True)
        if atoms_per_call == 0:
            hessians[0] = torch.autograd.grad(gradient[0, 0], systems[0].positions)[0]
        else:
            assert not gradient.requires_grad
            with pytest.raises(RuntimeError, match="does not require grad"):
                torch.autograd.grad(gradient[0, 0], systems[0].positions)
    assert hessians[0].abs().max() > 1e-3


def test_head_options_and_description(model_paths):
    raw = load_atomistic_model(str(model_paths["embedded-atoms"]))
    assert symmetrize_model(raw).module.atoms_per_call == DEFAULT_ATOMS_PER_CALL == 128
    described = head_description(symmetrize_model(raw, atoms_per_call=64))
    assert described.endswith("48 evaluations per call, up to 64 atoms per inner call")
    described = head_description(symmetrize_model(raw, atoms_per_call=0))
    assert described.endswith("48 evaluations per call, all copies in one inner call")
    for bad, message in ((-1, "0 .no chunks. or positive, got -1"), (2.5, "integer, got 2.5")):
        with pytest.raises(ValueError, match=message):
            symmetrize_model(raw, atoms_per_call=bad)


def test_calculator_passes_atoms_per_call_and_chunks_the_spread(model_paths, monkeypatch):
    """EquiscopeCalculator builds its head with atoms_per_call, and its
    rotational_spread evaluates the raw model on the copies in chunks of the same
    size: same spreads as in one call."""
    sizes: List[int] = []
    original = MetatomicCalculator.compute_energy

    def recording(self, atoms, *args, **kwargs):
        sizes.append(len(atoms))
        return original(self, atoms, *args, **kwargs)

    monkeypatch.setattr(MetatomicCalculator, "compute_energy", recording)
    spreads = {}
    for atoms_per_call in (0, 320):  # 32 atoms: 10 copies per call
        atoms = rattled_copper()
        atoms.calc = EquiscopeCalculator(
            model_paths["embedded-atoms"], diagnostics=True, atoms_per_call=atoms_per_call
        )
        assert atoms.calc.model().module.atoms_per_call == atoms_per_call
        sizes.clear()
        atoms.get_forces()
        spreads[atoms_per_call] = {
            k: v for k, v in atoms.calc.results.items() if k.endswith("_rot_std")
        }
        assert sizes == ([48] if atoms_per_call == 0 else [10, 10, 10, 10, 8])
    assert set(spreads[0]) == {"energy_rot_std", "forces_rot_std", "stress_rot_std"}
    for name, expected in spreads[0].items():
        assert np.abs(expected).max() > 1e-6
        np.testing.assert_allclose(
            spreads[320][name], expected, rtol=0, atol=1e-12 * np.abs(expected).max()
        )


def test_symmetrize_command_atoms_per_call(model_paths, tmp_path, capsys):
    from equiscope.cli import main

    raw = str(model_paths["embedded-atoms"])
    output = tmp_path / "head.pt"
    assert main(["symmetrize", raw, "-o", str(output), "--atoms-per-call", "96"]) == 0
    assert "48 evaluations per call, up to 96 atoms per inner call" in capsys.readouterr().out
    head = load_atomistic_model(str(output))
    assert head.module.atoms_per_call == 96
    assert head_description(head).endswith("up to 96 atoms per inner call")
    for bad in ("-5", "many", "2.5"):
        code = main(["symmetrize", raw, "-o", str(tmp_path / "x.pt"), "--atoms-per-call", bad])
        error = capsys.readouterr().err.strip()
        assert code == 2
        assert len(error.splitlines()) == 1 and "--atoms-per-call" in error and bad in error
    assert not (tmp_path / "x.pt").exists()
    with pytest.raises(SystemExit):
        main(["symmetrize", "--help"])
    assert "--atoms-per-call N" in capsys.readouterr().out


def test_pair_vectors_that_depend_on_positions_are_counted_once(model_paths):
    """Called directly with a neighbour list whose pair vectors are functions of the
    positions and cell (as engines register them), the chunked head's forces and
    virial equal one call's: each input's partial derivative is injected once."""
    from vesin.metatomic import neighbor_lists_for_model

    raw = load_atomistic_model(str(model_paths["embedded-atoms"]))
    atoms = rattled_copper(1)
    results = {}
    for atoms_per_call in (0, 4):
        positions = torch.tensor(atoms.positions, dtype=torch.float64, requires_grad=True)
        cell = torch.tensor(atoms.cell.array, dtype=torch.float64, requires_grad=True)
        types = torch.full((len(atoms),), 29, dtype=torch.int32)
        system = System(types=types, positions=positions, cell=cell, pbc=torch.ones(3).bool())
        for calculator in neighbor_lists_for_model("angstrom", raw):
            calculator.add_neighbor_list([system])
        (options,) = system.known_neighbor_lists()
        assert system.get_neighbor_list(options).values.requires_grad  # from positions
        head = symmetrize_model(raw, atoms_per_call=atoms_per_call).module
        energy = head([system], {"energy": ENERGY}, None)["energy"].block().values.sum()
        results[atoms_per_call] = torch.autograd.grad(energy, [positions, cell])
    for chunked, expected in zip(results[4], results[0], strict=True):
        assert float(expected.abs().max()) > 1e-3
        torch.testing.assert_close(
            chunked, expected, rtol=0, atol=1e-12 * float(expected.abs().max())
        )
