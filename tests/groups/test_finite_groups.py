import pytest
import torch

import equiscope as eq


@pytest.mark.parametrize(
    ("name", "order"), [("tetrahedral", 12), ("octahedral", 24), ("icosahedral", 60)]
)
def test_closed_proper_and_distinct(name, order):
    elements = eq.finite_group(name)
    assert elements.shape == (order, 3, 3)
    assert torch.allclose(torch.linalg.det(elements), torch.ones(order, dtype=torch.float64))
    keys = {tuple(torch.round(m.flatten() * 1e6).tolist()) for m in elements}
    assert len(keys) == order
    products = torch.einsum("iab,jbc->ijac", elements, elements).reshape(-1, 3, 3)
    for product in products:
        assert torch.min((elements - product).abs().amax(dim=(1, 2))) < 1e-10


def test_subgroup_chain():
    tetrahedral, octahedral = (
        eq.finite_group("tetrahedral"),
        eq.finite_group("octahedral"),
    )
    for element in tetrahedral:
        assert torch.min((octahedral - element).abs().amax(dim=(1, 2))) < 1e-10


def test_unknown_group():
    with pytest.raises(ValueError, match="unknown finite group 'cubic'"):
        eq.finite_group("cubic")
