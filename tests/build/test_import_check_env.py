"""The build's import check sees each endpoint's ``env``, as that endpoint's workers do."""

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from tests.integration.projects import write_files

from flash.build.errors import BuildError
from flash.build.manifest import FunctionSchema
from flash.build.pipeline import BuildOptions, build_project


def _project(root: Path, env: dict[str, str] | None, body: str) -> Path:
    """One CPU endpoint ``cpu`` (with ``env`` when given) in ``worker.py``, whose module
    runs ``body`` (lines, after ``import os``) at import."""
    config = f'name="cpu", env={env!r}' if env is not None else 'name="cpu"'
    worker = (
        "import os\n"
        "from flash import remote, CpuLiveServerless\n"
        f"{body}\n"
        f"cpu = CpuLiveServerless({config})\n\n\n"
        "@remote(cpu)\n"
        "def hello(x: int) -> int:\n"
        "    return x\n"
    )
    return write_files(root, {"worker.py": worker})


def _build_error(root: Path) -> str:
    """The message of the BuildError building ``root`` raises."""
    with pytest.raises(BuildError) as info:
        build_project(BuildOptions(project_dir=root))
    return str(info.value)


_READS_MODEL_NAME = "MODEL = os.environ['MODEL_NAME']"


def test_a_module_reading_its_endpoints_env_at_import_builds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MODEL_NAME", raising=False)
    root = _project(tmp_path / "proj", {"MODEL_NAME": "small"}, _READS_MODEL_NAME)
    # A second endpoint, imported after the first: its own env, not the first one's.
    write_files(
        root,
        {
            "other.py": """
            import os
            from flash import remote, CpuLiveServerless

            if os.environ.get("MODEL_NAME") is not None:
                raise RuntimeError("saw another endpoint's MODEL_NAME")
            SIZE = os.environ["SIZE"]
            big = CpuLiveServerless(name="zz-big", env={"SIZE": "large"})


            @remote(big)
            def size() -> str:
                return SIZE
            """
        },
    )
    result = build_project(BuildOptions(project_dir=root))
    assert set(result.manifest.resources) == {"cpu", "zz-big"}
    hello = result.manifest.resources["cpu"].functions[0]
    assert hello.schema_ is not None  # imported and typed like any other


def test_without_the_env_the_build_still_fails_naming_the_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MODEL_NAME", raising=False)
    root = _project(tmp_path / "proj", None, _READS_MODEL_NAME)
    message = _build_error(root)
    assert message.startswith("handler_cpu.py failed to import:\n")
    assert f"  worker.py:3 in <module>: {_READS_MODEL_NAME}\n" in message
    assert message.endswith("KeyError: 'MODEL_NAME'")


def test_a_module_parsing_its_command_line_at_import_builds(tmp_path: Path) -> None:
    # ML scripts parse their arguments at import (argparse, absl, HfArgumentParser): the
    # check ran with sys.argv ['-c', <build path>] and failed with SystemExit: 2, while a
    # worker, run as `python handler_cpu.py`, has ['handler_cpu.py'].
    body = (
        "import argparse, sys\n"
        "ARGS = argparse.ArgumentParser().parse_args()\n"
        "assert sys.argv == ['handler_cpu.py'], sys.argv"
    )
    root = _project(tmp_path / "proj", None, body)
    result = build_project(BuildOptions(project_dir=root))
    assert result.manifest.resources["cpu"].functions[0].schema_ is not None


def test_a_module_that_exits_at_import_fails_the_build_with_what_it_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # argparse's own words (which argument is missing) are why it exited: they were lost.
    monkeypatch.setenv("HF_TOKEN", "hf-secret-value-1234567890")
    env = {"HF_TOKEN": "{{ RUNPOD_SECRET_hf }}"}
    monkeypatch.setenv("RUNPOD_SECRET_hf", "hf-secret-value-1234567890")
    body = (
        "import argparse, sys\n"
        "print('loading with token', os.environ['HF_TOKEN'], file=sys.stderr)\n"
        "parser = argparse.ArgumentParser()\n"
        "parser.add_argument('--model', required=True)\n"
        "ARGS = parser.parse_args()"
    )
    root = _project(tmp_path / "proj", env, body)
    message = _build_error(root)
    assert "SystemExit: 2" in message
    assert "the following arguments are required: --model" in message, message
    assert "hf-secret-value" not in message  # masked as any text from the check
    assert "loading with token" in message


