"""Bad input to the ASE-calculator audit: one-line errors naming the problem."""

import sys

import ase
import ase.io
import pytest
import torch
from ase.calculators.emt import EMT

from equiscope_ase.audit import (
    CalculatorAdapter,
    DataError,
    FactoryError,
    load_factory,
    parse_outputs,
    read_atoms,
)

FACTORIES = """
from ase.calculators.emt import EMT

def emt():
    return EMT()

def number():
    return 3

def broken():
    raise KeyError("no such model")

class Holder:
    @staticmethod
    def emt():
        return EMT()

value = 4
"""


@pytest.fixture
def factories(tmp_path, monkeypatch):
    (tmp_path / "my_factories.py").write_text(FACTORIES)
    (tmp_path / "broken_module.py").write_text("import not_a_module_anywhere\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    yield
    for name in ("my_factories", "broken_module"):
        sys.modules.pop(name, None)


def test_factory_from_the_current_directory(factories):
    assert isinstance(load_factory("my_factories:emt"), EMT)
    assert isinstance(load_factory("my_factories:Holder.emt"), EMT)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("my_factories", "is not MODULE:FACTORY"),
        (":emt", "is not MODULE:FACTORY"),
        ("no_such_module_xyz:emt", "module 'no_such_module_xyz' could not be imported "),
        (
            "broken_module:emt",
            "(ModuleNotFoundError: No module named 'not_a_module_anywhere')",
        ),
        ("my_factories:missing", "module 'my_factories' has no attribute 'missing'"),
        ("my_factories:value", "'value' is a int, not callable"),
        ("my_factories:number", "number() returned a int, not an ASE calculator"),
        ("my_factories:broken", "calling broken() raised KeyError: 'no such model'"),
    ],
)
def test_bad_factories(factories, spec, message):
    with pytest.raises(FactoryError) as error:
        load_factory(spec)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_parse_outputs():
    assert parse_outputs(None) == (None, {})
    assert parse_outputs("dipole:vector, charges:scalar") == (
        None,
        {"dipole": "vector", "charges": "scalar"},
    )
    assert parse_outputs("energy,axial:pseudovector") == (
        ["energy", "axial"],
        {"axial": "pseudovector"},
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("dipole:vectr", "unknown irrep 'vectr' for 'dipole'; expected one of scalar,"),
        ("dipole", "'dipole' needs an irrep, NAME:IRREP"),
        ("energy:scalar", "'energy' is built in"),
        ("energy,,forces", "has an empty entry"),
        (":vector", "has no output name"),
        ("forces,forces", "names 'forces' twice"),
    ],
)
def test_bad_outputs(text, message):
    with pytest.raises(ValueError) as error:
        parse_outputs(text)
    assert message in str(error.value)


def test_adapter_options():
    with pytest.raises(TypeError, match="expected an ASE calculator"):
        CalculatorAdapter(object())
    with pytest.raises(ValueError, match="unknown model dtype 'float8'"):
        CalculatorAdapter(EMT(), model_dtype="float8")
    with pytest.raises(ValueError, match="unknown irrep 'tensor' for output 'dipole'"):
        CalculatorAdapter(EMT(), declared={"dipole": "tensor"})
    assert CalculatorAdapter(EMT()).dtype == torch.float64
    assert CalculatorAdapter(EMT(), model_dtype=torch.float32).dtype == torch.float32
    assert CalculatorAdapter(EMT()).unit("forces") == "eV/Å"


def test_bad_data_files(tmp_path):
    cases = {
        tmp_path / "missing.xyz": "data file {} does not exist",
        tmp_path: "data file {} is a directory",
    }
    (tmp_path / "empty.xyz").write_text("")
    (tmp_path / "garbage.xyz").write_text("this is not\nan xyz file\n")
    cases[tmp_path / "empty.xyz"] = "data file {} holds no structures"
    cases[tmp_path / "garbage.xyz"] = "data file {} could not be read by ASE ("
    for path, message in cases.items():
        with pytest.raises(DataError) as error:
            read_atoms(path)
        assert message.format(path) in str(error.value)
        assert "\n" not in str(error.value)
    with pytest.raises(DataError, match="structure limit must be a positive integer"):
        read_atoms(tmp_path / "empty.xyz", limit=0)


def test_reader_streams_up_to_the_limit(tmp_path, monkeypatch):
    frames = [ase.Atoms("Cu", positions=[[0.0, 0.0, float(i)]]) for i in range(5)]
    ase.io.write(str(tmp_path / "five.xyz"), frames)
    read = []
    original = ase.io.iread

    def counting(*args, **kwargs):
        for atoms in original(*args, **kwargs):
            read.append(atoms)
            yield atoms

    monkeypatch.setattr(ase.io, "iread", counting)
    samples = read_atoms(tmp_path / "five.xyz", limit=2)
    assert [s.index for s in samples] == [0, 1]
    assert len(read) == 2  # nothing after the limit is read
    assert [s.atoms.positions[0, 2] for s in samples] == [0.0, 1.0]
