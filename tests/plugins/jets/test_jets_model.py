"""Taggers: shapes, hidden layers, padding and permutation invariance, invariance of the
invariant baseline, the weaver peer, checkpoints."""

import pytest
import torch

import equiscope as eq
from equiscope_jets import (
    GROUPS,
    JetModelError,
    PeerUnavailable,
    audit_tagger,
    build_tagger,
    is_jet_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from equiscope_jets.actions import boost, jet_axis, random_elements, rotate

TINY = {"width": 8, "depth": 2, "heads": 2}


@pytest.mark.parametrize("kind", ["transformer", "invariant"])
def test_logits_hidden_layers_padding_and_permutations(small_momenta, kind):
    torch.manual_seed(0)
    model = build_tagger(kind, TINY).eval()
    with torch.no_grad():
        logit, layers = model(small_momenta, hidden=True)
        padded = torch.cat([small_momenta, torch.zeros(len(small_momenta), 5, 4)], 1)
        permutation = torch.randperm(small_momenta.shape[1])
        shuffled = model(small_momenta[:, permutation])
        torch.testing.assert_close(model(padded), logit, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(shuffled, logit, atol=1e-5, rtol=1e-5)
    assert logit.shape == (len(small_momenta),)
    assert list(layers) == ["embed_particle", "blocks.0_particle", "blocks.1_particle", "pool_jet"]
    assert layers["blocks.1_particle"].shape == (*small_momenta.shape[:2], 8)
    empty = small_momenta[..., 0] == 0
    assert bool((layers["blocks.1_particle"][empty] == 0).all())


def test_invariant_baseline_is_invariant_and_the_transformer_is_not(small_momenta):
    torch.manual_seed(0)
    invariant = build_tagger("invariant", TINY).eval()
    transformer = build_tagger("transformer", TINY).eval()
    generator = torch.Generator().manual_seed(1)
    x = small_momenta.double()
    o3 = rotate(x, random_elements(GROUPS["o3"], x, generator))
    boosted = boost(x, 0.8, jet_axis(x))
    with torch.no_grad():
        reference = invariant(x)
        for moved in (o3, boosted):
            torch.testing.assert_close(invariant(moved), reference, atol=2e-5, rtol=1e-5)
        beam = rotate(x, random_elements(GROUPS["so2-beam"], x, generator))
        assert float((transformer(beam) - transformer(x)).abs().max()) > 1e-4


def test_checkpoint_round_trip(tmp_path, small_momenta):
    model = build_tagger("transformer", TINY).eval()
    path = save_checkpoint(model, tmp_path / "model.pt", training={"max_constituents": 16})
    assert is_jet_checkpoint(path) and not is_jet_checkpoint(tmp_path / "missing.pt")
    loaded, info = load_checkpoint(path)
    assert info == {"max_constituents": 16}
    with torch.no_grad():
        torch.testing.assert_close(loaded(small_momenta), model(small_momenta))
    (tmp_path / "other.pt").write_bytes(b"not a checkpoint")
    assert not is_jet_checkpoint(tmp_path / "other.pt")
    with pytest.raises(JetModelError, match="not a readable tagger checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(ValueError, match="unknown tagger 'mlp'"):
        build_tagger("mlp")


def test_weaver_peer_runs_or_says_how_to_install(small_momenta):
    torch.manual_seed(0)
    try:
        peer = build_tagger("part", {"width": 8, "depth": 1, "heads": 2, "pair_width": 4})
    except PeerUnavailable as error:
        assert "pip install --no-deps weaver-core==0.5.3" in str(error)
        return
    peer.eval()
    with torch.no_grad():
        logit, layers = peer(small_momenta, hidden=True)
    assert logit.shape == (len(small_momenta),) and list(layers) == ["blocks.0_particle"]
    # ParT's kinematic inputs are invariant under rotations about the beam, up to its
    # float32 pair features (measured by the noise floor), not about the jet axis
    grids = {"so2-beam": eq.grid("so2", n=6), "so2-axis": eq.grid("so2", n=6)}
    report = audit_tagger(peer, small_momenta[:6], groups=list(grids), grids=grids, layers=False)
    beam = report["groups"]["so2-beam"]["outputs"]["logit"]
    axis = report["groups"]["so2-axis"]["outputs"]["logit"]
    assert beam["equivariance_rmse"] <= 3 * beam["noise_floor"]
    assert axis["equivariance_rmse"] > 30 * axis["noise_floor"]
