import json
import os
import subprocess
import tracemalloc
from pathlib import Path

import pytest

from flash.build.collect import collect_files, fingerprint, ignored_by, is_ignored, screen_secrets
from flash.build.errors import BuildError


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_built_in_exclusions_and_ignore_files(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "app.py": "",
            "pkg/mod.py": "",
            "pkg/__pycache__/mod.cpython-311.pyc": "",
            "pkg/data.pyc": "",
            ".git/config": "",
            ".flash/archive.tar.gz": "",
            ".venv/lib/x.py": "",
            "venv/lib/x.py": "",
            ".env": "SECRET=1",
            ".env.production": "SECRET=2",
            "notes/draft.md": "",
            "big.bin": "",
            "keep/build/x.py": "",
            "build/out.txt": "",
            ".gitignore": "big.bin\n",
            ".flashignore": "notes/\n",
        },
    )
    assert collect_files(tmp_path) == [
        ".flashignore",
        ".gitignore",
        "app.py",
        "keep/build/x.py",
        "pkg/mod.py",
    ]


def test_jupyter_checkpoints_are_left_out_in_any_folder(tmp_path: Path) -> None:
    # Jupyter's autosave copies (.ipynb_checkpoints/main-checkpoint.py) are no modules of the
    # project: their names cannot even be imported.
    write(
        tmp_path,
        {
            "main.py": "",
            ".ipynb_checkpoints/main-checkpoint.py": "",
            "nb/.ipynb_checkpoints/analysis-checkpoint.ipynb": "",
            "nb/analysis.ipynb": "",
        },
    )
    assert collect_files(tmp_path) == ["main.py", "nb/analysis.ipynb"]


def test_a_virtual_environment_of_any_name_is_left_out(tmp_path: Path) -> None:
    # `python -m venv env`: its bin/python, a link out of the project, stopped the build.
    write(
        tmp_path,
        {
            "app.py": "",
            "env/pyvenv.cfg": "home = /usr/bin\n",
            "env/lib/python3.11/site-packages/dep.py": "",
            "tools/py311/pyvenv.cfg": "home = /usr/bin\n",
            "config/env/settings.py": "",  # a package named env: no pyvenv.cfg
        },
    )
    (tmp_path / "env" / "bin").mkdir()
    (tmp_path / "env" / "bin" / "python").symlink_to("/usr/bin/python3")
    assert collect_files(tmp_path) == ["app.py", "config/env/settings.py"]
    assert is_ignored(tmp_path, "env/lib/python3.11/site-packages/dep.py")
    for rel in ("env/bin/python", "tools/py311/"):
        assert ignored_by(tmp_path, rel) == "a virtual environment (it holds pyvenv.cfg)"


def test_credential_files_are_left_out_in_any_case(tmp_path: Path) -> None:
    # On a file system that ignores case (macOS's), .ENV is the .env dotenv reads.
    credentials = [".ENV", ".Env.production", "cfg/.ENVRC", ".NETRC", "_Netrc", ".PyPIrc"]
    credentials += ["PIP.CONF", "Pip.Ini", "UV.TOML", "Poetry.toml"]
    credentials += ["pkg/Mod.PYC", "pkg/other.Pyo"]  # bytecode in any spelling
    # The other exclusions keep their case: Build/ is no /build/ output, nor Venv/ a venv.
    kept = ["Build/x.py", "Venv/y.py", "ENV.md", "app.py"]
    write(tmp_path, {name: "" for name in credentials + kept})
    assert collect_files(tmp_path) == sorted(kept)


def test_nested_gitignore_applies_below_its_folder(tmp_path: Path) -> None:
    write(
        tmp_path,
        {"a/.gitignore": "*.log\n!keep.log\n", "a/x.log": "", "a/keep.log": "", "b/x.log": ""},
    )
    assert collect_files(tmp_path) == ["a/.gitignore", "a/keep.log", "b/x.log"]


def test_a_nested_negation_re_includes_what_the_root_ignores(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            ".gitignore": "*.json\n",
            "x.json": "",
            "config/.gitignore": "!settings.json\n",
            "config/settings.json": "{}",
            "config/other.json": "",
            "config/deeper/.gitignore": "settings.json\n",
            "config/deeper/settings.json": "",
            ".env": "SECRET=1",
            "config/.flashignore": "!.env\n",
            "config/.env": "SECRET=2",
        },
    )
    # Like `git ls-files --others --exclude-standard`: config/settings.json is tracked, the
    # deeper file ignores its own settings.json again, and .env stays out whatever they say.
    assert collect_files(tmp_path) == [
        ".gitignore",
        "config/.flashignore",
        "config/.gitignore",
        "config/deeper/.gitignore",
        "config/settings.json",
    ]


