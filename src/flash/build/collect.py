"""Stage 1: the project files that go into a build."""

from __future__ import annotations

import codecs
import functools
import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pathspec

from flash.build.archive import file_sha256
from flash.build.errors import BuildError, BuildWarning, mask_config_urls
from flash.build.secrets import PRIVATE_KEY, tokens_in_text
from flash.runtime.protocol import MANIFEST_FILENAME
from flash.sdk.keys import owned_by_user

IGNORE_FILES = (".gitignore", ".flashignore")

# Files that hold secrets, left out in any case of their names: on a file system that
# ignores case (macOS's, Windows'), `.ENV` is the `.env` dotenv reads. Lowercase patterns,
# matched against the lowercased path.
CREDENTIAL_FILES = (
    ".env*",  # also .envrc, .env_production, .env-staging: as the README promises
    # Credentials and settings of package tools: dependencies are vendored at build time,
    # so no worker reads these.
    ".netrc",
    "_netrc",
    ".pypirc",
    "pip.conf",
    "pip.ini",
    "uv.toml",
    "poetry.toml",
    ".npmrc",  # npm's, often with an _authToken
    # Streamlit's secrets, in any folder (a pattern with a slash inside is anchored).
    "**/.streamlit/secrets.toml",
)

_BUILD_OUTPUTS = "build outputs go there"
_VENV = "a virtual environment lives there"
_VCS = "version control data lives there"
_CACHE = "a tool's cache lives there"
# The folders always left out (see ALWAYS_EXCLUDED, built from this), each with why: what a
# user is told when a package of theirs has such a name (always_excluded_why).
ALWAYS_EXCLUDED_FOLDERS = {
    ".git/": _VCS,
    ".hg/": _VCS,
    ".svn/": _VCS,
    ".flash/": "Flash keeps its builds and keys there",
    ".venv/": _VENV,
    "venv/": _VENV,
    "__pycache__/": "Python's bytecode cache lives there",
    ".mypy_cache/": _CACHE,
    ".pytest_cache/": _CACHE,
    ".ruff_cache/": _CACHE,
    ".tox/": "tox's virtual environments live there",
    # Jupyter's autosave copies (main-checkpoint.py): no modules
    ".ipynb_checkpoints/": "Jupyter's autosave copies live there",
    "/dist/": _BUILD_OUTPUTS,
    "/build/": _BUILD_OUTPUTS,
    "*.egg-info/": _BUILD_OUTPUTS,
}
# Always left out, whatever the ignore files say: VCS data, build outputs, virtualenvs,
# bytecode and CREDENTIAL_FILES (secrets never enter an archive). Checked on its own (see
# always_excluded), never merged with the user's patterns, so no `!` line can re-include these.
ALWAYS_EXCLUDED = (
    *ALWAYS_EXCLUDED_FOLDERS,
    "*.pyc",
    "*.pyo",
    *CREDENTIAL_FILES,
    ".DS_Store",
    ".git",  # also the file of a worktree or submodule, pointing to its repository
    ".#*",  # editors' lock files (Emacs's are dangling links while a buffer has edits)
    # Editors' temporary files, written while a file is open or saved (no edit yet, and
    # an unsaved buffer): vim's swap files, backups, Emacs's autosaves, JetBrains'
    # safe-write copies, Kate's swap files. Files only: a folder `backup~/` is the user's.
    ".*.sw[a-p]",
    "*~",
    "!*~/",
    "\\#*#",  # a leading # starts a comment: escaped
    "!\\#*#/",
    "*___jb_tmp___",
    "*___jb_old___",
    ".*.kate-swp",
    f"/{MANIFEST_FILENAME}",
)
_ALWAYS_SPEC = pathspec.GitIgnoreSpec.from_lines(ALWAYS_EXCLUDED)
# Left out in any case of their names: CREDENTIAL_FILES (see there) and bytecode, which no
# spelling makes source (`X.PYC`). The rest keep their case: `Build/` or `Venv/` may well be
# a project package.
_ANY_CASE = ("*.pyc", "*.pyo", *CREDENTIAL_FILES)
_ANY_CASE_SPEC = pathspec.GitIgnoreSpec.from_lines(_ANY_CASE)


