"""Write docs/flags.md from the parser of train_unsuper.py (`csp.arguments.make_args_parser`).

    python docs/make_flags.py        # from anywhere; tests/test_docs.py fails when flags.md and the parser disagree
"""
import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLAGS_PAGE = ROOT / "docs" / "flags.md"

INTRO = """\
# Flags of `train_unsuper.py`

Every flag of the original `train_unsuper.py` keeps its name, type, default and meaning; flags this project added
say "(new)". Yes/no flags take the strings `T` and `F`. `python main/train_unsuper.py --help` prints the same list.

* The run scripts (`run-inat_2018-contsoftmax.sh`, `run-fmow-contsoftmax.sh`) set the paper's values, which differ
  from many defaults below; flags given after a script win. The runs of `tables.py` take the values of their
  preset ([tables.md](tables.md#presets)).
* The default `--model_dir` is taken relative to `main/`, wherever the command starts; a `--model_dir` given is
  taken as given (relative to the current folder).
* A value out of range, an unknown choice or flags no model can be built from stop the command with one line naming
  the flag and the fix (exit status 2), before any data is read: [bad-input.md](bad-input.md).
* The encoders and losses the choices name: [encoders.md](encoders.md), [losses.md](losses.md).

This page is generated from `csp.arguments.make_args_parser()` by `python docs/make_flags.py`.
"""


def _parser():
    sys.path.insert(0, str(ROOT / "main"))
    import as_package  # noqa: F401  (main/ becomes the package csp)
    from csp.arguments import make_args_parser
    return make_args_parser()


def _type(action):
    if action.default in ("T", "F") and action.type in (None, str):
        return "T/F"
    name = getattr(action.type, "__name__", "str") if action.type is not None else "str"
    return f"{name} …" if action.nargs in ("+", "*") else name


def _default(action):
    if isinstance(action.default, (list, tuple)):
        return " ".join(map(str, action.default))
    return str(action.default)


def _row(action):
    cell = (action.help or "").replace("|", "\\|")
    return f"| `{action.option_strings[0]}` | {_type(action)} | `{_default(action)}` | {cell} |"


def flags_markdown(parser=None):
    """The text of docs/flags.md for `parser` (default: train_unsuper.py's), one table per argument group."""
    parser = parser or _parser()
    groups = [(group.title, [a for a in group._group_actions if not isinstance(a, argparse._HelpAction)])
              for group in parser._action_groups]
    groups = [(title, actions) for title, actions in groups if actions]
    lines = [INTRO]
    for title, actions in groups:
        if len(groups) > 1:
            lines += [f"## {title[:1].upper() + title[1:]}", ""]
        lines += ["| flag | type | default | meaning |", "|---|---|---|---|"]
        lines += [_row(action) for action in actions]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    FLAGS_PAGE.write_text(flags_markdown())
    print(f"wrote {FLAGS_PAGE}")
