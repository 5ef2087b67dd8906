"""Group actions on jets: frames, rotations about the jet axis, boosts, random elements."""

import pytest
import torch

import equiscope as eq
from equiscope_jets.actions import (
    GROUPS,
    boost,
    get_group,
    group_elements,
    jet_axis,
    jet_frames,
    random_elements,
    rotate,
)
from equiscope_jets.features import minkowski


def test_jet_frame_maps_the_axis_to_z(small_momenta):
    frames = jet_frames(small_momenta)
    eye = torch.eye(3, dtype=torch.float64).expand_as(frames)
    torch.testing.assert_close(frames @ frames.transpose(1, 2), eye)
    torch.testing.assert_close(
        torch.linalg.det(frames), torch.ones(len(frames), dtype=torch.float64)
    )
    z = torch.einsum("jab,jb->ja", frames, jet_axis(small_momenta))
    torch.testing.assert_close(z, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand_as(z))


@pytest.mark.parametrize("name", ["so2-axis", "o2-axis"])
def test_rotations_about_the_jet_axis_keep_the_axis(small_momenta, name):
    group = GROUPS[name]
    elements = group_elements(group, group.default_grid(n=5).rotations, small_momenta)
    n = jet_axis(small_momenta)
    moved = torch.einsum("jnab,jb->jna", elements, n)
    torch.testing.assert_close(moved, n[:, None, :].expand_as(moved))
    rotated = rotate(small_momenta, elements[:, 3])
    torch.testing.assert_close(jet_axis(rotated), n)


def test_boosts_keep_masses_and_compose(small_momenta):
    direction = jet_axis(small_momenta)
    once = boost(boost(small_momenta, 0.3, direction), 0.4, direction)
    torch.testing.assert_close(once, boost(small_momenta, 0.7, direction), rtol=1e-9, atol=1e-6)
    jet = small_momenta.double().sum(1)
    boosted_jet = once.sum(1)
    torch.testing.assert_close(minkowski(boosted_jet, boosted_jet), minkowski(jet, jet))
    assert bool((once[..., 0][small_momenta[..., 0] == 0] == 0).all())  # padding stays zero


@pytest.mark.parametrize("name", list(GROUPS))
def test_random_elements_lie_in_the_group(small_momenta, name):
    group = GROUPS[name]
    g = random_elements(group, small_momenta, torch.Generator().manual_seed(3))
    det = torch.linalg.det(g)
    if group.engine.startswith("SO"):
        torch.testing.assert_close(det, torch.ones_like(det))
    if group.frame == "axis":
        n = jet_axis(small_momenta)
        torch.testing.assert_close(torch.einsum("jab,jb->ja", g, n), n)
    if name == "so2-beam":
        assert torch.allclose(g[:, 2, 2], torch.ones(len(g), dtype=torch.float64))


def test_unknown_group_is_a_one_line_error():
    with pytest.raises(ValueError, match=r"^unknown group 'so4'; expected one of so3, o3") as error:
        get_group("so4")
    assert "\n" not in str(error.value)


def test_default_grids_match_the_engine_groups():
    for group in GROUPS.values():
        assert isinstance(group.default_grid(), eq.Grid)
        assert group.default_grid().group.name == group.engine
