"""Redaction holds for any character in a credential, wherever it comes from (environment, AWS credential files, URL
userinfo, signed URL queries, protocol fields in library messages), and leaves ordinary file names alone, including
names that look like `key=value`. Fuzzed with hypothesis; the logging filter is tested on real loggers."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import time
from contextlib import contextmanager
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from connectors import redaction
from connectors.redaction import FILES_CHECK_SECONDS, REDACTED, RedactingFilter, install_redaction, redact, register_secret

FUZZ = settings(max_examples=300, deadline=None, database=None)

# Characters a credential may hold. Whitespace, quotes and angle brackets end a URL or a value in any message, so a
# structure cannot be found across them (the by-value redaction still covers such secrets: see below).
SECRET_CHARS = st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="'\"<>` \\")
secrets_ = st.text(SECRET_CHARS, min_size=8, max_size=60)
# AWS secret access keys: 40 characters of base64, '/' and '+' included.
aws_secrets = st.text(st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/+"),
                      min_size=40, max_size=40)


@contextmanager
def env(**values: str):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(autouse=True)
def no_ambient_secrets(monkeypatch, tmp_path):
    """Each test sees only the secrets it sets (not the session's test keys, not a real ~/.aws)."""
    for name in list(os.environ):
        if name in redaction.SECRET_ENV_VARS or redaction._SECRET_ENV_NAME.search(name):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setattr(redaction, "_registered", set())


# Messages as the libraries print them, with the place of the secret marked {s}.
LIBRARY_MESSAGES = [
    "An error occurred (SignatureDoesNotMatch) when calling the GetObject operation: secret {s} rejected",
    "Cannot connect to host minio:9000 ssl:default [user {s}]",
    "ClientResponseError: 403, message='Forbidden', url='https://h.example/b/k.wav?X-Amz-Signature={s}'",
    "FileNotFoundError: https://AKIAEXAMPLE:{s}@h.example/b/k.wav",
    "HTTPSConnectionPool(host='h', port=443): Max retries exceeded with url: /b/k?X-Amz-Security-Token={s} (x)",
    "headers={{'Authorization': b'AWS4-HMAC-SHA256 Credential=AKIA/x, Signature={s}', 'User-Agent': b'x'}}",
    "{{'X-Amz-Security-Token': b'{s}', 'host': 'h'}}",
    "config: aws_secret_access_key = {s}",
    "s3://AKIAEXAMPLE:{s}@bucket/key.wav",
    "{s}",
]


@FUZZ
@given(secret=aws_secrets, template=st.sampled_from(LIBRARY_MESSAGES))
@example(secret="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", template="s3://AKIAEXAMPLE:{s}@bucket/key.wav")
def test_a_secret_from_the_environment_never_survives_in_any_spelling(secret, template) -> None:
    with env(AWS_SECRET_ACCESS_KEY=secret):
        for spelled in (secret, quote(secret, safe=""), quote_plus(secret)):
            out = redact(template.format(s=spelled))
            assert secret not in out and quote(secret, safe="") not in out and quote_plus(secret) not in out, out


@FUZZ
@given(secret=secrets_)
def test_a_password_in_url_userinfo_is_redacted_whatever_it_holds(secret) -> None:
    # A password whose characters before its first '/', '?' or '#' are all digits reads as host:port (documented).
    assume(not re.match(r"\d+(?:[/?#]|$)", secret))
    for url in (f"s3://AKIAEXAMPLE:{secret}@bucket/calls/a.wav", f"https://user:{secret}@h.example:8443/a.wav",
                f"ftp://u:{secret}@10.0.0.1/a.wav"):
        for text in (url, f"fetch: file not found: {url}", f"url='{url}'"):
            out = redact(text)
            assert secret not in out, out
            assert out.endswith(("a.wav", "a.wav'")), out  # the host and file still say which file


@FUZZ
@given(secret=secrets_, name=st.sampled_from(["X-Amz-Signature", "X-Amz-Credential", "X-Amz-Security-Token",
                                              "X-Goog-Signature", "sig", "Signature", "token", "anything"]))
def test_a_signed_url_query_is_redacted_whatever_it_holds(secret, name) -> None:
    url = f"https://bucket.s3.amazonaws.com/calls/a.wav?X-Amz-Date=20261121T000000Z&{name}={secret}"
    for text in (url, f"cannot read {url}: timed out", f"url: /calls/a.wav?{name}={secret} (Caused by x)"):
        if text.startswith("url:") and name == "anything":
            continue  # a query without a host is redacted only when it carries a signing parameter
        out = redact(text)
        assert secret not in out, out
        assert "a.wav" in out


@FUZZ
@given(secret=st.text(st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="'\"<>`\\&;,)]}"),
                      min_size=8, max_size=60),
       field=st.sampled_from(["password", "aws_secret_access_key", "AccountKey", "client_secret", "X-Amz-Signature",
                              "SharedAccessSignature", "access_token"]),
       separator=st.sampled_from(["=", ": ", " = ", "':'", "': b'"]))
