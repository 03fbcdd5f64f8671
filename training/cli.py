"""Command-line helper shared by the training jobs."""

from __future__ import annotations

from pathlib import Path


def config_file_arg(argv: list[str], default: Path) -> tuple[Path, list[str]]:
    """`--config FILE key=value ...` -> (FILE, the overrides); without `--config`: (default, argv). The file holds the
    defaults under the overrides (e.g. conf/train_demo_gpu.yaml for the broad GPU recipe)."""
    if argv[:1] == ["--config"]:
        if len(argv) < 2:
            raise SystemExit("usage: --config FILE [key=value ...]")
        return Path(argv[1]), argv[2:]
    return default, argv
