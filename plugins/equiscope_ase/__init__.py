"""ASE integration: a calculator running a metatomic model behind a symmetrised head."""

from .calculator import EquiscopeCalculator

__all__ = ["EquiscopeCalculator"]
