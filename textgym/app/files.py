"""File and process utilities of the application: atomic writes, atomic folders, fresh processes, memory, the CPU.

Every step of a command writes its result so that a run killed at any moment leaves the old result
or the new one, never half of one: a file through a temporary name and a rename
(:func:`atomic_write`), a folder built beside its final name and renamed into place
(:func:`atomic_folder`). Memory is measured in a fresh process (:func:`in_fresh_process`), so a
peak (:func:`peak_rss_mib`) is the measured code's own.
"""

from __future__ import annotations

import os
import resource
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename: readers see the old or the new file.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> atomic_write(folder / "a.txt", "new")
    >>> (folder / "a.txt").read_text(), sorted(p.name for p in folder.iterdir())
    ('new', ['a.txt'])
    """
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def atomic_folder(final: Path, build: Callable[[Path], Any]) -> Any:
    """``build(tmp)`` into a temporary folder beside ``final``, then rename it into place; returns what it returns.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> atomic_folder(folder / "model", lambda tmp: tmp.mkdir() or (tmp / "w").write_text("1"))
    1
    >>> sorted(p.name for p in folder.iterdir()), (folder / "model" / "w").read_text()
    (['model'], '1')
    """
    tmp = final.with_name(f".tmp-{final.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    result = build(tmp)
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    return result


def fsync_tree(folder: Path) -> None:
    """Flush every file directly in ``folder`` to disk (before the folder is renamed into place)."""
    for path in folder.iterdir():
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())


def in_fresh_process(function: Callable[..., Any], *args: Any) -> Any:
    """``function(*args)`` in a fresh (spawned) process, so its peak memory is its own; returns the result."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(function, args)


def peak_rss_mib() -> float:
    """Peak resident memory of this process in MiB.

    Linux's ``VmHWM`` starts afresh with each new program; ``ru_maxrss`` would carry over the
    parent's peak into a spawned child (it survives fork and exec), so it is only the fallback.
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def available_memory(device: Any) -> int | None:
    """Bytes free for new tensors on ``device`` (a GPU's free memory, or the host's MemAvailable); None: unknown."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    meminfo = Path("/proc/meminfo")
    if device.type == "cpu" and meminfo.is_file():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return None


#: The instruction-set flags of ``/proc/cpuinfo`` that decide a CPU's matrix speed (bf16 needs avx512_bf16 or amx).
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "amx_fp16")


def cpu_flags() -> dict[str, bool]:
    """Which of :data:`CPU_FLAGS` the CPU has (``/proc/cpuinfo``; all False where it cannot be read).

    >>> sorted(cpu_flags()) == sorted(CPU_FLAGS)
    True
    """
    try:
        line = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
        have = set(line.split(":", 1)[1].split())
    except (OSError, StopIteration):
        have = set()
    return {flag: flag in have for flag in CPU_FLAGS}


def cpu_name() -> str:
    """The CPU's model name (bf16 speed on a CPU depends on it: see :func:`textgym.models.native_half`)."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
