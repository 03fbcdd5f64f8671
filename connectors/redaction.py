"""Credentials never leave the process in a message: `redact` removes them from any text (an error for the output's
`error` column, a log record, a library's exception), and `RedactingFilter` / `install_redaction` apply it to logging.

Secrets are found two ways, and both are needed:

1. By value, wherever they appear and whatever characters they hold: the values of credential environment variables
   (the AWS, Azure, Google and Hugging Face ones, and any variable whose name says secret, password, token or key),
   the keys of the AWS shared credentials and config files (every profile, read with botocore's own parser, no network),
   the private key and tokens of the file GOOGLE_APPLICATION_CREDENTIALS names, and values registered at run time
   (`register_secret`). Their URL-encoded spellings too (a secret with '/' or '+' appears as %2F, %2B in a URL).
2. By structure, for credentials the process never saw as values: the userinfo of a URL (`scheme://user:pass@host`,
   also when the password holds '/', '?', '#' or '@' unencoded), the query of a URL (a signed URL carries its signature
   and credential there), a query without a host that carries a signing parameter (urllib3 and botocore print
   `url: /bucket/key?X-Amz-Signature=...`), an `Authorization` header, and `name=value` / `'name': b'value'` pairs
   whose name is a protocol's credential field (X-Amz-Security-Token, Signature, AccountKey, aws_secret_access_key,
   password, ...).

What is NOT redacted, on purpose: path components that merely look like pairs. `s3://b/date=2026-01-01/token=5.wav`
and `audio/secret=1.wav` are file names: a pair counts only after a space, a quote or one of `?&;,([{`, never after
'/', and never at the very start of the text (a path given alone). Query strings of object-store URLs (`s3://`,
`gs://`, ...) are kept too: there '?' is part of a key's name (presigned URLs are https://). The one name that
is taken for a pair: a RELATIVE path whose first folder reads `password=x/...`, quoted after a space in a sentence
(the job quotes resolved URLs and absolute paths in its messages, so this does not happen there).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import time
from pathlib import Path
from urllib.parse import quote, quote_plus, unquote

REDACTED = "<redacted>"

# Environment variables whose values are credentials, by name.
SECRET_ENV_VARS = ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
                   "AZURE_STORAGE_KEY", "AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_SAS_TOKEN",
                   "AZURE_STORAGE_CONNECTION_STRING", "AZURE_CLIENT_SECRET", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
# ...and by the shape of the name: a word for a secret between underscores (TOKENIZERS_PARALLELISM is no token).
_SECRET_ENV_NAME = re.compile(r"(?:^|_)(?:SECRET|PASSWORD|PASSWD|TOKEN|CREDENTIALS?|API_?KEY|ACCESS_?KEY|"
                              r"PRIVATE_?KEY|ACCOUNT_?KEY|SAS_?TOKEN|AUTH)(?:_|$)", re.IGNORECASE)
# ...except those that name where a secret is kept, not the secret (GOOGLE_APPLICATION_CREDENTIALS is a file path).
_NOT_A_SECRET_ENV_NAME = re.compile(r"_(?:FILE|PATH|DIR|URL|URI|ENDPOINT|HOST|PORT|REGION|TYPE|MODE|NAME)$|"
                                    r"^GOOGLE_APPLICATION_CREDENTIALS$", re.IGNORECASE)
_MIN_SECRET_CHARS = 6  # shorter values ('1', 'true') would redact ordinary words; no real credential is that short

_AWS_FILE_KEYS = ("aws_secret_access_key", "aws_access_key_id", "aws_session_token", "aws_security_token")
_GOOGLE_FILE_KEYS = ("private_key", "private_key_id", "client_secret", "refresh_token")
# Fields of a connection string (Azure's `AccountName=..;AccountKey=..;SharedAccessSignature=..`) that are secret.
_CONNECTION_STRING_FIELD = re.compile(r"(?:AccountKey|SharedAccessSignature|SharedAccessKey|Password|Pwd)=([^;]+)",
                                      re.IGNORECASE)

_registered: set[str] = set()

# A URL: scheme, '//', then everything up to whitespace, a quote or an angle bracket (a URL in a message ends there).
# '<redacted>' (a known secret replaced already) does not end it.
_URL = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*)://(?P<rest>(?:[^\s'\"<>]|<redacted>)*)")
# Schemes where '?' belongs to an object's key, not to a query.
_KEY_SCHEMES = {"s3", "s3a", "s3n", "gs", "gcs", "az", "abfs", "abfss", "adl", "file", "local", "memory", "hf"}

# Query parameters that make a query a signed one (AWS SigV2/SigV4, Google, Azure SAS, CloudFront, OAuth).
_SIGNING_PARAMS = (r"x-amz-[a-z-]+|x-goog-[a-z-]+|signature|sig|awsaccesskeyid|googleaccessid|key-pair-id|policy"
                   r"|token|access_token|security-token|sv|skoid")
_SIGNED_QUERY = re.compile(rf"\?(?=(?:[^\s'\"<>?]*[&;])?(?:{_SIGNING_PARAMS})=)[^\s'\"<>]*", re.IGNORECASE)

# Credential fields of protocols and credential files, as `name=value`, `name: value`, `'name': b'value'`.
_PAIR_NAMES = (r"x-amz-security-token|x-amz-signature|x-amz-credential|x-goog-signature|x-goog-credential"
               r"|awsaccesskeyid|googleaccessid|signature|credential|sig|accountkey|sharedaccesssignature"
               r"|sharedaccesskey|aws_secret_access_key|aws_access_key_id|aws_session_token|aws_security_token"
               r"|secretaccesskey|secret_access_key|sessiontoken|session_token|security_token|password|passwd"
               r"|client_secret|access_token|refresh_token|id_token|api_key|apikey|private_key")
_PAIR = re.compile(
    rf"(?P<lead>(?<=[\s?&;,(\[{{'\"])(?:{_PAIR_NAMES})(?>['\"]?\s*[=:]\s*b?['\"]?))(?P<value>[^\s'\"&;,)\]}}<>]+)",
    re.IGNORECASE,
)
# The value of an Authorization header runs to the end of the line or of the quoted string (it contains spaces).
# (The separators are atomic groups: a value already '<redacted>' must not make the pattern take the quote for it.)
_AUTHORIZATION = re.compile(r"(?P<lead>\bauthorization(?>['\"]?\s*[:=]\s*b?['\"]?))(?P<value>[^'\"\r\n<]+)",
                            re.IGNORECASE)


def register_secret(value: str | None) -> None:
    """Redact `value` from now on in this process (e.g. a credential that came from somewhere other than the
    environment). Values shorter than 6 characters are ignored (they would redact ordinary words)."""
    if value and len(value) >= _MIN_SECRET_CHARS:
        _registered.add(value)
        _known.clear()


def redact(text: str | None) -> str | None:
    """`text` with every credential replaced by '<redacted>' (see the module's docstring for what counts)."""
    if not text:
        return text
    # Credentials that this very text shows in a URL are also redacted wherever else the text repeats them, whole or
    # in pieces: a library that cannot parse `http://user:ab/cd@host` says "Port could not be cast ... 'ab'".
    shown = sorted(_secrets_shown_in_urls(text), key=len, reverse=True)
    for value in (*known_secrets(), *shown):
        if value in text:
            text = text.replace(value, REDACTED)
    text = _URL.sub(_redact_url, text)
    text = _SIGNED_QUERY.sub(f"?{REDACTED}", text)
    text = _AUTHORIZATION.sub(lambda m: m.group("lead") + REDACTED, text)
    text = _PAIR.sub(lambda m: m.group("lead") + REDACTED, text)
    return text


def known_secrets() -> tuple[str, ...]:
    """Every secret value this process knows of, with its URL-encoded spellings, longest first (so that a secret
    containing another is replaced whole). Gathered at most every KNOWN_SECRETS_SECONDS (and at once after
    `register_secret`): redaction runs on every output row and log record, and a Ray worker's environment is large."""
    now = time.monotonic()
    # A cheap fingerprint catches the usual changes at once (a variable added or removed, a listed one changed); the
    # credential files' times are looked at once a second.
    fingerprint = _environment_fingerprint()
    if _known and _known[1] == fingerprint and now - _known[0] < KNOWN_SECRETS_SECONDS:
        if now - _known[3] < FILES_CHECK_SECONDS:
            return _known[2]
        files = tuple(_mtime(path) for path in _aws_files() + _google_files())
        if files == _known[4]:
            _known[3] = now
            return _known[2]
    files = tuple(_mtime(path) for path in _aws_files() + _google_files())
    found = _gather_secrets()
    _known[:] = [now, fingerprint, found, now, files]
    return found


KNOWN_SECRETS_SECONDS = 5.0
FILES_CHECK_SECONDS = 1.0
_known: list = []  # [when gathered, the environment's fingerprint, the secrets, files checked at, the files' times]
_FINGERPRINT_VARS = (*SECRET_ENV_VARS, "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "AWS_PROFILE",
                     "GOOGLE_APPLICATION_CREDENTIALS")
_FINGERPRINT_KEYS = tuple(os.fsencode(name) for name in _FINGERPRINT_VARS) if os.name == "posix" else ()


def _environment_fingerprint() -> tuple:
    # os.environ's own mapping (bytes keys on POSIX) answers in nanoseconds where os.environ.get takes microseconds;
    # redaction runs on every output row and log record.
    data = getattr(os.environ, "_data", None)
    if isinstance(data, dict) and _FINGERPRINT_KEYS and isinstance(next(iter(data), b""), bytes):
        return len(data), tuple(data.get(key) for key in _FINGERPRINT_KEYS)
    return len(os.environ), tuple(os.environ.get(name) for name in _FINGERPRINT_VARS)


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


def _gather_secrets() -> tuple[str, ...]:
    values = set(_registered)
    for name, value in os.environ.items():
        if name in SECRET_ENV_VARS or (_SECRET_ENV_NAME.search(name) and not _NOT_A_SECRET_ENV_NAME.search(name)):
            values.add(value)
            values.update(_CONNECTION_STRING_FIELD.findall(value))
    values.update(_file_secrets(_aws_files() + _google_files()))
    spelled = set()
    for value in values:
        value = value.strip()
        if len(value) >= _MIN_SECRET_CHARS:
            spelled.update((value, quote(value, safe=""), quote(value), quote_plus(value)))
    return tuple(sorted(spelled, key=len, reverse=True))


# --- logging ------------------------------------------------------------------------------------------------------


class RedactingFilter(logging.Filter):
    """A logging filter that redacts a record's message, arguments, traceback and stack (it never drops a record).

    On a handler it covers every record the handler emits, from any library's logger; on a logger only the records
    logged on that very logger (not those of child loggers that propagate to it): prefer handlers, or
    `install_redaction`, which covers every record created in the process."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """Redact a record in place: the message is formatted with its arguments first (a secret may be in either)."""
    if getattr(record, "_redacted", False):
        return record
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a malformed record: redact what there is; logging reports the rest
        message = f"{record.msg} {record.args}"
    record.msg, record.args = redact(message), None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
        # The formatted (redacted) text is what handlers print; the exception object may still carry the secret.
        record.exc_info = None
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    record._redacted = True
    return record


def install_redaction(*loggers: logging.Logger | str) -> RedactingFilter:
    """Redact every log record this process creates from now on, whoever logs it (botocore, s3fs, fsspec, aiohttp,
    Ray, the job) and whichever handler prints it: wraps the log-record factory (idempotent). Also puts a
    `RedactingFilter` on the handlers of the root logger and of `loggers` (for records made before, or handed over
    by other means such as Ray's log forwarding). Call it once per process: in the driver, and in each Ray worker (e.g.
    from `runtime_env={"worker_process_setup_hook": ...}`). Returns the filter."""
    factory = logging.getLogRecordFactory()
    if not getattr(factory, "_redacting", False):

        def redacting_factory(*args, **kwargs) -> logging.LogRecord:
            return redact_record(factory(*args, **kwargs))

        redacting_factory._redacting = True  # type: ignore[attr-defined]
        logging.setLogRecordFactory(redacting_factory)
    found = _installed_filter()
    for logger in (logging.getLogger(), *(logging.getLogger(n) if isinstance(n, str) else n for n in loggers)):
        for handler in logger.handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(found)
        if logger.name != "root" and not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(found)
    return found


@functools.lru_cache(maxsize=1)
def _installed_filter() -> RedactingFilter:
    return RedactingFilter()


# --- internals ----------------------------------------------------------------------------------------------------


def _redact_url(match: re.Match) -> str:
    scheme, rest = match.group("scheme"), match.group("rest")
    rest = _redact_userinfo(rest)
    if scheme.lower() not in _KEY_SCHEMES and "?" in rest:
        rest = rest.split("?", 1)[0] + f"?{REDACTED}"
    return f"{scheme}://{rest}"


def _secrets_shown_in_urls(text: str) -> set[str]:
    """The userinfo (user and password) and signing-parameter values of the URLs in `text`, with their URL-decoded
    spellings and their pieces between '/', '?', '#', '@' and ':' (4 characters or more)."""
    found: set[str] = set()
    for match in _URL.finditer(text):
        rest = match.group("rest")
        end = _userinfo_end(rest)
        values = [] if end is None else list(rest[:end].split(":", 1))
        if match.group("scheme").lower() not in _KEY_SCHEMES and "?" in rest:
            for pair in re.split(r"[&;]", rest.split("?", 1)[1]):
                name, _, value = pair.partition("=")
                if re.fullmatch(_SIGNING_PARAMS, name, re.IGNORECASE):
                    values.append(value)
        for value in values:
            for spelled in (value, unquote(value)):
                if len(spelled) >= _MIN_SECRET_CHARS:
                    found.add(spelled)
                found.update(piece for piece in re.split(r"[/?#@:]", spelled) if len(piece) >= 4)
    found.discard(REDACTED)
    return found


def _userinfo_end(rest: str) -> int | None:
    """Where the userinfo of a URL ends (the index of its '@' in `rest`, what follows '://'), or None."""
    if "@" not in rest:
        return None
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if "@" not in authority:
        user, colon, after = authority.partition(":")
        if not colon or after.isdigit() or user.startswith("["):  # host:port/a@b.wav: an '@' in a name
            return None
    return rest.rindex("@")


def _redact_userinfo(rest: str) -> str:
    """`rest` is what follows '://'. There is userinfo when the authority (up to the first '/', '?' or '#') holds an
    '@', as urllib parses it, or when it reads `user:xxx` with `xxx` not a port number and an '@' follows later (a
    password holding '/', '?' or '#' unencoded ends the authority early: `AKIA:ab/cd@bucket`). The userinfo then runs
    to the LAST '@' of the URL: a password may hold '@' too, and a leak costs more than the part of a path with an
    '@' that goes with it. (A password whose characters before its first '/', '?' or '#' are all digits reads as
    host:port and is left to the by-value redaction.)"""
    end = _userinfo_end(rest)
    return rest if end is None else REDACTED + rest[end:]


def _stat_key(paths: list[Path]) -> tuple:
    key = []
    for path in paths:
        try:
            st = path.stat()
        except OSError:
            continue
        key.append((str(path), st.st_mtime_ns, st.st_size))
    return tuple(key)


def _file_secrets(paths: list[Path]) -> tuple[str, ...]:
    return _read_file_secrets(_stat_key(paths))


@functools.lru_cache(maxsize=8)
def _read_file_secrets(stat_key: tuple) -> tuple[str, ...]:
    """The secret values in the credential files of `stat_key` (re-read whenever one changes)."""
    found: list[str] = []
    for name, _, _ in stat_key:
        path = Path(name)
        try:
            if path.suffix == ".json":
                data = json.loads(path.read_text())
                found.extend(str(data[k]) for k in _GOOGLE_FILE_KEYS if isinstance(data, dict) and data.get(k))
            else:
                from botocore.configloader import raw_config_parse

                for section in raw_config_parse(str(path), parse_subsections=False).values():
                    found.extend(str(section[k]) for k in _AWS_FILE_KEYS if section.get(k))
        except Exception:  # noqa: BLE001 - an unreadable credential file holds nothing we can redact; boto will say
            continue
    return tuple(found)


def _aws_files() -> list[Path]:
    home = Path.home()
    return [Path(os.environ.get("AWS_SHARED_CREDENTIALS_FILE") or home / ".aws" / "credentials").expanduser(),
            Path(os.environ.get("AWS_CONFIG_FILE") or home / ".aws" / "config").expanduser()]


def _google_files() -> list[Path]:
    name = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    return [Path(name).expanduser()] if name else []
