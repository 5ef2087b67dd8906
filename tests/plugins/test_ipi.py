"""A symmetrised head in a second MD engine: NVT steps in i-PI through its metatomic
driver give the energies metatomic-ase gives on the same frames."""

import subprocess
import sys
import sysconfig
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import ase.build
import ase.io
import numpy as np
import pytest
from ipi.scripting import read_output
from ipi.utils.units import unit_to_internal, unit_to_user
from metatomic.torch import load_atomistic_model

import equiscope as eq
from _models import EmbeddedAtoms, export
from equiscope_atoms.heads import symmetrize_model

STEPS = 4
TIMESTEP_FS = 2.0
TEMPERATURE_K = 300.0

INPUT = """<simulation verbosity="low" floatformat="%.16e" sockets_prefix="SOCKETS/">
  <output prefix="md">
    <properties stride="1" filename="out">
      [ step, time{{femtosecond}}, potential{{electronvolt}}, kinetic_md{{electronvolt}},
        conserved{{electronvolt}}, ensemble_temperature{{kelvin}} ]
    </properties>
    <trajectory filename="pos" stride="1" format="ase"> positions </trajectory>
    <trajectory filename="frc" stride="1" format="ase"> forces </trajectory>
  </output>
  <total_steps> {steps} </total_steps>
  <total_time> 300 </total_time>
  <prng><seed> 31415 </seed></prng>
  <ffsocket name="equiscope" mode="unix">
    <address> equiscope </address>
    <latency> 1e-3 </latency>
    <timeout> 120 </timeout>
  </ffsocket>
  <system>
    <initialize nbeads="1">
      <file mode="ase"> init.xyz </file>
      <velocities mode="thermal" units="kelvin"> {temperature} </velocities>
    </initialize>
    <forces><force forcefield="equiscope"/></forces>
    <ensemble><temperature units="kelvin"> {temperature} </temperature></ensemble>
    <motion mode="dynamics">
      <dynamics mode="nvt">
        <timestep units="femtosecond"> {timestep} </timestep>
        <thermostat mode="svr"><tau units="femtosecond"> 20 </tau></thermostat>
      </dynamics>
    </motion>
  </system>
</simulation>
"""


def _script(name: str) -> str:
    """Path of an i-PI command-line script installed beside this interpreter."""
    return str(Path(sysconfig.get_path("scripts")) / name)


