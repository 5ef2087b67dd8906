"""Generate boosted top and QCD jets with Pythia 8 and FastJet, at particle level.

The recipe of the top-tagging landscape data set (Kasieczka et al., SciPost Phys. 7 (2019)
014), without the detector simulation:

* pp collisions at sqrt(s) = 14 TeV, hard-process pT in [500, 700] GeV, no multiparton
  interactions;
* signal ``gg, qqbar -> t tbar`` with both W forced to quarks (W -> q q', q in d, u, s, c, b),
  so t -> b q q'; background ``HardQCD:all`` (2 -> 2 QCD);
* anti-kT jets of radius R = 0.8 (E-scheme) on the visible final-state particles
  (neutrinos left out);
* jets with 550 < pT < 650 GeV and |eta| < 2; a top jet must contain a top, its b and the
  two quarks of its W within Delta R = sqrt(Delta y^2 + Delta phi^2) < 0.8 of the jet axis;
* per jet, the 200 hardest constituents by pT (zero-padded), their PID and charge, and
  the 4-vector of the whole jet (all constituents).

Jets are made in chunks of ``chunk_size``; chunk k runs its own Pythia seeded from
``(seed, process, k)``, so the output depends on ``(process, n, seed, chunk_size)`` and not
on how many worker processes share the chunks.
"""

from __future__ import annotations

import importlib.metadata
import multiprocessing
import queue as queue_module
from collections.abc import Callable

import numpy as np

from ._quiet import quiet_stdout
from .data import JetData

__all__ = [
    "CHUNK_SIZE",
    "ETA_MAX",
    "JET_RADIUS",
    "N_CONSTITUENTS",
    "PROCESSES",
    "PT_RANGE",
    "chunk_seed",
    "generate_jets",
    "pythia_settings",
]

PROCESSES = ("top", "qcd")
N_CONSTITUENTS = 200
JET_RADIUS = 0.8
PT_RANGE = (550.0, 650.0)
ETA_MAX = 2.0
CHUNK_SIZE = 250
# a chunk gives up after this many Pythia events per requested jet (efficiency is ~0.3-1)
_MAX_EVENTS_PER_JET = 200

_COMMON_SETTINGS = (
    "Beams:eCM = 14000.",
    "PhaseSpace:pTHatMin = 500.",
    "PhaseSpace:pTHatMax = 700.",
    "PartonLevel:MPI = off",
    "Print:quiet = on",
    "Print:errors = off",
    "Next:numberCount = 0",
)
_PROCESS_SETTINGS = {
    "top": (
        "Top:gg2ttbar = on",
        "Top:qqbar2ttbar = on",
        "24:onMode = off",
        "24:onIfAny = 1 2 3 4 5",
    ),
    "qcd": ("HardQCD:all = on",),
}


def pythia_settings(process: str, pythia_seed: int) -> list[str]:
    """The Pythia ``readString`` lines for ``process`` ("top" or "qcd")."""
    _check_process(process)
    return [
        *_COMMON_SETTINGS,
        *_PROCESS_SETTINGS[process],
        "Random:setSeed = on",
        f"Random:seed = {pythia_seed}",
    ]


def chunk_seed(seed: int, process: str, chunk: int) -> int:
    """Pythia seed (1 .. 900,000,000) of chunk ``chunk``, from numpy's ``SeedSequence``
    of ``(seed, process, chunk)``: independent streams for every chunk and process."""
    state = np.random.SeedSequence([seed, PROCESSES.index(process), chunk]).generate_state(1)
    return int(state[0] % 900_000_000) + 1


