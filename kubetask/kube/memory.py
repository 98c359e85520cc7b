"""Giving freed heap memory back to the operating system (glibc's ``malloc_trim``).

A burst of watch events decodes thousands of whole objects only to keep a lean copy of each:
the garbage is freed, but glibc keeps the freed pages of its heaps mapped, so the process's RSS
stays at the burst's high-water mark.  ``malloc_trim(0)`` returns what is free; a long-running
process calls it when it goes idle after much work.  Elsewhere (no glibc) it does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
from typing import Any

_libc: Any = None
with contextlib.suppress(OSError, AttributeError, TypeError):
    name = ctypes.util.find_library("c")
    if name:
        candidate = ctypes.CDLL(name)
        if hasattr(candidate, "malloc_trim"):
            _libc = candidate


def release_free_memory() -> bool:
    """Return freed heap pages to the system; whether anything was released (False without glibc)."""
    if _libc is None:
        return False
    return bool(_libc.malloc_trim(0))