def test_protocol_credential_fields_in_free_text_are_redacted(secret, field, separator) -> None:
    out = redact(f"while signing, {field}{separator}{secret} was sent")
    assert secret not in out.replace(field, ""), out  # (a secret may be a piece of the field's name)


SEGMENT_NAMES = ["token", "secret", "password", "key", "signature", "sig", "credential", "api_key", "date", "lang",
                 "X-Amz-Signature", "AccountKey", "access_token"]
segment = st.one_of(
    st.builds(lambda n, v: f"{n}={v}", st.sampled_from(SEGMENT_NAMES),
              st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789._-"), min_size=1, max_size=12)),
    st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789._-"), min_size=1, max_size=12),
)


@FUZZ
@given(parts=st.lists(segment, min_size=1, max_size=5),
       root=st.sampled_from(["", "/data/", "audio/", "s3://bucket/", "gs://b/", "https://host.example/", "file:///d/"]))
@example(parts=["date=2026-01-01", "token=5.wav"], root="s3://b/")
@example(parts=["secret=1.wav"], root="audio/")
@example(parts=["password=1.wav"], root="")
def test_file_names_that_look_like_pairs_are_kept(parts, root) -> None:
    path = root + "/".join(parts) + ".wav"
    assert redact(path) == path  # a field that holds a path (audio_filepath) keeps it, relative or not
    if root not in ("", "audio/"):
        # In a message, the job names files by their resolved URL or absolute path, and those keep their names too.
        # (A relative `password=x/...` after a space reads as a pair: documented in connectors.redaction.)
        assert redact(f"decode: file not found: {path}") == f"decode: file not found: {path}"


@FUZZ
@given(st.text(max_size=200))
def test_redaction_is_idempotent(text) -> None:
    once = redact(text)
    assert redact(once) == once


def test_examples_that_broke_before() -> None:
    # The cases: a secret with '/', names that look like pairs.
    assert redact("s3://AKIAX:wJal/rXUt+nFEMI@b/k.wav") == f"s3://{REDACTED}@b/k.wav"
    assert redact("s3://b/date=2026-01-01/token=5.wav") == "s3://b/date=2026-01-01/token=5.wav"
    assert redact("audio/secret=1.wav") == "audio/secret=1.wav"
    assert redact("https://host:8080/photos/a@2x.wav") == "https://host:8080/photos/a@2x.wav"
    assert redact("s3://bucket/what?.wav") == "s3://bucket/what?.wav"  # in s3 keys '?' is a character
    assert redact(None) is None and redact("") == ""
    # A library quoting a piece of a credential that the same message shows in a URL (yarl, on a raw '/').
    assert redact("cannot read http://AKIA:wJal/rXUt@h:1/a.wav: ValueError: Port could not be cast to integer "
                  "value as 'wJal'") == (f"cannot read http://{REDACTED}@h:1/a.wav: ValueError: Port could not be "
                                         f"cast to integer value as '{REDACTED}'")
    assert redact("https://h/k.wav?X-Amz-Security-Token=IQoJ%2F%2Babc&X-Amz-Date=2026; invalid token IQoJ/+abc") \
        == f"https://h/k.wav?{REDACTED} invalid token {REDACTED}"


def test_secrets_of_the_aws_credentials_files_are_redacted_in_every_profile(tmp_path, monkeypatch) -> None:
    creds = tmp_path / "credentials"
    creds.write_text("[default]\naws_access_key_id = AKIADEFAULTEXAMPLE\n"
                     "aws_secret_access_key = de/fault+Secret0123456789abcdefghijklmn\n\n"
                     "[other]\naws_access_key_id = AKIAOTHEREXAMPLE1\naws_secret_access_key = 0th3r/Secret+xyz\n"
                     "aws_session_token = FwoGZXIvYXdzEJr//////////wEaDOTHERTOKEN\n")
    config = tmp_path / "config"
    config.write_text("[profile cfg]\naws_secret_access_key = c0nfig/Secret+key\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    text = ("signing failed with de/fault+Secret0123456789abcdefghijklmn (AKIADEFAULTEXAMPLE), 0th3r/Secret+xyz, "
            "FwoGZXIvYXdzEJr//////////wEaDOTHERTOKEN and c0nfig%2FSecret%2Bkey")
    out = redact(text)
    for secret in ("de/fault", "AKIADEFAULTEXAMPLE", "0th3r/Secret", "OTHERTOKEN", "c0nfig"):
        assert secret not in out, out
    # The files are re-read when they change (their times are looked at once a second).
    creds.write_text("[default]\naws_secret_access_key = n3w/Secret+value\n")
    time.sleep(FILES_CHECK_SECONDS + 0.1)
    assert redact("key n3w/Secret+value") == f"key {REDACTED}"


def test_google_service_account_and_named_env_secrets(tmp_path, monkeypatch) -> None:
    key_file = tmp_path / "sa.json"
    key_file.write_text(json.dumps({"type": "service_account", "private_key_id": "0123456789abcdef0123",
                                    "private_key": "-----BEGIN PRIVATE KEY-----\nMIIEv/Q+IBADAN\n-----END"}))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    monkeypatch.setenv("MINIO_ROOT_PASSWORD", "m1n10/passw0rd")
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING",
                       "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=azure/Key+==;EndpointSuffix=x")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false-but-long")  # not a token
    out = redact("id 0123456789abcdef0123, pw m1n10/passw0rd, key azure/Key+==, path " + str(key_file)
                 + ", false-but-long")
    assert "0123456789abcdef0123" not in out and "m1n10" not in out and "azure/Key" not in out
    assert str(key_file) in out and "false-but-long" in out
    register_secret("r3gistered/at+run-time")
    assert redact("x r3gistered/at+run-time y") == f"x {REDACTED} y"


