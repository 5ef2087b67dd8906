"""ASE integration: symmetrised calculators and audits of any ASE calculator.

``EquiscopeCalculator`` averages (or randomises) any ASE calculator, or a metatomic
model behind a symmetrised head; ``audit_calculator`` audits any ASE calculator with
the core engine. Neither imports metatensor or metatomic unless given a metatomic
model, so they work whatever was imported before them.
"""

from .audit import CalculatorAdapter, audit_calculator
from .calculator import EquiscopeCalculator

__all__ = ["CalculatorAdapter", "EquiscopeCalculator", "audit_calculator"]
