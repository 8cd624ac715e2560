"""Man pages, shell completion and installed launchers, generated from the argparse
definitions (``btfd.cli.build_parser``, ``btfd.server.main.build_parser``), so that they cannot
drift from the commands: ``make install`` writes them, tests check them against the parsers.

    python -m btfd.cli._gen man btfctl|btfd      roff, to stdout
    python -m btfd.cli._gen bash|zsh [btfctl]    completion script, to stdout
    python -m btfd.cli._gen wrapper MODULE PYTHON    a launcher for $(PREFIX)/bin
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator

from .. import __version__

__all__ = ["parser_for", "options", "subcommands", "man", "bash", "zsh", "wrapper"]

_SECTION = {"btfctl": "1", "btfd": "8"}
_DATE = "2026-12-01"


#: Where each program's parser is built ("module:function"; imported by name, as a generic
#: generator such as shtab does: btfctl's code does not import the daemon's).
PARSERS = {"btfctl": "btfd.cli:build_parser", "btfd": "btfd.server.main:build_parser"}


def parser_for(prog: str) -> argparse.ArgumentParser:
    import importlib

    if prog not in PARSERS:
        raise SystemExit(f"unknown program {prog!r} ({', '.join(PARSERS)})")
    module, func = PARSERS[prog].split(":")
    p: argparse.ArgumentParser = getattr(importlib.import_module(module), func)()
    return p


def options(p: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    """The documented options of a parser (not positionals, not --help, not suppressed)."""
    for a in p._actions:
        if a.option_strings and a.help != argparse.SUPPRESS and not isinstance(a, argparse._HelpAction):
            yield a


def positionals(p: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    for a in p._actions:
        if not a.option_strings and not isinstance(a, argparse._SubParsersAction):
            yield a


def subcommands(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            return dict(a.choices)
    return {}


def _help(p: argparse.ArgumentParser, a: argparse.Action) -> str:
    return p._get_formatter()._expand_help(a) if a.help else ""


def _is_global(a: argparse.Action) -> bool:
    return a.default is argparse.SUPPRESS and a.option_strings[-1] in (
        "--socket", "--fd-socket", "--timeout", "--wait")


# ------------------------------------------------------------------------------------ man


def _roff(text: str) -> str:
    out = text.replace("\\", "\\e").replace("-", "\\-")
    lines = []
    for line in out.split("\n"):
        if line.startswith((".", "'")):
            line = "\\&" + line
        lines.append(line)
    return "\n".join(lines)


def _opt_roff(a: argparse.Action) -> str:
    names = ", ".join(f"\\fB{_roff(o)}\\fR" for o in a.option_strings)
    if a.nargs == 0:
        return names
    if a.choices:
        return f"{names} {{{_roff(','.join(map(str, a.choices)))}}}"
    metavar = a.metavar or a.dest.upper()
    return f"{names} \\fI{_roff(str(metavar))}\\fR"


def man(prog: str) -> str:
    p = parser_for(prog)
    sec = _SECTION[prog]
    out = [f'.TH {prog.upper()} {sec} "{_DATE}" "btfd {__version__}" "btfd"', ".SH NAME",
           f"{prog} \\- {_roff(p.description or '')}", ".SH SYNOPSIS"]
    subs = subcommands(p)
    out.append(f"\\fB{prog}\\fR [\\fIOPTIONS\\fR]" + (" \\fICOMMAND\\fR [\\fIARGS\\fR]" if subs else ""))
    out += [".SH DESCRIPTION", _roff(p.description or ""), ".SH OPTIONS"]
    for a in options(p):
        out += [".TP", _opt_roff(a), _roff(_help(p, a))]
    if subs:
        out.append(".SH COMMANDS")
        for name, sp in subs.items():
            args = " ".join(f"\\fI{_roff(str(a.metavar or a.dest))}\\fR" for a in positionals(sp))
            out += [".SS " + f"\\fB{_roff(name)}\\fR {args}".rstrip(), _roff(sp.description or "")]
            for a in options(sp):
                if _is_global(a):
                    continue
                out += [".TP", _opt_roff(a), _roff(_help(sp, a))]
            if sp.epilog:
                out += [".PP", ".nf", _roff(sp.epilog), ".fi"]
    if p.epilog:
        out += [".SH NOTES", ".nf", _roff(p.epilog), ".fi"]
    if prog == "btfctl":
        out += [".SH ENVIRONMENT", ".TP", "\\fBBTFD_SOCKET\\fR",
                "The gRPC socket when \\fB\\-\\-socket\\fR is not given.", ".TP",
                "\\fBBTFD_FD_SOCKET\\fR", "The fd socket when \\fB\\-\\-fd\\-socket\\fR is not given."]
    other = "btfd (8)" if prog == "btfctl" else "btfctl (1)"
    out += [".SH SEE ALSO", f"\\fB{other.split()[0]}\\fR{other.split()[1]}, bpftool(8), "
            "the documentation in /usr/share/doc/btfd (README.md, OPERATIONS.md, JSON.md, PROTOCOL.md)"]
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------ completion


def _opt_table(p: argparse.ArgumentParser) -> tuple[list[str], dict[str, list[str]], list[str]]:
    """(every option string, choices of the options that have them, options taking a file)."""
    names: list[str] = []
    choices: dict[str, list[str]] = {}
    takes_value: list[str] = []
    for a in options(p):
        names += a.option_strings
        if a.choices:
            for o in a.option_strings:
                choices[o] = [str(c) for c in a.choices]
        elif a.nargs != 0:
            takes_value += a.option_strings
    return names, choices, takes_value


def bash(prog: str = "btfctl") -> str:
    p = parser_for(prog)
    subs = subcommands(p)
    fn = f"_{prog}_complete"
    top, top_choices, top_values = _opt_table(p)
    lines = [f"# bash completion for {prog} (generated from its argparse definitions: "
             "python -m btfd.cli._gen bash)", f"{fn}() {{",
             '    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"',
             '    local cmd="" i',
             "    for ((i = 1; i < COMP_CWORD; i++)); do",
             '        case "${COMP_WORDS[i]}" in',
             ("            " + "|".join(subs) + ') cmd="${COMP_WORDS[i]}"; break ;;') if subs
             else "            *) ;;",
             "        esac", "    done", '    local opts="' + " ".join(top) + '"']
    cases: list[str] = []
    all_choices = dict(top_choices)
    all_values = list(top_values)
    for name, sp in subs.items():
        o, ch, vals = _opt_table(sp)
        all_choices.update({f"{name}:{k}": v for k, v in ch.items()})
        all_values += [f"{name}:{v}" for v in vals]
        cases.append(f'        {name}) opts="{" ".join(o)}" ;;')
    if cases:
        lines += ['    case "$cmd" in', *cases, "    esac"]
    lines.append('    case "$cmd:$prev" in')
    for key, vals in sorted(all_choices.items()):
        pat = key if ":" in key else f"*:{key}"
        lines.append(f'        {pat}) COMPREPLY=($(compgen -W "{" ".join(vals)}" -- "$cur")); return ;;')
    for key in sorted(set(all_values)):
        pat = key if ":" in key else f"*:{key}"
        lines.append(f'        {pat}) COMPREPLY=($(compgen -f -- "$cur")); return ;;')
    lines += ["    esac",
              '    if [[ "$cur" == -* ]]; then',
              '        COMPREPLY=($(compgen -W "$opts" -- "$cur"))',
              "    elif [[ -z \"$cmd\" ]]; then",
              f'        COMPREPLY=($(compgen -W "{" ".join(subs)}" -- "$cur"))',
              "    else",
              '        COMPREPLY=($(compgen -f -- "$cur"))',
              "    fi", "}", f"complete -o filenames -F {fn} {prog}"]
    return "\n".join(lines) + "\n"


def _zsh_spec(p: argparse.ArgumentParser, a: argparse.Action) -> str:
    h = _help(p, a).replace("'", "'\\''").replace("[", "(").replace("]", ")").replace(":", " ")
    h = " ".join(h.split())[:120]
    if a.nargs == 0:
        what = ""
    elif a.choices:
        what = f":{a.dest}:({' '.join(map(str, a.choices))})"
    else:
        what = f":{a.metavar or a.dest}:_files"
    opts = a.option_strings
    if len(opts) == 1:
        return f"'{opts[0]}[{h}]{what}'"
    excl = " ".join(opts)
    return f"'({excl})'{{{','.join(opts)}}}'[{h}]{what}'"


def zsh(prog: str = "btfctl") -> str:
    p = parser_for(prog)
    subs = subcommands(p)
    lines = [f"#compdef {prog}", f"# zsh completion for {prog} (generated from its argparse "
             "definitions: python -m btfd.cli._gen zsh)", "", f"_{prog}() {{",
             "    local curcontext=$curcontext state line ret=1", "    typeset -A opt_args"]
    top = [_zsh_spec(p, a) for a in options(p)]
    if subs:
        lines.append("    _arguments -C \\")
        lines += [f"        {s} \\" for s in top]
        lines += ["        '1:command:->command' \\", "        '*::arg:->args' && ret=0",
                  "    case $state in", "        command)", "            local -a commands",
                  "            commands=("]
        for name, sp in subs.items():
            d = (sp.description or "").replace("'", "'\\''").replace(":", " ")
            lines.append(f"                '{name}:{d}'")
        lines += ["            )", "            _describe -t commands command commands && ret=0",
                  "            ;;", "        args)", "            case $line[1] in"]
        for name, sp in subs.items():
            specs = [_zsh_spec(sp, a) for a in options(sp)]
            specs += [f"'*:{a.dest}:_files'" if a.nargs in ("+", "*") else f"':{a.dest}:_files'"
                      for a in positionals(sp) if a.dest != "name"]
            lines.append(f"                {name})")
            lines.append("                    _arguments " + " ".join(specs) + " && ret=0 ;;")
        lines += ["            esac", "            ;;", "    esac"]
    else:
        lines.append("    _arguments " + " ".join(top) + " && ret=0")
    lines += ["    return ret", "}", "", f'_{prog} "$@"']
    return "\n".join(lines) + "\n"


# -------------------------------------------------------------------------------- wrapper


def wrapper(module: str, python: str) -> str:
    """A launcher for ``$(PREFIX)/bin``: runs ``module``'s ``main`` on ``python`` (isolated:
    no user site, no $PYTHONPATH) with ``$(PREFIX)/lib/btfd/python`` first on the path, found
    relative to the launcher (so that a DESTDIR staging tree works as installed)."""
    return (f"#!{python} -I\n"
            f"# btfd launcher (make install): {module}.main from ../lib/btfd/python\n"
            "import os, sys\n"
            "here = os.path.dirname(os.path.realpath(__file__))\n"
            "sys.path.insert(0, os.path.normpath(os.path.join(here, '..', 'lib', 'btfd', 'python')))\n"
            f"from {module} import main\n"
            "sys.exit(main())\n")


def _main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    what, rest = argv[0], argv[1:]
    if what == "man" and len(rest) == 1:
        sys.stdout.write(man(rest[0]))
    elif what in ("bash", "zsh"):
        sys.stdout.write((bash if what == "bash" else zsh)(rest[0] if rest else "btfctl"))
    elif what == "wrapper" and len(rest) == 2:
        sys.stdout.write(wrapper(rest[0], rest[1]))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