def test_the_ignore_files_of_the_repository_around_the_project_apply_to_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As git reads them: each .gitignore above the project up to the repository's top, and
    # .git/info/exclude, the project's own files deciding last.
    repo = tmp_path / "repo"
    write(
        repo,
        {
            ".git/info/exclude": "scratch.txt\n",
            # apps/ holds the project: as git would, it leaves out nothing the project holds
            # (the project's own folder is built), and names no file's reason.
            ".gitignore": "secret.txt\n*.log\n/top-only.txt\napps/\n",
            "apps/.gitignore": "proj/data/\n",
            "apps/proj/.gitignore": "!keep.log\n",
            "apps/proj/app.py": "",
            "apps/proj/secret.txt": "",
            "apps/proj/a.log": "",
            "apps/proj/keep.log": "",
            "apps/proj/scratch.txt": "",
            "apps/proj/top-only.txt": "",  # anchored at the repository's top: not this one
            "apps/proj/data/big.csv": "",
        },
    )
    project = repo / "apps" / "proj"
    assert collect_files(project) == [".gitignore", "app.py", "keep.log", "top-only.txt"]
    assert ignored_by(project, "secret.txt") == "../../.gitignore"
    assert ignored_by(project, "scratch.txt") == "../../.git/info/exclude"
    assert ignored_by(project, "data/big.csv") == "../.gitignore"
    assert ignored_by(project, "keep.log") is None
    # `flash run` asks one path at a time, from wherever it runs: the same answers.
    monkeypatch.chdir(project)
    assert is_ignored(Path("."), "a.log") and not is_ignored(Path("."), "app.py")


def test_a_worktrees_exclude_file_applies_and_no_repository_means_none(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "real.git/info/exclude": "scratch.txt\n",
            "proj/.git": "gitdir: ../real.git\n",  # a worktree's or a submodule's: not archived
            "proj/app.py": "",
            "proj/scratch.txt": "",
            "loose/scratch.txt": "",
        },
    )
    assert collect_files(tmp_path / "proj") == ["app.py"]
    assert collect_files(tmp_path / "loose") == ["scratch.txt"]


def test_a_git_worktree_takes_the_exclude_file_of_its_main_repository(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write(repo, {"app.py": ""})
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    for args in (
        ("init", "-q"),
        ("add", "app.py"),
        ("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one"),
        ("worktree", "add", "-q", str(tmp_path / "wt")),
    ):
        subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)
    (repo / ".git" / "info").mkdir(exist_ok=True)
    (repo / ".git" / "info" / "exclude").write_text("scratch.txt\n")
    write(tmp_path / "wt", {"scratch.txt": ""})
    ignored = subprocess.run(
        ["git", "status", "--porcelain", "--ignored"],
        cwd=tmp_path / "wt",
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "!! scratch.txt" in ignored.stdout  # as git itself sees it
    assert collect_files(tmp_path / "wt") == ["app.py"]


def test_negation_in_flashignore(tmp_path: Path) -> None:
    write(tmp_path, {"data/a.csv": "", "data/b.csv": "", ".flashignore": "data/*\n!data/b.csv\n"})
    assert collect_files(tmp_path) == [".flashignore", "data/b.csv"]


def test_missing_project_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="not found"):
        collect_files(tmp_path / "nope")


def test_fingerprint_changes_with_content_and_names(tmp_path: Path) -> None:
    write(tmp_path, {"a.py": "x = 1\n"})
    first = fingerprint(tmp_path, ["a.py"])
    assert fingerprint(tmp_path, ["a.py"]) == first
    (tmp_path / "a.py").write_text("x = 2\n")
    second = fingerprint(tmp_path, ["a.py"])
    assert second != first
    (tmp_path / "a.py").rename(tmp_path / "b.py")
    assert fingerprint(tmp_path, ["b.py"]) != second


def test_a_file_name_that_is_not_utf8_is_a_clear_error(tmp_path: Path) -> None:
    write(tmp_path, {"app.py": ""})
    (tmp_path / os.fsdecode(b"caf\xe9.txt")).write_text("x")
    with pytest.raises(BuildError, match="not valid UTF-8") as info:
        collect_files(tmp_path)
    assert info.value.path == "caf\\xe9.txt"
    # Ignored, it is no problem.
    write(tmp_path, {".flashignore": "caf*\n"})
    assert collect_files(tmp_path) == [".flashignore", "app.py"]


