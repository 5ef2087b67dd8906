"""Large data files: frames are streamed, --structures N stops reading, --sample random."""

import subprocess
import sys

import pytest

from _models import write_copper
from equiscope.cli import BadInput, parse_batch_size, parse_memory
from equiscope_ase.audit import DataError as AseDataError
from equiscope_ase.audit import read_atoms
from equiscope_atoms import DataError, read_structures


def with_corrupt_tail(path, n):
    """``n`` good frames, then one ASE cannot parse."""
    write_copper(path, n)
    with open(path, "a") as handle:
        handle.write('3\nLattice="1 0 0 0 1 0 0 0 1" Properties=species:S:1:pos:R:3\nCu 0 0\n')
    return path


@pytest.mark.parametrize("reader", [read_structures, read_atoms], ids=["metatomic", "ase"])
def test_the_first_n_frames_are_read_and_nothing_after(tmp_path, reader):
    path = with_corrupt_tail(tmp_path / "data.xyz", 4)
    assert [s.index for s in reader(path, limit=4)] == [0, 1, 2, 3]
    error = DataError if reader is read_structures else AseDataError
    with pytest.raises(error, match="could not be read by ASE"):
        reader(path)


@pytest.mark.parametrize("reader", [read_structures, read_atoms], ids=["metatomic", "ase"])
def test_a_random_sample_is_seeded_and_differs_from_the_first(tmp_path, reader):
    path = write_copper(tmp_path / "data.xyz", 12, labels=False)
    first = [s.index for s in reader(path, limit=4)]
    drawn = [s.index for s in reader(path, limit=4, sample="random", seed=3)]
    again = [s.index for s in reader(path, limit=4, sample="random", seed=3)]
    other = [s.index for s in reader(path, limit=4, sample="random", seed=4)]
    assert first == [0, 1, 2, 3]
    assert drawn == again and drawn != first and drawn != other
    assert len(set(drawn)) == 4 and drawn == sorted(drawn)


def test_sampled_structures_are_the_frames_they_name(tmp_path):
    import ase.io
    import numpy as np

    path = write_copper(tmp_path / "data.xyz", 6, labels=False)
    frames = ase.io.read(str(path), index=":")
    for structure in read_structures(path, limit=2, sample="random", seed=0):
        expected = frames[structure.index].positions
        assert np.allclose(structure.system.positions.numpy(), expected)


def test_an_unknown_sampling_is_refused(tmp_path):
    path = write_copper(tmp_path / "data.xyz", 2, labels=False)
    with pytest.raises(DataError, match="unknown sampling 'last'; expected one of first, random"):
        read_structures(path, limit=1, sample="last")
    with pytest.raises(AseDataError, match="unknown sampling 'last'"):
        read_atoms(path, limit=1, sample="last")


def test_memory_sizes_parse():
    assert parse_memory("4GB") == 4 * 10**9
    assert parse_memory("512MB") == 512 * 10**6
    assert parse_memory("1.5GiB") == 3 * 2**29
    assert parse_memory("2048") == 2048
    assert parse_memory(None) is None
    for bad in ("lots", "4 parsecs", "-1GB", "0"):
        with pytest.raises(BadInput, match="--max-memory"):
            parse_memory(bad)


def test_batch_sizes_parse():
    assert parse_batch_size("auto") is None
    assert parse_batch_size("16") == 16
    with pytest.raises(BadInput, match="--batch-size: expected auto or a number, got 'many'"):
        parse_batch_size("many")
    with pytest.raises(BadInput, match="--batch-size must be at least 1, got 0"):
        parse_batch_size("0")


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--max-memory", "lots"], "--max-memory: expected a size such as 4GB or 512MB"),
        (["--batch-size", "many"], "--batch-size: expected auto or a number, got 'many'"),
    ],
)
def test_bad_options_fail_in_one_line(tmp_path, option, message):
    from _models import EmbeddedAtoms, export

    model = export(EmbeddedAtoms(), tmp_path / "model.pt")
    data = write_copper(tmp_path / "data.xyz", 1)
    result = subprocess.run(
        [sys.executable, "-m", "equiscope.cli", "audit", str(model), str(data), *option],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "equiscope-audit").exists()