def _stop(process: subprocess.Popen) -> None:
    """Terminate ``process`` if it still runs, then kill it if it does not stop."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait(server: subprocess.Popen, driver: subprocess.Popen, folder: Path, seconds: float):
    """Wait until both processes end; fail early (with its log) if the driver dies
    while i-PI still waits for it, or if the run takes more than ``seconds``."""
    deadline = time.monotonic() + seconds
    while server.poll() is None or driver.poll() is None:
        if driver.poll() not in (None, 0) and server.poll() is None:
            pytest.fail(f"the i-PI driver failed:\n{(folder / 'driver.log').read_text()}")
        if time.monotonic() > deadline:
            pytest.fail(f"i-PI did not finish in {seconds} s")
        time.sleep(0.1)


def run_ipi(folder: Path) -> None:
    """Run ``folder/input.xml`` in i-PI with the metatomic driver on ``head.pt``, over
    a UNIX socket in a fresh directory; both processes end before this returns."""
    # a short socket path (UNIX socket names are limited to ~100 characters)
    with tempfile.TemporaryDirectory(prefix="ipi-") as sockets:
        text = (folder / "input.xml").read_text().replace("SOCKETS/", f"{sockets}/")
        (folder / "input.xml").write_text(text)
        with (
            open(folder / "server.log", "w") as server_log,
            open(folder / "driver.log", "w") as driver_log,
        ):
            server = subprocess.Popen(
                [sys.executable, _script("i-pi"), "input.xml"],
                cwd=folder,
                stdout=server_log,
                stderr=subprocess.STDOUT,
            )
            driver = None
            try:
                deadline = time.monotonic() + 60
                while not (Path(sockets) / "equiscope").exists():
                    if server.poll() is not None:
                        pytest.fail(f"i-PI stopped:\n{(folder / 'server.log').read_text()}")
                    if time.monotonic() > deadline:
                        pytest.fail("i-PI opened no socket in 60 s")
                    time.sleep(0.1)
                driver = subprocess.Popen(
                    [
                        sys.executable,
                        _script("i-pi-py_driver"),
                        "--unix",
                        "--address=equiscope",
                        f"--sockets_prefix={sockets}/",
                        "--mode=metatomic",
                        "--param=template=init.xyz,model=head.pt",
                    ],
                    cwd=folder,
                    stdout=driver_log,
                    stderr=subprocess.STDOUT,
                )
                _wait(server, driver, folder, seconds=300)
            finally:
                for process in (driver, server):
                    if process is not None:
                        _stop(process)
    assert server.returncode == 0, (folder / "server.log").read_text()
    assert driver.returncode == 0, (folder / "driver.log").read_text()


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """Export an octahedral (O(3), 48 elements) average head of an anisotropic
    many-body model, run it in i-PI for a few NVT steps and return the run folder."""
    folder = tmp_path_factory.mktemp("ipi")
    # fcc shells at 2.55 and 3.61 A, rattled by 0.05 A: no pair comes near the hard
    # cutoff at 3.1 A in a few steps, so the energy is smooth along the run
    raw = export(EmbeddedAtoms(anisotropy=0.5, cutoff=3.1), folder / "raw.pt")
    head = symmetrize_model(
        load_atomistic_model(str(raw)),
        mode="average",
        grid=eq.grid("octahedral", inversion=True),
    )
    head.save(str(folder / "head.pt"))
    atoms = ase.build.bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 1))  # 16 atoms
    atoms.rattle(0.05, seed=1)
    ase.io.write(str(folder / "init.xyz"), atoms, format="extxyz")
    (folder / "input.xml").write_text(
        INPUT.format(steps=STEPS, temperature=TEMPERATURE_K, timestep=TIMESTEP_FS)
    )
    run_ipi(folder)
    return folder


def _ase_frames(run: Path, name: str) -> list:
    return ase.io.read(str(run / f"md.{name}_0.extxyz"), ":")


@pytest.mark.slow
def test_ipi_did_the_nvt_steps(run):
    properties, _ = read_output(str(run / "md.out"))
    assert properties["step"].tolist() == list(range(STEPS + 1))
    np.testing.assert_allclose(properties["time"], TIMESTEP_FS * np.arange(STEPS + 1))
    assert len(_ase_frames(run, "pos")) == STEPS + 1
    # the motion i-PI ran (its final checkpoint) is NVT with the SVR thermostat
    dynamics = ElementTree.parse(run / "RESTART").find("./system/motion/dynamics")
    assert dynamics.get("mode") == "nvt"
    assert dynamics.find("thermostat").get("mode") == "svr"
    np.testing.assert_array_equal(properties["ensemble_temperature"], TEMPERATURE_K)
    # the thermostat exchanges energy: potential + kinetic moves by tenths of an eV,
    # while the conserved quantity (which adds the thermostat's account) stays put
    total = properties["potential"] + properties["kinetic_md"]
    assert np.ptp(total) > 1e-2
    assert np.ptp(properties["conserved"]) < 1e-3 * np.ptp(total)


@pytest.mark.slow
def test_ipi_energies_and_forces_are_those_of_ase(run):
    from metatomic_ase import MetatomicCalculator

    properties, _ = read_output(str(run / "md.out"))
    positions, forces = _ase_frames(run, "pos"), _ase_frames(run, "frc")
    head = MetatomicCalculator(str(run / "head.pt"))
    raw = MetatomicCalculator(str(run / "raw.pt"))
    # i-PI works in atomic units; the driver turns bohr into i-PI's angstrom, which is
    # 1.4e-8 (relative) away from the ASE angstrom of the "ase" trajectory files: map
    # the frames to the lengths the model saw (and the forces to i-PI's eV/angstrom)
    length = unit_to_user("length", "angstrom", unit_to_internal("length", "ase", 1.0))
    force = unit_to_user("force", "ev/ang", unit_to_internal("force", "ase", 1.0))
    assert abs(length - 1.0) > 1e-9  # the correction is not a no-op
    for frame, frame_forces, energy in zip(positions, forces, properties["potential"], strict=True):
        frame.set_cell(frame.cell.array * length, scale_atoms=True)
        frame.calc = head
        expected, expected_forces = frame.get_potential_energy(), frame.get_forces()
        # the trajectory prints positions to 1e-8 angstrom (rounding <= 5e-9), so the
        # energy can move by at most 5e-9 * sum|F| (+ float64 round-off); the potential
        # itself is printed with 17 digits
        bound = 5e-9 * np.abs(expected_forces).sum() + 1e-13 * abs(expected)
        assert abs(energy - expected) <= bound
        # forces printed to 1e-8 eV/angstrom (rounding <= 5e-9); the position rounding
        # moves them by less than 5e-9 angstrom times a curvature of order 1 eV/A^2
        np.testing.assert_allclose(frame_forces.get_forces() * force, expected_forces, atol=1.5e-8)
        # and the engine ran the head, not the raw model it wraps
        assert abs(raw.get_potential_energy(frame) - energy) > 1e-4