# Files that may name package indexes with credentials in their URLs
# (`--extra-index-url https://user:token@host/simple`, `https://dl.example/TOKEN/simple`),
# lock files included, as may the files a requirements file names with -r/-c. No worker
# needs those URLs: such files go into the archive with every URL that has a path or a
# query cut after its host, and every userinfo masked (see flash.build.pipeline).
INDEX_CONFIGS = (
    "requirements*.txt",
    "requirements*.in",
    "constraints*.txt",
    "constraints*.in",
    "requirements/**/*.txt",
    "requirements/**/*.in",
    "pyproject.toml",
    "setup.cfg",
    "Pipfile",
    "Pipfile.lock",
    "uv.lock",
    "poetry.lock",
    "pylock.toml",
    "pylock.*.toml",  # PEP 751's named lock files
    "requirements*.lock",  # rye's
)
_INDEX_CONFIGS_SPEC = pathspec.GitIgnoreSpec.from_lines(INDEX_CONFIGS)


def names_package_indexes(rel: str) -> bool:
    """Whether the project-relative posix path is one of INDEX_CONFIGS."""
    return _INDEX_CONFIGS_SPEC.match_file(rel)


def always_excluded(rel: str) -> bool:
    """Whether the project-relative posix path (dirs end in "/") is one of ALWAYS_EXCLUDED
    (those of _ANY_CASE in any case)."""
    return _ALWAYS_SPEC.match_file(rel) or _ANY_CASE_SPEC.match_file(rel.lower())


_FOLDER_SPECS = [
    (pathspec.GitIgnoreSpec.from_lines([pattern]), why)
    for pattern, why in ALWAYS_EXCLUDED_FOLDERS.items()
]


def always_excluded_why(rel: str) -> str:
    """Why ALWAYS_EXCLUDED leaves out the project path ``rel``, said for the user: the
    reason of the folder pattern matching it or a folder above it (the outermost)."""
    parts = rel.split("/")  # a folder's last part is "": its own name is a folder's
    for depth in range(1, len(parts)):
        folder = "/".join(parts[:depth]) + "/"
        for spec, why in _FOLDER_SPECS:
            if spec.match_file(folder):
                return why
    return (
        "version control data, caches, virtual environments, editors' temporary files and "
        "secrets never go in"
    )


def load_ignore_spec(root: Path, extra_patterns: Iterable[str] = ()) -> pathspec.GitIgnoreSpec:
    """Patterns from the root's .gitignore and .flashignore (not ALWAYS_EXCLUDED: see there)."""
    lines = [line for name in IGNORE_FILES for line in _ignore_lines(root / name, name)]
    return _git_spec([*lines, *extra_patterns])


def _outer_ignore_files(root: Path) -> list[tuple[Path, str, str]]:
    """The ignore files git applies to the project from outside it, least binding first:
    its repository's ``.git/info/exclude``, then the ``.gitignore`` of each folder above the
    project up to the repository's top (the nearest folder holding ``.git``). Each with the
    path it is shown by (``../.gitignore``) and the project's path inside the file's folder
    (``proj/``). None outside a repository."""
    root = root.resolve()
    folders = [root, *root.parents]
    top = next((i for i, folder in enumerate(folders) if (folder / ".git").exists()), None)
    if top is None or not owned_by_user(folders[top] / ".git"):
        return []  # as git, which ignores a repository another user owns (safe.directory)
    files = []
    git = _git_dir(folders[top] / ".git")
    for up in range(top, -1, -1):  # the repository's top first
        lead = "".join(part + "/" for part in root.parts[len(root.parts) - up :])
        if up == top and git is not None:
            files.append((git / "info" / "exclude", "../" * up + ".git/info/exclude", lead))
        if up > 0:  # the project's own .gitignore is read as the project's
            files.append((folders[up] / ".gitignore", "../" * up + ".gitignore", lead))
    return files


def _git_dir(dot_git: Path) -> Path | None:
    """The folder holding the repository's ``info/exclude`` for ``.git``: itself, or for a
    worktree's or submodule's ``.git`` file the ``gitdir:`` it names, or that one's
    ``commondir`` (a worktree's: the main repository's, where git reads it)."""
    if dot_git.is_dir():
        return dot_git
    try:
        first = dot_git.read_text(encoding="utf-8").splitlines()[0]
    except (OSError, UnicodeDecodeError, IndexError):
        return None
    if not first.startswith("gitdir:"):
        return None
    git = (dot_git.parent / first[len("gitdir:") :].strip()).resolve()
    try:
        common = (git / "commondir").read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return git
    return (git / common).resolve() if common else git


