"""Rotation error of the tensor-basis readout in float32, with the cross-product
channels formed in float32 (as first written) and in float64 (as shipped), side by side.

A tiny ``experimental.equiscope`` PET with the tensor-basis readout on an invariant
trunk (solid-harmonic edges, lmax = 0), one spherical block per model (lambda = 2,
sigma = +1 and -1, summed over atoms), the first QM9 molecule metatrain ships, one
random rotation per seed (metatomic's Wigner D, as metatrain's rotation test):
max |y(R x) - D(R) y(x)|, and the largest |y|.

Run: OMP_NUM_THREADS=1 python benchmarks/tensor_basis_float32.py [--seeds 5]
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import copy
import platform
from pathlib import Path

import metatrain
import torch
from ase.io import read
from metatomic.torch import systems_to_torch
from metatomic.torch.o3 import O3Transformations
from metatrain.utils.architectures import get_default_hypers
from metatrain.utils.data import DatasetInfo
from metatrain.utils.data.target_info import get_generic_target_info
from metatrain.utils.neighbor_lists import get_system_with_neighbor_lists
from scipy.spatial.transform import Rotation

import equiscope_metatrain.tensor_basis as tensor_basis
from equiscope_metatrain.architecture import EquiscopeModel

QM9 = Path(metatrain.__file__).parent / "llpr" / "tests" / "qm9_reduced_100.xyz"
TINY = {"d_pet": 4, "d_head": 4, "d_node": 4, "d_feedforward": 4, "num_heads": 1}
TINY.update(num_attention_layers=1, num_gnn_layers=1)


def model_for(o3_sigma: int, seed: int) -> EquiscopeModel:
    hypers = copy.deepcopy(get_default_hypers("experimental.equiscope")["model"])
    hypers["base"]["model"] = dict(TINY)
    hypers.update(tensor_basis_readout=True, edge_embedding={"kind": "solid_harmonics", "lmax": 0})
    options = {"quantity": "", "unit": "", "sample_kind": "system", "num_subtargets": 1}
    options["type"] = {"spherical": {"irreps": [{"o3_lambda": 2, "o3_sigma": o3_sigma}]}}
    target = get_generic_target_info("y", options)
    info = DatasetInfo(length_unit="angstrom", atomic_types=[1, 6, 7, 8, 9], targets={"y": target})
    torch.manual_seed(seed)
    return EquiscopeModel(hypers, info).eval()


def rotation_error(model: EquiscopeModel, seed: int) -> tuple[float, float]:
    matrix = torch.tensor(Rotation.random(random_state=seed).as_matrix(), dtype=torch.float32)
    transformation = O3Transformations(matrix[None], 2)
    system = systems_to_torch(read(str(QM9)), dtype=torch.float32)
    rotated = transformation.transform_systems([system])[0]
    requests = model.requested_neighbor_lists()
    values = []
    for s in (system, rotated):
        with_lists = get_system_with_neighbor_lists(s, requests)
        values.append(model([with_lists], {"y": model.outputs["y"]})["y"].block().values)
    original, moved = (v.detach()[0, :, 0] for v in values)
    expected = transformation.wigner_D_matrices(2)[0] @ original
    return float((moved - expected).abs().max()), float(original.abs().max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    precise = tensor_basis._precise_channels
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, float32")
    print(f"{'block':<16}{'channels':>9}  max rotation error per seed (largest |y|)")
    for o3_sigma in (1, -1):
        kinds = [("float32", tensor_basis._channels), ("float64", precise)]
        if o3_sigma == 1:
            kinds = [("none", precise)]  # proper blocks use no cross products
        for name, channels in kinds:
            tensor_basis._precise_channels = channels  # eager model: looked up per call
            errors = [rotation_error(model_for(o3_sigma, seed), seed) for seed in range(args.seeds)]
            row = "  ".join(f"{e:.1e} ({v:.2f})" for e, v in errors)
            print(f"lambda 2 sigma {o3_sigma:+d}{name:>9}  {row}")
    tensor_basis._precise_channels = precise


if __name__ == "__main__":
    main()
