import pytest
import torch
from metatensor.torch import Labels, TensorBlock, TensorMap
from metatomic.torch.o3._decompose import decompose_quantity
from scipy.spatial.transform import Rotation

import equiscope as eq


def rotations(n=8):
    return torch.from_numpy(Rotation.random(n, random_state=5).as_matrix())


def test_rank2_parts_transform_with_wigner_d(generator):
    tensor = torch.randn(3, 3, dtype=torch.float64, generator=generator)
    for rotation in rotations():
        rotated = eq.cartesian_to_spherical(rotation @ tensor @ rotation.T, 2)
        original = eq.cartesian_to_spherical(tensor, 2)
        for (lam, sigma), value in original.items():
            expected = eq.wigner_d(lam, rotation[None])[0] @ value
            assert torch.allclose(rotated[(lam, sigma)], expected, atol=1e-12)
    # round trip and norm conservation
    parts = eq.cartesian_to_spherical(tensor, 2)
    assert torch.allclose(eq.spherical_to_cartesian(parts, 2), tensor, atol=1e-14)
    assert sum(float(v.square().sum()) for v in parts.values()) == pytest.approx(
        float(tensor.square().sum())
    )


def test_vector_order_and_round_trip(generator):
    vectors = torch.randn(5, 3, dtype=torch.float64, generator=generator)
    parts = eq.cartesian_to_spherical(vectors, 1)
    assert torch.equal(parts[(1, 1)][:, 0], vectors[:, 1])  # mu = -1 is y
    rotation = rotations(1)[0]
    rotated = eq.cartesian_to_spherical(vectors @ rotation.T, 1)[(1, 1)]
    assert torch.allclose(rotated, parts[(1, 1)] @ eq.wigner_d(1, rotation[None])[0].T)
    assert torch.equal(eq.spherical_to_cartesian(parts, 1), vectors)
    assert torch.equal(
        eq.spherical_to_cartesian(eq.cartesian_to_spherical(vectors[:, 0], 0), 0),
        vectors[:, 0],
    )


def stress_tensormap(values):
    xyz = [Labels(f"xyz_{i}", torch.arange(3, dtype=torch.int32)[:, None]) for i in (1, 2)]
    block = TensorBlock(
        values=values[..., None],
        samples=Labels("system", torch.arange(values.shape[0], dtype=torch.int32)[:, None]),
        components=xyz,
        properties=Labels("stress", torch.zeros(1, 1, dtype=torch.int32)),
    )
    return TensorMap(Labels("_", torch.zeros(1, 1, dtype=torch.int32)), [block])


def test_tensormap_conversion_matches_metatomic(generator):
    values = torch.randn(4, 3, 3, dtype=torch.float64, generator=generator)
    tensor = stress_tensormap(values)
    ours = eq.tensormap_to_spherical(tensor)
    theirs = decompose_quantity("non_conservative_stress", tensor)
    assert ours.keys.names == ["o3_lambda", "o3_sigma"]
    for key, block in ours.items():
        reference = theirs.block(
            {"o3_lambda": int(key["o3_lambda"]), "o3_sigma": int(key["o3_sigma"])}
        )
        assert torch.allclose(block.values, reference.values, atol=1e-14)
    back = eq.tensormap_to_cartesian(ours, 2)
    assert torch.allclose(back.block().values, tensor.block().values, atol=1e-14)


def test_bad_shapes():
    with pytest.raises(ValueError, match="last dimension of 3"):
        eq.cartesian_to_spherical(torch.zeros(4, 2), 1)
    with pytest.raises(ValueError, match=r"last dimensions \(3, 3\)"):
        eq.cartesian_to_spherical(torch.zeros(4, 3), 2)
    with pytest.raises(ValueError, match="rank must be"):
        eq.cartesian_to_spherical(torch.zeros(4, 3), 3)
