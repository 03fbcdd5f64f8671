"""What an output folder already holds, as a compact index: which rows are done, which must be done again.

A rerun into the same `output_path` skips a source row when the output holds a row with the same `row_id` (its
identity: manifest, audio, channel choice), the same `source_hash` (its manifest line, parsed) and no error (unless
`resume.retry_failed=false`), made under the same transcript settings (unless `resume.on_settings_change=keep`).
Any other committed row with that id is *replaced*: the new row is committed, then the old copy is removed from its
file (`repair`). A committed row of a manifest that this run read, whose identity the manifest no longer has (its
audio or channel choice was edited), is an *orphan* and is removed the same way.

The index is numpy arrays of fixed-width digests, sorted by id (about 17 bytes a row: 170 MB for 10 million rows),
built in a Ray task and shared through the object store, so neither the driver nor each read task holds the done
ids as Python objects. Of two committed copies of one id, the later file (commit order: connectors.output_store) wins.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from connectors.layout import RECORDINGS, SEGMENTS, OutputLayout
from connectors.parquet_sink import write_parquet
from connectors.storage import with_retries

ID_BYTES = 10  # row_id is 20 hex digits
HASH_BYTES = 6  # source_hash is 12 hex digits
_COLUMNS = ["row_id", "source_hash", "error", "manifest", "run_id"]

NEW, DONE, REPLACE = 0, 1, 2


def id_bytes(hex_ids: list[str] | pa.Array) -> np.ndarray:
    """Hex ids as a fixed-width bytes array (`S10`)."""
    values = hex_ids.to_pylist() if isinstance(hex_ids, (pa.Array, pa.ChunkedArray)) else hex_ids
    return np.frombuffer(bytes.fromhex("".join(values)), dtype=f"S{ID_BYTES}") if values else \
        np.zeros(0, dtype=f"S{ID_BYTES}")


def hash_bytes(hex_hashes: list) -> np.ndarray:
    filled = [h if isinstance(h, str) and len(h) == 2 * HASH_BYTES else "00" * HASH_BYTES for h in hex_hashes]
    return np.frombuffer(bytes.fromhex("".join(filled)), dtype=f"S{HASH_BYTES}") if filled else \
        np.zeros(0, dtype=f"S{HASH_BYTES}")


def id_hex(values: np.ndarray) -> list[str]:
    return [v.ljust(ID_BYTES, b"\0").hex() for v in values.tolist()]


@dataclass
class ResumeIndex:
    """The committed rows of an output, one entry per row id (its latest copy)."""

    ids: np.ndarray  # S10, sorted, unique
    hashes: np.ndarray  # S6, aligned with ids
    redo: np.ndarray  # bool: failed (and retried) or made under other transcript settings (and redone)
    manifest_code: np.ndarray  # int32 index into `manifests` (-1 for audio_dir rows)
    manifests: list[str]
    stale: dict[str, list[str]] = field(default_factory=dict)  # file -> ids of which a later file has a copy
    runs: frozenset[str] = frozenset()  # the runs whose rows are in the output

    def __len__(self) -> int:
        return len(self.ids)

    def status(self, ids: np.ndarray, hashes: np.ndarray) -> np.ndarray:
        """NEW, DONE or REPLACE for each (id, hash)."""
        out = np.full(len(ids), NEW, dtype=np.int8)
        if not len(self.ids) or not len(ids):
            return out
        pos = np.searchsorted(self.ids, ids)
        pos_ok = np.minimum(pos, len(self.ids) - 1)
        found = self.ids[pos_ok] == ids
        done = found & (self.hashes[pos_ok] == hashes) & ~self.redo[pos_ok]
        out[found] = REPLACE
        out[done] = DONE
        return out

    def ids_of_manifest(self, manifest: str) -> np.ndarray:
        try:
            code = self.manifests.index(manifest)
        except ValueError:
            return np.zeros(0, dtype=self.ids.dtype)
        return self.ids[self.manifest_code == code]


def _read(fs, path: str) -> pa.Table:
    def read() -> pa.Table:
        with fs.open(path, "rb") as handle:
            schema = pq.read_schema(handle)
            handle.seek(0)
            present = [c for c in _COLUMNS if c in schema.names]
            return pq.read_table(handle, columns=present)
    table = with_retries(read)
    for name in _COLUMNS:  # outputs written before a column existed
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(table.num_rows, pa.string()))
    return table.select(_COLUMNS)


def build_index(store: OutputLayout, *, retry_failed: bool = True, redo_runs: frozenset[str] = frozenset(),
                threads: int = 8) -> ResumeIndex:
    """Read the committed recordings' ids (a column read, in parallel) into a ResumeIndex. `redo_runs`: rows made by
    these runs count as not done."""
    fs, paths = store.committed_files(RECORDINGS)
    with ThreadPoolExecutor(threads) as pool:
        tables = list(pool.map(lambda p: _read(fs, p), paths))
    empty = np.zeros(0, dtype=f"S{ID_BYTES}")
    if not tables or not sum(t.num_rows for t in tables):
        return ResumeIndex(empty, np.zeros(0, f"S{HASH_BYTES}"), np.zeros(0, bool), np.zeros(0, np.int32), [])
    file_code = np.concatenate([np.full(t.num_rows, i, np.int32) for i, t in enumerate(tables)])
    table = pa.concat_tables(tables)
    ids = id_bytes(table["row_id"])
    # Stable sort by id keeps files in commit order within an id: the last of a run of equal ids is the latest.
    order = np.argsort(ids, kind="stable")
    ids, file_code = ids[order], file_code[order]
    last = np.ones(len(ids), dtype=bool)
    last[:-1] = ids[:-1] != ids[1:]
    stale: dict[str, list[str]] = {}
    for i in np.flatnonzero(~last):
        stale.setdefault(paths[file_code[i]], []).append(ids[i].ljust(ID_BYTES, b"\0").hex())
    keep = order[last]
    errors = pc.is_valid(table["error"]).to_numpy(zero_copy_only=False)[keep]
    runs = table["run_id"].to_pylist()
    redo = errors if retry_failed else np.zeros(len(keep), bool)
    if redo_runs:
        redo = redo | np.array([runs[i] in redo_runs for i in keep], dtype=bool)
    manifests_col = table["manifest"].to_pylist()
    manifests = sorted({m for m in manifests_col if m})
    codes = {m: i for i, m in enumerate(manifests)}
    manifest_code = np.array([codes.get(manifests_col[i], -1) for i in keep], dtype=np.int32)
    return ResumeIndex(ids=ids[last], hashes=hash_bytes(table["source_hash"].to_pylist())[keep], redo=redo,
                       manifest_code=manifest_code, manifests=manifests, stale=stale,
                       runs=frozenset(runs[i] for i in keep if runs[i]))


def remove_rows(store: OutputLayout, drop: dict[str, set[str]]) -> int:
    """Remove the given row ids from the given committed files (recordings path -> ids), rewriting each file pair
    in place (segments first, so an interrupted removal leaves a duplicate the next start finds again, never a
    recording without its segments). A pair left without recordings is deleted. Returns the rows removed."""
    removed = 0
    for path, ids in sorted(drop.items()):
        name = path.rsplit("/", 1)[-1]
        unwanted = pa.array(sorted(ids), pa.string())
        fs, folder, names = store.listing(RECORDINGS)
        if name not in names:
            continue
        with fs.open(f"{folder}/{name}", "rb") as handle:
            recordings = pq.read_table(handle)
        kept = recordings.filter(pc.invert(pc.is_in(recordings["row_id"], unwanted)))
        if kept.num_rows == recordings.num_rows:
            continue
        sfs, sfolder, snames = store.listing(SEGMENTS)
        if name in snames:
            if not kept.num_rows:
                sfs.rm(f"{sfolder}/{name}")
            else:
                with sfs.open(f"{sfolder}/{name}", "rb") as handle:
                    segments = pq.read_table(handle)
                kept_segments = segments.filter(pc.invert(pc.is_in(segments["row_id"], unwanted)))
                if kept_segments.num_rows != segments.num_rows:
                    write_parquet(kept_segments, store.folder(SEGMENTS), name)
        if kept.num_rows:
            write_parquet(kept, store.folder(RECORDINGS), name)
        else:
            fs.rm(f"{folder}/{name}")
        removed += recordings.num_rows - kept.num_rows
    return removed


def locate(store: OutputLayout, ids: list[str]) -> dict[str, list[str]]:
    """Which committed recordings file holds each of `ids` (path -> ids)."""
    wanted = pa.array(sorted(set(ids)), pa.string())
    fs, paths = store.committed_files(RECORDINGS)
    found: dict[str, list[str]] = {}
    for path in paths:
        with fs.open(path, "rb") as handle:
            column = pq.read_table(handle, columns=["row_id"])["row_id"]
        hits = column.filter(pc.is_in(column, wanted)).to_pylist()
        if hits:
            found[path] = hits
    return found