def _outer_specs(root: Path) -> list[_Spec]:
    """The patterns of :func:`_outer_ignore_files`, for every path of the project."""
    specs = []
    for path, shown, lead in _outer_ignore_files(root):
        spec = _spec_of([(path, shown)])
        if spec is not None:
            specs.append(("", lead, spec))
    return specs


def collect_files(root: Path, extra_patterns: Iterable[str] = ()) -> list[str]:
    """Sorted posix paths, relative to ``root``, of every file that belongs in the build.

    Ignore files in subfolders are honoured the git way: their patterns apply below them,
    and those of the git repository the project is in apply to it too (the ``.gitignore`` of
    each folder above it up to the repository's top, and ``.git/info/exclude``), below its
    own. Symbolic links are never followed: one that no ignore file leaves out stops the build
    (see _link_error).
    """
    root = root.resolve()
    if not root.is_dir():
        raise BuildError(f"project directory not found: {root}")
    specs = [*_outer_specs(root), ("", "", load_ignore_spec(root, extra_patterns))]
    found: list[str] = []
    links: list[str] = []  # all reported at once: a build per link would be one too many
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        prefix = "" if rel_dir == "." else rel_dir + "/"
        if prefix:
            nested = _nested_spec(Path(dirpath), prefix)
            if nested is not None:
                specs.append((prefix, "", nested))
        kept_dirs = []
        for name in sorted(dirnames):  # a link to a folder is listed here, never walked
            rel = prefix + name
            if _ignored(specs, rel + "/") or _is_virtualenv(os.path.join(dirpath, name)):
                continue
            _check_utf8_name(rel + "/")
            if os.path.islink(os.path.join(dirpath, name)):
                links.append(rel)
                continue
            kept_dirs.append(name)
        dirnames[:] = kept_dirs
        for name in sorted(filenames):
            rel = prefix + name
            path = os.path.join(dirpath, name)
            if _ignored(specs, rel):
                continue
            _check_utf8_name(rel)
            if os.path.islink(path):
                if _ignored(specs, rel + "/"):  # dangling, or to a file, but ignored as a folder
                    continue
                links.append(rel)
                continue
            if os.path.isfile(path):  # not a socket or a FIFO
                found.append(rel)
    if links:
        raise _link_error(root, sorted(links))
    return sorted(found)


def _link_error(root: Path, rels: list[str]) -> BuildError:
    """Why the links ``rels`` stop the build. Followed, a link would put whatever it points
    to into the archive (``notes.txt -> .env``, a credentials file elsewhere) past every
    exclusion; skipped, it would drop something the project may import. So it is the
    user's call: a copy inside the project, or the link in .flashignore."""
    if len(rels) == 1:
        where, advice = _link_target(root, rels[0])
        return BuildError(
            f"is a symbolic link to {where}; a build follows no links: {advice}, "
            "or list the link in .flashignore",
            path=rels[0],
        )
    lines = [
        f"{len(rels)} symbolic links; a build follows no links: do as said for each, or "
        "list the links in .flashignore:"
    ]
    for rel in rels:
        where, advice = _link_target(root, rel)
        lines.append(f"  {rel}: a symbolic link to {where}: {advice}")
    return BuildError("\n".join(lines))


def _link_target(root: Path, rel: str) -> tuple[str, str]:
    """Where the link ``rel`` points, said for the user, and what to do about it."""
    link = root / rel
    target = Path(os.path.realpath(link))
    try:
        inside: str | None = target.relative_to(root).as_posix()
    except ValueError:
        inside = None
    if not target.exists():
        where, advice = f"{os.readlink(link)}, which does not exist", "remove it"
    elif inside is None:
        where, advice = f"{target}, outside the project", "copy what it points to in"
    elif is_ignored(root, inside + "/" if target.is_dir() else inside):
        where, advice = f"{inside}, which is never archived", "remove it"
    else:
        where, advice = inside, "use that path directly, or replace the link with a copy"
    return where, advice