def test_a_link_inside_the_project_is_refused_naming_its_target(tmp_path: Path) -> None:
    # An archive holds no links, and following one would copy what it points to under
    # another name, past the masking and exclusions that name decides.
    write(tmp_path, {"app.py": "", "requirements.txt": "-i https://u:tok@example.invalid\n"})
    (tmp_path / "reqs-copy.md").symlink_to("requirements.txt")
    with pytest.raises(BuildError) as info:
        collect_files(tmp_path)
    assert info.value.path == "reqs-copy.md"
    assert "symbolic link to requirements.txt;" in info.value.message
    assert "replace the link with a copy" in info.value.message


def test_a_dangling_link_is_refused_and_an_ignored_one_is_not(tmp_path: Path) -> None:
    write(tmp_path, {"app.py": ""})
    (tmp_path / "shared").symlink_to(tmp_path / "nowhere")
    with pytest.raises(BuildError, match="which does not exist") as info:
        collect_files(tmp_path)
    assert info.value.path == "shared"
    write(tmp_path, {".flashignore": "shared/\n"})  # as a folder: what it was meant to be
    assert collect_files(tmp_path) == [".flashignore", "app.py"]
    # An editor's lock file (Emacs links .#app.py to nowhere while the buffer has edits)
    # must not stop a `flash run` rebuild.
    (tmp_path / ".#app.py").symlink_to("user@host.123:456")
    assert collect_files(tmp_path) == [".flashignore", "app.py"]


# What editors write beside a file while it is open or saved: vim's swap files and its
# write test (4913), backups (app.py~), Emacs's autosaves, JetBrains' and Kate's temporaries.
EDITOR_FILES = [
    ".app.py.swp",
    ".app.py.swo",
    "app.py~",
    "#app.py#",
    "app.py___jb_tmp___",
    "app.py___jb_old___",
    ".app.py.kate-swp",
]


def test_editor_temporary_files_never_enter_an_archive(tmp_path: Path) -> None:
    write(tmp_path, {"app.py": "", **{f"pkg/{name}": "unsaved buffer" for name in EDITOR_FILES}})
    write(tmp_path, {name: "unsaved buffer" for name in EDITOR_FILES})
    write(tmp_path, {".flashignore": "!*~\n!*.swp\n"})  # never back in, as .git is not
    assert collect_files(tmp_path) == [".flashignore", "app.py"]
    assert collect_files(tmp_path / "pkg") == []
    # Folders of such names are the project's (vim's write test file 4913 is no pattern:
    # it is gone again at once, and a folder of that name may well hold data).
    write(tmp_path, {"backup~/a.py": "", "#drafts#/b.py": "", "data/4913/c.json": ""})
    assert collect_files(tmp_path) == [
        "#drafts#/b.py",
        ".flashignore",
        "app.py",
        "backup~/a.py",
        "data/4913/c.json",
    ]


def test_fingerprinting_a_big_file_takes_little_memory(tmp_path: Path) -> None:
    with open(tmp_path / "big.bin", "wb") as f:
        f.truncate(64 * 1024 * 1024)  # sparse: no disk used
    tracemalloc.start()
    try:
        fingerprint(tmp_path, ["big.bin"])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024


def test_a_file_gone_since_the_walk_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="cannot read") as info:
        fingerprint(tmp_path, ["gone.py"])
    assert info.value.path == "gone.py"


def test_fingerprint_changes_with_the_executable_bit(tmp_path: Path) -> None:
    # The archive records the bit (0755 or 0644): a `chmod +x` is a new archive.
    write(tmp_path, {"start.sh": "echo hi\n"})
    before = fingerprint(tmp_path, ["start.sh"])
    (tmp_path / "start.sh").chmod(0o755)
    assert fingerprint(tmp_path, ["start.sh"]) != before


def test_a_nested_ignore_file_that_is_not_utf8_is_an_error_naming_it(tmp_path: Path) -> None:
    write(tmp_path, {"app.py": "", "data/x.csv": ""})
    (tmp_path / "data" / ".flashignore").write_bytes(b"caf\xe9.csv\n")
    with pytest.raises(BuildError, match="not UTF-8") as info:
        collect_files(tmp_path)
    assert info.value.path == "data/.flashignore"