def test_no_part_of_a_long_secret_shows_in_what_an_exiting_module_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A service account's key, longer than the text kept: its end straddled the cut.
    secret = "".join(f"{i:04d}" for i in range(600))  # 2,400 characters
    monkeypatch.setenv("RUNPOD_SECRET_sa", secret)
    body = (
        "import sys\n"
        "print('x' * 3000, 'key:', os.environ['SA_KEY'], 'y' * 1780, file=sys.stderr)\n"
        "sys.exit(3)"
    )
    root = _project(tmp_path / "proj", {"SA_KEY": "{{ RUNPOD_SECRET_sa }}"}, body)
    message = _build_error(root)
    assert "SystemExit: 3" in message and "yyyy" in message
    assert not any(secret[i : i + 12] in message for i in range(len(secret) - 12)), message


def test_a_secret_reference_is_filled_from_the_builds_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNPOD_SECRET_hf_token", "hf-from-this-machine")
    env = {"HF_TOKEN": "Bearer {{ RUNPOD_SECRET_hf_token }}"}
    # The value in two parts: a project file that held it whole would fail the build.
    check = "assert os.environ['HF_TOKEN'] == 'Bearer hf-from-' + 'this-machine', 'not filled'"
    root = _project(tmp_path / "proj", env, check)
    result = build_project(BuildOptions(project_dir=root))
    # The manifest keeps the reference as written, never the secret.
    assert result.manifest.resources["cpu"].config["env"] == env


def test_a_secret_not_set_here_leaves_its_variable_unset_without_failing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RUNPOD_SECRET_hf_token", raising=False)
    monkeypatch.setenv("HF_TOKEN", "this-shells-own")  # a worker would not get it either
    env = {"HF_TOKEN": "{{ RUNPOD_SECRET_hf_token }}"}
    root = _project(tmp_path / "proj", env, "assert os.environ.get('HF_TOKEN') is None")
    build_project(BuildOptions(project_dir=root))
    # Read at import, it fails the build as it would fail a worker here, saying why.
    _project(root, env, "TOKEN = os.environ['HF_TOKEN']")
    message = _build_error(root)
    assert "KeyError: 'HF_TOKEN'" in message
    assert "HF_TOKEN (names RUNPOD_SECRET_hf_token)" in message


