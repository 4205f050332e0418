"""The config base: documented fields, checks in ``__post_init__``, strict ``to_dict``/``from_dict``.

Every config of the workbench (``PolicySpec``, ``PolicyIO``, ``EnvSpec``,
``TrainConfig``) is a frozen dataclass deriving from :class:`Spec`, with its
fields declared by :func:`setting`: the default, a help text, and the range or
choices, kept as dataclass field metadata. One place holds a field's range:

- :class:`Spec` checks every field against it when the config is made (through
  the shared validators :func:`check_int`, :func:`check_float`,
  :func:`check_bool`, :func:`check_choice`, :func:`check_ints`), then the
  class's own cross-field checks (``_check``);
- :func:`settings` reads it back, for the panels' controls
  (``widgets._panel.controls_for``) and for documentation.

Errors are :class:`~workbench.errors.ConfigError` s naming the config, the
field, what was expected and what came in.

Examples:
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Demo(Spec):
    ...     steps: int = setting(10, "steps per run", low=1)
    ...     mode: str = setting("fast", "how to run", choices=("fast", "exact"))
    >>> Demo.from_dict(Demo(steps=3).to_dict())
    Demo(steps=3, mode='fast')
    >>> Demo(steps=0)
    Traceback (most recent call last):
    ...
    workbench.errors.ConfigError: Demo: 'steps' must be an int >= 1; got 0.
    >>> settings(Demo)["mode"].choices, settings(Demo)["steps"].help
    (('fast', 'exact'), 'steps per run')
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

from .errors import ConfigError

__all__ = [
    "Spec",
    "Setting",
    "Wording",
    "MUST_BE",
    "EXPECTED",
    "setting",
    "settings",
    "check_int",
    "check_float",
    "check_bool",
    "check_choice",
    "check_ints",
]

_NO_DEFAULT = dataclasses.MISSING


@dataclass(frozen=True)
class Wording:
    """How a config's errors read: the sentence and the word for an integer."""

    template: str
    """with ``{owner}``, ``{name}``, ``{expected}`` and ``{value!r}``"""
    integer: str
    """``"an int"`` or ``"an integer"``"""
    number: str = "a finite number"
    """the word for a real number (``check_float``)"""

    def error(self, owner: str, name: str, expected: str, value: Any) -> ConfigError:
        return ConfigError(self.template.format(owner=owner, name=name, expected=expected, value=value))


MUST_BE = Wording("{owner}: '{name}' must be {expected}; got {value!r}.", "an int")
"""``PolicySpec: 'hidden_size' must be an int >= 1; got 0.``"""
EXPECTED = Wording("{owner}: '{name}': expected {expected}; got {value!r}", "an integer")
"""``TrainConfig: 'epochs': expected an integer >= 1; got 0`` (the command line maps the field to its flag)"""


def _bounds(low: float | None, high: float | None, low_open: bool) -> str:
    if high is None:
        return "" if low is None else (f"> {low:g}" if low_open else f">= {low:g}")
    return f"in {'(' if low_open else '['}{low:g}, {high:g}]"


def _within(value: float, low: float | None, high: float | None, low_open: bool) -> bool:
    if low is not None and not (value > low if low_open else value >= low):
        return False
    return high is None or value <= high


def check_int(owner: str, name: str, value: Any, *, low: int | None = None, high: int | None = None,
              optional: bool = False, wording: Wording = MUST_BE) -> int | None:
    """``value`` if it is an int (not a bool) in range, else a :class:`ConfigError`.

    Examples:
        >>> check_int("Demo", "seed", None, low=0, optional=True) is None
        True
        >>> check_int("Demo", "seed", -1, low=0, optional=True)
        Traceback (most recent call last):
        ...
        workbench.errors.ConfigError: Demo: 'seed' must be an int >= 0 or None; got -1.
    """
    if optional and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not _within(value, low, high, False):
        expected = " ".join(filter(None, [wording.integer, _bounds(low, high, False)])) + (" or None" if optional else "")
        raise wording.error(owner, name, expected, value)
    return value


