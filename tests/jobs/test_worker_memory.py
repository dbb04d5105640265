"""A worker process keeps the memory it frees: blocks of a few MB come from the heap and stay there when freed,
so the next step's tensors reuse pages already mapped instead of faulting fresh ones in."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

PROBE = textwrap.dedent("""
    import ctypes, sys

    class MallInfo2(ctypes.Structure):  # glibc's struct mallinfo2, all size_t
        _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                         "fsmblks", "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    if sys.argv[1] == "keep":
        from dl3d.workers.base import keep_freed_memory
        assert keep_freed_memory()
    blocks = [libc.malloc(8 << 20) for _ in range(3)]  # three 8 MB tensors of a step
    held = libc.mallinfo2()
    for b in blocks:
        libc.free(b)
    freed = libc.mallinfo2()
    print(held.hblkhd >> 20, freed.arena >> 20, freed.keepcost >> 20)
""")


def _mallinfo(mode: str) -> tuple[int, int, int]:
    """(MB mmapped while the blocks are held, MB of heap after they are freed, MB of its free top kept)."""
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    mmapped, heap, top = map(int, done.stdout.split()[-3:])
    return mmapped, heap, top


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt and mallinfo2: Linux only")
def test_freed_blocks_stay_in_the_process():
    mmapped, heap, _ = _mallinfo("default")
    assert mmapped >= 24 and heap < 8, "glibc's defaults map each 8 MB block apart and unmap it when freed"
    mmapped, heap, top = _mallinfo("keep")
    assert mmapped < 8, f"kept: the blocks come from the heap ({mmapped} MB mmapped)"
    assert heap >= 24 and top >= 24, f"kept: freed, they stay mapped in the heap ({heap} MB, {top} MB free top)"