def is_ignored(root: Path, rel: str) -> bool:
    """Whether collect_files would leave out the project-relative posix file path ``rel``:
    the same ignore files (nested ones too), folder by folder, as the walk reads them."""
    parts = rel.split("/")
    folders = ["/".join(parts[: i + 1]) + "/" for i in range(len(parts) - 1)]
    if any(always_excluded(path) for path in (*folders, rel)):
        return True  # .flash/, .git/, ...: no ignore file needs reading (`flash run` writes)
    if any(_is_virtualenv(root / folder) for folder in folders):
        return True
    specs = [*_outer_specs(root), ("", "", load_ignore_spec(root))]
    prefix = ""
    for part in parts[:-1]:
        # The walk never enters an ignored folder, whatever the files below it say.
        if _ignored(specs, prefix + part + "/"):
            return True
        prefix += part + "/"
        nested = _nested_spec(root / prefix, prefix)
        if nested is not None:
            specs.append((prefix, "", nested))
    return _ignored(specs, rel)


def ignored_by(root: Path, rel: str) -> str | None:
    """What leaves the project path ``rel`` (a folder's ends in "/") out of the build: the
    ignore file with a pattern matching it or a folder above it (``.gitignore``,
    ``data/.flashignore``; the deepest, and .flashignore before .gitignore, as they decide;
    then those of the repository around the project, ``../.gitignore``), or the fixed
    exclusion list (ALWAYS_EXCLUDED); None when it is collected."""
    if not is_ignored(root, rel):
        return None
    parts = rel.rstrip("/").split("/")
    paths = [*("/".join(parts[: i + 1]) + "/" for i in range(len(parts) - 1)), rel]
    if any(always_excluded(path) for path in paths):
        return "the fixed exclusion list"
    if any(_is_virtualenv(root / path) for path in paths):
        return _VIRTUALENV
    # Each ignore file that may bear on it, least binding first (as the walk reads them):
    # the repository's around the project, then the project's, folder by folder.
    files = [(file, shown, "", lead) for file, shown, lead in _outer_ignore_files(root)]
    for depth in range(len(parts)):
        prefix = "".join(part + "/" for part in parts[:depth])
        files += [(root / prefix / name, prefix + name, prefix, "") for name in IGNORE_FILES]
    specs = [
        (spec, shown, prefix, lead)
        for file, shown, prefix, lead in files
        if (spec := _spec_of([(file, shown)])) is not None
    ]
    # As the walk decides: the outermost path ignored, by the most binding file whose pattern
    # matches that path itself (a folder's files go with it).
    for path in paths:
        for spec, shown, prefix, lead in reversed(specs):
            if path.startswith(prefix):
                verdict = _own_verdict(spec, lead + path[len(prefix) :])
                if verdict is not None:
                    if verdict:
                        return shown
                    break  # re-included here: a path below may still be left out
    return "an ignore file"


# A folder holding pyvenv.cfg is a virtual environment, whatever its name (`python -m venv
# env`): left out as .venv/ is, never walked (its bin/python links out of the project).
_VIRTUALENV = "a virtual environment (it holds pyvenv.cfg)"


def _is_virtualenv(folder: str | Path) -> bool:
    return os.path.isfile(os.path.join(folder, "pyvenv.cfg"))


def _check_utf8_name(rel: str) -> None:
    """Archive entry names are UTF-8: a name that is not (os.walk gives surrogates) is refused."""
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        shown = rel.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        raise BuildError(
            "file name is not valid UTF-8; rename it, or list it in .flashignore", path=shown
        ) from None


def _nested_spec(directory: Path, prefix: str) -> pathspec.GitIgnoreSpec | None:
    """The patterns of the ignore files in ``directory`` (project path ``prefix``): one that
    is not UTF-8 is an error, as at the root, not a pattern silently mangled."""
    return _spec_of([(directory / name, prefix + name) for name in IGNORE_FILES])


def _spec_of(files: list[tuple[Path, str]]) -> pathspec.GitIgnoreSpec | None:
    """The patterns of the ignore ``files`` (path, as shown), or None when they hold none."""
    lines = [line for path, shown in files for line in _ignore_lines(path, shown)]
    return _git_spec(lines) if lines else None


def _git_spec(lines: list[str]) -> pathspec.GitIgnoreSpec:
    """The ignore patterns ``lines`` as git reads them. pathspec reads ``out/**/`` as
    ``out/``, out itself; git ignores only the folders inside it, which is ``out/**/*/``."""
    return pathspec.GitIgnoreSpec.from_lines(
        line.rstrip() + "*/" if line.rstrip().endswith("/**/") else line for line in lines
    )


