"""Keep secrets (API keys, tokens, passwords) out of everything a run writes.

A run writes its config in several places: ``.hydra/*.yaml``, ``config_tree.log``, the loggers'
hyperparameters (W&B, MLflow, TensorBoard, CSV ``hparams.yaml``) and every checkpoint. A secret can
get there as a config value typed on the command line, or through ``${oc.env:WANDB_API_KEY}``-style
interpolation. Two rules mask them as ``***``:

- by name: a config key such as ``api_key``, ``password``, ``secret``, ``access_token``,
  ``hf_token``, ``auth_token``, ``private_key`` or ``credentials`` (``SECRET_KEY_NAMES``; tokenizer
  settings such as ``pad_token`` are not secrets);
- by value: any string equal to (or containing) the value of an environment variable whose name
  contains KEY, TOKEN, SECRET, PASSWORD, PASSWD or CREDENTIAL (values of 8+ characters, so that
  flags such as ``TOKENIZERS_PARALLELISM=false`` are left alone).

Loggers and libraries that need a key read it from the environment (W&B: ``WANDB_API_KEY``), so
none needs it in the config.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

MASK = "***"
MIN_SECRET_LENGTH = 8

# whole names (`token`, `secret`) or suffixes (`wandb_api_key`); `pad_token`-like names are not
# secret
SECRET_KEY_NAMES = re.compile(
    r"^(token|secret|key)$|(^|[_\-])(api_?key|secret_?key|client_secret|password|passwd|"
    r"access_?token|auth_?token|api_?token|hf_?token|bearer_?token|private_?key|credentials?)$",
    re.IGNORECASE,
)
_SECRET_ENV_NAMES = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
# environment variables whose names look secret but hold settings or paths
_NOT_SECRET_ENV = re.compile(
    r"^TOKENIZERS_PARALLELISM$|_(PATH|FILE|DIR|HOME|URL|HOST|MODE)$", re.IGNORECASE
)


def is_secret_key(name: object) -> bool:
    """Whether a config key's name says its value is a secret (``api_key``, ``hf_token`` ...)."""
    return isinstance(name, str) and bool(SECRET_KEY_NAMES.search(name))


def secret_env_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of secret-looking environment variables, longest first."""
    environ = os.environ if environ is None else environ
    values = {
        value
        for name, value in environ.items()
        if _SECRET_ENV_NAMES.search(name)
        and not _NOT_SECRET_ENV.search(name)
        and len(value) >= MIN_SECRET_LENGTH
    }
    return sorted(values, key=len, reverse=True)


def mask_text(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def scrub(value: Any, secrets: list[str] | None = None, _key: object = None) -> Any:
    """A copy of a plain config container (dicts, lists, scalars) with secrets masked.

    Values under secret-named keys become ``***``; any string containing a secret environment
    value has it replaced by ``***``.
    """
    secrets = secret_env_values() if secrets is None else secrets
    if isinstance(value, Mapping):
        return {
            k: (MASK if is_secret_key(k) and v not in (None, "") else scrub(v, secrets, k))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return type(value)(scrub(v, secrets) for v in value)
    if isinstance(value, str):
        return mask_text(value, secrets)
    return value


def secret_keys_in(value: Any, prefix: str = "") -> list[str]:
    """Dotted names of the secret-named keys that hold a value (for a warning)."""
    found = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            name = f"{prefix}{key}"
            if is_secret_key(key) and item not in (None, ""):
                found.append(name)
            else:
                found += secret_keys_in(item, name + ".")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found += secret_keys_in(item, f"{prefix}{index}.")
    return found


_OVERRIDE = re.compile(r"^(?P<prefix>[~+]*)(?P<key>[^=]+)=(?P<value>.*)$")


def _scrub_override(line: str) -> str:
    """Mask the value of a ``key=value`` override (as Hydra stores it) whose key is secret."""
    match = _OVERRIDE.match(line.strip().lstrip("- ").strip("'\""))
    if match and is_secret_key(match.group("key").split(".")[-1]) and match.group("value"):
        return line.replace(match.group("value"), MASK)
    return line


def scrub_run_files(
    output_dir: str | Path, config_values: Any = None, extra_files: tuple[str | Path, ...] = ()
) -> None:
    """Mask secrets in the files Hydra wrote to ``<output_dir>/.hydra`` (and ``extra_files``, e.g.
    a multirun's ``multirun.yaml``) before the run started.

    Masks secret-named overrides (``+logger.wandb.api_key=...``), the values found under
    secret-named keys of ``config_values`` (the resolved config) and secret environment values.
    """
    secrets = secret_env_values()
    if config_values is not None:
        secrets += _values_under_secret_keys(config_values)
    secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)
    hydra_dir = Path(output_dir) / ".hydra"
    files = sorted(hydra_dir.glob("*.yaml")) if hydra_dir.is_dir() else []
    for path in files + [Path(p) for p in extra_files if Path(p).is_file()]:
        text = path.read_text()
        lines = [_scrub_override(line) if "=" in line else line for line in text.splitlines(True)]
        masked = mask_text("".join(lines), secrets)
        if masked != text:
            path.write_text(masked)


def _values_under_secret_keys(value: Any) -> list[str]:
    found: list[str] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            if is_secret_key(key) and isinstance(item, (str, int)) and str(item):
                found.append(str(item))
            else:
                found += _values_under_secret_keys(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            found += _values_under_secret_keys(item)
    return found
