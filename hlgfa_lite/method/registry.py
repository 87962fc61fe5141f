"""Named, interchangeable pieces of one step (normal models, yardsticks, measures, image scores).

The module that implements a step owns its registry and registers each piece where it is
defined; the config's validation and the error messages read the registry, so a new piece is
one registration, never a second list to keep in step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(dict[str, T], Generic[T]):
    """``name -> piece`` in registration order; :meth:`pick` turns an unknown name into a clear error."""

    def __init__(self, what: str):
        super().__init__()
        self.what = what

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: add the decorated piece under ``name`` (a name is registered once)."""

        def add(piece: T) -> T:
            if name in self:
                raise ValueError(f"{self.what} {name!r} is registered twice")
            self[name] = piece
            return piece

        return add

    def choices(self) -> str:
        return ", ".join(self)

    def pick(self, name: str) -> T:
        """The piece called ``name``; a ValueError listing the choices otherwise."""
        if name not in self:
            raise ValueError(f"unknown {self.what} {name!r}; choose from {self.choices()}")
        return self[name]