def _ignore_lines(path: Path, shown: str) -> list[str]:
    if not path.is_file():
        return []
    try:
        # As git: a UTF-8 byte order mark skipped, lines ended by "\n" alone (or "\r\n").
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BuildError(f"not UTF-8 text: {exc}", path=shown) from None
    except OSError as exc:  # unreadable: what it leaves out cannot be known
        raise BuildError(f"cannot read this ignore file: {exc.strerror}", path=shown) from None
    return [line.removesuffix("\r") for line in text.split("\n")]


# An ignore file's patterns, for the paths under ``prefix`` (project-relative), matched
# against ``lead`` and the rest of the path: the path inside the ignore file's own folder.
_Spec = tuple[str, str, pathspec.GitIgnoreSpec]


def _ignored(specs: list[_Spec], rel: str) -> bool:
    if always_excluded(rel):
        return True
    # As git does: the deepest ignore file with a pattern matching the path decides, so a
    # nested `!settings.json` re-includes what the root's `*.json` left out. The walk is
    # top-down, so an ancestor's spec always comes before its descendants' in ``specs``.
    # A pattern decides only for a path it matches itself, never for the files of a folder
    # it matches: those go with the folder, which the walk does not enter when it is
    # ignored. So a nested `!c/` re-includes the folder c, not c/f.log that a parent's
    # `*.log` ignores by its own name (pathspec's check_file would count c/f.log as matched).
    for prefix, lead, spec in reversed(specs):
        if rel.startswith(prefix):
            verdict = _own_verdict(spec, lead + rel[len(prefix) :])
            if verdict is not None:
                return verdict
    return False


def _own_verdict(spec: pathspec.GitIgnoreSpec, rel: str) -> bool | None:
    """Whether the last pattern of ``spec`` that matches ``rel`` itself (a folder's ends in
    "/") ignores it, as git decides; None when none matches it."""
    for pattern in reversed(spec.patterns):
        if pattern.include is not None and _matches_itself(pattern, rel):
            return bool(pattern.include)
    return None


def _matches_itself(pattern: pathspec.Pattern, rel: str) -> bool:
    """Whether ``pattern`` matches ``rel`` itself, not only a folder above it."""
    regex = getattr(pattern, "regex", None)
    if regex is None:
        return bool(pattern.match_file(rel))
    return _whole_path_regex(regex.pattern).search(rel) is not None


@functools.cache
def _whole_path_regex(regex: str) -> re.Pattern[str]:
    """pathspec's ``regex`` of a pattern, matching a path only where the pattern matches the
    path itself. pathspec's matches a folder's paths too (``*/`` is a "/" anywhere): here a
    match ends where the path does. One ending in "/" (``out/**``) wants a name after it."""
    inside = "(?s:.+)" if regex.endswith("/") else ""
    return re.compile(f"(?:{regex}){inside}\\Z")


def fingerprint(root: Path, files: Iterable[str]) -> str:
    """sha256 over the files' paths, executable bits and contents: equal exactly when the
    inputs are equal (the archive records the bit: 0755 or 0644).

    A path may lead out of ``root`` (``../shared/reqs.txt``): it is read from there."""
    marks = file_marks(root, files)
    return fingerprint_of(marks, marks)


def file_marks(root: Path, files: Iterable[str]) -> dict[str, bytes]:
    """What :func:`fingerprint` hashes of each file, by path: each file read once, where
    several fingerprints cover some of the same files (see :func:`fingerprint_of`)."""
    marks = {}
    for rel in files:
        try:
            executable = os.stat(root / rel).st_mode & 0o111 != 0
            sha = bytes.fromhex(file_sha256(root / rel))  # in blocks: files may be big
        except OSError as exc:  # gone since the walk, unreadable: say which, without a traceback
            raise BuildError(f"cannot read: {exc.strerror or exc}", path=rel) from None
        marks[rel] = rel.encode("utf-8") + b"\0" + (b"x" if executable else b"-") + sha
    return marks


def fingerprint_of(marks: Mapping[str, bytes], files: Iterable[str]) -> str:
    """:func:`fingerprint` of ``files``, from their ``marks``."""
    digest = hashlib.sha256()
    for rel in files:
        digest.update(marks[rel])
    return digest.hexdigest()


