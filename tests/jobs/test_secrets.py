"""Secrets never leave the environment: with storage credentials set and manifest rows that are presigned URLs
(whose query carries the access key id and a signature), nothing the job writes (every Parquet cell, the run record)
or prints (stdout, stderr, its log records, the Ray workers' logs) contains the key, the secret or a signature.

The classes of issue 12 each have rows here: a credential holding '/' and '+' (as AWS secret keys do) in a URL's
userinfo and in a signed query, a library's own error message that carries the URL with its credentials (a refused
connection, an HTTP 404 reported by fsspec), and files whose names look like `key=value`, which keep their names.
(Unit-level fuzzing of the same classes: tests/connectors/test_redaction.py.)
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
from pathlib import Path
from urllib.parse import quote

import duckdb
import pytest

from jobs.transcribe import main
from tests.audio_factory import write_tone
from tests.conftest import TEST_KEY, TEST_SECRET
from tests.fault_proxy import FileServer, refusing_port
from tests.jobs.jobs_helpers import clips, write_manifest

FAKE_SIGNATURE = "deadbeef" * 8  # 64 hex characters, as a SigV4 signature
SLASHED_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCY/EXAMPLEKEY"  # an AWS secret key's shape: 40 characters, '/' and '+'
ENCODED_SECRET = quote(SLASHED_SECRET, safe="")
QUERY_TOKEN = "IQoJb3JpZ2luX2Vj/+EXAMPLE/session+token=="
# Manifest paths named like key=value pairs: they are file names and must stay whole in audio_filepath.
PAIR_NAMED = ["audio/secret=1.wav", "audio/date=2026-01-01/token=5.wav"]


def presigned_looking(endpoint: str, bucket: str, key: str) -> str:
    return (f"{endpoint}/{bucket}/{key}?X-Amz-Algorithm=AWS4-HMAC-SHA256"
            f"&X-Amz-Credential={TEST_KEY}%2F20261121%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20261121T120000Z"
            f"&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature={FAKE_SIGNATURE}")


def sigv4_presigned(endpoint: str, bucket: str, key: str) -> str:
    import boto3
    from botocore.config import Config

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=TEST_KEY,
                          aws_secret_access_key=TEST_SECRET, config=Config(signature_version="s3v4"))
    return client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=3600)


def ray_log_files() -> dict[Path, int]:
    """Every file of the session Ray's log folder and its current size (to read only what is written later)."""
    import ray

    folder = Path(ray._private.worker._global_node.get_logs_dir_path())
    return {p: p.stat().st_size for p in folder.rglob("*") if p.is_file()}


def text_written_since(before: dict[Path, int]) -> str:
    import ray

    folder = Path(ray._private.worker._global_node.get_logs_dir_path())
    parts = []
    for path in folder.rglob("*"):
        if path.is_file():
            with path.open("rb") as handle:
                handle.seek(before.get(path, 0))
                parts.append(handle.read().decode("utf-8", "replace"))
    return "\n".join(parts)


def every_cell_as_text(folder: Path) -> str:
    cells = []
    for table in ("recordings", "segments"):
        relation = duckdb.sql(f"select * from read_parquet('{folder}/{table}/*.parquet')")
        for row in relation.fetchall():
            cells.extend(str(value) for value in row)
    return "\n".join(cells)


