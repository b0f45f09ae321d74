"""A checkpoint is data: a config read from a file is instantiated only when every target in it is
trusted.

``hydra.utils.instantiate`` imports and calls whatever ``_target_`` a config names, nested configs
included (Hydra's own blocklist, 1.3.4 and later, is best effort). ``check_targets`` walks a whole
config (nested dicts, ``_args_``, keyword values, lists) before anything in it is imported or
called, and accepts a target only when

- it belongs to the families the template itself writes into checkpoints: a *class* of
  ``sigmoidf1.data``, ``sigmoidf1.backbones``, ``sigmoidf1.losses`` or ``torch.optim``
  (optimizers and schedulers), or the loss factory ``sigmoidf1.losses.get_loss``. Only classes:
  the package's plain functions include helpers that download and write files; or
- it lies under one of the user's trusted prefixes (``trusted_targets=[mylab]``): module paths
  matched on dot boundaries, so ``mylab`` trusts ``mylab.models.Net`` but not ``mylabs.Net``.
  Anything defined there is trusted, functions included.

A name is judged by where it leads, not only by how it reads: ``sigmoidf1.data.base.np.save``
reads like this package but is numpy's. So a target whose name passes is then resolved the way
Hydra resolves it (which imports only modules under that name), every module met on the way
must be the module of that very path (no alias), and the object found must be a class or
function whose own home (``__module__`` + ``__qualname__``) is trusted too.

A string holding an interpolation (``${...}``) is refused as well: a checkpoint stores resolved
values, and an interpolation read from a file could read the environment (``${oc.env:...}``).
What is not checked: the values themselves (paths, URLs, names of pretrained models), which the
trusted classes use as they are; see docs/security.md.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Iterable, Iterator, Mapping
from types import ModuleType
from typing import Any

from sigmoidf1.utils.errors import CheckpointError, ConfigError

TRUST_KEY = "trusted_targets"  # the config key and command-line option
# Families of what sigmoidf1-train stores: classes only, plus these functions (by their home).
TEMPLATE_FAMILIES = ("sigmoidf1.data", "sigmoidf1.backbones", "sigmoidf1.losses", "torch.optim")
TEMPLATE_FUNCTIONS = ("sigmoidf1.losses.registry.get_loss",)
_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def trusted_prefixes(trusted_targets: Any) -> tuple[str, ...]:
    """The user's trusted prefixes as dotted names (a trailing dot dropped: ``mylab.`` =
    ``mylab``). Accepts ``None``, one string or a list of strings; anything else, or an entry
    that is not a dotted name (an empty one would trust everything), is a ``ConfigError``."""
    if trusted_targets is None:
        return ()
    entries = [trusted_targets] if isinstance(trusted_targets, str) else trusted_targets
    if not isinstance(entries, Iterable) or isinstance(entries, Mapping):
        raise ConfigError(f"{TRUST_KEY} must be a list of module paths, got {trusted_targets!r}")
    prefixes = []
    for entry in entries:
        name = entry[:-1] if isinstance(entry, str) and entry.endswith(".") else entry
        if not isinstance(name, str) or not _DOTTED.fullmatch(name):
            raise ConfigError(
                f"{TRUST_KEY} entries are module paths such as mylab or mylab.models, got {entry!r}"
            )
        prefixes.append(name)
    return tuple(prefixes)


def check_targets(config: Any, key: str, trusted_targets: Any = (), source: str = "") -> None:
    """Raise ``CheckpointError`` unless every ``_target_`` in ``config`` is trusted (see the
    module docstring); ``key`` is the config key ``config`` sits at, ``source`` the file it came
    from (both named in the message). Every name is checked before any is resolved, and resolving
    imports only modules under trusted names; nothing is called."""
    user = trusted_prefixes(trusted_targets)
    targets = list(_targets(config, key, source))
    for where, target in targets:
        if not _under(target, (*TEMPLATE_FAMILIES, *user)):
            raise _refusal(source, where, f"{target}, which is not trusted", _suggestion(target))
    for where, target in targets:
        _resolve_trusted(target, where, user, source)


def _under(name: str, prefixes: Iterable[str]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def _suggestion(target: str) -> str:
    """What to trust for ``target``: its top-level package, except in a package the template
    trusts in part (sigmoidf1, torch), where only that very name is suggested."""
    top = target.split(".")[0]
    return target if top in {family.split(".")[0] for family in TEMPLATE_FAMILIES} else top


def _refusal(source: str, where: str, what: str, trust: str | None = None) -> CheckpointError:
    """The one message of every refusal: the file, the config key, the target and what is wrong;
    with ``trust``, how to trust it."""
    advice = (
        f" If you trust this file and that code, pass '{TRUST_KEY}=[{trust}]' (command line or "
        f"config; in Python, {TRUST_KEY}=['{trust}'])"
        if trust
        else ""
    )
    return CheckpointError(
        f"refusing to load {source or 'the config'}: `{where}` names {what}. From a checkpoint, "
        "sigmoidf1 instantiates only its own data modules, backbones and losses and torch.optim's "
        "optimizers and schedulers (instantiating imports and calls what the file names)." + advice
    )


def _targets(node: Any, key: str, source: str) -> Iterator[tuple[str, str]]:
    """``(config key, target)`` of every ``_target_`` under ``node``; refuses interpolations."""
    if isinstance(node, Mapping):
        for name, value in node.items():
            where = f"{key}.{name}" if key else str(name)
            if name == "_target_":
                if not isinstance(value, str) or not _DOTTED.fullmatch(value):
                    raise _refusal(source, where, f"{value!r}, which is not a dotted name")
                yield where, value
            else:
                yield from _targets(value, where, source)
    elif isinstance(node, (list, tuple)):
        for index, value in enumerate(node):
            yield from _targets(value, f"{key}[{index}]", source)
    elif isinstance(node, str) and "${" in node:
        raise CheckpointError(
            f"refusing to load {source or 'the config'}: `{key}` holds an interpolation "
            f"({node!r}); a checkpoint stores resolved values, and sigmoidf1 never resolves "
            "interpolations read from a file"
        )


def _home(obj: Any) -> str | None:
    """``module.qualname`` of a class, function or method; ``None`` for anything else."""
    if inspect.ismethod(obj):
        obj = obj.__func__
    if not (inspect.isclass(obj) or inspect.isfunction(obj) or inspect.isbuiltin(obj)):
        return None
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    return f"{module}.{qualname}" if isinstance(module, str) and isinstance(qualname, str) else None


def _trusted_object(obj: Any, user: tuple[str, ...]) -> bool:
    """A class of the template's families, one of its listed functions, or a class or function
    defined under a user's trusted prefix."""
    home = _home(obj)
    if home is None:
        return False
    if _under(home, user):
        return True
    return home in TEMPLATE_FUNCTIONS or (inspect.isclass(obj) and _under(home, TEMPLATE_FAMILIES))


