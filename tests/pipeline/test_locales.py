"""Tests for pipeline.locales and pipeline.options: aliases resolved to the canonical locale once, when a manifest row
is read, with the row's and the job's options merged."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from connectors.audio_source import AudioSource
from connectors.manifests import ManifestRow
from pipeline.locales import Locales, UnknownLocale, dictionary_key
from pipeline.models.released import AUTO_PROMPT_INDEX, PROMPT_DICTIONARY
from pipeline.options import JobDefaults, source_row

RELEASED = Locales.from_dictionary(PROMPT_DICTIONARY)


@pytest.mark.parametrize("asked, canonical, index", [
    ("en", "en-US", 0), ("en-US", "en-US", 0), ("enGB", "en-GB", 1), ("es", "es-US", 3), ("es-ES", "es-ES", 2),
    ("esES", "es-ES", 2), ("de", "de-DE", 9), ("pt", "pt-PT", 13), ("no", "no-NO", 27), ("nb", "nb-NO", 103),
    ("nn", "nn-NO", 104), ("ja-JA", "ja-JP", 10), ("hi-HI", "hi-IN", 6), ("zh-ZH", "zh-CN", 4), ("auto", "auto", 101),
    ("EN-us", "en-US", 0), (" de_de ", "de-DE", 9), ("AUTO", "auto", 101), ("nah-MX", "nah-MX", 83),
])
def test_aliases_case_and_blanks_resolve_to_the_canonical_locale(asked, canonical, index) -> None:
    assert RELEASED.resolve(asked) == canonical
    assert RELEASED.index(canonical) == index == PROMPT_DICTIONARY[canonical]


def test_the_released_dictionary_has_one_canonical_locale_per_index() -> None:
    indices = {i for i in PROMPT_DICTIONARY.values() if i != AUTO_PROMPT_INDEX}
    assert len(RELEASED.canonical) == len(indices)
    assert all("-" in c for c in RELEASED.canonical) and "auto" not in RELEASED.canonical


def test_unknown_locale_lists_canonical_locales_not_aliases() -> None:
    with pytest.raises(UnknownLocale) as error:
        RELEASED.resolve("xx-XX")
    message = str(error.value)
    assert message.startswith("unknown target_lang 'xx-XX'; this checkpoint knows: af-ZA, am-ET, ")
    assert message.endswith(", auto (and their aliases)")
    listed = message.split("knows: ", 1)[1].removesuffix(", auto (and their aliases)").split(", ")
    assert listed == list(RELEASED.canonical)
    with pytest.raises(UnknownLocale, match="target_lang must be a string, got int 7"):
        RELEASED.resolve(7)


def test_a_yaml_no_key_still_means_norwegian() -> None:
    """OmegaConf (YAML 1.1) reads the dictionary key `no` as False; it is still Norwegian."""
    loaded = OmegaConf.create("prompt_dictionary: {en-US: 0, no-NO: 27, no: 27, auto: 101}")
    keys = list(loaded.prompt_dictionary.keys())
    assert False in keys  # what the checkpoint's config gives
    locales = Locales.from_dictionary(loaded.prompt_dictionary)
    assert dictionary_key(False) == "no" and "no" in locales.indices
    assert locales.resolve("no") == locales.resolve(False) == locales.resolve("False") == "no-NO"


def test_the_first_locale_form_of_an_index_is_canonical_and_other_lists_work() -> None:
    other = Locales.from_dictionary({"de": 3, "de-AT": 3, "de-DE": 3, "fr": 5, "auto": 101})
    assert other.resolve("de") == other.resolve("de-DE") == "de-AT"
    assert other.resolve("fr") == "fr"  # no xx-YY name for that index: its first name
    assert other.canonical == ("de-AT", "fr")


# --- row options -----------------------------------------------------------------------------------------------------


def _row(**fields) -> ManifestRow:
    return ManifestRow(row_id="r" * 20, source_hash="h" * 12, manifest="/m.jsonl", line=1, audio_filepath="a.wav",
                       audio=AudioSource("/a.wav"), **fields)


def test_a_rows_own_options_win_and_are_resolved_once() -> None:
    defaults = JobDefaults(target_lang="en", channel_mode="split")
    plain = source_row(_row(), defaults, RELEASED)
    assert (plain["target_lang"], plain["prompt_locale"], plain["channel_mode"], plain["channel"]) == (
        "en", "en-US", "split", None)
    own = source_row(_row(requested_lang="de", requested_channel_mode="mix", requested_channel=1), defaults, RELEASED)
    assert (own["target_lang"], own["prompt_locale"], own["channel_mode"], own["channel"]) == ("de", "de-DE", "mix", 1)
    assert own["error"] is None and own["error_stage"] is None


def test_row_option_errors_have_their_stage() -> None:
    defaults = JobDefaults(target_lang="auto", channel_mode="mix")
    bad_lang = source_row(_row(requested_lang="xx-XX"), defaults, RELEASED)
    assert bad_lang["error_stage"] == "language" and bad_lang["error"].startswith("unknown target_lang 'xx-XX'")
    bad_mode = source_row(_row(requested_channel_mode="stereo"), defaults, RELEASED)
    assert (bad_mode["error_stage"], bad_mode["error"]) == ("manifest", "unknown channel_mode 'stereo'; use mix or split")
    bad_line = source_row(_row(error="line 1 has no audio_filepath"), defaults, RELEASED)
    assert (bad_line["error_stage"], bad_line["error"]) == ("manifest", "line 1 has no audio_filepath")
