"""Write ``copper.xyz`` (64 rattled, strained 8-atom fcc Cu cells with EMT energies,
forces and stress) next to this file, for ``mtt train options.yaml``."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
from pathlib import Path

from equiscope_atoms.demo import generate_copper

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("-n", type=int, default=64, help="number of structures")
parser.add_argument("-o", "--output", default=str(Path(__file__).with_name("copper.xyz")))
args = parser.parse_args()
print(f"wrote {generate_copper(Path(args.output), args.n, seed=0)}")