def _resolve_trusted(target: str, where: str, user: tuple[str, ...], source: str) -> None:
    """Refuse a trusted name that leads to an object that is not trusted."""
    # resolve as Hydra does (hydra._internal.utils._locate): the first part is imported, then
    # attributes, importing a submodule where no attribute exists. Every import is of a prefix of
    # `target`, which is trusted or an ancestor package of a trusted prefix (torch of torch.optim)
    parts = target.split(".")
    try:
        obj = importlib.import_module(parts[0])
        for index in range(1, len(parts)):
            path = ".".join(parts[: index + 1])
            try:
                obj = getattr(obj, parts[index])
            except AttributeError:
                if not isinstance(obj, ModuleType):
                    raise
                obj = importlib.import_module(path)
            if isinstance(obj, ModuleType):
                if obj.__name__ != path:  # e.g. sigmoidf1.data.base.np: numpy under an alias
                    raise _refusal(
                        source, where, f"{target}, which leads through module {obj.__name__}"
                    )
            elif index < len(parts) - 1 and not _trusted_object(obj, user):
                found = _home(obj) or type(obj).__name__
                raise _refusal(source, where, f"{target}, which leads through {found}")
    except CheckpointError:
        raise
    except Exception as error:  # ImportError, or anything a trusted module raises on import
        reason = f"{type(error).__name__}: {error}".splitlines()[0]
        raise _refusal(source, where, f"{target}, which cannot be imported ({reason})") from None
    if _trusted_object(obj, user):
        return
    home = _home(obj)
    if home is None:
        raise _refusal(source, where, f"{target}, which is not a class or function")
    if _under(home, TEMPLATE_FAMILIES):  # a function of the template's families
        raise _refusal(
            source,
            where,
            f"{target}, a function: of sigmoidf1 and torch.optim only classes (and "
            "sigmoidf1.losses.get_loss) are trusted",
            home,
        )
    raise _refusal(source, where, f"{target}, which leads to {home}, outside the trusted names")
