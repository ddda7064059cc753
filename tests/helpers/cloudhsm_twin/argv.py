"""The command line, parsed the way the CLI's own parser (clap) reads it: the command words
first, then ``--option value...`` pairs, where a list option (``--filter a b``) takes every
word up to the next option, and a flag takes none. ``--name=value`` is accepted too."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .errors import UsageError

ALIASES = {"-v": "--verbose"}


@dataclass(frozen=True)
class Spec:
    """What one command accepts: its options (``name -> "one" | "many" | "flag"``) and which
    of them it requires (a tuple of alternatives counts once: ``("--data-path", "--data")``)."""

    options: Mapping[str, str]
    required: Sequence[str | tuple[str, ...]] = ()
    login: bool = True  # False: the documentation says no login is needed


@dataclass
class Args:
    words: tuple[str, ...]
    options: dict[str, list[str]] = field(default_factory=dict)

    def one(self, name: str, default: str | None = None) -> str | None:
        values = self.options.get(name)
        return values[0] if values else default

    def many(self, name: str) -> list[str]:
        return list(self.options.get(name, []))

    def flag(self, name: str) -> bool:
        return name in self.options


def split(argv: Sequence[str]) -> Args:
    """Command words and raw options; nothing is checked against a command yet."""
    words: list[str] = []
    i = 0
    while i < len(argv) and not argv[i].startswith("-"):
        words.append(argv[i])
        i += 1
    args = Args(tuple(words))
    current: str | None = None
    for word in argv[i:]:
        if word.startswith("-") and not _is_value(word, current):
            name, _, inline = word.partition("=")
            name = ALIASES.get(name, name)
            if name in args.options:
                raise UsageError(f"the argument '{name}' cannot be used multiple times")
            args.options[name] = [inline] if inline else []
            current = name
        elif current is None:
            raise UsageError(f"unexpected argument '{word}' found")
        else:
            args.options[current].append(word)
    return args


def _is_value(word: str, current: str | None) -> bool:
    """A word starting with '-' is a value only when it is a negative number after an option."""
    return current is not None and word[1:].isdigit()


def check(args: Args, spec: Spec) -> None:
    """Refuse what the CLI's parser refuses: an unknown option, a flag given a value, a single
    option given none or several, a required option missing. A list option may be given no
    value: the CLI's syntax writes them ``--filter [<FILTER>...]``."""
    for name, values in args.options.items():
        kind = spec.options.get(name)
        if kind is None:
            raise UsageError(f"unexpected argument '{name}' found")
        if kind == "flag" and values:
            raise UsageError(f"unexpected argument '{values[0]}' found")
        if kind == "one" and len(values) != 1:
            raise UsageError(f"a value is required for '{name}' (exactly one)")
    for need in spec.required:
        names = need if isinstance(need, tuple) else (need,)
        given = [n for n in names if n in args.options]
        if not given:
            raise UsageError("the following required arguments were not provided: "
                             + "|".join(names))
        if len(given) > 1:
            raise UsageError(f"the argument '{given[0]}' cannot be used with '{given[1]}'")
