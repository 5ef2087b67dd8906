"""
equiscope
=========

An unconstrained architecture (PET) trained with its rotational symmetry under control:
per-epoch symmetry monitoring, the minimal inductive biases of the equiscope paper (no
bias on covariant readouts, a solid-harmonic edge embedding) and a symmetrised output
head applied at export.

.. code-block:: yaml

    architecture:
      name: experimental.equiscope
      model:
        base:
          name: pet
          model: {d_pet: 32, num_gnn_layers: 2}   # PET's own hypers
        edge_embedding: {kind: solid_harmonics, lmax: 4}
        symmetrized_head: {mode: average, grid: octahedral}
      training:
        num_epochs: 10                            # PET's trainer hypers, same names
        monitor: {interval: 1, structures: 4, grid: octahedral}

Training hypers are PET's (same names and defaults) plus ``monitor``.
"""

from typing import Literal

from metatrain.pet.documentation import TrainerHypers as PETTrainerHypers
from metatrain.utils.hypers import init_with_defaults
from pydantic import Field
from typing_extensions import Annotated, TypedDict


class BaseHypers(TypedDict):
    """The wrapped unconstrained architecture."""

    name: Literal["pet"] = "pet"
    """Name of the base architecture (only ``pet`` for now)."""
    model: dict = {}  # noqa: RUF012 - metatrain reads defaults from class attributes
    """The base's model hypers; keys left out take the base's defaults. Checked with
    the base's own hyperparameter schema."""


class EdgeEmbeddingHypers(TypedDict):
    """How edge vectors enter the trunk."""

    kind: Literal["linear", "solid_harmonics"] = "linear"
    """``linear``: PET's own Linear layer on (dx, dy, dz, r), angular content lambda <= 1
    only; ``solid_harmonics``: real spherical harmonics Y_lm(r_ij / r_ij) for l <= lmax
    and r, then a Linear layer, so the trunk sees lambda <= lmax directly."""
    lmax: Annotated[int, Field(ge=0)] = 2
    """Largest l of the solid-harmonic embedding (ignored for ``linear``)."""


class SymmetrizedHeadHypers(TypedDict):
    """Symmetrised head: part of the model's forward (training, validation and the
    exported model alike)."""

    mode: Literal["none", "average", "random"] = "none"
    """``none``: the raw model; ``average``: every output averaged over ``grid``
    (exact in the sectors the grid removes; training costs x grid size);
    ``random``: one seeded Haar-random O(3) frame per call (for MD)."""
    grid: Literal["tetrahedral", "octahedral", "icosahedral", "lebedev"] = "octahedral"
    """Grid of ``average``: finite groups T (12), O (24), I (60) or a Lebedev product
    grid of ``degree``."""
    degree: Annotated[int, Field(ge=1)] = 5
    """Degree of the Lebedev grid."""
    inversion: bool = True
    """Average over O(3) (with inversion) instead of SO(3)."""
    seed: int = 0
    """Seed of the random frames."""
    max_lambda: Annotated[int, Field(ge=0)] = 3
    """Largest lambda of spherical targets the head back-rotates."""


