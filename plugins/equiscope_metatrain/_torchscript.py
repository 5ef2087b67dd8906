"""TorchScript has no ``super()``: an overriding method calls the parent's under a new
name, copied with :func:`renamed`."""

import functools
import types

__all__ = ["renamed"]


def renamed(function, name: str):
    """A copy of ``function`` called ``name`` (TorchScript compiles a method it meets
    under its ``__name__``; PET's ``forward`` must not clash with ours)."""
    copied = types.FunctionType(
        function.__code__, function.__globals__, name, function.__defaults__, function.__closure__
    )
    functools.update_wrapper(copied, function)
    copied.__name__ = name
    copied.__qualname__ = function.__qualname__.rsplit(".", 1)[0] + "." + name
    del copied.__wrapped__  # TorchScript must read the copy, not follow it back
    return copied