def generate_jets(
    process: str,
    n: int,
    *,
    seed: int = 0,
    workers: int = 1,
    chunk_size: int = CHUNK_SIZE,
    progress: bool = True,
) -> JetData:
    """Generate ``n`` jets of ``process`` ("top": label 1, "qcd": label 0) on ``workers``
    processes, with a progress bar over jets on stderr when ``progress``."""
    from tqdm.auto import tqdm

    _check_process(process)
    for name, value, minimum in (
        ("n", n, 1),
        ("workers", workers, 1),
        ("chunk_size", chunk_size, 1),
    ):
        if value < minimum:
            raise ValueError(f"{name} must be at least {minimum}, got {value}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    tasks = [
        (process, min(chunk_size, n - start), chunk_seed(seed, process, k))
        for k, start in enumerate(range(0, n, chunk_size))
    ]
    workers = min(workers, len(tasks))
    with tqdm(total=n, unit="jet", desc=f"{process} jets", disable=not progress) as bar:
        if workers == 1:
            chunks = [_generate_chunk(*task, progress=bar.update) for task in tasks]
        else:
            chunks = _generate_in_pool(tasks, workers, bar)
        bar.update(n - bar.n)
    arrays = {key: np.concatenate([chunk[key] for chunk in chunks]) for key in chunks[0]}
    events = int(arrays.pop("events").sum())
    return JetData(
        momenta=arrays["momenta"],
        label=np.full(n, 1 if process == "top" else 0, dtype=np.int64),
        jet=arrays["jet"],
        pid=arrays["pid"],
        charge=arrays["charge"],
        truth=arrays["truth"],
        metadata={
            "process": process,
            "seed": seed,
            "n": n,
            "chunk_size": chunk_size,
            "events": events,
            "pythia_version": importlib.metadata.version("pythia8mc"),
            "fastjet_version": importlib.metadata.version("fastjet"),
            "settings": "\n".join(pythia_settings(process, 0)[:-1]),
            "selection": f"anti-kT R={JET_RADIUS}, {PT_RANGE[0]:g} < pT < {PT_RANGE[1]:g} GeV, "
            f"|eta| < {ETA_MAX:g}, {N_CONSTITUENTS} constituents",
        },
    )


def _check_process(process: str) -> None:
    if process not in PROCESSES:
        raise ValueError(f"unknown process {process!r}: expected one of {', '.join(PROCESSES)}")


# ---------------------------------------------------------------- worker processes

_progress_queue = None


def _init_worker(progress_queue) -> None:
    global _progress_queue
    _progress_queue = progress_queue


def _worker_chunk(task: tuple[str, int, int]) -> dict[str, np.ndarray]:
    return _generate_chunk(*task, progress=_progress_queue.put)


def _generate_in_pool(tasks, workers: int, bar) -> list[dict[str, np.ndarray]]:
    """Chunks on a pool of fresh ("spawn") processes; results kept in chunk order."""
    context = multiprocessing.get_context("spawn")
    progress_queue = context.Queue()
    with context.Pool(workers, initializer=_init_worker, initargs=(progress_queue,)) as pool:
        pending = pool.map_async(_worker_chunk, tasks, chunksize=1)
        while not pending.ready():
            try:
                bar.update(progress_queue.get(timeout=0.2))
            except queue_module.Empty:
                pass
        return pending.get()


# ---------------------------------------------------------------- one chunk


def _generate_chunk(
    process: str, count: int, pythia_seed: int, progress: Callable[[int], object] | None = None
) -> dict[str, np.ndarray]:
    """``count`` jets from one Pythia instance seeded with ``pythia_seed``."""
    import fastjet
    import pythia8mc

    out = {
        "momenta": np.zeros((count, N_CONSTITUENTS, 4), dtype=np.float32),
        "pid": np.zeros((count, N_CONSTITUENTS), dtype=np.int32),
        "charge": np.zeros((count, N_CONSTITUENTS), dtype=np.int8),
        "jet": np.zeros((count, 4), dtype=np.float64),
        "truth": np.zeros((count, 4), dtype=np.float64),
    }
    with quiet_stdout():
        pythia = pythia8mc.Pythia("", False)
        for line in pythia_settings(process, pythia_seed):
            if not pythia.readString(line):
                raise RuntimeError(f"Pythia rejected the setting {line!r}")
        if not pythia.init():
            raise RuntimeError(f"Pythia failed to initialise for {process}")
        definition = fastjet.JetDefinition(fastjet.antikt_algorithm, JET_RADIUS)
        made = events = 0
        while made < count:
            if events >= _MAX_EVENTS_PER_JET * count:
                raise RuntimeError(f"{process}: {events} events gave only {made} jets")
            events += 1
            if not pythia.next():
                continue
            for jet in _event_jets(pythia.event, process, definition, fastjet):
                for key, value in jet.items():
                    out[key][made] = value
                made += 1
                if progress is not None:
                    progress(1)
                if made == count:
                    break
    out["events"] = np.array([events])
    return out


