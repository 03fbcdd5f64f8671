"""The read stage: inputs into work blocks. Blocks span inputs (a thousand one-line manifests make full blocks, not a
thousand nearly empty ones), large inputs keep a read task of their own, and every row is counted once per input."""

from __future__ import annotations

import json

import pyarrow as pa

from connectors.inputs import AUDIO_DIR, MANIFEST, InputSource
from pipeline.locales import Locales
from pipeline.models.released import PROMPT_DICTIONARY
from pipeline.options import JobDefaults
from pipeline.source import SourceSettings, cut_blocks, input_groups, read_blocks


def _settings(block_seconds: float = 600.0, block_rows: int = 1024) -> SourceSettings:
    return SourceSettings(JobDefaults("auto", "mix"), Locales.from_dictionary(PROMPT_DICTIONARY), block_seconds,
                          block_rows)


class _Ledger:
    """Records what a read task reports (the real Ledger is a Ray actor; this is the same interface, in process)."""

    def __init__(self) -> None:
        self.reads: list = []
        self.admit = self
        self.add_reads = self

    def remote(self, *args):  # admit.remote(source, number, rows) and add_reads.remote([stats, ...])
        if len(args) == 1:
            self.reads.extend(args[0])


def test_many_one_line_manifests_share_work_blocks(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr("ray.get", lambda ref: ref)
    urls = []
    for i in range(40):
        path = tmp_path / f"call-{i:03d}.jsonl"
        path.write_text(json.dumps({"audio_filepath": f"call-{i:03d}.wav", "duration": 30.0}) + "\n")
        urls.append(str(path))
    groups = input_groups([InputSource(MANIFEST, u) for u in urls])
    assert len(groups) == 40  # few inputs: one read task each ...
    (group,) = input_groups([InputSource(MANIFEST, u) for u in urls], max_groups=1)  # ... many: they share
    ledger = _Ledger()
    tables = list(read_blocks(pa.Table.from_pylist([group]), _settings(600.0), [], ledger))
    sizes = [len(t["rows"][0].as_py()) for t in tables]
    assert sizes == [20, 20]  # 600 s of 30 s rows per block, across manifests
    rows = [r for t in tables for r in t["rows"][0].as_py()]
    assert [r["manifest"] for r in rows] == urls and len({r["row_id"] for r in rows}) == 40
    assert sorted(s.source for s in ledger.reads) == urls and all(s.rows == 1 for s in ledger.reads)


def test_groups_are_contiguous_and_cover_every_input_once() -> None:
    inputs = [InputSource(MANIFEST, f"/m/{i}.jsonl") for i in range(1000)] + [InputSource(AUDIO_DIR, "/audio")]
    groups = input_groups(inputs, max_groups=64)
    assert len(groups) <= 64
    assert [i["url"] for g in groups for i in g["inputs"]] == [i.url for i in inputs]
    assert groups[-1]["inputs"][-1]["kind"] == AUDIO_DIR


def test_blocks_by_audio_and_by_rows() -> None:
    rows = [{"manifest_duration": d} for d in (100.0, 200.0, 300.0, None, 50.0)]
    assert [len(b) for b in cut_blocks(rows, _settings(block_seconds=300.0))] == [2, 1, 2]  # None counts as 60 s
    assert [len(b) for b in cut_blocks(rows, _settings(block_rows=2))] == [2, 2, 1]
    assert list(cut_blocks([], _settings())) == []
