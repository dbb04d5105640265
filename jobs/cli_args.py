"""Generate argparse options from config dataclasses, so each option is declared once."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from typing import Any, Literal


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """Add ``--field-name`` options for every init field of dataclass ``cls`` (help from field metadata)."""
    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group(cls.__name__, (cls.__doc__ or "").strip().splitlines()[0].replace("``", "") if cls.__doc__ else None)
    for f in dataclasses.fields(cls):
        if not f.init or f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        typ = hints[f.name]
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)  # type: ignore[misc]
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        help_text = f.metadata.get("help", "")
        kwargs: dict[str, Any] = {"dest": f.name, "help": help_text if required or default is None else f"{help_text} (default: {default})"}
        base, optional = _unwrap_optional(typ)
        if base is bool:
            kwargs.update(action=argparse.BooleanOptionalAction, default=default)
        elif typing.get_origin(base) is Literal:
            kwargs.update(choices=list(typing.get_args(base)), default=default)
        elif base in (int, float, str):
            kwargs.update(type=base, default=default)
        elif typing.get_origin(base) is tuple and typing.get_args(base)[1:] == (Ellipsis,):
            kwargs.update(type=typing.get_args(base)[0], nargs="+", default=default)
        else:
            raise TypeError(f"{cls.__name__}.{f.name}: unsupported option type {typ}")
        if required:
            kwargs["required"] = True
        group.add_argument(flag, **kwargs)
        for alias in f.metadata.get("deprecated_aliases", ()):  # old spelling: hidden, warns, same dest
            group.add_argument(alias, **{k: v for k, v in kwargs.items() if k not in ("help", "default", "required")},
                               default=argparse.SUPPRESS, help=argparse.SUPPRESS,
                               action=_deprecated(alias, flag, kwargs.get("action")))


def dataclass_from_args(cls: type, ns: argparse.Namespace) -> Any:
    """Build ``cls`` from the parsed options that :func:`add_dataclass_arguments` added."""
    values = {f.name: getattr(ns, f.name) for f in dataclasses.fields(cls) if f.init and hasattr(ns, f.name)}
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def _deprecated(alias: str, flag: str, action: Any) -> type[argparse.Action]:
    """An argparse action for ``alias`` that stores like ``flag`` and says on stderr to use ``flag``."""
    base = action if isinstance(action, type) else argparse._StoreAction

    class Deprecated(base):  # type: ignore[misc, valid-type]
        def __call__(self, parser, namespace, values, option_string=None):
            print(f"dl3d: {alias} is deprecated; use {flag}", file=sys.stderr)
            super().__call__(parser, namespace, values, option_string)

    return Deprecated


def _unwrap_optional(typ: Any) -> tuple[Any, bool]:
    if typing.get_origin(typ) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return typ, False