# --- secrets found by name or content -------------------------------------------------

# Files read for secrets are read whole, up to this size: keys and credential files are
# small, and reading big data files (weights, datasets) would slow every build down.
SCAN_LIMIT = 1 << 20
_SSH_KEY_NAMES = frozenset(
    {"id_rsa", "id_dsa", "id_ecdsa", "id_ed25519", "id_ecdsa_sk", "id_ed25519_sk"}
)
# Credential files by their names alone, in any folder, each with what it is.
_CREDENTIAL_NAMES = {
    ".git-credentials": "git's stored credentials",
    "kaggle.json": "Kaggle's API token",
    ".pgpass": "PostgreSQL's stored passwords",
    ".databrickscfg": "Databricks CLI's tokens",
}
# The files the Hugging Face CLI keeps its tokens in, in $HF_HOME (~/.cache/huggingface;
# ~/.huggingface before it).
_HF_TOKEN_FILES = frozenset({"token", "stored_tokens"})
_HF_FOLDERS = frozenset({"huggingface", ".huggingface"})
_LISTED_TOKENS = 20  # lines a token warning names
_SNIFF_SIZE = 8192  # the first block, read to tell text from binary
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
    (codecs.BOM_UTF8, "utf-8-sig"),
)
# Key files by their names (left out even when not read: binary, or big), and source, kept
# whatever it holds (see _is_key_file).
_KEY_FILES = (".pem", ".key")
_SOURCE_FILES = (".py", ".pyi", ".pyx", ".pxd")


@dataclass(frozen=True)
class Screened:
    """The collected files, less the secrets left out: ``left_out`` as ``(path, why)`` and
    the lines of the others holding a known token, ``(path, line, what)``."""

    kept: list[str]
    left_out: list[tuple[str, str]]
    tokens: list[tuple[str, int, str]]

    def warnings(self) -> tuple[BuildWarning, ...]:
        found = []
        if self.left_out:
            found.append(BuildWarning(_left_out_message(self.left_out)))
        if self.tokens:
            found.append(BuildWarning(_tokens_message(self.tokens)))
        return tuple(found)


def screen_secrets(
    root: Path, files: Iterable[str], never: Mapping[str, str] | None = None
) -> Screened:
    """Leave the private keys and credential files (by name or content: see
    :func:`secret_file_reason`) out of ``files``, bar those the root .flashignore names with
    a ``!path`` line of their own; note the lines of the others that hold a known token.
    A file holding one of the secrets ``never`` names (its text -> what it is: the app's
    signing key, a RunPod secret's value) is a BuildError, whatever .flashignore says.

    Only files under SCAN_LIMIT that are text are read: a secret file is neither big nor
    binary, bar the key stores known by name (``*.p12``)."""
    chosen = deliberate_includes(root)
    never = never or {}
    kept: list[str] = []
    left_out: list[tuple[str, str]] = []
    tokens: list[tuple[str, int, str]] = []
    held: list[str] = []
    for rel in files:
        text, why, held_in_bytes = _read_screened(root, rel, rel in chosen, never)
        if why is not None:
            left_out.append((rel, why))
            continue
        kept.append(rel)
        held += [f"  {rel}:{line}: {what}" for line, what in held_in_bytes]
        if text is not None:
            for secret, what in never.items():
                at = text.find(secret)
                if at != -1:
                    held.append(f"  {rel}:{text.count(chr(10), 0, at) + 1}: {what}")
            if names_package_indexes(rel):  # as archived: URLs cut after their host
                text = mask_config_urls(text)
            tokens += [(rel, line, what) for line, what in tokens_in_text(text)]
    if held:
        raise BuildError(
            "project files hold a secret that must never be archived (whoever has the app's"
            " key can run code on its workers):\n" + "\n".join(held) + "\nRemove it from"
            " them (a notebook's saved output, say), or leave them out in .flashignore"
        )
    return Screened(kept, left_out, tokens)


