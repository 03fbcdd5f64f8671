"""Run a module's `main()` as this process and print the process's peak RSS at the end (what a driver cost).

    python -m benchmarks.peak_rss jobs.transcribe key=value ...
"""

from __future__ import annotations

import importlib
import resource
import sys


def run(argv: list[str]) -> int:
    module = importlib.import_module(argv[0])
    try:
        code = module.main(argv[1:])
    finally:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        print(f"driver peak RSS {peak:.1f} MiB", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
