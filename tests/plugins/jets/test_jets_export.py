"""Exported taggers (torch.export programs): the same logits as the eager tagger for any
numbers of jets and constituents, heads as exact as eager, and clear errors."""

import argparse
import json
import math

import pytest
import torch

from equiscope.cli import BadInput
from equiscope_jets import build_tagger, save_checkpoint
from equiscope_jets.actions import jet_frames, rotate
from equiscope_jets.checkpoint import JetModelError
from equiscope_jets.cli import add_parser, run
from equiscope_jets.export import export_tagger, load_exported_tagger
from equiscope_jets.heads import SymmetrizedTagger


def _parse(argv):
    parser = argparse.ArgumentParser(prog="equiscope")
    add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def tagger(kind: str = "transformer"):
    torch.manual_seed(0)
    return build_tagger(kind, {"width": 16, "depth": 2, "heads": 2}).eval()


def round_off(logits: torch.Tensor) -> float:
    """float32 round-off of the taggers' logits (they compute in float32)."""
    return 1e-5 * max(float(logits.abs().max()), 1.0)


@pytest.mark.parametrize("kind", ["transformer", "invariant"])
def test_exported_tagger_gives_the_eager_logits_at_other_shapes(tmp_path, small_momenta, kind):
    """Traced on 3 jets of 6 slots, run on 40 jets of 16 and on one jet of 5: the numbers
    of jets and constituents are symbolic in the program."""
    model = tagger(kind)
    program = load_exported_tagger(export_tagger(model, tmp_path / "tagger.pt2"))
    for momenta in (small_momenta, small_momenta[:1, :5]):
        with torch.no_grad():
            expected = model(momenta)
            assert torch.allclose(program(momenta), expected, rtol=0, atol=round_off(expected))
    assert not model.training  # the export leaves the model's mode as it was


def axial_rotation(momenta: torch.Tensor, angle: float) -> torch.Tensor:
    """Each jet rotated by ``angle`` about its own axis, in float64."""
    frames = jet_frames(momenta)
    c, s = math.cos(angle), math.sin(angle)
    about_z = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    return rotate(momenta, frames.transpose(1, 2) @ about_z @ frames)


def test_exported_average_head_is_exactly_invariant_on_its_grid(tmp_path, small_momenta):
    """An average head over 8 rotations about the jet axis: the exported program is the
    eager head, and a rotation by 2 pi / 8 about each jet's axis (a grid element) leaves
    its logits unchanged to round-off, where the bare tagger's move."""
    model = tagger()
    head = SymmetrizedTagger(model, "average", group="so2-axis")
    program = load_exported_tagger(export_tagger(head, tmp_path / "head.pt2"))
    bare = load_exported_tagger(export_tagger(model, tmp_path / "bare.pt2"))
    turned = axial_rotation(small_momenta, 2 * math.pi / 8)
    with torch.no_grad():
        expected = head(small_momenta)
        logits = program(small_momenta)
        assert torch.allclose(logits, expected, rtol=0, atol=round_off(expected))
        assert torch.allclose(program(turned), logits, rtol=0, atol=round_off(logits))
        moved = (bare(turned) - bare(small_momenta)).abs().max()
    assert moved > 100 * round_off(logits)


def test_exported_canonical_head_is_invariant_under_any_rotation(tmp_path, small_momenta):
    """The lab-frame canonical head maps every rotated copy of a jet to the same frame."""
    model = tagger()
    head = SymmetrizedTagger(model, "canonical", frame="lab")
    program = load_exported_tagger(export_tagger(head, tmp_path / "canonical.pt2"))
    rotation = torch.linalg.matrix_exp(
        torch.tensor([[0.0, -0.7, 0.3], [0.7, 0.0, -1.1], [-0.3, 1.1, 0.0]], dtype=torch.float64)
    )
    with torch.no_grad():
        logits = program(small_momenta)
        assert torch.allclose(logits, head(small_momenta), rtol=0, atol=round_off(logits))
        rotated = program(rotate(small_momenta, rotation))
        assert torch.allclose(rotated, logits, rtol=0, atol=round_off(logits))
        moved = (model(rotate(small_momenta, rotation)) - model(small_momenta)).abs().max()
    assert moved > 100 * round_off(logits)


def test_random_heads_and_bad_files_are_refused(tmp_path, monkeypatch):
    model = tagger()
    with pytest.raises(ValueError, match=r"random-frame head .* cannot be exported"):
        export_tagger(SymmetrizedTagger(model, "random"), tmp_path / "r.pt2")
    with pytest.raises(JetModelError, match=r"missing\.pt2: no such file"):
        load_exported_tagger(tmp_path / "missing.pt2")
    (tmp_path / "text.pt2").write_text("not a program")
    with pytest.raises(JetModelError, match=r"text\.pt2: not a readable exported tagger"):
        load_exported_tagger(tmp_path / "text.pt2")

    def failing(*args, **kwargs):
        raise RuntimeError("cannot trace")

    model.train()
    monkeypatch.setattr(torch.export, "save", failing)  # fails while writing
    with pytest.raises(RuntimeError, match="cannot trace"):
        export_tagger(model, tmp_path / "unsaved.pt2")
    assert model.training  # the mode it had
    monkeypatch.setattr(torch.export, "export", failing)
    with pytest.raises(RuntimeError, match="cannot trace"):
        export_tagger(model, tmp_path / "never.pt2")
    assert model.training
    assert sorted(p.name for p in tmp_path.iterdir()) == ["text.pt2"]  # nothing half-written