PEM_KEY = (
    "-----BEGIN {}PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END {}PRIVATE KEY-----\n"
)


def test_private_keys_and_credential_files_are_left_out_saying_why(tmp_path: Path) -> None:
    service_account = '{"type": "service_account", "private_key_id": "1", "private_key": "x"}'
    secrets = {
        "deploy_key.pem": PEM_KEY.format("RSA ", "RSA "),
        "keys/ec.key": PEM_KEY.format("EC ", "EC "),
        "keys/openssh": PEM_KEY.format("OPENSSH ", "OPENSSH "),
        "keys/enc.txt": "notes\n" + PEM_KEY.format("ENCRYPTED ", "ENCRYPTED "),
        "keys/pkcs8": PEM_KEY.format("", ""),
        ".ssh/config": "Host x\n",
        "home/.ssh/known_hosts": "x\n",
        "id_rsa": "x",
        "deploy/ID_ED25519": "x",
        ".aws/credentials": "[default]\n",
        "aws/credentials": "[default]\naws_secret_access_key = abc\n",
        ".git-credentials": "https://u:p@example.invalid\n",
        "cert.p12": "\0binary",
        "Cert.PFX": "\0binary",
        "sa.json": service_account,
        ".config/gcloud/application_default_credentials.json": "{}",
        "adc.json": json.dumps(
            {"type": "authorized_user", "client_secret": "x", "refresh_token": "1//0g"}
        ),
        "home/.kube/config": "users:\n- name: u\n  user:\n    token: abc\n",
        ".azure/msal_token_cache.json": "{}",
        ".config/gh/hosts.yml": "github.com:\n  oauth_token: x\n",
        "ci/.docker/config.json": '{"auths": {"r.example": {"auth": "dTpw"}}}',
    }
    kept = {
        "app.py": "",
        "id_rsa.pub": "ssh-rsa AAAA\n",
        "certs/ca.pem": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        "credentials": "[notes]\n",  # no AWS key in it
        "data.json": '{"type": "dataset"}',
        "docker/config.json": "{}",  # not Docker's own folder
        "settings/hosts.yml": "a: 1\n",
    }
    write(tmp_path, {**secrets, **kept})
    screened = screen_secrets(tmp_path, collect_files(tmp_path))
    assert screened.kept == sorted(kept)
    assert sorted(rel for rel, _ in screened.left_out) == sorted(secrets)
    reasons = dict(screened.left_out)
    assert reasons["deploy_key.pem"] == "holds a private key (-----BEGIN ... PRIVATE KEY-----)"
    assert reasons["sa.json"] == "a Google service-account key"
    assert reasons["aws/credentials"] == "AWS credentials"
    assert reasons["adc.json"].startswith("a Google user credential")
    assert reasons["ci/.docker/config.json"] == "Docker's registry credentials"
    (warning,) = screened.warnings()
    assert warning.message.startswith(f"{len(secrets)} files left out of the archive as secret")
    assert "  deploy_key.pem: holds a private key" in warning.message
    assert "MIIEvQ" not in warning.message and ".flashignore (!" in warning.message


def test_tokens_of_data_and_ml_tools_are_left_out_saying_why(tmp_path: Path) -> None:
    # They were archived (Hugging Face's only warned about by line), while .aws/ was not.
    hf_token = "hf_" + "aBcDeFgHiJkLmNoPqRsTuVwXyZ012345"
    secrets = {
        "kaggle.json": '{"username": "u", "key": "0123456789abcdef"}',
        ".kaggle/Kaggle.json": '{"username": "u", "key": "0123456789abcdef"}',
        ".pgpass": "db.example:5432:app:u:pw\n",
        "home/.databrickscfg": "[DEFAULT]\nhost = https://x\ntoken = dapi0123\n",
        ".huggingface/token": hf_token,
        "home/.cache/huggingface/token": hf_token,
        ".cache/huggingface/stored_tokens": f"[work]\nhf_token = {hf_token}\n",
    }
    kept = {"app.py": "", "data/token": "a word\n", "huggingface/config.json": "{}"}
    write(tmp_path, {**secrets, **kept})
    screened = screen_secrets(tmp_path, collect_files(tmp_path))
    assert screened.kept == sorted(kept)
    reasons = dict(screened.left_out)
    assert sorted(reasons) == sorted(secrets)
    assert reasons["kaggle.json"] == "Kaggle's API token"
    assert reasons[".pgpass"] == "PostgreSQL's stored passwords"
    assert reasons["home/.databrickscfg"] == "Databricks CLI's tokens"
    assert reasons[".huggingface/token"] == "a Hugging Face token"
    assert not screened.tokens  # left out, so no longer warned about by line


