"""The search space, written in Hydra's sweep syntax, as Optuna distributions.

Each parameter is a Hydra override value (in ``hydra.sweeper.params`` or on the command line):

=====================================  =============================================================
``interval(0.5, 16.0)``                ``FloatDistribution(0.5, 16.0)``
``tag(log, interval(1e-4, 1e-2))``     ``FloatDistribution(1e-4, 1e-2, log=True)``
``tag(int, interval(1, 8))``           ``IntDistribution(1, 8)`` (``log`` may be added)
``range(2, 9, 3)``                     ``IntDistribution(2, 8, step=3)``: Hydra's range, ``stop``
                                       excluded (floats give a ``FloatDistribution`` with a step)
``choice(bce, focal)``, ``bce,focal``  ``CategoricalDistribution(["bce", "focal"])``
=====================================  =============================================================

Command-line overrides that are not sweeps (``trainer.max_epochs=5``) go to every trial as they are.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sigmoidf1.utils.errors import ConfigError

_PLAIN = re.compile(r"[\w.\-/:]+")  # values Hydra's grammar reads back without quotes


def override_text(value: Any) -> str:
    """``value`` as the right-hand side of a Hydra override."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    if _PLAIN.fullmatch(text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _distribution(override: Any) -> tuple[Any, dict[Any, str]]:
    """The Optuna distribution of a sweep override, and the override text of categorical values
    that Optuna cannot store as they are (lists, dicts: stored as their Hydra text)."""
    from hydra.core.override_parser.types import (
        ChoiceSweep,
        IntervalSweep,
        RangeSweep,
        Transformer,
    )
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    value = override.value()
    if isinstance(value, ChoiceSweep) or (isinstance(value, RangeSweep) and value.shuffle):
        choices, texts = [], {}
        for item in override.sweep_iterator():
            if not isinstance(item, (str, int, float, bool)):
                item = texts.setdefault(Transformer.encode(item), Transformer.encode(item))
            choices.append(item)
        return CategoricalDistribution(choices), texts
    if isinstance(value, RangeSweep):
        values = list(override.sweep_iterator())
        if not values:
            raise ConfigError(f"{override.input_line}: the range is empty")
        if all(isinstance(v, int) for v in values):
            return IntDistribution(values[0], values[-1], step=int(value.step)), {}
        return FloatDistribution(values[0], values[-1], step=float(value.step)), {}
    if isinstance(value, IntervalSweep):
        log = "log" in value.tags
        if "int" in value.tags:
            return IntDistribution(int(value.start), int(value.end), log=log), {}
        return FloatDistribution(float(value.start), float(value.end), log=log), {}
    raise ConfigError(f"{override.input_line}: not a search-space value")  # pragma: no cover


@dataclass
class SearchSpace:
    """Optuna distributions by parameter name (the config key, e.g. ``loss.beta``), and how to
    turn a trial's parameters into Hydra overrides."""

    distributions: dict[str, Any] = field(default_factory=dict)
    fixed: list[str] = field(default_factory=list)  # overrides every trial gets as they are
    keys: dict[str, str] = field(default_factory=dict)  # name -> override key (``+`` kept)
    texts: dict[str, dict[Any, str]] = field(default_factory=dict)

    @classmethod
    def parse(cls, params: Mapping[str, Any], arguments: Sequence[str] = ()) -> SearchSpace:
        """``params`` (``{"loss.beta": "tag(log, interval(0.5, 16.0))", ...}``) and the command
        line's overrides; a sweep on the command line replaces the parameter of the same name."""
        from hydra.core.override_parser.overrides_parser import OverridesParser

        lines = [f"{key}={value}" for key, value in params.items()]
        space = cls()
        parser = OverridesParser.create()
        for override in parser.parse_overrides([*lines, *arguments]):
            if not override.is_sweep_override():
                space.fixed.append(override.input_line)
                continue
            if override.is_hydra_override():
                raise ConfigError(f"{override.input_line}: Hydra's own keys cannot be searched")
            name = override.key_or_group
            space.distributions[name], space.texts[name] = _distribution(override)
            space.keys[name] = override.get_key_element()
        if not space.distributions:
            raise ConfigError(
                "the search space is empty: give hydra.sweeper.params (see "
                "configs/hparams_search/) or a sweep on the command line, e.g. "
                "'loss.beta=interval(1, 8)'"
            )
        return space

    def overrides(self, params: Mapping[str, Any]) -> list[str]:
        """The Hydra overrides of one trial: the fixed ones, then its parameters."""
        chosen = [
            f"{self.keys[name]}={self.texts[name].get(value) or override_text(value)}"
            for name, value in params.items()
            if name in self.distributions
        ]
        return [*self.fixed, *chosen]
