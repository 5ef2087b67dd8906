"""``experimental.equiscope``'s model: PET with the minimal inductive biases as options.

- the base (PET) is built from ``hypers["base"]["model"]`` over PET's defaults;
- ``covariant_readout_bias: false`` removes the bias of the last layers of every
  lambda >= 1 (and pseudoscalar) block: a constant there is a constant vector/tensor in
  the lab frame, which adds |b|^2 to A^2 for every structure;
- ``edge_embedding: solid_harmonics`` swaps PET's ``Linear(4, d)`` edge embedding for
  :class:`~equiscope_metatrain.edge_embedding.SolidHarmonicEdgeEmbedding`;
- ``tensor_basis_readout``: proper blocks up to ``tensor_basis_max_lambda`` read out as
  invariant-looking coefficients times spherical harmonics of the edge directions, the
  direct stress on (r r^T, 1), and (``tensor_basis_cross_products``) pseudotensors
  (beyond lambda = 2 with ``tensor_basis_higher_pseudotensors``) and general rank-2
  tensors on two edge directions (:mod:`equiscope_metatrain.tensor_basis`);
- ``symmetrized_head``: the model's own forward averages over a grid (or takes a
  random frame) with equiscope's head logic (:class:`equiscope_atoms.heads.OrbitAveraging`),
  in training, validation and in the exported model alike: training runs through the
  average (cost x grid size), and the exported model carries the head.
"""

import copy
from typing import Any, Dict, List, Optional

import torch
from metatensor.torch import Labels, TensorMap
from metatomic.torch import ModelOutput, System
from metatrain.pet import PET
from metatrain.pet.documentation import ModelHypers as PETModelHypers
from metatrain.utils.abc import ModelInterface  # noqa: F401 - the contract PET fulfils
from metatrain.utils.architectures import get_default_hypers
from metatrain.utils.data import DatasetInfo, TargetInfo
from metatrain.utils.hypers import raise_if_hypers_mismatch

import equiscope as eq
from equiscope_atoms.heads import OrbitAveraging

from .._torchscript import renamed
from ..edge_embedding import SolidHarmonicEdgeEmbedding, SphericalHarmonics
from ..tensor_basis import (
    CROSS_CHANNELS,
    PSEUDO_HIGHER,
    SPHERICAL,
    TensorBasisBackend,
    basis_kind,
    basis_size,
)

NAME = "experimental.equiscope"


def base_model_hypers(hypers: Dict[str, Any]) -> Dict[str, Any]:
    """PET's model hypers: its defaults updated with ``hypers["base"]["model"]``,
    checked against PET's schema (errors name the key under ``base.model``)."""
    from pydantic import TypeAdapter, ValidationError

    merged = copy.deepcopy(get_default_hypers("pet")["model"])
    unknown = sorted(set(hypers["base"]["model"]) - set(PETModelHypers.__annotations__))
    if unknown:
        raise ValueError(
            f"architecture.model.base.model.{unknown[0]}: not a hyperparameter of "
            f"{hypers['base']['name']} (known: {', '.join(sorted(merged))})"
        )
    for key, value in hypers["base"]["model"].items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    try:
        TypeAdapter(PETModelHypers).validate_python(merged, strict=False)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ValueError(
            f"architecture.model.base.model.{where}: {first['msg']} (got {first.get('input')!r})"
        ) from None
    return merged


def _is_covariant(block_key: str, shape) -> bool:
    """A block whose components hold more than one entry (vector, tensor, lambda >= 1),
    or a pseudoscalar: a constant there is not invariant."""
    size = 1
    for n in shape[:-1]:
        size *= n
    return size > 1 or "o3_sigma_-1" in block_key


def head_grid(head: Dict[str, Any]) -> Optional[eq.Grid]:
    """The grid of a ``symmetrized_head`` hypers block (``None`` for random frames)."""
    if head["mode"] == "random":
        return None
    if head["mode"] == "none":
        return eq.Grid.identity()
    return eq.grid(head["grid"], degree=head["degree"], inversion=head["inversion"])


