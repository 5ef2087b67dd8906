"""Solid-harmonic edge embedding: the angular band-limit of the input made explicit.

PET embeds each edge by a Linear layer on (dx, dy, dz, r): the direction enters with
angular momentum l <= 1 only, and higher l must be synthesised by nonlinearities, slowly
("angular starvation"). This embedding feeds the real spherical harmonics Y_lm(r_hat),
l = 0..lmax, and r to the same Linear layer instead.

TorchScript-compatible; no ``from __future__ import annotations`` here.
"""

import torch

from equiscope.groups.harmonics import SphericalHarmonics

__all__ = ["SolidHarmonicEdgeEmbedding", "SphericalHarmonics"]


class SolidHarmonicEdgeEmbedding(torch.nn.Module):
    """Drop-in for PET's ``edge_embedder`` (``Linear(4, d)`` on (dx, dy, dz, r)):
    ``Linear((lmax+1)^2 + 1, d)`` on (Y_lm(r_hat), r)."""

    def __init__(self, lmax: int, d_model: int):
        super().__init__()
        self.harmonics = SphericalHarmonics(lmax)
        self.linear = torch.nn.Linear((lmax + 1) ** 2 + 1, d_model)

    def forward(self, edges: torch.Tensor) -> torch.Tensor:
        vectors, distances = edges[..., :3], edges[..., 3:4]
        safe = torch.where(distances > 0, distances, torch.ones_like(distances))
        harmonics = self.harmonics(vectors / safe)
        # padded edges (r = 0) get zero harmonics, like PET's zero vectors
        harmonics = torch.where(distances > 0, harmonics, torch.zeros_like(harmonics))
        return self.linear(torch.cat([harmonics, distances], dim=-1))
