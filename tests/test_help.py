"""`--help` works for every script, every installed `gtzan-*` command and every benchmark suite, without any
required argument first: it lists the arguments and exits 0. Run in this process (the commands' modules are imported
once); one installed command also runs as the executable pip wrote."""

import runpy
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COMMANDS = {ep.name: ep for ep in entry_points(group="console_scripts") if ep.name.startswith("gtzan-")}


def _assert_help(capsys, run) -> None:
    with pytest.raises(SystemExit) as exited:
        run()
    printed = capsys.readouterr().out
    assert exited.value.code in (0, None), printed
    assert "usage" in printed.lower() and len(printed.splitlines()) > 2  # the arguments, not just a usage line


@pytest.mark.parametrize("script", sorted(REPO.glob("scripts/*.py")), ids=lambda path: path.name)
def test_every_script_prints_its_help(script, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", [str(script), "--help"])
    _assert_help(capsys, lambda: runpy.run_path(str(script), run_name="__main__"))


# the suites as benchmark.py lists them (its helper modules, named _*.py, are not suites)
@pytest.mark.parametrize("suite", runpy.run_path(str(REPO / "scripts" / "benchmark.py"))["SUITES"])
def test_every_benchmark_suite_prints_its_help(suite, capsys, monkeypatch):
    script = REPO / "scripts" / "benchmark.py"
    monkeypatch.setattr(sys, "argv", [str(script), suite, "--help"])
    _assert_help(capsys, lambda: runpy.run_path(str(script), run_name="__main__"))


def test_every_installed_command_prints_its_help(capsys, monkeypatch):
    assert set(COMMANDS) >= {"gtzan-finetune", "gtzan-pretrain", "gtzan-evaluate", "gtzan-crossval", "gtzan-embed"}
    for name, entry_point in COMMANDS.items():
        monkeypatch.setattr(sys, "argv", [name, "--help"])
        _assert_help(capsys, entry_point.load())
    installed = Path(sys.executable).parent / "gtzan-finetune"
    done = subprocess.run([str(installed), "--help"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "--model_name_or_path" in done.stdout, done.stderr[-1500:]
