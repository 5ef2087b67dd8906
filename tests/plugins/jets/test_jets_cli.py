"""`equiscope jets generate`: the parser, a small run, and one-line errors (BadInput)."""

import argparse

import numpy as np
import pytest

from equiscope.cli import BadInput
from equiscope_jets import load_jets
from equiscope_jets.cli import add_parser, run


def _parse(argv):
    parser = argparse.ArgumentParser(prog="equiscope")
    add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def _generate(*options):
    return _parse(["jets", "generate", *options])


def test_generate_writes_a_loadable_file(tmp_path, capsys):
    output = tmp_path / "qcd.npz"
    args = _generate("--process", "qcd", "--n", "4", "-o", str(output), "--seed", "9")
    assert args.handler is run
    assert run(args) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"wrote {output}: 4 qcd jets from ") and "jets/s per worker" in out
    assert "4/4" in err  # the progress bar, on stderr
    assert "FastJet release" not in out and "PYTHIA" not in out  # banners silenced
    data = load_jets(output)
    assert len(data) == 4 and data.metadata["seed"] == 9 and not data.label.any()
    quiet = tmp_path / "again.npz"
    run(_generate("--process", "qcd", "--n", "4", "-o", str(quiet), "--seed", "9", "--no-progress"))
    assert "jet/s" not in capsys.readouterr().err
    np.testing.assert_array_equal(load_jets(quiet).momenta, data.momenta)


def test_help_describes_every_option(capsys):
    with pytest.raises(SystemExit):
        _parse(["jets", "generate", "--help"])
    text = capsys.readouterr().out
    for option in ("--process", "--n", "--output", "--seed", "--workers", "--chunk-size"):
        assert option in text


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--n", "0"], "--n must be at least 1, got 0"),
        (["--n", "2", "--workers", "0"], "--workers must be at least 1, got 0"),
        (["--n", "2", "--seed", "-3"], "--seed must be at least 0, got -3"),
        (["--n", "2", "--chunk-size", "0"], "--chunk-size must be at least 1"),
        (["--n", "2", "-o", "jets.h5"], "-o jets.h5: jets are written as an .npz file"),
    ],
)
def test_bad_input_is_one_line(options, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["--process", "top", "-o", "jets.npz", *options]
    with pytest.raises(BadInput, match=message):
        run(_generate(*argv))
    assert not (tmp_path / "jets.npz").exists()


def test_output_folder_and_missing_action(tmp_path):
    (tmp_path / "out.npz").mkdir()
    with pytest.raises(BadInput, match="is a folder"):
        run(_generate("--process", "top", "--n", "1", "-o", str(tmp_path / "out.npz")))
    with pytest.raises(BadInput, match="choose an action: generate"):
        run(_parse(["jets"]))


def test_unknown_process_is_rejected_by_the_parser(capsys):
    with pytest.raises(SystemExit) as info:
        _generate("--process", "higgs", "--n", "1", "-o", "x.npz")
    assert info.value.code == 2
    assert "invalid choice: 'higgs'" in capsys.readouterr().err


def test_main_dispatches_jets_and_errors_exit_2(tmp_path, capsys):
    from equiscope.cli import main

    output = tmp_path / "top.npz"
    assert main(["jets", "generate", "--process", "top", "--n", "2", "-o", str(output)]) == 0
    assert load_jets(output).label.all()
    assert main(["jets", "generate", "--process", "top", "--n", "0", "-o", str(output)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "equiscope jets: error: --n must be at least 1, got 0"


def test_atomistic_only_audit_options_refuse_jet_taggers_in_one_line(tmp_path, capsys, monkeypatch):
    from equiscope.cli import main
    from equiscope_jets import build_tagger, save_checkpoint

    model = save_checkpoint(
        build_tagger("invariant", {"width": 8, "depth": 1, "heads": 2}), tmp_path / "tagger.pt"
    )
    monkeypatch.setenv("WORLD_SIZE", "2")  # what torchrun sets for two processes
    code = main(["audit", str(model), str(tmp_path / "jets.npz"), "-o", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"equiscope audit: error: {model}: jet audits run in one process; "
        "torchrun shards atomistic audits only"
    ]
    assert not (tmp_path / "out").exists()
    monkeypatch.delenv("WORLD_SIZE")
    for option in ("--labels", "--totals"):
        arguments = ["audit", str(model), "jets.npz", "-o", str(tmp_path / "out"), option, "x=y"]
        assert main(arguments) == 2
        assert capsys.readouterr().err.strip() == (
            f"equiscope audit: error: {option}: for atomistic models; {model} is a jet tagger"
        )
    assert not (tmp_path / "out").exists()
