"""``chronicle completion SHELL``: print a shell completion script, generated from the parser by shtab."""
from __future__ import annotations

import argparse
from typing import Any

SHELLS = ("bash", "zsh", "tcsh")

_EPILOG = """\
install (once per shell):
  bash:  chronicle completion bash > ~/.local/share/bash-completion/completions/chronicle
  zsh:   chronicle completion zsh > "${fpath[1]}/_chronicle"
  tcsh:  chronicle completion tcsh > ~/.chronicle.completion.csh; echo 'source ~/.chronicle.completion.csh' >> ~/.tcshrc
"""


def register(sub: Any, root: argparse.ArgumentParser) -> None:
    """Add the ``completion`` sub-command to ``sub``, the sub-parsers of ``root`` (the ``chronicle`` parser)."""
    p = sub.add_parser(
        "completion", help="print a shell completion script (bash, zsh or tcsh)",
        description="Print a completion script for SHELL covering every command and option, generated from\n"
        "this program's own argument parser (so it always matches this version).",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("shell", choices=SHELLS, help="the shell to complete for")
    p.set_defaults(func=run_completion, root_parser=root)


def completion_script(root: argparse.ArgumentParser, shell: str) -> str:
    """The completion script for ``shell`` over the whole ``root`` parser (every command and option)."""
    import shtab

    return shtab.complete(root, shell=shell)


def run_completion(args: argparse.Namespace) -> int:
    print(completion_script(args.root_parser, args.shell))
    return 0
