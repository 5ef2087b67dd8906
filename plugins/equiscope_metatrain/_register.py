"""Make ``metatrain.experimental.equiscope`` importable without touching metatrain's files.

A meta-path finder, installed at interpreter start (``equiscope_metatrain.pth``):

- ``metatrain.experimental.equiscope[.sub]`` resolves to the *same module objects* as
  ``equiscope_metatrain.architecture[.sub]`` (aliases, not copies: classes stay identical);
- when ``metatrain.utils.io`` loads, its ``find_all_architectures`` (the list that
  checkpoint loading checks names against) is extended with ``experimental.equiscope``.

Nothing else is imported until metatrain asks for these modules.
"""

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys

ALIAS = "metatrain.experimental.equiscope"
TARGET = "equiscope_metatrain.architecture"
NAME = "experimental.equiscope"
_PATCHED_MODULE = "metatrain.utils.io"


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str):
        self.target = target

    def create_module(self, spec):
        return importlib.import_module(self.target)

    def exec_module(self, module):
        pass  # already executed under its own name


def _extend_architecture_list(module) -> None:
    """``module.find_all_architectures()`` also lists ``experimental.equiscope``."""
    original = module.find_all_architectures
    if getattr(original, "__equiscope__", False):
        return

    def find_all_architectures():
        names = list(original())
        return names if NAME in names else [*names, NAME]

    find_all_architectures.__equiscope__ = True
    find_all_architectures.__wrapped__ = original
    module.find_all_architectures = find_all_architectures


class _PatchingLoader(importlib.abc.Loader):
    """Runs the real loader, then extends ``find_all_architectures``."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        _extend_architecture_list(module)


class EquiscopeFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname == ALIAS or fullname.startswith(ALIAS + "."):
            real = TARGET + fullname[len(ALIAS) :]
            real_spec = importlib.util.find_spec(real)
            if real_spec is None:
                return None
            return importlib.machinery.ModuleSpec(
                fullname,
                _AliasLoader(real),
                origin=real_spec.origin,
                is_package=real_spec.submodule_search_locations is not None,
            )
        if fullname == _PATCHED_MODULE:
            spec = importlib.machinery.PathFinder.find_spec(fullname, path)
            if spec is not None and spec.loader is not None:
                spec.loader = _PatchingLoader(spec.loader)
            return spec
        return None


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (idempotent)."""
    if not any(isinstance(finder, EquiscopeFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, EquiscopeFinder())
    if _PATCHED_MODULE in sys.modules:  # metatrain was imported first: patch in place
        _extend_architecture_list(sys.modules[_PATCHED_MODULE])
