"""Atomistic adapter: metatomic systems and models on equiscope grids.

Turns a structure into its group orbit (positions and cell transformed, neighbour
lists rebuilt) and a metatomic model into responses on that orbit, so the
group-generic metrics of :mod:`equiscope` apply.
"""

from .orbit import OrbitResponses, orbit_responses, transformed_system
from .pet import tiny_pet

__all__ = ["OrbitResponses", "orbit_responses", "tiny_pet", "transformed_system"]