def test_cli_exports_a_checkpoint_behind_a_head(tmp_path, small_momenta, capsys):
    model = tagger()
    checkpoint = save_checkpoint(model, tmp_path / "model.pt", training={"max_constituents": 16})
    output = tmp_path / "head.pt2"
    args = _parse(["jets", "export", str(checkpoint), "-o", str(output), "--head", "average"])
    assert run(args) == 0
    assert capsys.readouterr().out.startswith(f"exported: {output} (transformer+average;")
    head = SymmetrizedTagger(model, "average", group="so2-axis")
    with torch.no_grad():
        expected = head(small_momenta)
        logits = load_exported_tagger(output)(small_momenta)
    assert torch.allclose(logits, expected, rtol=0, atol=round_off(expected))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["-o", "out.pt"], "--output out.pt: an exported program is a .pt2 file"),
        (["-o", "out.pt2", "--head", "average", "--head-n", "0"], "--head-n must be at least 1"),
        (["-o", "out.pt2", "--head", "average", "--head-group", "nope"], "unknown group 'nope'"),
        (["-o", "out.pt2", "--head", "average", "--head-group", "boost-axis"], "compact group"),
        (
            ["-o", "out.pt2", "--head", "average", "--head-group", "boost-axis", "--head-n", "4"],
            "--head-group boost-axis is not an SO",
        ),
        (
            ["-o", "out.pt2", "--head", "average", "--head-group", "so3", "--head-n", "4"],
            "--head-group so3 is not an SO",
        ),
        (
            ["-o", "out.pt2", "--head", "canonical", "--head-n", "4"],
            "--head-n sets the grid of an average head, not of --head canonical",
        ),
        (["-o", "out.pt2", "--frame", "lab"], "--frame sets the frame of a canonical head"),
        (["-o", "folder.pt2"], "--output folder.pt2: cannot write"),
    ],
)
def test_cli_bad_input_is_one_line(tmp_path, monkeypatch, options, message):
    monkeypatch.chdir(tmp_path)
    save_checkpoint(tagger(), tmp_path / "model.pt")
    (tmp_path / "folder.pt2").mkdir()
    with pytest.raises(BadInput, match=message) as info:
        run(_parse(["jets", "export", "model.pt", *options]))
    assert "\n" not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.pt2", "model.pt"]


def test_cli_refuses_a_missing_model(tmp_path):
    with pytest.raises(BadInput, match=r"nope\.pt: no such file"):
        run(_parse(["jets", "export", str(tmp_path / "nope.pt"), "-o", str(tmp_path / "a.pt2")]))
    assert not (tmp_path / "a.pt2").exists()


def test_equiscope_audit_reads_an_exported_program_like_its_checkpoint(tmp_path, jet_files):
    """`equiscope audit PROGRAM JETS`: the exported tagger's logit gets the checkpoint's
    equivariance RMSE (to float32 round-off), with no hidden layers; the stored number of
    constituents prepares the jets the same way. Other .pt2 files are not taken for one."""
    from equiscope.cli import main
    from equiscope_jets.export import is_exported_tagger

    top, _ = jet_files
    checkpoint = save_checkpoint(tagger(), tmp_path / "model.pt", training={"max_constituents": 12})
    program = tmp_path / "tagger.pt2"
    assert main(["jets", "export", str(checkpoint), "-o", str(program)]) == 0
    assert is_exported_tagger(program) and not is_exported_tagger(checkpoint)
    assert load_exported_tagger(program).metadata["max_constituents"] == 12
    reports = {}
    for name, model in (("checkpoint", checkpoint), ("program", program)):
        options = ["--structures", "3", "--grid", "so2-axis", "--n", "6"]
        assert main(["audit", str(model), str(top), "-o", str(tmp_path / name), *options]) == 0
        reports[name] = json.loads((tmp_path / name / "report.json").read_text())
    exported, eager = reports["program"], reports["checkpoint"]
    assert exported["model_kind"] == "exported transformer" and not exported["layers"]
    assert eager["layers"]
    a, b = (r["outputs"]["logit"]["equivariance_rmse"] for r in (exported, eager))
    assert a == pytest.approx(b, rel=1e-3) and b > 0
    other = tmp_path / "other.pt2"
    bare = torch.export.export(torch.nn.Linear(4, 1), (torch.zeros(2, 4),))
    torch.export.save(bare, other)
    assert not is_exported_tagger(other)
    with pytest.raises(JetModelError, match=r"a torch\.export program, but not an exported tagger"):
        load_exported_tagger(other)


def test_canonical_leading_constituent_is_the_most_energetic(small_momenta):
    """The canonical frame's transverse direction comes from the most energetic
    constituent (picked by a mask, for torch.export): the same slot fancy indexing picks,
    here after shuffling the slots so the leading one is not first."""
    from equiscope_jets.heads import canonical_rotation

    generator = torch.Generator().manual_seed(3)
    order = torch.randperm(small_momenta.shape[1], generator=generator)
    momenta = small_momenta[:, order].to(torch.float64)
    rotations = canonical_rotation(momenta, "lab")
    leading = momenta[torch.arange(len(momenta)), momenta[..., 0].argmax(-1), 1:]
    axis = momenta[..., 1:].sum(1)
    transverse = (
        leading
        - (leading * axis).sum(-1, keepdim=True) / axis.square().sum(-1, keepdim=True) * axis
    )
    transverse = transverse / transverse.norm(dim=-1, keepdim=True)
    mapped = (rotations @ transverse[..., None])[..., 0]  # to the lab frame's z
    expected = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand_as(mapped)
    assert torch.allclose(mapped, expected, rtol=0, atol=1e-12)