# --- logging ------------------------------------------------------------------------------------------------------


def test_filter_on_a_handler_redacts_message_arguments_and_traceback(monkeypatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJal/rXUt+nFEMIsecretKEY")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("test.redaction.handler")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("fetch %s failed", "https://u:p/ss@h/a.wav?X-Amz-Signature=abc")
        try:
            raise OSError("denied for wJal/rXUt+nFEMIsecretKEY")
        except OSError:
            logger.exception("boom with %r", {"aws_secret_access_key": "wJal/rXUt+nFEMIsecretKEY"})
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert "wJal/rXUt" not in text and "p/ss" not in text and "abc" not in text
    assert "fetch https://<redacted>@h/a.wav?<redacted> failed" in text
    assert "Traceback" in text and "denied for <redacted>" in text


def test_install_redaction_covers_library_loggers_and_later_handlers(monkeypatch) -> None:
    monkeypatch.setenv("AWS_SESSION_TOKEN", "IQoJb3JpZ2luX2Vj/+token")
    factory = logging.getLogRecordFactory()
    try:
        install_redaction()
        install_redaction()  # idempotent
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)  # added after: the record factory still covers it
        library = logging.getLogger("botocore.endpoint.test")
        library.addHandler(handler)
        library.setLevel(logging.DEBUG)
        library.propagate = False
        library.debug("Sending http request: <AWSPreparedRequest headers={'X-Amz-Security-Token': b'%s'}>",
                      "IQoJb3JpZ2luX2Vj/+token")
        library.removeHandler(handler)
    finally:
        logging.setLogRecordFactory(factory)
    assert stream.getvalue().strip() == ("Sending http request: <AWSPreparedRequest headers="
                                         "{'X-Amz-Security-Token': b'<redacted>'}>")
