"""The ``dl3d`` command table: every row resolves, help is built without torch or Ray, README and
docstring name every command, options parse into the config dataclasses."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from dl3d.jobs import cli
from dl3d.jobs.cli import COMMANDS, BatchJob, Command, Registry, build_parser, command_tree, load

README = Path(__file__).resolve().parents[1] / "README.md"
HEAVY = ("torch", "ray", "smplx", "pytorch3d")


def _modules_after_help(argv: list[str]) -> list[str]:
    """Heavy modules imported by ``dl3d ARGV --help`` in a fresh interpreter."""
    code = ("import sys\nfrom dl3d.jobs.cli import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
            f"print('MODULES', __import__('json').dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    line = [ln for ln in done.stdout.splitlines() if ln.startswith("MODULES ")][-1]
    assert "usage: dl3d" in done.stdout
    return json.loads(line[len("MODULES "):])


@pytest.mark.parametrize("argv", [["--help"], ["smpl", "fit", "--help"], ["smpl", "--help"],
                                  ["synsin", "render", "--help"], ["ingest", "openpose", "--help"]])
def test_help_imports_neither_torch_nor_ray(argv):
    assert _modules_after_help(argv) == [], f"dl3d {' '.join(argv)} imported heavy modules"


def test_the_help_check_can_fail():
    """The same probe sees torch when a command's help does need it (a training family's config)."""
    assert "torch" in _modules_after_help(["train", "toy", "--help"])


@pytest.mark.parametrize("row", COMMANDS, ids=lambda r: r.words)
def test_every_row_resolves(row):
    if isinstance(row, BatchJob):
        worker = row.worker_class()  # also checks worker.config_cls is the row's config
        assert worker.config_cls is load(row.config) and callable(worker.preflight)
    elif isinstance(row, Command):
        assert callable(load(row.run))
        for cls in row.config:
            assert isinstance(load(cls), type)
    else:
        assert isinstance(row, Registry)
        assert load(row.names)(), f"{row.words}: the registry is empty"
        assert callable(load(row.add))


def test_bad_rows_are_refused():
    with pytest.raises(ValueError, match="'dl3d smpl fit' is registered twice"):
        command_tree(COMMANDS + tuple(r for r in COMMANDS if r.words == "smpl fit"))
    with pytest.raises(ValueError, match="both a command and a group"):
        command_tree((Command("inspect", "m:f", "h"), Command("inspect more", "m:f", "h")))
    with pytest.raises(ValueError, match="has no attribute 'nope'"):
        load("dl3d.jobs.commands:nope")
    wrong = BatchJob("x y", "dl3d.workers.smpl_fit:SmplFitWorker", "dl3d.workers.smpl_config:SmplExportConfig", "h")
    with pytest.raises(TypeError, match="config_cls is SmplFitConfig"):
        wrong.worker_class()


def test_readme_and_docstring_name_every_command():
    readme = README.read_text()
    missing = [r.words for r in COMMANDS if f"dl3d {r.words}" not in readme]
    assert not missing, f"README.md does not mention: {missing}"
    for line in cli.usage_lines():
        assert line in cli.__doc__
    help_text = build_parser(["--help"]).format_help()
    assert all(f"dl3d {r.words}" in help_text for r in COMMANDS)


def test_table_order_is_the_help_order():
    top = list(command_tree())
    assert top == list(dict.fromkeys(r.words.split()[0] for r in COMMANDS))
    assert top[:3] == ["body", "data", "ingest"] and top[-1] == "inspect"


def test_batch_job_options_parse_into_the_worker_and_runner_configs():
    from dl3d.jobs.cli_args import dataclass_from_args
    from dl3d.jobs.runner_config import RunnerConfig
    from dl3d.workers.smpl_config import SmplFitConfig

    argv = ["smpl", "fit", "--input", "in", "--output", "out", "--model", "m.pkl", "--preset", "fast",
            "--meshes", "ply", "--workers", "3", "--no-progress"]
    args = build_parser(argv).parse_args(argv)
    assert (args.input, args.output, args.job.words, args.verbose) == ("in", "out", "smpl fit", False)
    assert dataclass_from_args(SmplFitConfig, args) == SmplFitConfig(model="m.pkl", preset="fast", meshes="ply")
    assert dataclass_from_args(RunnerConfig, args) == RunnerConfig(workers=3, progress=False)
    assert args.func.__name__ == "run_batch_job"
    with pytest.raises(SystemExit):
        build_parser(argv[:2]).parse_args(argv[:2] + ["--input", "in", "--output", "out"])  # --model is required


def _required_argv(parser) -> list[str]:
    """A value for every required option and positional of a leaf parser (choices: the first one)."""
    argv: list[str] = []
    for action in parser._actions:
        if not (action.required or not action.option_strings) or action.dest in ("help",):
            continue
        if isinstance(action, argparse._SubParsersAction):
            continue
        value = str(action.choices[0]) if action.choices else ("1" if action.type in (int, float) else "x")
        argv += [value] if not action.option_strings else [action.option_strings[0], value]
    return argv


def _leaf(parser, words):
    for w in words:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[w]
    return parser


def test_every_command_parses_to_its_function():
    """Each row, given its required options only, reaches the function the row names."""
    for row in COMMANDS:
        words = row.words.split()
        if isinstance(row, Registry):
            words.append(load(row.names)()[0])
        argv = words + _required_argv(_leaf(build_parser(words), words))
        args = build_parser(argv).parse_args(argv)
        expected = load(row.run) if isinstance(row, Command) else None
        assert callable(args.func) and (expected is None or args.func is expected), row.words


def test_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["smpl", "fitt"])
    assert e.value.code == 2 and "invalid choice: 'fitt'" in capsys.readouterr().err


def test_console_filter_drops_only_rays_startup_notice(capsys):
    from dl3d.jobs import console

    notice = ("\x1b[33m(raylet)\x1b[0m WARNING: 8 PYTHON worker processes have been started on node: 1f with "
              "address: 10.0.0.1, which is 4x the maximum expected startup concurrency (2).")
    with console.console_filter():
        print("step 1/2 (epoch 0)  loss 1.0")
        print(notice)
        print("(raylet) Task was killed due to the node running low on memory.")
        print("partial", end="")
    assert capsys.readouterr().out == ("step 1/2 (epoch 0)  loss 1.0\n"
                                       "(raylet) Task was killed due to the node running low on memory.\npartial")
    console.set_verbose(True)
    try:
        with console.console_filter():
            print(notice)
    finally:
        console.set_verbose(False)
    assert capsys.readouterr().out == notice + "\n", "--verbose shows everything"