def check_float(owner: str, name: str, value: Any, *, low: float | None = None, high: float | None = None,
                low_open: bool = False, optional: bool = False, wording: Wording = MUST_BE) -> float | int | None:
    """``value`` if it is a finite number (int or float, not a bool) in range, else a :class:`ConfigError`.

    Examples:
        >>> check_float("Demo", "gamma", 0.99, low=0, high=1, low_open=True)
        0.99
        >>> check_float("Demo", "gamma", 0.0, low=0, high=1, low_open=True, wording=EXPECTED)
        Traceback (most recent call last):
        ...
        workbench.errors.ConfigError: Demo: 'gamma': expected a finite number in (0, 1]; got 0.0
    """
    if optional and value is None:
        return None
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if not (ok and _within(value, low, high, low_open)):
        expected = " ".join(filter(None, [wording.number, _bounds(low, high, low_open)]))
        raise wording.error(owner, name, expected + (" or None" if optional else ""), value)
    return value


def check_bool(owner: str, name: str, value: Any, *, wording: Wording = MUST_BE) -> bool:
    """``value`` if it is a bool (not 0/1), else a :class:`ConfigError`.

    Examples:
        >>> check_bool("Demo", "parallel", 1)
        Traceback (most recent call last):
        ...
        workbench.errors.ConfigError: Demo: 'parallel' must be a bool; got 1.
    """
    if not isinstance(value, bool):
        raise wording.error(owner, name, "a bool", value)
    return value


def check_choice(owner: str, name: str, value: Any, choices: Sequence[Any], *, wording: Wording = MUST_BE) -> Any:
    """``value`` if it is one of ``choices``, else a :class:`ConfigError` listing them.

    Examples:
        >>> check_choice("Demo", "activation", "swish", ["elu", "relu", "tanh"])
        Traceback (most recent call last):
        ...
        workbench.errors.ConfigError: Demo: 'activation' must be one of ['elu', 'relu', 'tanh']; got 'swish'.
    """
    if isinstance(value, bool) or value not in choices:
        raise wording.error(owner, name, f"one of {list(choices)}", value)
    return value


def check_ints(owner: str, name: str, value: Any, *, low: int = 1, example: tuple = (32,),
               wording: Wording = MUST_BE) -> tuple[int, ...]:
    """``value`` (a list or tuple of ints >= ``low``) as a tuple, else a :class:`ConfigError`.

    Examples:
        >>> check_ints("Demo", "head_cells", [8, 8])
        (8, 8)
        >>> check_ints("Demo", "head_cells", (8, 0))
        Traceback (most recent call last):
        ...
        workbench.errors.ConfigError: Demo: 'head_cells' must be a tuple of ints >= 1, e.g. (32,); got (8, 0).
    """
    cells = tuple(value) if isinstance(value, (list, tuple)) else value
    if not isinstance(cells, tuple) or any(isinstance(c, bool) or not isinstance(c, int) or c < low for c in cells):
        raise wording.error(owner, name, f"a tuple of ints >= {low}, e.g. {example!r}", value)
    return cells


@dataclass(frozen=True)
class Setting:
    """What a config field accepts, with its help text: the metadata :func:`setting` stores."""

    kind: str
    """``"int"``, ``"float"``, ``"bool"``, ``"str"`` or ``"ints"`` (a tuple of ints)"""
    help: str
    """what the field means, in a few words"""
    default: Any = None
    """the default value (``None`` also when the field has none)"""
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    """``low`` itself excluded"""
    optional: bool = False
    """``None`` allowed"""
    choices: tuple | None = None
    """the values a panel offers"""
    accepted: tuple = ()
    """further values the check accepts (aliases), not offered"""
    label: str | None = None
    """a short name for a control (default: the field name with spaces)"""
    choice_labels: Mapping[Any, str] | None = None
    """a label per choice, for a drop-down"""

    def check(self, owner: str, name: str, value: Any, wording: Wording = MUST_BE) -> Any:
        """``value`` checked (and normalised: lists to tuples) against this setting."""
        if self.choices is not None:
            return check_choice(owner, name, value, (*self.choices, *self.accepted), wording=wording)
        bounds = dict(low=self.low, high=self.high, wording=wording)
        if self.kind == "int":
            return check_int(owner, name, value, optional=self.optional, **bounds)
        if self.kind == "float":
            return check_float(owner, name, value, low_open=self.low_open, optional=self.optional, **bounds)
        if self.kind == "bool":
            return check_bool(owner, name, value, wording=wording)
        if self.kind == "ints":
            return check_ints(owner, name, value, low=int(self.low or 1), example=self.default, wording=wording)
        return value  # "str" without choices: the class's own _check


