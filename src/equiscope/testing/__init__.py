"""Testing helpers: :func:`assert_equivariant`, one call for a model's test suite."""

from ._equivariant import assert_equivariant

__all__ = ["assert_equivariant"]
