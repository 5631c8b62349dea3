"""Typed hyperparameter configurations (CleanRL ``Args`` style): one dataclass per algorithm, one field per
hyperparameter, its default written once and a one-line docstring under it.

:class:`Config` is the shared machinery. Making an instance checks every field against its annotation (an integer
is accepted for a ``float`` and converted, an integral float for an ``int``; anything else of the wrong type is a
:class:`ConfigTypeError` naming the field and the value), then :meth:`Config.check` validates the values
(ValueError). :meth:`Config.build` makes one from an optional base instance and keyword overrides and refuses
unknown keys, listing the known ones. The algorithms' configurations extend one another:
:class:`~agents.policies.PolicyConfig` (the policy's options) -> :class:`~agents.chain.ChainConfig` ->
:class:`~agents.refit.ReFiTConfig` -> :class:`~agents.ddpo.DDPOConfig`, and
:class:`~agents.pathwise.PathwiseConfig`.
"""
from __future__ import annotations

import collections.abc
import difflib
import numbers
import typing
from dataclasses import MISSING, dataclass, fields
from typing import Any, Dict, Mapping, Optional, Tuple, Type, TypeVar, Union

SelfConfig = TypeVar("SelfConfig", bound="Config")


class ConfigTypeError(TypeError):
    """A hyperparameter that is unknown or of the wrong type; ``key`` names it."""

    def __init__(self, message: str, key: str):
        super().__init__(message)
        self.key = key


def describe(hint: Any) -> str:
    """``hint`` in words (``Optional[int]`` -> ``"an integer or null"``)."""
    if typing.get_origin(hint) is Union:
        return " or ".join(describe(arg) for arg in typing.get_args(hint))
    if typing.get_origin(hint) is collections.abc.Callable:
        return "a schedule (callable)"
    words = {float: "a number", int: "an integer", bool: "true or false", str: "a string", type(None): "null",
             dict: "a mapping"}
    return words.get(typing.get_origin(hint) or hint, getattr(hint, "__name__", str(hint)))


def coerce(value: Any, hint: Any) -> Tuple[bool, Any]:
    """``(True, value as hint)`` when ``value`` fits the annotation ``hint``, else ``(False, None)``. Numbers: an
    integer fits ``float`` (converted), an integral float fits ``int`` (YAML's ``!!float 2e5``); a bool is no number."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return True, value
    if origin is Union:
        for arg in typing.get_args(hint):
            ok, out = coerce(value, arg)
            if ok:
                return True, out
        return False, None
    if hint is type(None) or value is None:
        return value is None and hint is type(None), None
    if hint is bool or isinstance(value, bool):
        return hint is bool and isinstance(value, bool), value
    if hint is float:
        return (True, float(value)) if isinstance(value, numbers.Real) else (False, None)
    if hint is int:
        if isinstance(value, numbers.Integral) or (isinstance(value, float) and value.is_integer()):
            return True, int(value)
        return False, None
    if origin is collections.abc.Callable:
        return callable(value), value
    return isinstance(value, origin or hint), value


@dataclass
class Config:
    """Base of the algorithm configurations (see the module docstring)."""

    def __post_init__(self) -> None:
        for name, value in self.typed(self.as_dict()).items():
            setattr(self, name, value)
        self.check()

    @classmethod
    def typed(cls, values: Mapping[str, Any]) -> Dict[str, Any]:
        """``values`` (some of the fields) checked against the fields' annotations and converted; values are not
        validated (:meth:`check`). :class:`ConfigTypeError` for an unknown key or a value of the wrong type."""
        hints, out = typing.get_type_hints(cls), {}
        for name, value in values.items():
            if name not in cls.keys():
                raise ConfigTypeError(f"{cls.__name__}: {unknown_key_message(name, cls.keys())}", name)
            ok, out[name] = coerce(value, hints[name])
            if not ok:
                hint = f" (YAML 1.1 reads {value} as a string: write !!float {value})" \
                    if isinstance(value, str) and _is_number(value) else ""
                raise ConfigTypeError(f"{cls.__name__}: {name}={value!r} is not {describe(hints[name])}{hint}", name)
        return out

    def check(self) -> None:
        """Raise ValueError for an invalid value or combination (subclasses add their rules and call ``super()``)."""

    @classmethod
    def keys(cls) -> Tuple[str, ...]:
        """The field names, in declaration order."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def defaults(cls) -> Dict[str, Any]:
        """``{field: default}``."""
        return {f.name: f.default if f.default_factory is MISSING else f.default_factory() for f in fields(cls)}

    @classmethod
    def build(cls: Type[SelfConfig], config: Optional[Config] = None,
              overrides: Optional[Mapping[str, Any]] = None) -> SelfConfig:
        """``config`` (an instance of this class; None: the defaults) with ``overrides`` applied, checked."""
        if config is not None and not isinstance(config, cls):
            raise TypeError(f"config must be a {cls.__name__}, got {type(config).__name__} (pass hyperparameters as "
                            "keywords, e.g. learning_rate=1e-4)")
        values = config.as_dict() if config is not None else {}
        values.update(cls.typed(overrides or {}))  # unknown keys named with the known ones
        return cls(**values)

    def as_dict(self) -> Dict[str, Any]:
        """``{field: value}`` (values as they are, not copied)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def unknown_key_message(key: str, known) -> str:
    """``"unknown hyperparameter 'key' (did you mean ...?); known: ..."`` (the closest known key, if any)."""
    known = sorted(known)
    close = difflib.get_close_matches(key, known, n=1)
    return f"unknown hyperparameter {key!r}" + (f" (did you mean {close[0]!r}?)" if close else "") + \
        f"; known: {', '.join(known)}"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


__all__ = ["Config", "ConfigTypeError", "coerce", "describe", "unknown_key_message"]
