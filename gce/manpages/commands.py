"""gce(1) and one gce-<command>(1) page per command, walked from the click group typer builds."""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from typing import Any, Iterator

from gce.manpages import (NO_REWRAP, bold, escape, header, italic, page, paragraphs, section,
                          split_paragraphs, tagged)

_EXIT_STATUS = re.compile(r"^Exit status:\s*", re.IGNORECASE)
_EXAMPLE = re.compile(r"^Examples?:\s*$", re.IGNORECASE)


@dataclass
class Command:
    """One command of the CLI, as its page needs it."""

    path: tuple[str, ...]  # ("gce", "broker", "provision")
    cmd: Any  # the click command or group
    subcommands: list[Command] = field(default_factory=list)

    @property
    def words(self) -> str:
        return " ".join(self.path)

    @property
    def page_name(self) -> str:
        return "-".join(self.path)

    @property
    def summary(self) -> str:
        return str(self.cmd.get_short_help_str(limit=200)).rstrip(".")


def walk(group: Any, path: tuple[str, ...]) -> Iterator[Command]:
    """Every visible command below GROUP, groups before their sub-commands, in name order."""
    for name in sorted(group.commands):
        cmd = group.commands[name]
        if getattr(cmd, "hidden", False):
            continue
        node = Command((*path, name), cmd)
        node.subcommands = [c for c in walk(cmd, node.path) if len(c.path) == len(node.path) + 1] \
            if hasattr(cmd, "commands") else []
        yield node
        if hasattr(cmd, "commands"):
            yield from walk(cmd, node.path)


@dataclass
class Docstring:
    """A command's help split into where each part goes on its page."""

    description: list[str] = field(default_factory=list)  # raw paragraphs
    exit_status: list[str] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)


def split_help(text: str) -> Docstring:
    doc = Docstring()
    for para in split_paragraphs(inspect.cleandoc(text or "")):
        if _EXIT_STATUS.match(para):
            doc.exit_status.append(_EXIT_STATUS.sub("", para))
        elif para.startswith(NO_REWRAP):
            lines = para[len(NO_REWRAP):].strip("\n").splitlines()
            if lines and _EXAMPLE.match(lines[0].strip()):
                lines = lines[1:]
            elif doc.description and doc.description[-1].rstrip().endswith(":"):
                doc.examples.append(doc.description.pop())  # the sentence that introduces the block
            doc.examples.append(NO_REWRAP + "\n" + "\n".join(lines))
        else:
            doc.description.append(para)
    return doc


def _joined(paras: list[str]) -> str:
    return "\n\n".join(paras)


# -- options and arguments ------------------------------------------------------------------------

def _metavar(param: Any) -> str:
    if getattr(param, "is_flag", False):
        return ""
    if param.metavar:
        return str(param.metavar).strip("[]")
    choices = getattr(param.type, "choices", None)
    if choices:
        return "|".join(str(c) for c in choices)
    if _bounds(param) is not None:
        return "INTEGER" if str(param.type.name).startswith("int") else "NUMBER"
    return str(param.type.name).upper()


def _default(param: Any) -> str | None:
    value = param.default
    if value is None or value == [] or value == () or getattr(param, "is_flag", False) or param.required:
        return None
    value = getattr(value, "value", value)  # an Enum's value
    if value == "":
        return None
    return str(value)


def _bounds(param: Any) -> tuple[Any, Any] | None:
    """(min, max) of click's IntRange / FloatRange, else None."""
    if not hasattr(param.type, "_describe_range"):
        return None
    return param.type.min, param.type.max


def _constraint(param: Any) -> str | None:
    """What a bounded number may be, in words."""
    bounds = _bounds(param)
    if bounds is None:
        return None
    low, high = bounds
    above = "above" if getattr(param.type, "min_open", False) else "at least"
    below = "below" if getattr(param.type, "max_open", False) else "at most"
    if low is not None and high is not None and above == "at least" and below == "at most":
        return f"from {low} to {high}"
    return ", ".join(f"{word} {value}" for word, value in ((above, low), (below, high)) if value is not None)


def _visible(params: list[Any]) -> list[Any]:
    return [p for p in params if not getattr(p, "hidden", False)]


def options(cmd: Any) -> list[Any]:
    return [p for p in _visible(cmd.params) if p.param_type_name == "option"]


def arguments(cmd: Any) -> list[Any]:
    return [p for p in _visible(cmd.params) if p.param_type_name == "argument"]


def option_item(param: Any) -> list[str]:
    names = ", ".join(bold(o) for o in [*param.opts, *param.secondary_opts])
    meta = _metavar(param)
    tag = f"{names} {italic(meta)}" if meta else names
    body = escape(param.help or "")
    extra = [x for x in (_constraint(param), _default_text(param)) if x]
    if param.required:
        extra.insert(0, "required")
    if getattr(param, "multiple", False):
        extra.append("may be repeated")
    if extra:
        body += f" ({escape('; '.join(extra))})"
    return tagged(tag, [body])


def _default_text(param: Any) -> str | None:
    default = _default(param)
    return f"default: {default}" if default is not None else None


def argument_item(param: Any) -> list[str]:
    return tagged(italic(_metavar(param)), [escape(param.help or "") + ("" if param.required else " (optional)")])


