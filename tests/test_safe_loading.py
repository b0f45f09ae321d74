"""Loading a file never runs code from it; secrets never land in what a run writes."""

from __future__ import annotations

import builtins
from pathlib import Path

import pytest
import torch

from sigmoidf1.checkpoints import read_checkpoint
from sigmoidf1.utils.errors import CheckpointError
from sigmoidf1.utils.secrets import MASK, is_secret_key, scrub, secret_env_values
from tests.conftest import QUIET, run_cli


class Payload:
    """Unpickling this object runs ``exec``: it writes ``marker`` (a stand-in for any code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return builtins.exec, (f"open({str(self.marker)!r}, 'w').write('payload ran')",)


def poisoned_checkpoint(tmp_path: Path) -> tuple[Path, Path]:
    """A checkpoint that looks like ours but carries ``Payload``; returns (file, marker)."""
    marker = tmp_path / "payload_ran.txt"
    path = tmp_path / "poisoned.ckpt"
    torch.save(
        {
            "sigmoidf1": {"label_names": ["a"], "backbone_inputs": {}, "config": {}},
            "state_dict": {},
            "extra": Payload(marker),
        },
        path,
    )
    return path, marker


def test_the_payload_is_real(tmp_path):
    """Unsafe loading would run it: the refusal below is what protects the user."""
    path, marker = poisoned_checkpoint(tmp_path)
    torch.load(path, weights_only=False)
    assert marker.read_text() == "payload ran"


def test_a_pickled_payload_is_refused_without_running(tmp_path):
    path, marker = poisoned_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="refusing to load") as error:
        read_checkpoint(path)
    assert str(path) in str(error.value) and "(exec)" in str(error.value)
    assert not marker.exists()


@pytest.mark.parametrize("command", ["eval", "predict", "train"])
def test_every_entry_point_refuses_the_payload(workdir, cli, command):
    path, marker = poisoned_checkpoint(workdir)
    extra = {
        "eval": ["callbacks.progress_bar=null"],
        "predict": [f"input={path}"],
        "train": QUIET[1:],
    }[command]
    result = cli(command, f"ckpt_path={path}", "extras.print_config=false", *extra)
    assert result.returncode == 1
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")][-1]
    assert "refusing to load" in error and str(path) in error
    assert "Traceback" not in result.stderr
    assert not marker.exists()


def test_our_checkpoints_are_plain_data(tmp_path):
    """What the module and the callbacks store loads with weights_only=True (no allow-list)."""
    import lightning as L

    from sigmoidf1.callbacks.resume import apply_random_state, collect_random_state

    state = collect_random_state()
    torch.save({"rng": state}, tmp_path / "rng.pt")
    first = (torch.rand(3), __import__("random").random(), __import__("numpy").random.rand())
    apply_random_state(torch.load(tmp_path / "rng.pt", weights_only=True)["rng"])
    again = (torch.rand(3), __import__("random").random(), __import__("numpy").random.rand())
    assert torch.equal(first[0], again[0]) and first[1:] == again[1:]
    assert isinstance(L.seed_everything(0), int)


# --- secrets --------------------------------------------------------------------------------------
def test_secret_key_names():
    for name in ("api_key", "wandb_api_key", "HF_TOKEN", "password", "client_secret", "token"):
        assert is_secret_key(name), name
    for name in ("pad_token", "max_tokens", "tokenizer", "monitor", "sort_keys", "key_column"):
        assert not is_secret_key(name), name


def test_scrub_masks_keys_and_environment_values():
    env = {
        "WANDB_API_KEY": "abcdefgh12345678",
        "TOKENIZERS_PARALLELISM": "false",
        "MY_SECRET_PATH": "/data/x",
        "SHORT_TOKEN": "abc",
    }
    secrets = secret_env_values(env)
    assert secrets == ["abcdefgh12345678"]
    config = {
        "logger": {"api_key": "typed", "tags": ["x abcdefgh12345678 y"]},
        "data": {"pad_token": "[PAD]", "flag": "false"},
        "password": None,
    }
    assert scrub(config, secrets) == {
        "logger": {"api_key": MASK, "tags": [f"x {MASK} y"]},
        "data": {"pad_token": "[PAD]", "flag": "false"},
        "password": None,
    }


@pytest.mark.slow
def test_no_secret_reaches_the_run_directory(workdir):
    secrets = {"WANDB_API_KEY": "wandb-key-0123456789abcdef", "HF_TOKEN": "hf_tokenvalue987654321"}
    typed = "typed-on-the-command-line-42"
    run_dir = workdir / "run"
    result = run_cli(
        "train",
        "trainer.max_epochs=1",
        f"hydra.run.dir={run_dir}",
        "+notes.api_key=${oc.env:WANDB_API_KEY}",  # a secret-named key
        "+notes.comment=token ${oc.env:HF_TOKEN}",  # a secret value under an ordinary key
        f"+notes.hf_token={typed}",  # a secret typed on the command line
        cwd=workdir,
        env=secrets,
    )
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {
        "config.yaml",
        "overrides.yaml",
        "hydra.yaml",
        "config_tree.log",
        "last.ckpt",
        "hparams.yaml",
    } <= names
    for secret in [*secrets.values(), typed]:
        assert secret not in result.stdout + result.stderr
        for path in files:
            assert secret.encode() not in path.read_bytes(), f"{secret} found in {path}"
    stored = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert stored["hyper_parameters"]["run_config"]["notes"] == {
        "api_key": MASK,
        "comment": f"token {MASK}",
        "hf_token": MASK,
    }
    assert "looks like a secret" in result.stdout + result.stderr
