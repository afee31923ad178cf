"""Reading the process table from /proc: which children ``paywall serve`` started, and at what nice."""

from __future__ import annotations

from pathlib import Path


def _stat_fields(pid: int | str) -> list[str]:
    # After the command name in parentheses (which may hold spaces): state, ppid, ...
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def children_running(pid: int, *words: bytes) -> list[int]:
    """The processes whose parent is ``pid`` and whose command line holds every one of ``words``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int(_stat_fields(entry.name)[1])
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if parent == pid and all(word in command for word in words):
            found.append(int(entry.name))
    return found


def nice_of(pid: int) -> int:
    return int(_stat_fields(pid)[16])