class ModelHypers(TypedDict):
    """Model hypers of ``experimental.equiscope``."""

    base: BaseHypers = init_with_defaults(BaseHypers)
    """The wrapped unconstrained architecture and its hypers."""
    covariant_readout_bias: bool = False
    """Keep the bias of the last linear layers of lambda >= 1 (vector, tensor,
    spherical lambda >= 1) targets. Off by default: a bias b there adds |b|^2 to A^2
    for every structure, as a constant vector in the lab frame."""
    edge_embedding: EdgeEmbeddingHypers = init_with_defaults(EdgeEmbeddingHypers)
    """Edge embedding of every GNN layer."""
    tensor_basis_readout: bool = False
    """Read equivariant targets out on a basis built from the edge directions, with
    scalar coefficients from the trunk: proper blocks (Cartesian ``xyz`` vectors,
    spherical ``o3_sigma = 1``, ``1 <= o3_lambda <= tensor_basis_max_lambda``) as
    ``sum_j f_c(r_ij) c_ij Y_lambda(r_ij / r_ij)``, the direct stress
    ``non_conservative_stress`` on ``(r_hat r_hat^T, 1)``. Exactly equivariant when the
    coefficients are invariant; otherwise its error is theirs. Other blocks keep PET's
    readout."""
    tensor_basis_max_lambda: Annotated[int, Field(ge=1, le=6)] = 6
    """Largest lambda read out on the edge basis; rank-2 Cartesian targets count as 2
    (1: lambda = 2 blocks and the direct stress keep PET's readout, as in checkpoints
    before version 3)."""
    tensor_basis_cross_products: bool = True
    """Also read out, on cross products of two edge directions ``r_hat_ij x r_hat_ik``
    (rank-4 coefficient matrices, so the cost stays that of an edge sum), the blocks one
    edge cannot give: pseudoscalars, pseudovectors and ``o3_lambda = 2`` pseudotensors
    (``o3_sigma = -1``), and general (non-symmetric) Cartesian rank-2 targets such as
    Born effective charges. Checkpoints before version 4 are upgraded with ``false``."""
    tensor_basis_higher_pseudotensors: bool = True
    """With ``tensor_basis_cross_products``, also read pseudotensors with ``o3_lambda >=
    3`` (up to ``tensor_basis_max_lambda``) out on two edge directions, as ``sum_c (u_c .
    G) t_c``: a vector channel ``u_c`` coupled by the generators ``G`` of ``D^lambda`` to
    a harmonic channel ``t_c = sum_j f_c b_ij Y_lambda(r_hat_ij)``. Checkpoints before
    version 5 are upgraded with ``false``."""
    symmetrized_head: SymmetrizedHeadHypers = init_with_defaults(SymmetrizedHeadHypers)
    """Symmetrised head applied at export."""


class MonitorHypers(TypedDict):
    """Symmetry monitoring during training."""

    enabled: bool = True
    """Measure symmetry during training."""
    interval: Annotated[int, Field(ge=1)] = 5
    """Every how many epochs (and at the last one)."""
    structures: Annotated[int, Field(ge=1)] = 4
    """How many validation structures (the first ones)."""
    grid: Literal["tetrahedral", "octahedral", "icosahedral", "lebedev"] = "octahedral"
    """Grid of the measurement (O: 24 rotations, x2 with ``inversion``)."""
    degree: Annotated[int, Field(ge=1)] = 5
    """Degree of a Lebedev grid."""
    inversion: bool = True
    """Include improper rotations (O(3))."""
    layers: bool = True
    """Also record the per-layer character spectra of node and edge features."""


class EquivarianceFinetuningHypers(TypedDict):
    """Extra epochs after training that minimise A^2, without labels."""

    epochs: Annotated[int, Field(ge=0)] = 0
    """Number of extra epochs (0: off)."""
    learning_rate: Annotated[float, Field(gt=0)] = 1.0e-4
    """Adam learning rate of the extra epochs."""
    grid: Literal["tetrahedral", "octahedral", "icosahedral"] = "octahedral"
    """Grid (with inversion) on which A^2 is computed and minimised."""
    batch_size: Annotated[int, Field(ge=1)] = 4
    """Structures per step."""


class TrainerHypers(PETTrainerHypers):
    """PET's trainer hypers (same names, same defaults), ``monitor`` and
    ``equivariance_finetuning``."""

    monitor: MonitorHypers = init_with_defaults(MonitorHypers)
    """Equivariance RMSE of every target and per-layer spectra on a validation subset,
    written to the log, to ``symmetry_monitor.csv`` next to the checkpoints, and
    plotted to ``symmetry_monitor.png`` at the end of training."""
    equivariance_finetuning: EquivarianceFinetuningHypers = init_with_defaults(
        EquivarianceFinetuningHypers
    )
    """Optional extra epochs minimising A^2 of every target on the training structures
    (no labels); the fine-tuned weights become the best model that is exported."""


# TypedDict subclasses do not inherit class attributes: copy PET's defaults
for _name in PETTrainerHypers.__annotations__:
    if hasattr(PETTrainerHypers, _name) and not hasattr(TrainerHypers, _name):
        setattr(TrainerHypers, _name, getattr(PETTrainerHypers, _name))
