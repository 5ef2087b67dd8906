"""How ``model-v3_tensor_basis.pt.gz`` and ``model-v4_tensor_basis.pt.gz`` were made: a
tiny tensor-basis model written by the code of checkpoint version 3 (commit a2657dd) or
4 (commit 98d0729), with its outputs on one molecule.

    git worktree add /tmp/old a2657dd    # or 98d0729
    cd /tmp/old/tests/plugins/metatrain
    PYTHONPATH=/tmp/old/src:/tmp/old/plugins:/tmp/old/tests:. \\
        python <this file> model-v3_tensor_basis.pt.gz    # or model-v4_...
"""

import gzip
import io
import sys

import metatomic.torch  # noqa: F401 - registers the TorchScript classes
import test_architecture as T
import torch
from metatomic.torch import ModelOutput
from metatrain.utils.neighbor_lists import get_system_with_neighbor_lists

from _models import molecule
from equiscope_metatrain.architecture import EquiscopeModel

irreps = [{"o3_lambda": lam, "o3_sigma": s} for lam in range(4) for s in (1, -1)]
info = T.vector_dataset_info()
spherical = {"spherical": {"irreps": irreps}}
info.targets["mtt::tensor"] = T.target_info("mtt::tensor", spherical, subtargets=2)
rank_2 = {"cartesian": {"rank": 2}}
info.targets["mtt::born_charges"] = T.target_info("mtt::born_charges", rank_2, subtargets=2)
tiny = {"d_pet": 4, "d_head": 4, "d_node": 4, "d_feedforward": 4, "num_heads": 1}
tiny.update(num_attention_layers=1, num_gnn_layers=1)
hypers = T.options(base={"name": "pet", "model": tiny}, tensor_basis_readout=True)["model"]
torch.manual_seed(0)
model = EquiscopeModel(hypers, info).to(torch.float64).eval()
print(model.__checkpoint_version__, dict(model.backend.tensor_basis_blocks))
requests = model.requested_neighbor_lists()
system = get_system_with_neighbor_lists(molecule(torch.Generator().manual_seed(4)), requests)
names = list(info.targets)
out = model([system], {n: ModelOutput(sample_kind="atom") for n in names})
outputs = {n: {str(k.values.tolist()): b.values.detach() for k, b in out[n].items()} for n in names}
buffer = io.BytesIO()
torch.save({"checkpoint": model.get_checkpoint(), "outputs": outputs}, buffer)
with gzip.open(sys.argv[1], "wb") as handle:
    handle.write(buffer.getvalue())
