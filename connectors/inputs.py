"""What a job reads, as typed values: each `InputSource` is one unit that one read task streams into rows.

The kind says how its rows are read (`ROW_READERS`): a JSON-lines manifest (`manifest`), every audio file under a
folder or prefix (`audio_dir`). A new corpus layout is one more kind and one more reader that yields
`connectors.manifests.ManifestRow`s, each with its `AudioSource`; nothing downstream changes.

`find_inputs` turns the job's `dataset_manifest` / `audio_dir` into the list of inputs, checked: something to read,
nothing empty. Its failures are `InputError`s (the job reports them as configuration errors, exit 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

from connectors.manifests import ManifestRow, iter_audio_dir, manifest_urls, read_manifest
from connectors.storage import NoMatch, expand, filesystem, redact

MANIFEST = "manifest"
AUDIO_DIR = "audio_dir"


class InputError(ValueError):
    """The job's input cannot be read as given (nothing matches, an empty manifest, not a folder)."""


@dataclass(frozen=True)
class InputSource:
    kind: str  # one of ROW_READERS
    url: str  # normalised (manifests) or as given (folders)

    @property
    def manifest(self) -> str:
        """What its rows name as where they came from (their `manifest` column): the manifest, or the folder."""
        return self.url


ROW_READERS: dict[str, Callable[[str], Iterator[ManifestRow]]] = {
    MANIFEST: read_manifest,
    AUDIO_DIR: iter_audio_dir,
}


def iter_rows(source: InputSource) -> Iterator[ManifestRow]:
    """Every row of one input, streamed."""
    return ROW_READERS[source.kind](source.url)


def find_inputs(dataset_manifest: str | list[str] | None, audio_dir: str | None) -> list[InputSource]:
    """The inputs named by the job's settings (exactly one of the two is set), each checked to hold something."""
    if dataset_manifest:
        try:
            urls = manifest_urls(expand(dataset_manifest))
        except (NoMatch, OSError) as error:  # a part that names nothing or a folder; a listing that failed
            raise InputError(f"dataset_manifest {redact(str(error))}") from None
        for url in urls:
            if not _has_content(url):
                raise InputError(f"manifest {redact(url)} is empty: nothing to transcribe")
        return [InputSource(MANIFEST, url) for url in urls]
    fs, path = filesystem(audio_dir)
    if not fs.isdir(path):
        raise InputError(f"audio_dir {redact(audio_dir)!r} is not a folder")
    if next(iter_audio_dir(audio_dir), None) is None:
        raise InputError(f"audio_dir {redact(audio_dir)} has no audio files: nothing to transcribe")
    return [InputSource(AUDIO_DIR, audio_dir.rstrip("/"))]


def _has_content(url: str) -> bool:
    """Whether a manifest holds anything but blank lines (read only as far as the first other byte)."""
    fs, path = filesystem(url)
    with fs.open(path, "rb") as handle:
        while chunk := handle.read(1 << 16):
            if chunk.strip():
                return True
    return False
