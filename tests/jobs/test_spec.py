"""Tests for jobs.spec (the job's one typed spec: defaults, docs, generated conf/ and README, overrides, old names,
ranges) and the plan's checks against the inputs and the checkpoint (jobs.transcribe)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from jobs import spec as spec_module
from jobs.config import ConfigError
from jobs.spec import DEFAULT_CONFIG, README, REMOVED, RENAMED, JobSpec, entries, load_spec
from jobs.plan import check_inputs, check_model
from pipeline.models.base import ModelCard
from pipeline.models.released import MAX_SEGMENT_SECONDS, PROMPT_DICTIONARY

CARD = ModelCard(
    model_path="/models/x.nemo",
    model_class="nemo.collections.asr.models.EncDecRNNTBPEModelWithPrompt",
    sample_rate=16000,
    prompt_dictionary=dict(PROMPT_DICTIONARY),
    att_context_sizes=((56, 3), (56, 0), (56, 6), (56, 13)),
)


def _load(*overrides: str) -> JobSpec:
    return load_spec(["output_path=/tmp/out", "audio_dir=/tmp/audio", *overrides])


# --- one definition: the spec, conf/ and the README agree ------------------------------------------------------------


def test_conf_file_is_the_spec_rendered() -> None:
    """conf/transcribe.yaml is generated from the spec: an edit to either alone fails here."""
    assert DEFAULT_CONFIG.read_text(encoding="utf-8") == spec_module.render_yaml()


def test_readme_table_is_the_spec_rendered() -> None:
    readme = README.read_text(encoding="utf-8")
    assert spec_module.readme_with_table(readme) == readme
    for entry in entries():
        assert f"| `{entry.key}` |" in readme, entry.key


def test_every_key_has_a_default_and_a_one_line_doc() -> None:
    keys = [e.key for e in entries()]
    assert len(keys) == len(set(keys)) > 30
    assert all(e.doc and "\n" not in e.doc for e in entries()), [e.key for e in entries() if not e.doc]
    # The YAML holds exactly these keys, with these defaults.
    yaml = OmegaConf.to_container(OmegaConf.load(DEFAULT_CONFIG))
    flat = {f"{k}.{kk}" if isinstance(v, dict) else k: vv if isinstance(v, dict) else v
            for k, v in yaml.items() for kk, vv in (v.items() if isinstance(v, dict) else [(None, v)])}
    assert set(flat) == set(keys)


def test_defaults_loaded_from_conf_equal_the_dataclass_defaults() -> None:
    loaded = _load()
    assert dataclasses.replace(loaded, output_path="???", audio_dir=None) == JobSpec()


def test_help_lists_every_key_with_its_default_and_its_line(capsys) -> None:
    from jobs.transcribe import main

    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for entry in entries():
        line = next(line for line in out.splitlines() if line.strip().startswith(entry.key + " "))
        assert entry.default in line and entry.doc in line, entry.key


# --- overrides -----------------------------------------------------------------------------------------------------


def test_overrides_are_typed_and_nested() -> None:
    spec = _load("batch_size=4", "audio.max_duration=30", "strip_lang_tags=false", "target_lang=de-DE",
                 "compute.device=cuda:1", "compute.max_actors=3", "compute.dtype=bfloat16",
                 "segmenting.max_seconds=20", "output.commit_seconds=60", "resume.on_settings_change=keep")
    assert spec.batch_size == 4 and isinstance(spec.batch_size, int)
    assert spec.audio.max_duration == 30.0 and isinstance(spec.audio.max_duration, float)
    assert spec.strip_lang_tags is False and spec.target_lang == "de-DE"
    assert (spec.compute.device, spec.compute.max_actors, spec.compute.dtype) == ("cuda:1", 3, "bfloat16")
    assert spec.segmenting.max_seconds == 20.0 and spec.output.commit_seconds == 60.0
    assert spec.resume.on_settings_change == "keep"


def test_att_context_size_parses_to_list() -> None:
    spec = _load("att_context_size=[56,3]")
    assert spec.att_context_size == [56, 3] and type(spec.att_context_size) is list


def test_config_file_is_read(tmp_path) -> None:
    conf = tmp_path / "job.yaml"
    conf.write_text("output_path: s3://b/out\ndataset_manifest: s3://b/m/*.jsonl\nbatch_size: 8\n"
                    "audio:\n  channel_mode: split\n")
    spec = load_spec(["batch_size=2"], config_file=conf)
    assert (spec.output_path, spec.dataset_manifest, spec.batch_size, spec.audio.channel_mode) == (
        "s3://b/out", "s3://b/m/*.jsonl", 2, "split")


def test_dataset_manifest_list_form_carries_any_path(tmp_path) -> None:
    """Beside the comma form (for names without commas), a YAML/JSON list whose entries may hold any character."""
    spec = load_spec(["output_path=/o", 'dataset_manifest=["/data/a,b/m.jsonl","/data/calls[1].jsonl"]'])
    assert spec.dataset_manifest == ["/data/a,b/m.jsonl", "/data/calls[1].jsonl"]
    assert load_spec(["output_path=/o", "dataset_manifest=/a.jsonl,/b.jsonl"]).dataset_manifest == "/a.jsonl,/b.jsonl"
    conf = tmp_path / "job.yaml"
    conf.write_text("output_path: /o\ndataset_manifest:\n  - /data/a,b/m.jsonl\n  - s3://b/m/*.jsonl\n")
    assert load_spec([], config_file=conf).dataset_manifest == ["/data/a,b/m.jsonl", "s3://b/m/*.jsonl"]


@pytest.mark.parametrize(("value", "message"), [
    ("{a: 1}", r"^dataset_manifest must be a path, a glob, a comma-separated list or a list of them; got an object$"),
    ("[[/a.jsonl]]", r"^dataset_manifest entry 1 must be a path or a glob; got a list$"),
    ("['/a.jsonl','']", r"^dataset_manifest entry 2 is empty$"),
    ("[]", r"^set exactly one of dataset_manifest"),
])
def test_dataset_manifest_of_the_wrong_shape_is_one_message(value, message) -> None:
    with pytest.raises(ConfigError, match=message):
        load_spec(["output_path=/o", f"dataset_manifest={value}"])


def test_old_flat_names_still_work_with_a_deprecation_line(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="nemotron_batch.config"):
        spec = _load("channel_mode=split", "max_segment_seconds=20", "min_segment_seconds=5", "dtype=bfloat16",
                     "rows_per_file=7", "ray_address=auto")
    assert (spec.audio.channel_mode, spec.segmenting.max_seconds, spec.segmenting.min_seconds) == ("split", 20.0, 5.0)
    assert (spec.compute.dtype, spec.output.rows_per_file, spec.compute.ray_address) == ("bfloat16", 7, "auto")
    lines = [r.getMessage() for r in caplog.records]
    assert "deprecated key 'channel_mode' (on the command line): use audio.channel_mode=...; the old name is " \
           "accepted until the next release" in lines
    assert len([line for line in lines if line.startswith("deprecated key")]) == 6
    # Every old name maps onto a key of the spec.
    keys = {e.key for e in entries()}
    assert set(RENAMED.values()) <= keys


def test_removed_names_are_accepted_ignored_and_said(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="nemotron_batch.config"):
        spec = _load("wave_rows=5", "batches_per_call=4", "rows_per_block=2")
    assert spec == _load()
    lines = [r.getMessage() for r in caplog.records]
    assert sum("is no longer used and is ignored" in line for line in lines) == 3 == len(REMOVED)


def test_old_names_in_a_config_file_work_too(tmp_path, caplog) -> None:
    conf = tmp_path / "old.yaml"
    conf.write_text("output_path: /o\naudio_dir: /a\nchannel_mode: split\nmax_duration: 60\nwave_rows: 9\n")
    with caplog.at_level(logging.WARNING, logger="nemotron_batch.config"):
        spec = load_spec([], config_file=conf)
    assert (spec.audio.channel_mode, spec.audio.max_duration) == ("split", 60.0)
    assert any("(in old.yaml)" in r.getMessage() for r in caplog.records)


def test_unknown_key_named_with_every_known_key() -> None:
    with pytest.raises(ConfigError, match=r"^unknown configuration key 'batchsize'\. Known keys: model_path, ") as e:
        _load("batchsize=4")
    assert "audio.channel_mode" in str(e.value) and "resume.on_settings_change" in str(e.value)
    with pytest.raises(ConfigError, match=r"^unknown configuration key 'audio.chanel_mode'"):
        _load("audio.chanel_mode=split")


def test_wrong_type() -> None:
    with pytest.raises(ConfigError, match=r"^bad value for batch_size: .*'abc'"):
        _load("batch_size=abc")
    with pytest.raises(ConfigError, match=r"^bad value for att_context_size"):
        _load("att_context_size=abc")


def test_output_path_missing_says_required() -> None:
    with pytest.raises(ConfigError) as error:
        load_spec(["audio_dir=/tmp/audio"])
    assert str(error.value) == "output_path is required (e.g. output_path=/data/out)"


@pytest.mark.parametrize("overrides", [
    ["output_path=/o"],
    ["output_path=/o", "dataset_manifest=/m.jsonl", "audio_dir=/a"],
    ["output_path=/o", "dataset_manifest="],
])
def test_exactly_one_input(overrides) -> None:
    with pytest.raises(ConfigError, match="set exactly one of dataset_manifest .* or audio_dir"):
        load_spec(overrides)


@pytest.mark.parametrize("override, message", [
    ("compute.dtype=fp8", "compute.dtype must be one of float32, bfloat16, float16, got 'fp8'"),
    ("batch_size=0", r"batch_size must be in \[1, 65536\], got 0"),
    ("compute.device=tpu", "compute.device must be auto, cpu, cuda or cuda:N, got 'tpu'"),
    ("att_context_size=[56]", r"att_context_size is \[left, right\]"),
    ("compute.min_actors=0", "need 1 <= compute.min_actors <= compute.max_actors"),
    ("audio.max_duration=0", r"audio.max_duration must be in \(0, "),
    ("audio.max_duration=nan", r"audio.max_duration must be in \(0, 604800\], got nan"),
    ("audio.max_file_mb=-1", r"audio.max_file_mb must be in \(0, "),
    ("audio.fetch_timeout=inf", r"audio.fetch_timeout must be in \(0, 3600\], got inf"),
    (f"segmenting.max_seconds={MAX_SEGMENT_SECONDS * 12:g}", rf"segmenting.max_seconds must be in \[1, "
                                                            rf"{MAX_SEGMENT_SECONDS:g}\]"),
    ("segmenting.overlap_seconds=20", r"segmenting.overlap_seconds must be in \[0, 10\]"),
    ("compute.block_seconds=0", r"compute.block_seconds must be in \[1, "),
    ("output.rows_per_file=0", r"output.rows_per_file must be in \[1, "),
    ("output.commit_seconds=nan", r"output.commit_seconds must be in \[1, 86400\], got nan"),
    ("resume.on_settings_change=ask", "resume.on_settings_change must be one of refuse, redo, keep, got 'ask'"),
    ("audio.channel_mode=stereo", "audio.channel_mode must be mix or split, got 'stereo'"),
])
def test_bad_settings(override, message) -> None:
    with pytest.raises(ConfigError, match=message):
        _load(override)


def test_every_float_setting_refuses_nan() -> None:
    for entry in entries():
        if entry.default.replace(".", "", 1).lstrip("-").isdigit() and "." in entry.default:
            with pytest.raises(ConfigError, match=entry.key.rsplit(".", 1)[-1]):
                _load(f"{entry.key}=nan")


def test_norwegian_no_survives_yaml(tmp_path) -> None:
    """YAML 1.1 reads a bare `no` as false; target_lang=no still means Norwegian (on the command line and in YAML)."""
    assert _load("target_lang=no").target_lang == "no"
    assert _load("target_lang=NO").target_lang == "no"
    conf = tmp_path / "nb.yaml"
    conf.write_text("output_path: /o\naudio_dir: /a\ntarget_lang: no\n")
    assert load_spec([], config_file=conf).target_lang == "no"
    assert check_model(_load("target_lang=no"), CARD)[1] == "no-NO"


# --- check_inputs -------------------------------------------------------------------------------------------------


def urls_of(spec) -> list[str]:
    return [source.url for source in check_inputs(spec)]


def test_check_inputs_manifests_normalised_each_once(tmp_path) -> None:
    (tmp_path / "a.jsonl").write_text('{"audio_filepath": "a.wav"}\n')
    (tmp_path / "b.jsonl").write_text('{"audio_filepath": "b.wav"}\n')
    (tmp_path / "x").mkdir()  # `x/../a.jsonl` names a.jsonl only where x exists (as the kernel resolves it)
    spec = load_spec([f"output_path={tmp_path}/out/run",
                      f"dataset_manifest={tmp_path}/*.jsonl,{tmp_path}/x/../a.jsonl,{tmp_path}/a.jsonl"])
    assert urls_of(spec) == [f"{tmp_path}/a.jsonl", f"{tmp_path}/b.jsonl"]
    assert (tmp_path / "out" / "run").is_dir()  # a local output folder is created up front


def test_check_inputs_no_manifest_matches(tmp_path) -> None:
    spec = load_spec([f"output_path={tmp_path}/out", f"dataset_manifest={tmp_path}/*.jsonl"])
    with pytest.raises(ConfigError, match=rf"^dataset_manifest '{tmp_path}/\*\.jsonl' matches no file$"):
        check_inputs(spec)


def test_check_inputs_exact_names_lists_and_folders(tmp_path) -> None:
    for name in ["calls[1].jsonl", "calls1.jsonl", "good.jsonl", "a,b/m.jsonl", "dir/m.jsonl", "dir/audio/x.wav"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text('{"audio_filepath": "a.wav"}\n')

    def inputs(value: str) -> list[str]:
        return urls_of(load_spec([f"output_path={tmp_path}/out", f"dataset_manifest={value}"]))

    assert inputs(f"{tmp_path}/calls[1].jsonl") == [f"{tmp_path}/calls[1].jsonl"]  # not calls1.jsonl
    assert inputs(f"{tmp_path}/a,b/m.jsonl") == [f"{tmp_path}/a,b/m.jsonl"]
    assert inputs(f"['{tmp_path}/a,b/m.jsonl','{tmp_path}/good.jsonl']") == [f"{tmp_path}/a,b/m.jsonl",
                                                                               f"{tmp_path}/good.jsonl"]
    refusals = {
        f"{tmp_path}/good.jsonl,{tmp_path}/goood.jsonl": f"dataset_manifest '{tmp_path}/goood.jsonl' matches no file",
        f"['{tmp_path}/good.jsonl','{tmp_path}/goood.jsonl']":
            f"dataset_manifest '{tmp_path}/goood.jsonl' matches no file",
        f"{tmp_path}/dir": f"dataset_manifest '{tmp_path}/dir' is a folder, not a file",
        f"{tmp_path}/dir/*": f"dataset_manifest '{tmp_path}/dir/*' matches a folder, {tmp_path}/dir/audio, not only "
                             f"files",
    }
    for value, message in refusals.items():
        with pytest.raises(ConfigError) as refused:
            inputs(value)
        assert str(refused.value) == message


def test_check_inputs_empty_manifests(tmp_path) -> None:
    """An empty manifest beside others is read (it adds no row: an hour without calls); only when every manifest
    named is empty is the job refused."""
    (tmp_path / "a.jsonl").write_text('{"audio_filepath": "a.wav"}\n')
    (tmp_path / "empty.jsonl").write_bytes(b"")
    (tmp_path / "blank.jsonl").write_text("\n  \n")
    assert urls_of(load_spec([f"output_path={tmp_path}/out", f"dataset_manifest={tmp_path}/*.jsonl"])) == [
        f"{tmp_path}/a.jsonl", f"{tmp_path}/blank.jsonl", f"{tmp_path}/empty.jsonl"]
    spec = load_spec([f"output_path={tmp_path}/out", f"dataset_manifest={tmp_path}/empty.jsonl"])
    with pytest.raises(ConfigError, match=rf"^manifest {tmp_path}/empty\.jsonl is empty: nothing to transcribe$"):
        check_inputs(spec)
    spec = load_spec([f"output_path={tmp_path}/out", f"dataset_manifest={tmp_path}/[be]*.jsonl"])
    with pytest.raises(ConfigError, match=rf"^dataset_manifest '{tmp_path}/\[be\]\*\.jsonl': all 2 manifests are "
                                          "empty: nothing to transcribe$"):
        check_inputs(spec)


def test_check_inputs_audio_dir(tmp_path) -> None:
    (tmp_path / "audio").mkdir()
    (tmp_path / "audio" / "a.wav").write_bytes(b"x")
    (tmp_path / "file.wav").write_bytes(b"x")
    assert urls_of(load_spec([f"output_path={tmp_path}/out", f"audio_dir={tmp_path}/audio"])) == [
        f"{tmp_path}/audio"]
    for bad in (tmp_path / "file.wav", tmp_path / "missing"):
        spec = load_spec([f"output_path={tmp_path}/out", f"audio_dir={bad}"])
        with pytest.raises(ConfigError, match=rf"^audio_dir '{bad}' is not a folder$"):
            check_inputs(spec)
    (tmp_path / "silent").mkdir()
    (tmp_path / "silent" / "notes.txt").write_text("no audio")
    with pytest.raises(ConfigError, match=rf"^audio_dir {tmp_path}/silent has no audio files: nothing to"):
        check_inputs(load_spec([f"output_path={tmp_path}/out", f"audio_dir={tmp_path}/silent"]))


def test_check_inputs_output_not_creatable(tmp_path) -> None:
    (tmp_path / "audio").mkdir()
    (tmp_path / "audio" / "a.wav").write_bytes(b"x")
    (tmp_path / "blocker").write_text("a file where a folder should be")
    spec = load_spec([f"output_path={tmp_path}/blocker/out", f"audio_dir={tmp_path}/audio"])
    with pytest.raises(ConfigError, match=rf"^cannot use output_path '{tmp_path}/blocker/out': "):
        check_inputs(spec)


def test_check_inputs_s3_manifest_and_a_missing_bucket_is_never_created(s3fs_client, bucket, tmp_path) -> None:
    s3fs_client.pipe(f"{bucket}/m/1.jsonl", b'{"audio_filepath": "a.wav"}\n')
    s3fs_client.pipe(f"{bucket}/m/2.jsonl", b"")
    spec = load_spec([f"output_path=s3://{bucket}/out", f"dataset_manifest=s3://{bucket}/m/1.jsonl"])
    assert urls_of(spec) == [f"s3://{bucket}/m/1.jsonl"]
    spec = load_spec([f"output_path={tmp_path}/out", f"dataset_manifest=s3://{bucket}/m/*.jsonl"])
    assert urls_of(spec) == [f"s3://{bucket}/m/1.jsonl", f"s3://{bucket}/m/2.jsonl"]  # the empty one adds no row
    spec = load_spec([f"output_path={tmp_path}/out", f"dataset_manifest=s3://{bucket}/m/2.jsonl"])
    with pytest.raises(ConfigError, match=f"manifest s3://{bucket}/m/2.jsonl is empty"):
        check_inputs(spec)
    spec = load_spec(["output_path=s3://no-such-bucket-typo/out", f"dataset_manifest=s3://{bucket}/m/1.jsonl"])
    with pytest.raises(ConfigError, match="bucket 'no-such-bucket-typo' does not exist"):
        check_inputs(spec)
    assert not s3fs_client.exists("no-such-bucket-typo")


# --- check_model --------------------------------------------------------------------------------------------------


def test_card_locales_are_canonical_and_the_default_is_the_widest_right_context() -> None:
    assert "de-DE" in CARD.locales and "de" not in CARD.locales and "auto" not in CARD.locales
    assert CARD.most_accurate_att_context_size == (56, 13)
    assert check_model(_load(), CARD) == ((56, 13), "auto")
    # Whatever the list's order or members.
    for listed in (((56, 13), (56, 0)), ((56, 0), (56, 1), (56, 3), (56, 6), (56, 13)), ((70, 1), (20, 13), (56, 6))):
        card = dataclasses.replace(CARD, att_context_sizes=listed)
        assert check_model(_load(), card)[0] == max(listed, key=lambda c: (c[1], c[0]))
    assert check_model(_load(), dataclasses.replace(CARD, att_context_sizes=()))[0] is None


def test_check_model_att_context_size() -> None:
    assert check_model(_load("att_context_size=[56,3]"), CARD)[0] == (56, 3)
    with pytest.raises(ConfigError) as error:
        check_model(_load("att_context_size=[56,1]"), CARD)
    assert str(error.value) == "att_context_size [56,1] is not offered by the checkpoint: [56,3] [56,0] [56,6] [56,13]"


@pytest.mark.parametrize("asked, canonical", [("de", "de-DE"), ("en", "en-US"), ("esES", "es-ES"), ("es", "es-US"),
                                              ("EN-us", "en-US"), (" de_de ", "de-DE"), ("auto", "auto")])
def test_check_model_resolves_aliases(asked, canonical) -> None:
    assert check_model(_load(f"target_lang={asked}"), CARD)[1] == canonical


def test_check_model_unknown_target_lang_lists_canonical_locales() -> None:
    with pytest.raises(ConfigError) as error:
        check_model(_load("target_lang=xx-XX"), CARD)
    message = str(error.value)
    assert message.startswith("unknown target_lang 'xx-XX'; this checkpoint knows: af-ZA, ")
    assert "de-DE" in message and ", de," not in message and "esES" not in message


# --- the job's exit code ------------------------------------------------------------------------------------------


def test_main_unknown_key_exits_2(capsys, tmp_path) -> None:
    from jobs.transcribe import main

    assert main([f"output_path={tmp_path}/out", f"audio_dir={tmp_path}", "bogus_key=1"]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: unknown configuration key 'bogus_key'")
    assert captured.out == ""


def test_main_unknown_target_lang_exits_2(capsys, tmp_path, tiny_model: Path) -> None:
    from jobs.transcribe import main

    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"audio_filepath": "a.wav"}\n')
    code = main([f"model_path={tiny_model}", f"dataset_manifest={manifest}", f"output_path={tmp_path}/out",
                 "target_lang=xx-XX"])
    assert code == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: unknown target_lang 'xx-XX'; this checkpoint knows: ")
    assert captured.out == ""

