"""Silence C/C++ libraries (Pythia, FastJet's banner) that print to file descriptor 1."""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys

__all__ = ["quiet_stdout"]


def _flush() -> None:
    stream = getattr(sys, "stdout", None)
    if stream is not None:
        stream.flush()
    ctypes.CDLL(None).fflush(None)  # C stdio buffers, where std::cout ends up


@contextlib.contextmanager
def quiet_stdout():
    """Point file descriptor 1 at /dev/null for the block (stderr, where progress bars
    write, is untouched)."""
    _flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        _flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)