_KINDS = {bool: "bool", int: "int", float: "float", str: "str", tuple: "ints"}


def setting(default: Any = _NO_DEFAULT, help: str = "", *, kind: str | None = None, **options: Any) -> Any:
    """A dataclass field with a :class:`Setting` in its metadata (``kind`` read from the default's type).

    Keyword Args:
        kind: needed when the default is None or absent.
        **options: ``low``, ``high``, ``low_open``, ``optional``, ``choices``, ``accepted``, ``label``,
            ``choice_labels`` (see :class:`Setting`).

    Examples:
        >>> from dataclasses import dataclass, fields
        >>> @dataclass(frozen=True)
        ... class Demo(Spec):
        ...     max_steps: int | None = setting(None, "episode limit", kind="int", low=1, optional=True)
        >>> fields(Demo)[0].metadata["setting"].kind, Demo().max_steps
        ('int', None)
    """
    if kind is None:
        if default is _NO_DEFAULT or default is None:
            raise TypeError("setting: pass kind= when the default is None or absent.")
        kind = _KINDS[type(default)]
    info = Setting(kind, help, None if default is _NO_DEFAULT else default, **options)
    return dataclasses.field(default=default, metadata={"setting": info})


def settings(spec: type | Spec) -> dict[str, Setting]:
    """``{field name: Setting}`` of a config class (or instance), in declaration order.

    Examples:
        >>> from workbench.envs import EnvSpec
        >>> settings(EnvSpec)["num_envs"].low, settings(EnvSpec)["hide_velocity"].label
        (1, 'hide velocities (POMDP)')
    """
    return {f.name: f.metadata["setting"] for f in dataclasses.fields(spec) if "setting" in f.metadata}


def _plain(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


class Spec:
    """The base of the workbench's configs (frozen dataclasses whose fields come from :func:`setting`).

    ``__post_init__`` checks every field against its :class:`Setting` (a bad value raises a
    :class:`~workbench.errors.ConfigError`; lists become tuples), then calls ``_check()`` for the
    checks that involve several fields. ``WORDING`` picks how the errors read.
    """

    WORDING: ClassVar[Wording] = MUST_BE

    def __post_init__(self) -> None:
        owner = type(self).__name__
        for name, info in settings(self).items():
            value = info.check(owner, name, getattr(self, name), self.WORDING)
            object.__setattr__(self, name, value)
        self._check()

    def _check(self) -> None:
        """Checks across fields (a subclass's); the fields themselves are checked already."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (tuples as lists); :meth:`from_dict` inverts it."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]):
        """The config of :meth:`to_dict`; unknown fields, and missing fields that have no default, raise.

        Raises:
            ConfigError: naming the unknown or missing fields and the known ones.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"{cls.__name__}.from_dict: expected a dict of fields; got {type(data).__name__}.")
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ConfigError(f"{cls.__name__}.from_dict: unknown fields {unknown}; expected some of {sorted(known)}.")
        missing = [name for name, f in known.items() if name not in data
                   and f.default is _NO_DEFAULT and f.default_factory is _NO_DEFAULT]
        if missing:
            raise ConfigError(f"{cls.__name__}.from_dict: missing fields {missing}; they have no default.")
        return cls(**data)