def synopsis(command: Command) -> list[str]:
    words = bold(command.words)
    if hasattr(command.cmd, "commands"):
        return [f"{words} {italic('COMMAND')} [{italic('OPTIONS')}]"]
    args = " ".join(italic(_metavar(a)) if a.required else f"[{italic(_metavar(a))}]" for a in arguments(command.cmd))
    return [" ".join(x for x in (words, f"[{italic('OPTIONS')}]" if options(command.cmd) else "", args) if x)]


# -- the pages --------------------------------------------------------------------------------------

def exit_codes() -> list[tuple[int, str]]:
    """The exit codes of every gce command, from the classes gce/cli.py turns into exit codes."""
    from typer._click.exceptions import UsageError as ParserUsageError

    from gce import errors

    codes = {0: "success", ParserUsageError.exit_code: "the command line is wrong (unknown option, missing argument)",
             errors.EX_SOFTWARE: "an internal error of gce (a bug): one line on stderr; GCE_DEBUG=1 also prints "
                                 "its traceback"}
    classes = [c for c in vars(errors).values()
               if isinstance(c, type) and issubclass(c, errors.GceError) and c.__module__ == errors.__name__]
    for cls in sorted(classes, key=lambda c: c.exit_code):
        codes.setdefault(cls.exit_code, _class_words(cls, errors.GceError))
    return sorted(codes.items())


def _class_words(cls: type, base: type) -> str:
    """What an error class stands for: the base's docstring, else its name in words."""
    if cls is base and cls.__doc__:
        doc = inspect.cleandoc(cls.__doc__).split("\n\n")[0].replace("\n", " ").rstrip(".")
        return doc[:1].lower() + doc[1:]
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", cls.__name__).lower()


def exit_status_section(own: list[str], refer: bool) -> list[str]:
    lines = [section("EXIT STATUS")]
    if own:
        lines += paragraphs(_joined(own))
        lines.append(".PP")
    if refer:
        lines.append(f"As every gce command (see {bold('gce')}(1)):")
    for code, words in exit_codes():
        lines += tagged(bold(str(code)), [escape(words)])
    return lines


def command_page(command: Command, see_also: list[str]) -> str:
    doc = split_help(command.cmd.help or "")
    lines = header(command.page_name, 1, command.summary)
    lines += [section("SYNOPSIS"), *synopsis(command), section("DESCRIPTION"), *paragraphs(_joined(doc.description))]
    if command.subcommands:
        lines += [section("COMMANDS")]
        for sub in command.subcommands:
            lines += tagged(bold(sub.words), [f"{escape(sub.summary)}. See {bold(sub.page_name)}(1)."])
    if arguments(command.cmd):
        lines.append(section("ARGUMENTS"))
        for param in arguments(command.cmd):
            lines += argument_item(param)
    lines.append(section("OPTIONS"))
    for param in options(command.cmd):
        lines += option_item(param)
    lines += tagged(f"{bold('-h')}, {bold('--help')}", [escape("Show the command's help and exit.")])
    lines += exit_status_section(doc.exit_status, refer=True)
    if doc.examples:
        lines += [section("EXAMPLES"), *paragraphs(_joined(doc.examples))]
    lines += [section("SEE ALSO"), ",\n".join(f"{bold(name)}({number})" for name, number in see_also_of(command, see_also))]
    return page(lines)


def see_also_of(command: Command, extra: list[str]) -> list[tuple[str, int]]:
    parent = ["gce" if len(command.path) == 2 else "-".join(command.path[:-1])]
    subs = [s.page_name for s in command.subcommands]
    return [(name, 1) for name in [*parent, *subs, *extra] if name != command.page_name] + [("gce-config", 5)]


def main_page(root: Any, commands: list[Command], environment: list[tuple[str, str]],
              files: list[tuple[str, str]]) -> str:
    lines = header("gce", 1, "run and manage gce endpoints, the self-hosted function-as-a-service endpoints")
    lines += [section("SYNOPSIS"), f"{bold('gce')} [{italic('OPTIONS')}] {italic('COMMAND')} [{italic('ARGS')}]...",
              section("DESCRIPTION"), *paragraphs(root.help or "")]
    if root.epilog:
        lines += [".PP", escape(root.epilog)]
    lines += [".PP", escape("Each command has its own page, e.g. man gce-start, and prints its help with "
                            "gce COMMAND --help."), section("COMMANDS")]
    for command in commands:
        lines += tagged(bold(command.words), [f"{escape(command.summary)}. See {bold(command.page_name)}(1)."])
    lines.append(section("OPTIONS"))
    for param in options(root):
        lines += option_item(param)
    lines += tagged(f"{bold('-h')}, {bold('--help')}", [escape("Show the commands and exit.")])
    lines += exit_status_section([], refer=False)
    lines.append(section("ENVIRONMENT"))
    for name, words in environment:
        lines += tagged(bold(name), [escape(words)])
    lines.append(section("FILES"))
    for path, words in files:
        lines += tagged(italic(path), [escape(words)])
    lines += [section("SEE ALSO"), ",\n".join([*(f"{bold(c.page_name)}(1)" for c in commands), f"{bold('gce-config')}(5)",
                                                f"{bold('systemctl')}(1)", f"{bold('rabbitmqctl')}(8)"])]
    return page(lines)