def secret_file_reason(rel: str, text: str | None) -> str | None:
    """Why the project file ``rel`` (``text``: its content, None when not read) is a
    private key or a credentials file, or None. Names in any case (see CREDENTIAL_FILES)."""
    parts = rel.lower().split("/")
    name = parts[-1]
    if ".ssh" in parts[:-1]:
        return "in a .ssh folder (SSH keys and their settings)"
    if name in _SSH_KEY_NAMES:
        return "an SSH private key file"
    if name in _CREDENTIAL_NAMES:
        return _CREDENTIAL_NAMES[name]
    folders = parts[:-1]
    if name in _HF_TOKEN_FILES and folders[-1:] and folders[-1] in _HF_FOLDERS:
        return "a Hugging Face token"
    if ".kube" in folders:
        return "in a .kube folder (Kubernetes cluster credentials)"
    if ".azure" in folders:
        return "in an .azure folder (Azure CLI tokens)"
    if _under(folders, ".config", "gcloud"):
        return "in .config/gcloud (Google Cloud CLI credentials)"
    if name == "hosts.yml" and _under(folders, ".config", "gh"):
        return "GitHub CLI's tokens"
    if name == "config.json" and folders[-1:] == [".docker"]:
        return "Docker's registry credentials"
    if name.endswith((".p12", ".pfx")):
        return "a PKCS #12 key store"
    if name == "credentials" and (
        ".aws" in parts[:-1] or (text is not None and "aws_secret_access_key" in text.lower())
    ):
        return "AWS credentials"
    if text is None:  # binary (a DER key), or big
        return "a key file by its name, not read as text" if name.endswith(_KEY_FILES) else None
    if name.endswith(".json"):
        kind = _google_credentials(text)
        if kind is not None:
            return f"a Google {kind}"
    if _is_key_file(name, text):
        return "holds a private key (-----BEGIN ... PRIVATE KEY-----)"
    return None


def _is_key_file(name: str, text: str) -> bool:
    """Whether the file ``name`` of ``text`` holds a private key and is there for it: named
    as a key file, or the key is most of it. Others (a README's example, a test's fixture)
    are kept, and their lines warned about (tokens_in_text); source is kept in any case, as
    without the module the code importing it would fail on the worker, far from the reason."""
    if name.endswith(_SOURCE_FILES):
        return False
    if name.endswith(_KEY_FILES):  # a key file's BEGIN line is enough (a certificate has none)
        return "PRIVATE KEY-----" in text
    spans = [match.span() for match in PRIVATE_KEY.finditer(text)]
    return bool(spans) and 2 * sum(end - start for start, end in spans) >= len(text.strip())


# Google credential files by their "type", and what each is called.
_GOOGLE_CREDENTIALS = {
    "service_account": ("private_key", "service-account key"),
    "authorized_user": ("refresh_token", "user credential (application default credentials)"),
}


def _google_credentials(text: str) -> str | None:
    """What kind of Google credentials the JSON ``text`` is, or None."""
    if not any(
        f'"{kind}"' in text and f'"{field}"' in text
        for kind, (field, _) in _GOOGLE_CREDENTIALS.items()
    ):
        return None  # most JSON files: not parsed
    try:
        data = json.loads(text)
    except ValueError:
        return None
    kind = data.get("type") if isinstance(data, dict) else None
    found = _GOOGLE_CREDENTIALS.get(kind) if isinstance(kind, str) else None
    return None if found is None else found[1]


def _under(folders: list[str], *names: str) -> bool:
    """Whether ``names`` appear in a row in the (lowercased) ``folders`` of a path."""
    return any(folders[i : i + len(names)] == list(names) for i in range(len(folders)))


def _read_screened(
    root: Path, rel: str, chosen: bool, never: Mapping[str, str]
) -> tuple[str | None, str | None, list[tuple[int, str]]]:
    """The project file ``rel``'s text (None: big or binary, see _text_in); why it is left
    out as a secret (None: kept, as it is when ``chosen``; see secret_file_reason); and,
    kept but not read as text, where it holds one of the secrets ``never`` names (see
    _held_in). The file is read once: the search goes on from the bytes read to tell text
    from binary."""
    try:
        with open(root / rel, "rb") as file:
            text, head = _text_in(file)
            why = None if chosen else secret_file_reason(rel, text)
            if why is not None or text is not None or not never:
                return text, why, []
            return None, None, _held_in(file, head, never)  # a notebook with plots, a database
    except OSError as exc:  # gone since the walk, unreadable
        raise BuildError(f"cannot read: {exc.strerror or exc}", path=rel) from None


