"""Literal secrets in a resource config's ``env``: the values ``flash build`` warns about;
and the token shapes it looks for in the project files it archives (:func:`tokens_in_text`).

A value written out in ``env={...}`` goes into flash_manifest.json and the archive as it is;
a secret belongs in a RunPod secret and the config should hold its reference,
``{{ RUNPOD_SECRET_x }}``. An entry is taken for a secret by what its value is (a known token
shape, a URL with a password), whatever its name, or else by its name. Reasons never quote
the value.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from flash.sdk.resources import SECRET_REFERENCE

__all__ = ["PRIVATE_KEY", "secret_env_entries", "tokens_in_text"]

# --- values that hold no secret, whatever the name --------------------------------------

# A value naming another variable ($HF_TOKEN, ${HF_TOKEN}) holds a name, not a secret.
# Word placeholders (changeme, <your token>) are warned about: they cannot be told from a
# weak real password, and the advice, a secret reference, holds for both.
_VARIABLE = re.compile(r"\$(?:\{[A-Za-z_][A-Za-z0-9_]*\}|[A-Za-z_][A-Za-z0-9_]*)")
# A switch (DISABLE_AUTH=1, USE_AUTH=false) is no secret either.
_SWITCHES = frozenset({"true", "false", "yes", "no", "on", "off", "0", "1", "none", "null"})

# --- by value ---------------------------------------------------------------------------

# Credential shapes as their issuers publish them. Each must start a token (not follow a
# letter, digit, _, - or /), so that a prefix inside one (task-..., /models/sk-...) is no
# match, and so that a value of many would-be starts ("sk-sk-sk-...") is tried from one only:
# the scan stays linear in the value's length.
_TOKEN_START = r"(?<![A-Za-z0-9_/-])"
# A PEM private key block: its BEGIN line (RSA, EC, DSA, OPENSSH, ENCRYPTED, PGP's, PKCS #8's
# bare one), headers (Proc-Type: 4,ENCRYPTED), a base64 body and the matching END line. A text
# that only names the BEGIN line (a form's placeholder, a parser's constant) holds no key. A
# written-out `\n` (a key in a one-line string literal) counts as a line break. The body stops
# at a `-`, so the scan stays linear in the text's length.
_PRIVATE_KEY_PATTERN = (
    r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY( BLOCK|)-----"
    r"(?:(?:\s|\\n)*[A-Za-z-]+:[^\n\\]*)*"
    r"(?:\s|\\[nr]|[A-Za-z0-9+/=]){32,}"
    r"-----END \1PRIVATE KEY\2-----"
)
PRIVATE_KEY = re.compile(_PRIVATE_KEY_PATTERN)


@dataclass(frozen=True)
class _Shape:
    """A credential shape. Each match holds one of ``hints``: a text holding none is not
    searched, so a file with no token costs a few substring searches. With ``alnum_run``, a
    match counts only with 20 alphanumerics in a row."""

    pattern: re.Pattern[str]
    what: str
    hints: tuple[str, ...]
    alnum_run: bool = False

    def matches(self, text: str) -> Iterator[re.Match[str]]:
        if not any(hint in text for hint in self.hints):
            return iter(())
        found = self.pattern.finditer(text)
        return (m for m in found if not self.alnum_run or _ALNUM_RUN.search(m[0]))


_TOKEN_SHAPES = (
    _Shape(re.compile(_TOKEN_START + r"hf_[A-Za-z0-9]{30,}"), "a Hugging Face token", ("hf_",)),
    # sk-proj-..., sk-svcacct-...: dashes and underscores inside, 20 alphanumerics in a row
    # somewhere (checked apart: one pattern for both backtracks quadratically).
    _Shape(
        re.compile(_TOKEN_START + r"sk-[A-Za-z0-9_-]{20,}"),
        "an OpenAI-style API key",
        ("sk-",),
        alnum_run=True,
    ),
    _Shape(
        re.compile(_TOKEN_START + r"[rs]k_(?:live|test)_[A-Za-z0-9]{20,}"),
        "a Stripe API key",
        ("k_live_", "k_test_"),
    ),
    _Shape(
        re.compile(_TOKEN_START + r"(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})"),
        "a GitHub token",
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
    ),
    _Shape(re.compile(_TOKEN_START + r"glpat-[A-Za-z0-9_-]{20,}"), "a GitLab token", ("glpat-",)),
    _Shape(re.compile(_TOKEN_START + r"xox[abeoprs]-[A-Za-z0-9-]{10,}"), "a Slack token", ("xox",)),
    _Shape(re.compile(_TOKEN_START + r"AIza[A-Za-z0-9_-]{35}"), "a Google API key", ("AIza",)),
    _Shape(re.compile(_TOKEN_START + r"rpa_[A-Za-z0-9]{20,}"), "a RunPod API key", ("rpa_",)),
    _Shape(PRIVATE_KEY, "a private key", ("PRIVATE KEY",)),
    _Shape(
        re.compile(_TOKEN_START + r"eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+"),
        "a JSON Web Token",
        ("eyJ",),
    ),
)
_ALNUM_RUN = re.compile(r"[A-Za-z0-9]{20}")
# An AWS access key ID is not secret itself, but it tells that its pair is near: in an env
# holding one, a 40-character base64 value of mixed case is taken for the secret access key
# (a hex digest, all lower case, is not).
_AWS_KEY_ID = re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])")
_AWS_SECRET = re.compile(r"(?=.*[a-z])(?=.*[A-Z])[A-Za-z0-9/+]{40}")
# What separates the pieces of a value ("Bearer <token>", "user:<key>").
_PIECES = re.compile(r"[\s:;,]+")
# A value that is a file's path: where a secret is kept, not the secret.
_PATH = re.compile(r"(?:~|\.{1,2})?/[^\s]*\Z")
# Names the AWS pair rule applies to (AWS_SECRET_ACCESS_KEY, S3_SECRET, MINIO_KEY...).
_AWS_NAMES = frozenset({"AWS", "S3", "SECRET", "SECRETS", "KEY", "SK"})
# A URL's userinfo with a password (postgres://user:pw@host); group 1: the password.
_URL_PASSWORD = re.compile(r"://[^\s/?#@:]*:([^\s/?#@]+)@")
# Secrets in other written-out shapes, whatever the name: an Authorization header's value, a
# connection string's password, a URL's query parameter named for a secret. Each tries from a
# word's start only, and its runs cannot overlap: linear in the value's length.
_VALUE_SHAPES = tuple(
    (re.compile(pattern, re.IGNORECASE), what)
    for pattern, what in (
        (r"(?<![A-Za-z0-9])(?:bearer|basic|token)\s+[A-Za-z0-9._~+/=-]{16,}", "credentials"),
        (
            r"(?<![A-Za-z0-9_])(?:password|pwd)\s*=\s*[^;\s]+",
            "a connection string with a password",
        ),
        (
            r"[?&](?:api[_-]?key|access[_-]?token|token|secret|password|sig|signature)"
            r"=[^&#\s]{8,}",
            "a URL with a secret in its query",
        ),
    )
)

# --- by name ----------------------------------------------------------------------------

# A name is judged by its words, split on _ - . and camelCase (dbPassword, HFToken, APIKey),
# so that TOKENIZERS_PARALLELISM or MAX_TOKENS hold no secret word. The rule:
# - a word in _STRONG, or one running into it (HFTOKEN, DBPASSWORD), a last word in
#   _STRONG_LAST (DB_PASS), or KEY after API, ACCESS or PRIVATE names a secret; TOKEN after
#   a tokenizer's special token (EOS_TOKEN) does not;
# - KEY alone is weak (CACHE_KEY, SORT_KEY, PARTITION_KEY): it counts only with a value that
#   looks generated (_KEYLIKE), as a strong name does whose value is part reference;
# - either way, not when the last word says the variable is about a secret rather than the
#   secret itself (_ABOUT: MAX_TOKEN_LENGTH, SECRET_NAME, AWS_ACCESS_KEY_ID, TOKEN_ENDPOINT),
#   nor for a value that is a file's path (where the secret is kept).
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_STRONG = frozenset(
    {
        *("SECRET", "SECRETS", "TOKEN", "PASSWORD", "PASSWD", "PASSPHRASE"),
        *("CREDENTIAL", "CREDENTIALS", "CREDS"),
        *("APIKEY", "ACCESSKEY", "PRIVATEKEY", "SECRETKEY"),
    }
)
# Short words that name a secret only as the last word: DB_PASS, DB_PWD, HF_AUTH, but not
# PASS_THROUGH, AUTH_DOMAIN or BASIC_AUTH_USER.
_STRONG_LAST = frozenset({"PASS", "PWD", "AUTH"})
# A tokenizer's special tokens are text (</s>, <pad>), not credentials: EOS_TOKEN, PAD_TOKEN.
_TEXT_TOKENS = frozenset({"BOS", "EOS", "PAD", "UNK", "SEP", "CLS", "MASK", "SPECIAL"})
# Only the long words count at the end of another (BYPASS or COMPASS end in PASS).
_STRONG_ENDINGS = (
    *("SECRET", "SECRETS", "TOKEN", "PASSWORD", "PASSWD", "CREDENTIAL", "CREDENTIALS"),
    *("APIKEY", "ACCESSKEY", "PRIVATEKEY", "SECRETKEY"),
)
_KEY = frozenset({"KEY", "KEYS"})
_KEY_QUALIFIERS = frozenset({"API", "ACCESS", "PRIVATE"})
_ABOUT = frozenset(
    {
        *("LENGTH", "LEN", "SIZE", "COUNT", "NUM", "LIMIT", "MAX", "MIN"),
        *("NAME", "NAMES", "ID", "IDS", "REF", "VAR", "PATH", "FILE", "DIR", "LOCATION"),
        *("URL", "URI", "ENDPOINT", "HOST", "PORT", "REGION", "PROVIDER", "ISSUER"),
        *("AUDIENCE", "SCOPE", "SCOPES", "HEADER", "FIELD", "PARAM", "PREFIX"),
        *("TYPE", "KIND", "MODE", "METHOD", "SCHEME", "ALGORITHM", "ALG", "FORMAT", "VERSION"),
        *("ENABLED", "DISABLED", "REQUIRED", "POLICY", "STRATEGY", "BUDGET"),
        *("USER", "USERNAME", "LOGIN", "DOMAIN", "ACCOUNT", "EMAIL"),
        *("TTL", "EXPIRY", "EXPIRES", "EXPIRATION", "LIFETIME", "TIMEOUT"),
    }
)
# A generated key, for a weak name: 20+ characters of the base64/hex alphabet with letters and
# digits, 16+ of them in a row: random keys, not slugs (llama-3-8b-instruct-v2), paths
# (models/v2/ckpt), file names or UUIDs. A hex digest under CACHE_KEY is warned about: it
# cannot be told from a hex key.
_KEYLIKE = re.compile(r"(?!/)(?=.*[A-Za-z])(?=.*[0-9])(?=.*[A-Za-z0-9]{16})[A-Za-z0-9+/=_-]{20,}")


def secret_env_entries(env: Mapping[str, str]) -> Iterator[tuple[str, str]]:
    """``(name, why)`` for each entry of ``env`` whose written-out value looks like a
    secret, in ``env``'s order; ``why`` says "by its name" or "by its value (...)" and
    never quotes the value."""
    aws_pair = any(_AWS_KEY_ID.search(value) for value in env.values())
    for name, value in env.items():
        why = _why_secret(name, value.strip(), aws_pair)
        if why:
            yield name, why


# --- in a file's text ---------------------------------------------------------------------

_MATCHES_PER_SHAPE = 20  # enough to report a file; bounds the work on one full of tokens


def tokens_in_text(text: str) -> list[tuple[int, str]]:
    """``(line, what)`` for each line of ``text`` (a file's) holding a known token shape,
    by line; ``what`` never quotes the token."""
    found: dict[int, str] = {}

    def note(start: int, what: str) -> None:
        found.setdefault(text.count("\n", 0, start) + 1, what)

    for shape in _TOKEN_SHAPES:
        for _, match in zip(range(_MATCHES_PER_SHAPE), shape.matches(text), strict=False):
            note(match.start(), shape.what)
    if "AKIA" in text or "ASIA" in text:
        for _, match in zip(range(_MATCHES_PER_SHAPE), _AWS_KEY_ID.finditer(text), strict=False):
            note(match.start(), "an AWS access key ID (its secret key is likely near)")
    if "@" in text:
        passwords = (m for m in _URL_PASSWORD.finditer(text) if _is_password(m[1]))
        for _, match in zip(range(_MATCHES_PER_SHAPE), passwords, strict=False):
            note(match.start(), "a URL with a password")
    return sorted(found.items())


# What stands for a URL's password in code and docs rather than being one: a template's
# field ({password}, ${PW}, %(pw)s, <password>), a masked one (****, as the archive holds
# the URLs of the files that name package indexes) or the word itself.
_PASSWORD_PLACEHOLDER = re.compile(
    r"\{[^{}]*\}|\$\{?\w+\}?|%(?:\(\w+\))?s|<[^<>]*>|\*+|\.\.\.|x+"
    r"|pass(?:word)?|passwd|pw|pwd|secret|token",
    re.IGNORECASE,
)


def _is_password(text: str) -> bool:
    """Whether ``text``, a URL's password as written, is one (not a placeholder)."""
    written = _written_out(text)
    return bool(written) and not _PASSWORD_PLACEHOLDER.fullmatch(written)


def _why_secret(name: str, value: str, aws_pair: bool) -> str | None:
    # What is written out: references are filled in by the platform ("Bearer {{ ... }}").
    visible = _written_out(value)
    if not visible or value.lower() in _SWITCHES:
        return None
    for token in _TOKEN_SHAPES:
        if next(token.matches(visible), None) is not None:
            return f"by its value (looks like {token.what})"
    words = _words(name)
    if aws_pair and _AWS_NAMES.intersection(words) and _AWS_SECRET.fullmatch(visible):
        return "by its value (looks like an AWS secret access key, next to its key ID)"
    if any(_written_out(m.group(1)) for m in _URL_PASSWORD.finditer(value)):
        return "by its value (a URL with a password)"
    for shape, what in _VALUE_SHAPES:
        if shape.search(visible):
            return f"by its value (looks like {what})"
    if _PATH.match(visible):  # where a secret is kept (GOOGLE_APPLICATION_CREDENTIALS)
        return None
    strength = _name_strength(words)
    if strength == "strong" and visible == value:
        return "by its name"
    # KEY alone, or a strong name whose value is part reference: only a generated-looking
    # piece of what is written out is taken for a secret.
    if strength is not None and any(_KEYLIKE.fullmatch(p) for p in _PIECES.split(visible)):
        return "by its name and value (it looks generated)"
    return None


def _written_out(value: str) -> str:
    """``value`` less its secret references and ``$VAR``s: what it holds as written."""
    return _VARIABLE.sub("", SECRET_REFERENCE.sub("", value)).strip()


def _words(name: str) -> list[str]:
    return [word.upper() for word in _WORD.findall(name)]


def _name_strength(words: list[str]) -> str | None:
    """ "strong" when a name of ``words`` names a secret, "weak" for KEY alone, else None."""
    # PWD alone is the shell's working directory; DB_PWD is a password.
    if not words or words[-1] in _ABOUT or words == ["PWD"]:
        return None
    if words[-1] in _STRONG_LAST:
        return "strong"
    for i, word in enumerate(words):
        previous = words[i - 1] if i else ""
        if word in ("TOKEN", "TOKENS") and previous in _TEXT_TOKENS:
            continue
        if word in _STRONG or word.endswith(_STRONG_ENDINGS):
            return "strong"
        if word in _KEY and previous in _KEY_QUALIFIERS:
            return "strong"
    return "weak" if _KEY.intersection(words) else None
