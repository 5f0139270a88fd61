"""A persistent priority queue (a leftist heap): push and pop in O(log n), old versions stay valid.

A heap is ``None`` (empty) or a tuple ``(rank, entry, left, right)``; entries are compared with
``<``. Nothing is ever mutated, so a ``State`` holding a heap is a plain value.
"""


def _rank(h):
    return h[0] if h is not None else 0


def _merge(a, b):
    if a is None:
        return b
    if b is None:
        return a
    if b[1] < a[1]:
        a, b = b, a
    merged = _merge(a[3], b)
    left = a[2]
    if _rank(left) < _rank(merged):
        left, merged = merged, left
    return (_rank(merged) + 1, a[1], left, merged)


def push(heap, entry):
    return _merge(heap, (1, entry, None, None))


def peek(heap):
    return heap[1]


def pop(heap):
    """Return ``(smallest entry, rest of the heap)``."""
    return heap[1], _merge(heap[2], heap[3])


def entries(heap):
    """Every entry, in no particular order."""
    stack = [heap]
    while stack:
        h = stack.pop()
        if h is not None:
            yield h[1]
            stack.append(h[2])
            stack.append(h[3])