class EquiscopeModel(OrbitAveraging, PET):
    """PET with symmetry options (see the module docstring)."""

    # 2: tensor_basis_readout; 3: lambda = 2 on the basis; 4: lambda >= 3 and cross products;
    # 5: pseudotensors with lambda >= 3
    __checkpoint_version__ = 5
    # TorchScript has no super(): PET's forward, under another name
    _raw_forward = renamed(PET.forward, "_raw_forward")

    def __init__(self, hypers: Dict[str, Any], dataset_info: DatasetInfo) -> None:
        # read by the overridden _add_output while PET.__init__ runs
        self.covariant_readout_bias = bool(hypers["covariant_readout_bias"])
        self.tensor_basis_readout = bool(hypers.get("tensor_basis_readout", False))
        self.tensor_basis_max_lambda = int(hypers.get("tensor_basis_max_lambda", 6))
        self.tensor_basis_cross_products = bool(hypers.get("tensor_basis_cross_products", True))
        self.tensor_basis_higher_pseudotensors = bool(
            hypers.get("tensor_basis_higher_pseudotensors", True)
        )
        super().__init__(base_model_hypers(hypers), dataset_info)
        self.base_hypers = self.hypers
        self.hypers = hypers
        embedding = hypers["edge_embedding"]
        if embedding["kind"] == "solid_harmonics":
            for layer in self.backend.gnn_layers:
                d_model = layer.edge_embedder.out_features
                layer.edge_embedder = SolidHarmonicEdgeEmbedding(embedding["lmax"], d_model)
        head = hypers["symmetrized_head"]
        self.head_mode = head["mode"]
        self._setup_head(
            head_grid(head),
            mode="average" if head["mode"] == "none" else head["mode"],
            seed=head["seed"],
            inversion=head["inversion"],
            max_lambda=head["max_lambda"],
            dtype=torch.float64,
            # all copies in one call: training backpropagates through the average
            # (and through forces, a double backward), which chunks cannot give
            atoms_per_call=0,
        )

    def _evaluate(
        self,
        systems: List[System],
        outputs: Dict[str, ModelOutput],
        selected_atoms: Optional[Labels],
    ) -> Dict[str, TensorMap]:
        return self._raw_forward(systems, outputs, selected_atoms)

    def forward(
        self,
        systems: List[System],
        outputs: Dict[str, ModelOutput],
        selected_atoms: Optional[Labels] = None,
    ) -> Dict[str, TensorMap]:
        if self.head_mode == "none":
            return self._raw_forward(systems, outputs, selected_atoms)
        return self._symmetrized(systems, outputs, selected_atoms)

    def _add_output(self, target_name: str, target_info: TargetInfo) -> None:
        super()._add_output(target_name, target_info)
        basis_blocks = self._add_tensor_basis(target_name, target_info)
        if self.covariant_readout_bias:
            return
        shapes = self.output_shapes[target_name]
        for layers in (self.backend.node_last_layers, self.backend.edge_last_layers):
            for per_key in layers[target_name]:
                for key, shape in shapes.items():
                    old = per_key[key]
                    if key in basis_blocks:  # a bias on an invariant coefficient is harmless
                        continue
                    if _is_covariant(key, shape) and old.bias is not None:
                        new = torch.nn.Linear(old.in_features, old.out_features, bias=False)
                        new.weight = old.weight
                        per_key[key] = new

    def _add_tensor_basis(self, target_name: str, target_info: TargetInfo) -> List[str]:
        """With ``tensor_basis_readout``, read the blocks
        :func:`~equiscope_metatrain.tensor_basis.basis_kind` accepts out on their edge
        basis: their last layers predict ``basis_size(kind)`` coefficients per property.
        Returns the block keys it took over."""
        if not self.tensor_basis_readout:
            return []
        backend = self.backend
        if not isinstance(backend, TensorBasisBackend):
            backend.__class__ = TensorBasisBackend
            backend.tensor_basis_blocks = {}
            backend.tensor_basis_lambdas = {}
            backend.tensor_basis_channels = CROSS_CHANNELS
            backend.tensor_basis_harmonics = SphericalHarmonics(2, condon_shortley=False)
            # lambda = 2 components of a row-major 3 x 3 tensor (a constant, not saved)
            rank_2 = torch.eye(9, dtype=torch.float64).reshape(9, 3, 3)
            projection = eq.cartesian_to_spherical(rank_2, rank=2)[(2, 1)].T.contiguous()
            backend.register_buffer("tensor_basis_lambda_2", projection, persistent=False)
            # generators of D^lambda up to max_lambda, over |L| = sqrt(lambda (lambda + 1))
            # so that the output does not grow with lambda; zero-padded (a constant, not
            # saved)
            top = self.tensor_basis_max_lambda
            generators = torch.zeros(top + 1, 3, 2 * top + 1, 2 * top + 1, dtype=torch.float64)
            for o3_lambda in range(1, top + 1):
                size = 2 * o3_lambda + 1
                norm = (o3_lambda * (o3_lambda + 1)) ** 0.5
                generators[o3_lambda, :, :size, :size] = eq.wigner_generators(o3_lambda) / norm
            backend.register_buffer("tensor_basis_generators", generators, persistent=False)
        taken: List[str] = []
        for key, block in target_info.layout.items():
            values = {name: int(value) for name, value in zip(key.names, key.values, strict=True)}
            dict_key = target_name + "".join(f"_{name}_{value}" for name, value in values.items())
            components = [c.names[0] for c in block.components]
            symmetric = target_name == "non_conservative_stress"  # PET symmetrises it
            kind = basis_kind(
                components,
                values,
                self.tensor_basis_max_lambda,
                symmetric,
                self.tensor_basis_cross_products,
                self.tensor_basis_higher_pseudotensors,
            )
            if kind < 0:
                continue
            n_coefficients = basis_size(kind) * len(block.properties)
            for layers in (backend.node_last_layers, backend.edge_last_layers):
                for per_key in layers[target_name]:
                    features = per_key[dict_key].in_features
                    per_key[dict_key] = torch.nn.Linear(features, n_coefficients)
            name = target_name + "/" + dict_key
            backend.tensor_basis_blocks[name] = kind
            if kind in (SPHERICAL, PSEUDO_HIGHER):
                o3_lambda = values["o3_lambda"]
                backend.tensor_basis_lambdas[name] = o3_lambda
                if o3_lambda > backend.tensor_basis_harmonics.lmax:
                    backend.tensor_basis_harmonics = SphericalHarmonics(
                        o3_lambda, condon_shortley=False
                    )
            taken.append(dict_key)
        return taken

    def restart(
        self, dataset_info: DatasetInfo, model_hypers: Optional[Dict[str, Any]] = None
    ) -> "EquiscopeModel":
        if model_hypers is not None:
            raise_if_hypers_mismatch(
                self.hypers, model_hypers, default_hypers=get_default_hypers(NAME)["model"]
            )
        return super().restart(dataset_info, None)

    def get_checkpoint(self) -> Dict:
        checkpoint = super().get_checkpoint()
        checkpoint["architecture_name"] = NAME
        checkpoint["model_ckpt_version"] = self.__checkpoint_version__
        checkpoint["base_ckpt_version"] = PET.__checkpoint_version__
        return checkpoint

    @classmethod
    def upgrade_checkpoint(cls, checkpoint: Dict) -> Dict:
        if checkpoint["model_ckpt_version"] == 1:  # before tensor_basis_readout
            checkpoint["model_data"]["model_hypers"]["tensor_basis_readout"] = False
            checkpoint["model_ckpt_version"] = 2
        if checkpoint["model_ckpt_version"] == 2:  # lambda = 2 blocks kept PET's readout
            checkpoint["model_data"]["model_hypers"]["tensor_basis_max_lambda"] = 1
            checkpoint["model_ckpt_version"] = 3
        if checkpoint["model_ckpt_version"] == 3:  # pseudotensors kept PET's readout
            checkpoint["model_data"]["model_hypers"]["tensor_basis_cross_products"] = False
            checkpoint["model_ckpt_version"] = 4
        if checkpoint["model_ckpt_version"] == 4:  # pseudotensors lambda >= 3: PET's readout
            checkpoint["model_data"]["model_hypers"]["tensor_basis_higher_pseudotensors"] = False
            checkpoint["model_ckpt_version"] = 5
        if checkpoint["model_ckpt_version"] != cls.__checkpoint_version__:
            raise RuntimeError(
                "Unable to upgrade the checkpoint: the checkpoint is using model version "
                f"{checkpoint['model_ckpt_version']}, while the current model version is "
                f"{cls.__checkpoint_version__}."
            )
        if checkpoint.get("base_ckpt_version", PET.__checkpoint_version__) != (
            PET.__checkpoint_version__
        ):
            raise RuntimeError(
                f"this {NAME} checkpoint was written with PET checkpoint version "
                f"{checkpoint['base_ckpt_version']}, this metatrain has "
                f"{PET.__checkpoint_version__}"
            )
        return checkpoint