def test_a_secret_named_exactly_in_flashignore_is_archived_and_a_broad_negation_is_not(
    tmp_path: Path,
) -> None:
    write(
        tmp_path,
        {
            "app.py": "",
            "tls/server.key": PEM_KEY.format("", ""),
            "tls/other.key": PEM_KEY.format("", ""),
            ".flashignore": "!tls/server.key\n!tls/*\n",
        },
    )
    screened = screen_secrets(tmp_path, collect_files(tmp_path))
    assert screened.kept == [".flashignore", "app.py", "tls/server.key"]
    assert screened.left_out == [
        ("tls/other.key", "holds a private key (-----BEGIN ... PRIVATE KEY-----)")
    ]


def test_known_tokens_in_archived_files_are_warned_about_by_line_never_quoted(
    tmp_path: Path,
) -> None:
    openai = "sk-proj-" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4"
    hf = "hf_" + "abcdefghijklmnopqrstuvwxyzABCDEF12"
    github = "ghp_" + "0123456789abcdefghijklmnopqrstuvwxyzAB"
    aws = "AKIA" + "IOSFODNN7EXAMPL3"
    write(
        tmp_path,
        {
            "app.py": f'import os\nOPENAI_API_KEY = "{openai}"\nTASK = "task-sk-1"\n',
            "conf/settings.yaml": f"hf: {hf}\nother: 1\ngh: {github}\naws: {aws}\n",
            "clean.py": "MAX_TOKENS = 512\n",
            "blob.bin": f"\0{hf}",  # binary: not read
            "requirements.txt": f"--extra-index-url https://dl.example.invalid/{github}/simple\n",
        },
    )
    screened = screen_secrets(tmp_path, collect_files(tmp_path))
    assert screened.left_out == []
    assert [(rel, line) for rel, line, _ in screened.tokens] == [
        ("app.py", 2),
        ("conf/settings.yaml", 1),
        ("conf/settings.yaml", 3),
        ("conf/settings.yaml", 4),
    ]  # requirements.txt: its URL is archived cut after the host
    (warning,) = screened.warnings()
    assert "  app.py:2: looks like an OpenAI-style API key" in warning.message
    assert "  conf/settings.yaml:3: looks like a GitHub token" in warning.message
    for token in (openai, hf, github, aws):
        assert token not in warning.message


def test_screening_reads_no_big_file(tmp_path: Path) -> None:
    # A big file (weights, data) is not read for secrets: that would slow every build down.
    write(tmp_path, {"app.py": "", "notes.txt": PEM_KEY.format("", "") + "x" * (2 << 20)})
    screened = screen_secrets(tmp_path, collect_files(tmp_path))
    assert screened.kept == ["app.py", "notes.txt"] and not screened.tokens


def test_a_file_that_only_names_a_key_header_is_no_key(tmp_path: Path) -> None:
    # A placeholder, a parser's constant, a comment, a README's elided example: no key block.
    files = {
        "app/templates/upload.html": '<textarea placeholder="-----BEGIN OPENSSH PRIVATE KEY-----">',
        "app/sshutil.pyx": 'HEADER = b"-----BEGIN OPENSSH PRIVATE KEY-----"\n',
        "app/stubs.pyi": "HEADER: str  # -----BEGIN PRIVATE KEY-----\n",
        "README.md": "Paste it:\n-----BEGIN PRIVATE KEY-----\n...\n-----END PRIVATE KEY-----\n",
    }
    write(tmp_path, files)
    screened = screen_secrets(tmp_path, collect_files(tmp_path))
    assert screened.kept == sorted(files)
    assert screened.left_out == [] and screened.tokens == []


def test_a_key_in_a_bigger_file_or_in_source_is_kept_and_warned_about_by_line(
    tmp_path: Path,
) -> None:
    prose = "How to deploy.\n" + "Some words on it.\n" * 20
    write(
        tmp_path,
        {
            "docs/deploy.md": prose + PEM_KEY.format("", "") + prose,
            "app/keys.pyx": PEM_KEY.format("EC ", "EC "),  # source: kept whatever it holds
        },
    )
    screened = screen_secrets(tmp_path, collect_files(tmp_path))
    assert screened.kept == ["app/keys.pyx", "docs/deploy.md"] and screened.left_out == []
    assert screened.tokens == [
        ("app/keys.pyx", 1, "a private key"),
        ("docs/deploy.md", 22, "a private key"),
    ]