def _held_in(file: BinaryIO, head: bytes, never: Mapping[str, str]) -> list[tuple[int, str]]:
    """Where the open ``file`` (not read as text: over SCAN_LIMIT, or binary) holds one of
    the secrets ``never`` names, as (line, what): ``head``, what was read of it already, and
    the rest, in blocks each searched with the end of the one before it, so that a secret
    across two is found. Files over NEVER_SCAN_LIMIT (model weights, datasets) are not read."""
    if os.fstat(file.fileno()).st_size > NEVER_SCAN_LIMIT:
        return []
    needles = {secret.encode("utf-8", "surrogatepass"): what for secret, what in never.items()}
    overlap = max(map(len, needles)) - 1
    found: dict[bytes, int] = {}
    lines = 1  # newlines before the carried tail
    tail = b""
    # The first block ends where it would reading from the start: the secrets are named in
    # the order found, block by block.
    block = head + file.read(max(SCAN_LIMIT - len(head), 0))
    while block:
        data = tail + block
        for needle in [needle for needle in needles if needle not in found]:
            at = data.find(needle)
            if at != -1:
                found[needle] = lines + data.count(b"\n", 0, at)
        tail = data[-overlap:] if overlap else b""
        lines += data.count(b"\n", 0, len(data) - len(tail))
        block = file.read(SCAN_LIMIT)
    return [(line, needles[needle]) for needle, line in found.items()]


# Files up to this size that are not read as text are still searched for the app's key and
# the RunPod secrets (a notebook's saved output with plots); bigger ones are data.
NEVER_SCAN_LIMIT = 256 << 20


def _text_in(file: BinaryIO) -> tuple[str | None, bytes]:
    """The open ``file``'s text, or None when it is over SCAN_LIMIT or binary (holds a NUL
    byte and no byte order mark: UTF-16 text holds NULs too); and the bytes read to tell.
    Only a text's first block is read whole: most binaries (weights, images) hold a NUL
    there."""
    if os.fstat(file.fileno()).st_size > SCAN_LIMIT:
        return None, b""
    data = file.read(_SNIFF_SIZE)
    encoding = _bom_encoding(data)
    if encoding is None and b"\0" in data:
        return None, data
    data += file.read()
    if encoding is None and b"\0" in data:
        return None, data
    return data.decode(encoding or "utf-8", errors="replace"), data


def _bom_encoding(data: bytes) -> str | None:
    # UTF-32's little-endian mark starts with UTF-16's: tried first.
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return encoding
    return None


def deliberate_includes(root: Path) -> set[str]:
    """The project paths the root .flashignore names exactly on a ``!path`` line (no
    wildcard): secrets the user chose to archive. A broad ``!`` (``!*``, ``!workers/**``)
    re-includes what ignore patterns left out, never a secret."""
    lines = _ignore_lines(root / ".flashignore", ".flashignore")
    return {
        line.strip()[1:].lstrip("/")
        for line in lines
        if line.strip().startswith("!") and not any(c in line for c in "*?[\\")
    }


def _left_out_message(left_out: list[tuple[str, str]]) -> str:
    count = len(left_out)
    lines = [
        f"{count} file{'s' if count > 1 else ''} left out of the archive as secret "
        "(every worker, and whoever has the archive, would have it):"
    ]
    lines += [f"  {rel}: {why}" for rel, why in left_out]
    example = left_out[0][0]
    lines.append(
        "Keep such files out of the project and give the endpoint what it needs as a RunPod "
        'secret (env={"NAME": "{{ RUNPOD_SECRET_name }}"}), read with os.environ; to '
        f"archive one anyway, name it on a line of its own in .flashignore (!{example})."
    )
    return "\n".join(lines)


def _tokens_message(tokens: list[tuple[str, int, str]]) -> str:
    count = len(tokens)
    lines = [
        f"{count} line{'s' if count > 1 else ''} of archived files "
        f"hold{'s' if count == 1 else ''} what looks like a secret token, archived as written:"
    ]
    lines += [f"  {rel}:{line}: looks like {what}" for rel, line, what in tokens[:_LISTED_TOKENS]]
    if count > _LISTED_TOKENS:
        lines.append(f"  and {count - _LISTED_TOKENS} more")
    lines.append(
        "Give the endpoint each as a RunPod secret instead "
        '(env={"NAME": "{{ RUNPOD_SECRET_name }}"}) and read it with os.environ, or leave '
        "the file out with .flashignore."
    )
    return "\n".join(lines)
