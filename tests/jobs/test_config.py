"""Tests for jobs.config (load, settings, inputs, model checks) and the job's exit code on a bad config."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from jobs.config import (DEFAULT_CONFIG, ConfigError, TranscribeConfig, check_inputs, check_model,
                         load_config)
from pipeline.models.base import ModelCard

CARD = ModelCard(
    model_path="/models/x.nemo",
    model_class="nemo.collections.asr.models.EncDecRNNTBPEModelWithPrompt",
    sample_rate=16000,
    prompt_dictionary={"en-US": 0, "es-ES": 1, "de-DE": 2, "fr-FR": 3, "auto": 101},
    att_context_sizes=((56, 0), (56, 1), (56, 3), (56, 6), (56, 13)),
)


def _load(*overrides: str) -> TranscribeConfig:
    return load_config(["output_path=/tmp/out", "audio_dir=/tmp/audio", *overrides])


# --- load_config --------------------------------------------------------------------------------------------------


def test_defaults_from_yaml() -> None:
    cfg = _load()
    assert isinstance(cfg, TranscribeConfig)
    # Every key of conf/transcribe.yaml is a config field, and its value is the default (unless overridden here).
    defaults = OmegaConf.to_container(OmegaConf.load(DEFAULT_CONFIG))
    assert set(defaults) == set(TranscribeConfig.__dataclass_fields__)
    for key, value in defaults.items():
        if key not in ("output_path", "audio_dir"):
            assert getattr(cfg, key) == value, key
    assert cfg.output_path == "/tmp/out"
    assert cfg.audio_dir == "/tmp/audio"
    assert cfg.dataset_manifest is None
    assert cfg.model_path == "nvidia/nemotron-3.5-asr-streaming-0.6b"
    assert cfg.model_adapter == "nemotron_rnnt"
    assert cfg.target_lang == "auto"
    assert cfg.att_context_size is None
    assert cfg.strip_lang_tags is True
    assert cfg.batch_size == 16
    assert cfg.device == "auto"
    assert cfg.dtype == "float32"
    assert cfg.max_actors is None
    assert cfg.ray_address is None


def test_overrides_are_typed() -> None:
    cfg = _load("batch_size=4", "max_duration=30", "strip_lang_tags=false", "target_lang=de-DE", "device=cuda:1",
                "max_actors=3", "dtype=bfloat16")
    assert cfg.batch_size == 4 and isinstance(cfg.batch_size, int)
    assert cfg.max_duration == 30.0 and isinstance(cfg.max_duration, float)
    assert cfg.strip_lang_tags is False
    assert cfg.target_lang == "de-DE"
    assert cfg.device == "cuda:1"
    assert cfg.max_actors == 3
    assert cfg.dtype == "bfloat16"


def test_att_context_size_parses_to_list() -> None:
    cfg = _load("att_context_size=[56,3]")
    assert cfg.att_context_size == [56, 3]
    assert type(cfg.att_context_size) is list


def test_config_file_is_read(tmp_path) -> None:
    conf = tmp_path / "job.yaml"
    conf.write_text("output_path: s3://b/out\ndataset_manifest: s3://b/m/*.jsonl\nbatch_size: 8\n")
    cfg = load_config(["batch_size=2"], config_file=conf)
    assert (cfg.output_path, cfg.dataset_manifest, cfg.batch_size) == ("s3://b/out", "s3://b/m/*.jsonl", 2)


def test_unknown_key_named() -> None:
    with pytest.raises(ConfigError, match=r"^unknown configuration key 'batchsize'\. Known keys: model_path, "):
        _load("batchsize=4")


def test_wrong_type() -> None:
    with pytest.raises(ConfigError, match=r"^bad value for batch_size: .*'abc'"):
        _load("batch_size=abc")
    with pytest.raises(ConfigError, match=r"^bad value for att_context_size"):
        _load("att_context_size=abc")


def test_output_path_missing() -> None:
    with pytest.raises(ConfigError, match="output_path"):
        load_config(["audio_dir=/tmp/audio"])


def test_output_path_missing_says_required() -> None:
    with pytest.raises(ConfigError) as error:
        load_config(["audio_dir=/tmp/audio"])
    assert str(error.value) == "output_path is required (e.g. output_path=/data/out)"


@pytest.mark.parametrize("overrides", [
    ["output_path=/o"],
    ["output_path=/o", "dataset_manifest=/m.jsonl", "audio_dir=/a"],
    ["output_path=/o", "dataset_manifest="],
])
def test_exactly_one_input(overrides) -> None:
    with pytest.raises(ConfigError, match="set exactly one of dataset_manifest .* or audio_dir"):
        load_config(overrides)


@pytest.mark.parametrize("override, message", [
    ("dtype=fp8", "dtype must be one of float32, bfloat16, float16, got 'fp8'"),
    ("batch_size=0", "batch_size and batches_per_call must be >= 1, got 0, 16"),
    ("device=tpu", "device must be auto, cpu, cuda or cuda:N, got 'tpu'"),
    ("att_context_size=[56]", r"att_context_size is \[left, right\]"),
    ("min_actors=0", "need 1 <= min_actors <= max_actors"),
    ("max_duration=0", "max_duration, max_file_mb, rows_per_block, rows_per_file and wave_rows must be positive"),
])
def test_bad_settings(override, message) -> None:
    with pytest.raises(ConfigError, match=message):
        _load(override)


# --- check_inputs -------------------------------------------------------------------------------------------------


def test_check_inputs_manifests(tmp_path) -> None:
    (tmp_path / "a.jsonl").write_text('{"audio_filepath": "a.wav"}\n')
    (tmp_path / "b.jsonl").write_text('{"audio_filepath": "b.wav"}\n')
    cfg = load_config([f"output_path={tmp_path}/out/run", f"dataset_manifest={tmp_path}/*.jsonl"])
    assert check_inputs(cfg) == [f"{tmp_path}/a.jsonl", f"{tmp_path}/b.jsonl"]
    assert (tmp_path / "out" / "run").is_dir()  # the output folder is created up front


def test_check_inputs_no_manifest_matches(tmp_path) -> None:
    cfg = load_config([f"output_path={tmp_path}/out", f"dataset_manifest={tmp_path}/*.jsonl"])
    with pytest.raises(ConfigError, match=rf"^dataset_manifest '{tmp_path}/\*\.jsonl' matches no file$"):
        check_inputs(cfg)


def test_check_inputs_empty_manifest(tmp_path) -> None:
    (tmp_path / "a.jsonl").write_text('{"audio_filepath": "a.wav"}\n')
    (tmp_path / "empty.jsonl").write_bytes(b"")
    cfg = load_config([f"output_path={tmp_path}/out", f"dataset_manifest={tmp_path}/*.jsonl"])
    with pytest.raises(ConfigError, match=rf"^manifest {tmp_path}/empty\.jsonl is empty: nothing to transcribe$"):
        check_inputs(cfg)


def test_check_inputs_audio_dir(tmp_path) -> None:
    (tmp_path / "audio").mkdir()
    (tmp_path / "file.wav").write_bytes(b"x")
    assert check_inputs(load_config([f"output_path={tmp_path}/out", f"audio_dir={tmp_path}/audio"])) == []
    for bad in (tmp_path / "file.wav", tmp_path / "missing"):
        cfg = load_config([f"output_path={tmp_path}/out", f"audio_dir={bad}"])
        with pytest.raises(ConfigError, match=rf"^audio_dir '{bad}' is not a folder$"):
            check_inputs(cfg)


def test_check_inputs_output_not_creatable(tmp_path) -> None:
    (tmp_path / "audio").mkdir()
    (tmp_path / "blocker").write_text("a file where a folder should be")
    cfg = load_config([f"output_path={tmp_path}/blocker/out", f"audio_dir={tmp_path}/audio"])
    with pytest.raises(ConfigError, match=rf"^cannot create output_path '{tmp_path}/blocker/out': "):
        check_inputs(cfg)


def test_check_inputs_s3_manifest(s3fs_client, bucket, tmp_path) -> None:
    s3fs_client.pipe(f"{bucket}/m/1.jsonl", b'{"audio_filepath": "a.wav"}\n')
    s3fs_client.pipe(f"{bucket}/m/2.jsonl", b"")
    cfg = load_config([f"output_path={tmp_path}/out", f"dataset_manifest=s3://{bucket}/m/1.jsonl"])
    assert check_inputs(cfg) == [f"s3://{bucket}/m/1.jsonl"]
    cfg = load_config([f"output_path={tmp_path}/out", f"dataset_manifest=s3://{bucket}/m/*.jsonl"])
    with pytest.raises(ConfigError, match=f"manifest s3://{bucket}/m/2.jsonl is empty"):
        check_inputs(cfg)


# --- check_model --------------------------------------------------------------------------------------------------


def test_card_properties() -> None:
    assert CARD.locales == ("de-DE", "en-US", "es-ES", "fr-FR")
    assert CARD.most_accurate_att_context_size == (56, 13)


def test_check_model_default_is_widest_right_context() -> None:
    assert check_model(_load(), CARD) == (56, 13)
    shuffled = ModelCard("m", "c", 16000, {"auto": 101}, ((70, 1), (56, 13), (20, 13), (56, 6)))
    assert check_model(_load(), shuffled) == (56, 13)
    assert check_model(_load(), ModelCard("m", "c", 16000, {"auto": 101}, ())) is None


def test_check_model_att_context_size_offered() -> None:
    assert check_model(_load("att_context_size=[56,3]"), CARD) == (56, 3)


def test_check_model_att_context_size_not_offered() -> None:
    with pytest.raises(ConfigError) as error:
        check_model(_load("att_context_size=[70,13]"), CARD)
    assert str(error.value) == ("att_context_size [70,13] is not offered by the checkpoint: "
                                "[56,0] [56,1] [56,3] [56,6] [56,13]")


def test_check_model_target_lang() -> None:
    assert check_model(_load("target_lang=de-DE"), CARD) == (56, 13)
    assert check_model(_load("target_lang=auto"), CARD) == (56, 13)
    with pytest.raises(ConfigError) as error:
        check_model(_load("target_lang=xx-XX"), CARD)
    assert str(error.value) == ("target_lang 'xx-XX' is not in the checkpoint's prompt dictionary; "
                                "use auto or one of: de-DE, en-US, es-ES, fr-FR")


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
    assert captured.err.strip() == ("error: target_lang 'xx-XX' is not in the checkpoint's prompt dictionary; "
                                    "use auto or one of: de-DE, en-US, es-ES, fr-FR, ja-JP")
    assert captured.out == ""