@pytest.fixture(scope="module")
def secret_run(ray_session, tiny_model, s3_endpoint, s3fs_client, tmp_path_factory):
    """One job (run through main(), as the command line does) whose stdout, stderr and log records are captured."""
    tmp_path = tmp_path_factory.mktemp("secrets")
    bucket = "t-secrets"
    if not s3fs_client.exists(bucket):
        s3fs_client.mkdir(bucket)
    entries = clips(tmp_path / "audio", 2)
    for name in PAIR_NAMED:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        write_tone(tmp_path / name, 1.0)
    s3fs_client.put(str(tmp_path / "audio" / "clip-01.wav"), f"{bucket}/calls/signed.wav")
    server = FileServer({"/calls/served.wav": (tmp_path / "audio" / "clip-00.wav").read_bytes()}).start()
    refused = refusing_port()
    port = refused.__enter__()
    real_signed = sigv4_presigned(s3_endpoint, bucket, "calls/signed.wav")  # a real presigned URL
    real_signature = re.search(r"X-Amz-Signature=([0-9a-f]{64})", real_signed).group(1)
    manifest = write_manifest(tmp_path / "m.jsonl", [
        entries[0],
        {"audio_filepath": presigned_looking(s3_endpoint, bucket, "calls/missing.wav"), "call": "missing"},
        {"audio_filepath": real_signed, "call": "signed"},
        *({"audio_filepath": name, "call": name} for name in PAIR_NAMED),
        # Credentials with '/' and '+' in the userinfo, URL-encoded as they should be: fsspec's 404 error and a
        # refused connection echo the URL. Unencoded, as users paste them: the URL does not parse, and the parser's
        # message quotes the piece before the '/'.
        {"audio_filepath": f"{server.url.replace('http://', f'http://AKIAUSERINFO:{ENCODED_SECRET}@')}/calls/gone.wav",
         "call": "userinfo-404"},
        {"audio_filepath": f"http://AKIAUSERINFO:{ENCODED_SECRET}@127.0.0.1:{port}/calls/refused.wav",
         "call": "userinfo-refused"},
        {"audio_filepath": f"http://AKIAUSERINFO:{SLASHED_SECRET}@127.0.0.1:{port}/calls/unparsed.wav",
         "call": "userinfo-unparsed"},
        # A signed query whose token holds '/', '+' and '=': served, transcribed, and its query kept out.
        {"audio_filepath": f"{server.url}/calls/served.wav?X-Amz-Security-Token={QUERY_TOKEN}&X-Amz-Signature="
                           f"{FAKE_SIGNATURE}", "call": "served"},
    ])
    out = tmp_path / "out"
    logs_before = ray_log_files()
    records = io.StringIO()
    handler = logging.StreamHandler(records)
    handler.setLevel(logging.DEBUG)
    # The moto server in this process stands in for S3: its access log (werkzeug) is the server's, not the job's.
    handler.addFilter(lambda record: not record.name.startswith("werkzeug"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    stdout, stderr = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = main([f"model_path={tiny_model}", f"dataset_manifest={manifest}", f"output_path={out}"])
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        server.stop()
        refused.__exit__(None, None, None)
    rows = {r[0]: r for r in duckdb.sql(
        f"select json_extract_string(metadata, '$.call'), error, audio_filepath, audio_url, error_stage "
        f"from read_parquet('{out}/recordings/*.parquet')").fetchall()}
    return {
        "code": code, "out": out, "rows": rows, "refused_port": port, "stdout": stdout.getvalue(), "stderr": stderr.getvalue(),
        "logs": records.getvalue(), "ray_logs": text_written_since(logs_before),
        "secrets": {"access key id": TEST_KEY, "secret key": TEST_SECRET, "fake signature": FAKE_SIGNATURE,
                    "real signature": real_signature, "secret with '/'": SLASHED_SECRET,
                    "its part before '/'": SLASHED_SECRET.split("/", 1)[0],
                    "its part after '/'": SLASHED_SECRET.split("/", 1)[1], "the secret URL-encoded": ENCODED_SECRET,
                    "query token": QUERY_TOKEN, "query token's tail": QUERY_TOKEN.split("/", 1)[1]},
    }


def leaks(text: str, secrets: dict[str, str]) -> list[str]:
    return [name for name, value in secrets.items() if value in text]


def test_the_job_ran_and_the_rows_are_as_expected(secret_run):
    assert secret_run["code"] == 0, secret_run["stderr"]
    rows = secret_run["rows"]
    assert set(rows) == {None, "missing", "signed", *PAIR_NAMED, "userinfo-404", "userinfo-refused",
                         "userinfo-unparsed", "served"}
    assert rows[None][1] is None
    assert {call: row[4] for call, row in rows.items() if row[1]} == dict.fromkeys(
        ["missing", "userinfo-404", "userinfo-refused", "userinfo-unparsed"], "fetch")
    assert rows["missing"][1].startswith("file not found: ")
    assert "missing.wav" in rows["missing"][1]  # still says which file, without the query
    assert rows["signed"][1] is None  # a presigned URL is a fine way to name audio
    assert rows["served"][1] is None
    assert rows["served"][2].endswith("/calls/served.wav?<redacted>")
    # The library's own messages, classified and redacted: which file and what happened, no credential.
    assert rows["userinfo-404"][1].startswith("file not found: http://<redacted>@127.0.0.1:")
    assert rows["userinfo-404"][1].endswith("/calls/gone.wav")
    assert "connection refused by 127.0.0.1:" in rows["userinfo-refused"][1]
    assert "file not found" not in rows["userinfo-refused"][1]
    port = secret_run["refused_port"]
    assert rows["userinfo-unparsed"][2] == f"http://<redacted>@127.0.0.1:{port}/calls/unparsed.wav"
    assert rows["userinfo-refused"][2] == f"http://<redacted>@127.0.0.1:{port}/calls/refused.wav"


def test_file_names_that_look_like_pairs_keep_their_names(secret_run):
    for name in PAIR_NAMED:
        error, audio_filepath = secret_run["rows"][name][1:3]
        assert (error, audio_filepath) == (None, name)


def test_error_messages_carry_no_secret(secret_run):
    errors = "\n".join(str(r[1]) for r in secret_run["rows"].values())
    assert leaks(errors, secret_run["secrets"]) == []


def test_no_parquet_cell_carries_a_secret(secret_run):
    assert leaks(every_cell_as_text(secret_run["out"]), secret_run["secrets"]) == []


def test_run_record_carries_no_secret(secret_run):
    records = list((secret_run["out"] / "runs").glob("*.json"))
    assert len(records) == 1
    text = records[0].read_text()
    json.loads(text)
    assert leaks(text, secret_run["secrets"]) == []


def test_nothing_printed_or_logged_carries_a_secret(secret_run):
    assert "rows        9 (5 transcribed, 4 failed" in secret_run["stdout"]
    for channel in ("stdout", "stderr", "logs"):
        assert leaks(secret_run[channel], secret_run["secrets"]) == [], channel


def test_ray_worker_logs_carry_no_secret(secret_run):
    assert secret_run["ray_logs"]  # the workers did write something during the run
    assert leaks(secret_run["ray_logs"], secret_run["secrets"]) == []


def test_every_job_main_redacts_its_log_records(monkeypatch, capsys):
    """`jobs.config.run_command` (the end of every job's `main`: transcribe, export) installs the redaction before the
    work starts, so a library's log record made during the work carries no credential, and neither does the error."""
    from jobs.config import ConfigError, run_command

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SLASHED_SECRET)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    library = logging.getLogger("s3fs.run_command_test")
    library.addHandler(handler)
    library.setLevel(logging.DEBUG)
    library.propagate = False
    factory = logging.getLogRecordFactory()

    class Done:
        def lines(self) -> list[str]:
            return ["done"]

    def work() -> Done:
        library.debug("retrying https://u:%s@h/b/k.wav after %s", SLASHED_SECRET, ENCODED_SECRET)
        return Done()

    def failing() -> Done:
        raise ConfigError(f"cannot read s3://b/k.wav with key {SLASHED_SECRET}")

    try:
        assert run_command(work) == 0
        assert run_command(failing) == 2
    finally:
        logging.setLogRecordFactory(factory)
        library.removeHandler(handler)
    logged, printed = stream.getvalue(), capsys.readouterr()
    assert "retrying https://<redacted>@h/b/k.wav after <redacted>" in logged
    assert printed.out.strip() == "done"
    assert printed.err.startswith("error: cannot read s3://b/k.wav with key <redacted>")
    for text in (logged, printed.out, printed.err):
        assert SLASHED_SECRET not in text and ENCODED_SECRET not in text
