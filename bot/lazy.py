"""`built_once`: a property computed on first use, once per object, even when several threads ask at once.

`functools.cached_property` is not enough for the process's shared parts: since Python 3.12 it takes no
lock at all (two first questions at once would load a model or open a pool twice), and before that its
one lock per class made unrelated objects wait for each other. A build that fails is not cached: the next
caller tries again (a database that was down at start is opened when it is back).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar, overload

T = TypeVar("T")

_LOCKS = "_built_once_locks"


class built_once(Generic[T]):
    def __init__(self, build: Callable[[Any], T]) -> None:
        self.build = build
        self.name = build.__name__
        self.__doc__ = build.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> built_once[T]: ...
    @overload
    def __get__(self, obj: object, owner: type | None = None) -> T: ...

    def __get__(self, obj: object | None, owner: type | None = None) -> T | built_once[T]:
        if obj is None:
            return self
        values = obj.__dict__
        if self.name in values:  # built (or set by hand, e.g. a test's shared model): no lock needed
            return values[self.name]  # type: ignore[no-any-return]
        # dict.setdefault is atomic: every thread gets the same lock for this object and name.
        lock = values.setdefault(_LOCKS, {}).setdefault(self.name, threading.Lock())
        with lock:
            if self.name not in values:
                values[self.name] = self.build(obj)
        return values[self.name]  # type: ignore[no-any-return]

    def __set__(self, obj: object, value: T) -> None:
        obj.__dict__[self.name] = value
