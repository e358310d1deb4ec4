import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from joyvl_agent import __version__
from joyvl_agent.cli import cli

from .fakes.openai_server import FakeOpenAIServer


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_help_and_version(runner):
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0 and "doctor" in result.output and "synth" in result.output
    assert runner.invoke(cli, ["-h"]).exit_code == 0
    result = runner.invoke(cli, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_every_command_has_help(runner):
    for name, command in cli.commands.items():
        assert command.help, f"{name} has no docstring"
        assert runner.invoke(cli, [name, "--help"]).exit_code == 0


def test_console_script_runs_and_errors_are_one_clean_line(tmp_path):
    exe = Path(sys.executable).with_name("joyvl")
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True)
    assert __version__ in out.stdout
    bad = subprocess.run([exe, "--config", str(tmp_path / "missing.toml"), "doctor"],
                         capture_output=True, text=True)
    assert bad.returncode == 1
    assert "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines() == [
        f"Error: config file {tmp_path / 'missing.toml'} does not exist "
        "(check --config / JOYVL_CONFIG)"]


def test_doctor_without_gpu_says_what_is_missing_and_how(runner, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")  # no nvidia-smi, ffmpeg or espeak-ng here
    result = runner.invoke(cli, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    checks = {c["name"]: c for c in json.loads(result.output)}
    assert {"python", "pyav", "ffmpeg", "gpu", "vllm", "model-endpoint", "asr", "tts"} <= set(
        checks)
    assert checks["python"]["status"] == "ok"
    assert checks["gpu"]["status"] == "warn" and "--model-url" in checks["gpu"]["fix"]
    assert checks["ffmpeg"]["fix"] == "sudo apt-get install ffmpeg"
    assert "JOYVL_MODEL__URL" in checks["model-endpoint"]["fix"]
    for c in checks.values():
        assert c["status"] == "ok" or c["fix"], c


def endpoint_check(runner, *args):
    result = runner.invoke(cli, ["doctor", "--json", *args])
    return result, {c["name"]: c for c in json.loads(result.output)}["model-endpoint"]


def test_doctor_checks_a_model_endpoint_against_the_recipe(runner):
    with FakeOpenAIServer(model_ids=("joy",), owned_by="vllm", max_model_len=65536) as srv:
        _, endpoint = endpoint_check(runner, "--model-url", srv.base_url)
        assert endpoint["status"] == "ok" and "joy" in endpoint["detail"]
        assert "warm-up" in endpoint["detail"] and srv.requests[0]["max_tokens"] == 2
        wrong, endpoint = endpoint_check(runner, "--model-url", srv.base_url, "--model", "x")
        assert wrong.exit_code == 1
        assert endpoint["status"] == "fail" and "'x'" in endpoint["detail"]
    with FakeOpenAIServer(owned_by="vllm", max_model_len=8192) as srv:
        short, endpoint = endpoint_check(runner, "--model-url", srv.base_url)
        assert short.exit_code == 1 and "max_model_len 8192" in endpoint["detail"]
    with FakeOpenAIServer() as srv:
        _, endpoint = endpoint_check(runner, "--model-url", srv.base_url)
        assert endpoint["status"] == "warn" and "not vLLM" in endpoint["detail"]
    down = runner.invoke(cli, ["doctor", "--model-url", "http://127.0.0.1:9/v1"])
    assert down.exit_code == 1 and "cannot reach" in down.output


def test_doctor_reports_whether_a_system_prompt_is_upstream(runner, tmp_path):
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("You are a video assistant.")
    Path("joyvl.toml").write_text(f'[model]\nsystem_prompt_file = "{prompt}"\n')
    result = runner.invoke(cli, ["doctor", "--json"])
    check = {c["name"]: c for c in json.loads(result.output)}["system-prompt"]
    assert check["status"] == "warn" and "not the upstream prompt" in check["detail"]


def test_synth_command_writes_clip_and_truth(runner, tmp_path):
    out = tmp_path / "clip.mp4"
    result = runner.invoke(cli, ["synth", "card", str(out), "--seed", "3", "--duration", "12",
                                 "--size", "320x180"])
    assert result.exit_code == 0, result.output
    truth = json.loads(out.with_suffix(".json").read_text())
    assert truth["kind"] == "card" and truth["seed"] == 3 and truth["size"] == [320, 180]
    assert out.stat().st_size > 0 and "card" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["synth", "nope", "x.mp4"], "nope"),
        (["synth", "card", "x.mp4", "--size", "big"], "WIDTHxHEIGHT"),
        (["synth", "card", "x.mp4", "--size", "321x180"], "even"),
    ],
)
def test_synth_bad_input_is_a_clean_error(runner, args, message):
    result = runner.invoke(cli, args)
    assert result.exit_code != 0
    assert message in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_every_command_is_documented_in_the_readme():
    from joyvl_agent.cli import cli as group

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for name, command in group.commands.items():
        assert f"joyvl {name}" in readme, f"`joyvl {name}` is not in the README"
        for sub in getattr(command, "commands", {}):
            assert f"joyvl {name} {sub}" in readme, f"`joyvl {name} {sub}` is not in the README"