@pytest.mark.parametrize("how", ["raises", "crashes"])
def test_a_secret_never_appears_in_a_failing_builds_output(tmp_path: Path, how: str) -> None:
    # A value written in the config is in the manifest already; a secret filled in is not.
    env = {"MODEL_SIZE": "size:  {{ RUNPOD_SECRET_size }}", "LITERAL": "literal-value-42"}
    # The secret shown alone too, not only as part of the variable's value.
    shown = "f\"bad {os.environ['LITERAL']} and {os.environ['MODEL_SIZE'][7:]}\""
    if how == "raises":
        body = f"raise ValueError({shown})"
    else:  # a crash: what it wrote to stderr is all the build can show
        body = f"import sys\nprint({shown}, file=sys.stderr, flush=True)\nos._exit(3)"
    root = _project(tmp_path / "proj", env, body)
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("FLASH_")}
    run_env["RUNPOD_SECRET_size"] = "hunter2-secret"
    run_env["COLUMNS"] = "200"  # error lines unwrapped
    done = subprocess.run(
        [sys.executable, "-m", "flash.cli", "build", str(root)],
        env=run_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "bad literal-value-42 and <env MODEL_SIZE>" in " ".join(output.split())
    assert "hunter2" not in output


_SECRET = "SUPERSECRETVALUE123"


def test_a_secret_is_masked_before_a_crash_report_is_cut(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The report keeps the end of stderr: cut first, the secret's tail would show.
    monkeypatch.setenv("RUNPOD_SECRET_tok", _SECRET)
    body = (
        "import sys\n"
        "print('token=' + os.environ['TOKEN'] + 'x' * 1990, file=sys.stderr, flush=True)\n"
        "os._exit(3)"
    )
    root = _project(tmp_path / "proj", {"TOKEN": "{{ RUNPOD_SECRET_tok }}"}, body)
    message = _build_error(root)
    assert "crashed (exit 3)" in message, message
    assert "VALUE123" not in message and "xxx" in message


def test_a_secret_is_masked_before_a_pickle_only_reason_is_cut(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The child cuts an error's text to ~200 characters for a reason: a secret at the cut
    # must be masked first, so the parent has nothing left to miss.
    monkeypatch.setenv("RUNPOD_SECRET_tok", _SECRET)
    worker = (
        "import os\n"
        "from flash import remote, CpuLiveServerless\n\n"
        "TOKEN = os.environ['TOKEN']  # read at import, under the endpoint's env\n\n"
        "def bad():\n"
        "    raise ValueError('y' * 190 + TOKEN)\n\n"
        "cpu = CpuLiveServerless(name='cpu', env={'TOKEN': '{{ RUNPOD_SECRET_tok }}'})\n\n\n"
        "@remote(cpu)\n"
        "def hello(x: 'bad()') -> int:\n"
        "    return 1\n"
    )
    root = write_files(tmp_path / "proj", {"worker.py": worker})
    result = build_project(BuildOptions(project_dir=root))
    reason = result.manifest.resources["cpu"].functions[0].pickle_only
    assert reason is not None and "yyy" in reason, reason
    shown = reason + "".join(str(w) for w in result.warnings) + result.manifest.to_json()
    assert "SUPERSE" not in shown
    assert "<env TO" in reason  # the stand-in, cut


def test_a_default_computed_at_import_never_reaches_the_manifest_or_the_archive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A default read from the environment (or a secret its endpoint fills in) may be a
    # secret: the schema leaves it out. One the code shows stays, as the docs' example.
    monkeypatch.setenv("MY_TOKEN", "token-from-the-shell-123")
    monkeypatch.setenv("RUNPOD_SECRET_hf", "hf-secret-filled-456")
    worker = """
    import os
    from dataclasses import dataclass
    from flash import CpuLiveServerless, remote

    TOKEN = os.environ.get("MY_TOKEN", "unset")
    HF = os.environ.get("HF_TOKEN", "unset")
    MODEL = "a-model-named-in-code"
    SEED = 1234 * 100_003
    keys = CpuLiveServerless(name="keys", env={"HF_TOKEN": "{{ RUNPOD_SECRET_hf }}"})


    @dataclass
    class Settings:  # a field's default is in the schema too ($defs)
        token: str = TOKEN
        model: str = MODEL
        default: str = "a-field-named-default"


    @remote(keys)
    def configured(
        settings: Settings,
        token: str = TOKEN,
        hf: list[str] = [HF],
        model: str = MODEL,
        seed: int = SEED,
        size: int = 123456789,
    ) -> Settings:
        return settings
    """
    root = write_files(tmp_path / "proj", {"worker.py": worker})
    result = build_project(BuildOptions(project_dir=root))
    (function,) = result.manifest.resources["keys"].functions
    assert isinstance(function.schema_, FunctionSchema)
    properties = function.schema_.input["properties"]
    defaults = {name: p.get("default") for name, p in properties.items()}
    assert defaults == {
        "settings": None,
        "token": None,
        "hf": None,
        "model": "a-model-named-in-code",
        "seed": None,  # computed: 123403702 is not written in the code
        "size": 123456789,
    }
    assert function.schema_.input["required"] == ["settings"]  # the others may be left out
    for schema in (function.schema_.input, function.schema_.output):
        fields = schema["$defs"]["Settings"]["properties"] if "$defs" in schema else None
        fields = fields or schema["properties"]
        assert "default" not in fields["token"], fields
        assert fields["model"]["default"] == "a-model-named-in-code"
        assert fields["default"]["default"] == "a-field-named-default"
    with tarfile.open(result.archive) as tar:
        files = [tar.extractfile(member) for member in tar.getmembers()]
        contents = b"".join(f.read() for f in files if f is not None)
    manifest = (root / ".flash" / "flash_manifest.json").read_text()
    for secret in ("token-from-the-shell-123", "hf-secret-filled-456"):
        assert secret.encode() not in contents and secret not in manifest
