"""Real Wigner D matrices of O(3) in metatomic's component order.

``D^lambda(R)`` acts on real spherical harmonics ordered ``mu = -lambda .. lambda``
(for lambda = 1 that is ``(y, z, x)``), the convention of metatensor and
metatomic. The matrices come from e3nn's vectorised ``Irrep.D_from_matrix``; e3nn's
real basis is the standard one evaluated at permuted coordinates,
``Y_e3nn(r) = Y(P r)`` with ``P: (x, y, z) -> (z, x, y)``, so
``D(R) = D_e3nn(P^T R P)``. Tests check this against metatomic's own (scalar,
per-matrix) implementation.

For an improper element ``M`` (``det M = -1``) of O(3) the irrep ``(lambda, sigma)``
gives ``rho(M) = sigma (-1)^lambda D^lambda(-M)``.
"""

from __future__ import annotations

import functools

import torch

__all__ = ["irrep_matrices", "wigner_d", "wigner_generators"]

# (x, y, z) -> (z, x, y): the coordinate permutation between e3nn and metatomic
_PERMUTATION = torch.tensor(
    [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64
)


@functools.lru_cache(maxsize=64)
def _e3nn_generators(lam: int) -> torch.Tensor:
    """e3nn's real generators ``[3, 2 lam + 1, 2 lam + 1]`` (about its x, y, z), float64."""
    from e3nn.o3 import so3_generators

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # e3nn builds its generators in it
    try:
        return so3_generators(lam).to(torch.float64)
    finally:
        torch.set_default_dtype(previous)


@functools.lru_cache(maxsize=64)
def _spectral_factors(lam: int):
    """Diagonalise e3nn's generators once: ``X_k = V_k diag(i m) V_k^H``.

    e3nn writes ``D = exp(a X_1) exp(b X_0) exp(c X_1)``; with the fixed matrix
    ``M = V_1^H V_0`` this is ``V_1 diag(e^{i a m}) M diag(e^{i b m}) M^H
    diag(e^{i c m}) V_1^H``: two small products per element instead of three
    matrix exponentials.
    """
    generators = _e3nn_generators(lam)
    m = torch.arange(-lam, lam + 1, dtype=torch.float64)
    bases = []
    for k in (1, 0):
        values, vectors = torch.linalg.eigh(1j * generators[k].to(torch.complex128))
        # eigenvalues of i X are -m, ascending: match them to m explicitly
        order = torch.argsort(-values.real)
        vectors = vectors[:, order]
        if not torch.allclose(-values.real[order], m, atol=1e-9):
            raise RuntimeError(f"unexpected spectrum of the lambda={lam} generators")
        bases.append(vectors)
    v1, v0 = bases
    return v1, v1.conj().T @ v0, m


def wigner_d(lam: int, rotations: torch.Tensor) -> torch.Tensor:
    """Real Wigner D matrices ``[n, 2 lam + 1, 2 lam + 1]`` of proper rotations.

    :param lam: angular momentum ``lambda >= 0``
    :param rotations: ``[n, 3, 3]`` proper rotation matrices
    """
    if lam < 0:
        raise ValueError(f"lambda must be non-negative, got {lam}")
    rotations = rotations.to(torch.float64)
    if lam == 0:
        return torch.ones(rotations.shape[0], 1, 1, dtype=torch.float64)
    from e3nn.o3 import matrix_to_angles

    p = _PERMUTATION
    alpha, beta, gamma = matrix_to_angles(p.T @ rotations @ p)
    v1, mix, m = _spectral_factors(lam)
    phase = lambda angle: torch.exp(1j * angle[:, None] * m)  # noqa: E731
    inner = (mix * phase(beta)[:, None, :]) @ mix.conj().T
    inner = phase(alpha)[:, :, None] * inner * phase(gamma)[:, None, :]
    return (v1 @ inner @ v1.conj().T).real


def wigner_generators(lam: int) -> torch.Tensor:
    """Real generators ``G_a`` (``[3, 2 lam + 1, 2 lam + 1]``, antisymmetric) of
    ``D^lambda``: ``D(exp(theta K_a)) = exp(theta G_a)`` for the rotation about axis
    ``a`` (``K_a v = e_a x v``). They form a vector operator,
    ``D(R) (w . G) D(R)^T = (R w) . G``, so ``(w . G) t`` couples a vector ``w`` and a
    lambda block ``t`` into a lambda block of the opposite parity (the angular momentum
    ``w . (r x grad)`` acting on ``Y_lambda``). e3nn's generators about ``(x, y, z)`` of its
    permuted frame are ours about ``(y, z, x)``."""
    if lam < 0:
        raise ValueError(f"lambda must be non-negative, got {lam}")
    return _e3nn_generators(lam)[[2, 0, 1]].clone()


def irrep_matrices(lam: int, sigma: int, elements: torch.Tensor) -> torch.Tensor:
    """Matrices ``rho_(lam, sigma)(g)`` for O(3) elements ``g`` (``[n, 3, 3]``).

    ``sigma = 0`` means "parity not resolved": only valid on proper rotations.
    """
    elements = elements.to(torch.float64)
    det = torch.linalg.det(elements)
    improper = det < 0
    if sigma == 0 and bool(improper.any()):
        raise ValueError("sigma=0 (parity not resolved) needs proper rotations only")
    proper = torch.where(improper[:, None, None], -elements, elements)
    d = wigner_d(lam, proper)
    if sigma == 0:
        return d
    parity = sigma * (-1) ** lam
    sign = torch.where(improper, float(parity), 1.0).to(torch.float64)
    return d * sign[:, None, None]
