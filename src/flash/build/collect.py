"""Stage 1: the project files that go into a build."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

import pathspec

from flash.build.archive import file_sha256
from flash.build.errors import BuildError
from flash.runtime.protocol import MANIFEST_FILENAME

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
)

# Always left out, whatever the ignore files say: VCS data, build outputs, virtualenvs,
# bytecode and CREDENTIAL_FILES (secrets never enter an archive). Checked on its own (see
# always_excluded), never merged with the user's patterns, so no `!` line can re-include these.
ALWAYS_EXCLUDED = (
    ".git/",
    ".hg/",
    ".svn/",
    ".flash/",
    ".venv/",
    "venv/",
    "__pycache__/",
    "*.pyc",
    "*.pyo",
    *CREDENTIAL_FILES,
    ".mypy_cache/",
    ".pytest_cache/",
    ".ruff_cache/",
    ".tox/",
    "/dist/",
    "/build/",
    "*.egg-info/",
    ".DS_Store",
    ".#*",  # editors' lock files (Emacs's are dangling links while a buffer has edits)
    f"/{MANIFEST_FILENAME}",
)
_ALWAYS_SPEC = pathspec.GitIgnoreSpec.from_lines(ALWAYS_EXCLUDED)
_CREDENTIALS_SPEC = pathspec.GitIgnoreSpec.from_lines(CREDENTIAL_FILES)


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
    (CREDENTIAL_FILES in any case)."""
    return _ALWAYS_SPEC.match_file(rel) or _CREDENTIALS_SPEC.match_file(rel.lower())


def load_ignore_spec(root: Path, extra_patterns: Iterable[str] = ()) -> pathspec.GitIgnoreSpec:
    """Patterns from the root's .gitignore and .flashignore (not ALWAYS_EXCLUDED: see there)."""
    lines: list[str] = []
    for name in IGNORE_FILES:
        path = root / name
        if path.is_file():
            try:
                lines.extend(path.read_text(encoding="utf-8").splitlines())
            except UnicodeDecodeError as exc:
                raise BuildError(f"not UTF-8 text: {exc}", path=name) from None
    lines.extend(extra_patterns)
    return pathspec.GitIgnoreSpec.from_lines(lines)


def collect_files(root: Path, extra_patterns: Iterable[str] = ()) -> list[str]:
    """Sorted posix paths, relative to ``root``, of every file that belongs in the build.

    Ignore files in subfolders are honoured the git way: their patterns apply below them.
    Symbolic links are never followed: one that no ignore file leaves out stops the build
    (see _link_error).
    """
    root = root.resolve()
    if not root.is_dir():
        raise BuildError(f"project directory not found: {root}")
    specs: list[tuple[str, pathspec.GitIgnoreSpec]] = [("", load_ignore_spec(root, extra_patterns))]
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        prefix = "" if rel_dir == "." else rel_dir + "/"
        if prefix:
            nested = _nested_spec(Path(dirpath))
            if nested is not None:
                specs.append((prefix, nested))
        kept_dirs = []
        for name in sorted(dirnames):  # a link to a folder is listed here, never walked
            rel = prefix + name
            if _ignored(specs, rel + "/"):
                continue
            _check_utf8_name(rel + "/")
            if os.path.islink(os.path.join(dirpath, name)):
                raise _link_error(root, rel)
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
                raise _link_error(root, rel)
            if os.path.isfile(path):  # not a socket or a FIFO
                found.append(rel)
    return sorted(found)


def _link_error(root: Path, rel: str) -> BuildError:
    """Why the link ``rel`` stops the build. Followed, a link would put whatever it points
    to into the archive (``notes.txt -> .env``, a credentials file elsewhere) past every
    exclusion; skipped, it would drop something the project may import. So it is the
    user's call: a copy inside the project, or the link in .flashignore."""
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
    return BuildError(
        f"is a symbolic link to {where}; a build follows no links: {advice}, "
        "or list the link in .flashignore",
        path=rel,
    )


def is_ignored(root: Path, rel: str) -> bool:
    """Whether collect_files would leave out the project-relative posix file path ``rel``:
    the same ignore files (nested ones too), folder by folder, as the walk reads them."""
    parts = rel.split("/")
    folders = ["/".join(parts[: i + 1]) + "/" for i in range(len(parts) - 1)]
    if any(always_excluded(path) for path in (*folders, rel)):
        return True  # .flash/, .git/, ...: no ignore file needs reading (`flash run` writes)
    specs: list[tuple[str, pathspec.GitIgnoreSpec]] = [("", load_ignore_spec(root))]
    prefix = ""
    for part in parts[:-1]:
        # The walk never enters an ignored folder, whatever the files below it say.
        if _ignored(specs, prefix + part + "/"):
            return True
        prefix += part + "/"
        nested = _nested_spec(root / prefix)
        if nested is not None:
            specs.append((prefix, nested))
    return _ignored(specs, rel)


def _check_utf8_name(rel: str) -> None:
    """Archive entry names are UTF-8: a name that is not (os.walk gives surrogates) is refused."""
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        shown = rel.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        raise BuildError(
            "file name is not valid UTF-8; rename it, or list it in .flashignore", path=shown
        ) from None


def _nested_spec(directory: Path) -> pathspec.GitIgnoreSpec | None:
    lines: list[str] = []
    for name in IGNORE_FILES:
        path = directory / name
        if path.is_file():
            lines.extend(path.read_text(encoding="utf-8", errors="replace").splitlines())
    return pathspec.GitIgnoreSpec.from_lines(lines) if lines else None


def _ignored(specs: list[tuple[str, pathspec.GitIgnoreSpec]], rel: str) -> bool:
    if always_excluded(rel):
        return True
    # As git does: the deepest ignore file with a pattern matching the path decides, so a
    # nested `!settings.json` re-includes what the root's `*.json` left out. The walk is
    # top-down, so an ancestor's spec always comes before its descendants' in ``specs``.
    for prefix, spec in reversed(specs):
        if rel.startswith(prefix):
            verdict = spec.check_file(rel[len(prefix) :]).include
            if verdict is not None:
                return verdict
    return False


def fingerprint(root: Path, files: Iterable[str]) -> str:
    """sha256 over the files' paths and contents: equal exactly when the inputs are equal.

    A path may lead out of ``root`` (``../shared/reqs.txt``): it is read from there."""
    digest = hashlib.sha256()
    for rel in files:
        digest.update(rel.encode("utf-8") + b"\0")
        try:
            digest.update(bytes.fromhex(file_sha256(root / rel)))  # in blocks: files may be big
        except OSError as exc:  # gone since the walk, unreadable: say which, without a traceback
            raise BuildError(f"cannot read: {exc.strerror or exc}", path=rel) from None
    return digest.hexdigest()
