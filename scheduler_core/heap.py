"""A persistent priority queue (a pairing heap): push in O(1), pop in amortized O(log n).

A heap is ``None`` (empty) or a tuple ``(entry, children)``, where ``children`` is a cons list
``(heap, rest)`` or ``None``; entries are compared with ``<``. Nothing is ever mutated, so a
``State`` holding a heap is a plain value and old versions stay valid. (The amortized bound
holds because the scheduler never pops the same version twice.) Every walk is a loop, never a
recursion, so a heap of 100,000 entries is fine.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol, TypeAlias, TypeVar, overload


class _Ordered(Protocol):
    def __lt__(self, other: Any, /) -> bool: ...


E = TypeVar("E", bound=_Ordered)  # an entry
# Plain tuples, not classes (a heap operation builds several), named for the type checker:
NonEmpty: TypeAlias = "tuple[E, Children[E]]"  # (entry, children)
Heap: TypeAlias = "NonEmpty[E] | None"
Children: TypeAlias = "tuple[NonEmpty[E], Children[E]] | None"  # a cons list (heap, rest)


@overload
def _meld(a: Heap[E], b: NonEmpty[E]) -> NonEmpty[E]: ...
@overload
def _meld(a: Heap[E], b: Heap[E]) -> Heap[E]: ...
def _meld(a: Heap[E], b: Heap[E]) -> Heap[E]:
    if a is None:
        return b
    if b is None:
        return a
    if b[0] < a[0]:
        a, b = b, a
    return (a[0], (b, a[1]))


def push(heap: Heap[E], entry: E) -> NonEmpty[E]:
    return _meld(heap, (entry, None))


def peek(heap: NonEmpty[E]) -> E:
    return heap[0]


def pop(heap: NonEmpty[E]) -> tuple[E, Heap[E]]:
    """Return ``(smallest entry, rest of the heap)``: meld the children in pairs, then fold right to left."""
    pairs: list[NonEmpty[E]] = []
    children = heap[1]
    while children is not None:  # (melds inlined: this is the scheduler's hottest loop)
        first, children = children
        if children is None:
            pairs.append(first)
            break
        second, children = children
        if second[0] < first[0]:
            first, second = second, first
        pairs.append((first[0], (second, first[1])))
    if not pairs:
        return heap[0], None
    rest = pairs.pop()
    while pairs:
        h = pairs.pop()
        if rest[0] < h[0]:
            h, rest = rest, h
        rest = (h[0], (rest, h[1]))
    return heap[0], rest


def entries(heap: Heap[E]) -> Iterator[E]:
    """Every entry, in no particular order."""
    stack: list[Heap[E]] = [heap]
    while stack:
        h = stack.pop()
        if h is None:
            continue
        yield h[0]
        children = h[1]
        while children is not None:
            stack.append(children[0])
            children = children[1]
