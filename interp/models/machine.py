"""What this machine has to give a run: the memory available now. A leaf: the memory estimates
of recording, paired samples and model folders all ask it."""

from __future__ import annotations


def available_memory() -> int | None:
    """Bytes of memory available to this process now (Linux's MemAvailable), or None."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None