def test_key_files_are_left_out_whatever_their_encoding(tmp_path: Path) -> None:
    (tmp_path / "key_utf16.pem").write_bytes(PEM_KEY.format("RSA ", "RSA ").encode("utf-16"))
    (tmp_path / "der.key").write_bytes(b"\x30\x82\x04\xa4\x02\x01\x00\x02\x82\x01\x01\x00")
    write(tmp_path, {"app.py": ""})
    screened = screen_secrets(tmp_path, collect_files(tmp_path))
    assert screened.kept == ["app.py"]
    assert screened.left_out == [
        ("der.key", "a key file by its name, not read as text"),
        ("key_utf16.pem", "holds a private key (-----BEGIN ... PRIVATE KEY-----)"),
    ]


def test_screening_reads_only_the_first_block_of_a_binary_file(tmp_path: Path) -> None:
    # Most binaries hold a NUL early: the rest (up to 1 MiB) is not read for secrets.
    (tmp_path / "weights.bin").write_bytes(b"\0" * (1 << 20))  # at the size limit
    tracemalloc.start()
    try:
        screened = screen_secrets(tmp_path, ["weights.bin"])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert screened.kept == ["weights.bin"]
    assert peak < 256 * 1024


def test_a_binary_file_is_searched_for_secrets_from_its_first_byte(tmp_path: Path) -> None:
    # Told binary by a NUL in its first block, or only by one further on: what was read to
    # tell goes into the search with the rest, a secret across the first block's end too.
    key, token = "K" * 40, "runpod-secret-value"
    first_block = 8192
    early = b"\0\n" + b"x" * (first_block - 10) + key.encode()  # the key across 8 KiB
    (tmp_path / "early.db").write_bytes(early)
    (tmp_path / "late.log").write_bytes(b"line\n" * 2000 + token.encode() + b"\0\n" + key.encode())
    never = {key: "the app's signing key", token: "the value of $RUNPOD_SECRET_t"}
    with pytest.raises(BuildError) as failed:
        screen_secrets(tmp_path, ["early.db", "late.log"], never)
    assert sorted(str(failed.value).splitlines()[1:-1]) == [
        "  early.db:2: the app's signing key",
        "  late.log:2001: the value of $RUNPOD_SECRET_t",
        "  late.log:2002: the app's signing key",
    ]


def test_npm_and_streamlit_credentials_are_left_out(tmp_path: Path) -> None:
    credentials = [".npmrc", "web/.NPMRC", ".streamlit/secrets.toml", "app/.streamlit/secrets.toml"]
    kept = ["app.py", ".streamlit/config.toml", "docs/secrets.toml"]
    write(tmp_path, {name: "_authToken=npm_tok\n" for name in credentials + kept})
    assert collect_files(tmp_path) == sorted(kept)


def test_a_url_with_a_password_in_an_archived_file_is_warned_about_by_line(
    tmp_path: Path,
) -> None:
    secret = "PW_42_SECRET"
    write(
        tmp_path,
        {
            "workers/w.py": "from flash import remote\n\n"
            f'@remote(gpu, dependencies=["example @ http://du:{secret}@h.invalid/t/x.whl"])\n',
            "settings.ini": f"[db]\nurl = postgres://app:{secret}@db/app\n",
            # Placeholders, not passwords.
            "db.py": 'URL = f"postgres://{user}:{password}@{host}/db"\n'
            'OTHER = "https://user:****@host/x"  # https://user:${PW}@host\n'
            'REF = "https://u:{{ RUNPOD_SECRET_pw }}@host/x"\n',
            # Archived with its URLs cut (the password masked): not warned about again.
            "requirements.txt": f"--extra-index-url https://u:{secret}@dl.invalid/simple\n",
        },
    )
    screened = screen_secrets(tmp_path, collect_files(tmp_path))
    assert [(rel, line) for rel, line, _ in screened.tokens] == [
        ("settings.ini", 2),
        ("workers/w.py", 3),
    ]
    (warning,) = screened.warnings()
    assert "  workers/w.py:3: looks like a URL with a password" in warning.message
    assert secret not in warning.message
