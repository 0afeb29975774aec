"""Progress bars for long work (rich), silent when disabled or when output is not a terminal."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sized
from typing import TypeVar

__all__ = ["progress_iter"]

T = TypeVar("T")


def progress_iter(
    items: Iterable[T], description: str, *, enabled: bool = True, total: int | None = None
) -> Iterator[T]:
    """Iterate over ``items``, showing a rich progress bar when ``enabled``.

    Parameters
    ----------
    items : iterable
        What to iterate over.
    description : str
        Text shown left of the bar.
    enabled : bool
        False iterates silently (library calls, tests, ``--quiet``).
    total : int, optional
        Number of items when ``items`` has no ``len``.
    """
    if not enabled:
        yield from items
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    if total is None and isinstance(items, Sized):
        total = len(items)
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=True) as bar:
        yield from bar.track(items, total=total, description=description)