def _event_jets(event, process: str, definition, fastjet) -> list[dict[str, np.ndarray]]:
    """The jets of one event that pass the selection (and, for tops, the matching)."""
    momenta, pid, charge, tops = [], [], [], []
    for particle in event:
        if particle.isFinal():
            if particle.isVisible():
                momenta.append((particle.e(), particle.px(), particle.py(), particle.pz()))
                pid.append(particle.id())
                charge.append(particle.charge())
        elif process == "top" and particle.idAbs() == 6:
            partons = _top_partons(event, particle, fastjet)
            if partons is not None:
                tops.append(partons)
    momenta = np.asarray(momenta, dtype=np.float64)
    inputs = []
    for k, (e, px, py, pz) in enumerate(momenta.tolist()):
        pseudojet = fastjet.PseudoJet(px, py, pz, e)
        pseudojet.set_user_index(k)
        inputs.append(pseudojet)
    sequence = fastjet.ClusterSequence(inputs, definition)
    selected = []
    for jet in fastjet.sorted_by_pt(sequence.inclusive_jets(PT_RANGE[0])):
        if not (PT_RANGE[0] < jet.pt() < PT_RANGE[1] and abs(jet.eta()) < ETA_MAX):
            continue
        truth = np.zeros(4)
        if process == "top":
            matched = [
                partons[0]
                for partons in tops
                if all(jet.delta_R(parton) < JET_RADIUS for parton in partons)
            ]
            if not matched:
                continue
            top = matched[0]
            truth = np.array([top.e(), top.px(), top.py(), top.pz()])
        index = np.array([c.user_index() for c in jet.constituents()])
        p = momenta[index]
        order = np.argsort(-np.hypot(p[:, 1], p[:, 2]), kind="stable")[:N_CONSTITUENTS]
        keep = index[order]
        padded = np.zeros((N_CONSTITUENTS, 4), dtype=np.float32)
        padded[: len(keep)] = momenta[keep]
        ids = np.zeros(N_CONSTITUENTS, dtype=np.int32)
        ids[: len(keep)] = np.asarray(pid)[keep]
        charges = np.zeros(N_CONSTITUENTS, dtype=np.int8)
        charges[: len(keep)] = np.rint(np.asarray(charge)[keep])
        selected.append(
            {
                "momenta": padded,
                "pid": ids,
                "charge": charges,
                "jet": np.array([jet.e(), jet.px(), jet.py(), jet.pz()]),
                "truth": truth,
            }
        )
    return selected


def _top_partons(event, particle, fastjet):
    """(top, b, q, q') as PseudoJets for the last copy of a top that decays to b W with
    W -> q q'; ``None`` for other copies or decays."""
    if particle.iBotCopyId() != particle.index():
        return None
    daughters = [event[i] for i in particle.daughterList()]
    b = [d for d in daughters if d.idAbs() == 5]
    w = [d for d in daughters if d.idAbs() == 24]
    if len(b) != 1 or len(w) != 1:
        return None
    w_last = event[w[0].iBotCopyId()]
    quarks = [event[i] for i in w_last.daughterList() if 1 <= event[i].idAbs() <= 5]
    if len(quarks) != 2:
        return None
    return [fastjet.PseudoJet(q.px(), q.py(), q.pz(), q.e()) for q in (particle, b[0], *quarks)]
