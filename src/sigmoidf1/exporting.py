"""What ``sigmoidf1-export`` does (the entry point is ``sigmoidf1.export``).

The exported model maps the model's inputs to probabilities *and* decisions, with the per-label
thresholds of the checkpoint baked in::

    features [batch, F] float32                            (tabular: MLP)
    images [batch, C, S, S] float32                        (images: CNN, torchvision)
    input_ids, attention_mask [batch, tokens] int64        (text: embedding bag, transformer)
        -> probabilities [batch, L] float32 = sigmoid(logits)
           decisions     [batch, L] bool    = probabilities >= thresholds (label by label)

The batch size is dynamic (and the number of tokens for text); an image's size is the one the
model was trained at. The inputs are what the DataModule's ``predict_dataset`` yields: the
preprocessing before them (feature standardisation, vocabulary, image size and normalisation) is
written beside the model as JSON (``<model file>.json``), with the label names and thresholds.

Formats: ``onnx`` (``torch.onnx.export``, the dynamo exporter; needs ``sigmoidf1[export]``),
``torchscript`` (``torch.jit.trace``), ``exported_program`` (``torch.export``). The model file goes
next to the checkpoint (``<checkpoint stem>.onnx`` / ``.pt`` / ``.pt2``) unless ``output=`` names
it. With ``check=true`` (the default) the written file is loaded back and run (onnxruntime for
ONNX) on random inputs of two batch sizes; the largest difference from the PyTorch model's
probabilities is logged and stored in the JSON, and the decisions must be identical.
"""

from __future__ import annotations

import io
import json
import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from sigmoidf1.checkpoints import load_trained
from sigmoidf1.metrics import shift_to_threshold
from sigmoidf1.module import MultilabelClassifier
from sigmoidf1.utils.config import apply_extras
from sigmoidf1.utils.errors import ConfigError, UserError
from sigmoidf1.utils.files import atomic_path, atomic_write_text
from sigmoidf1.utils.logging import get_logger

log = get_logger(__name__)

FORMATS = {"onnx": ".onnx", "torchscript": ".pt", "exported_program": ".pt2"}
OUTPUT_NAMES = ("probabilities", "decisions")
EXAMPLE_BATCH_SIZE = 3  # torch.export specialises sizes 0 and 1: trace with another
CHECK_BATCH_SIZES = (1, 8)


@dataclass(frozen=True)
class InputSpec:
    """The model's inputs: ``names``, their ``dtypes`` and ``shapes`` (``"batch"`` and ``"tokens"``
    are the dynamic dimensions); ``high`` bounds random integer inputs (token ids)."""

    names: tuple[str, ...]
    dtypes: tuple[torch.dtype, ...]
    shapes: tuple[tuple[int | str, ...], ...]
    high: int | None = None

    @property
    def as_dict(self) -> bool:
        """Several inputs reach the backbone as one dict (text: input_ids, attention_mask)."""
        return len(self.names) > 1

    def dynamic_shapes(self) -> tuple[dict[int, Any], ...]:
        """``torch.export`` dynamic dimensions of each input, shared by name across inputs."""
        dims = {name: torch.export.Dim(name, min=1) for name in ("batch", "tokens")}
        return tuple(
            {axis: dims[size] for axis, size in enumerate(shape) if isinstance(size, str)}
            for shape in self.shapes
        )

    def random(self, batch_size: int, seed: int = 0, tokens: int = 12) -> tuple[Tensor, ...]:
        """Random inputs of this spec; token rows keep at least their first token unmasked."""
        generator = torch.Generator().manual_seed(seed)
        sizes = {"batch": batch_size, "tokens": tokens}
        inputs = []
        for name, dtype, shape in zip(self.names, self.dtypes, self.shapes, strict=True):
            size = [sizes[s] if isinstance(s, str) else s for s in shape]
            if name == "attention_mask":
                mask = (torch.rand(size, generator=generator) < 0.8).to(dtype)
                mask[:, 0] = 1
                inputs.append(mask)
            elif dtype.is_floating_point:
                inputs.append(torch.randn(size, generator=generator, dtype=dtype))
            else:
                inputs.append(torch.randint(0, self.high or 2, size, generator=generator))
        return tuple(inputs)

    def describe(self) -> list[dict[str, Any]]:
        """JSON description: name, dtype, shape (dynamic dimensions by name)."""
        return [
            {"name": name, "dtype": str(dtype).removeprefix("torch."), "shape": list(shape)}
            for name, dtype, shape in zip(self.names, self.dtypes, self.shapes, strict=True)
        ]


def input_spec(backbone_inputs: Mapping[str, Any], preprocessing: Mapping[str, Any]) -> InputSpec:
    """The inputs of a model built from ``backbone_inputs`` (the DataModule's facts: which one it
    provides says the modality) and ``preprocessing`` (its ``state_dict``: the image size)."""
    if "vocab_size" in backbone_inputs:
        shape = ("batch", "tokens")
        return InputSpec(
            ("input_ids", "attention_mask"),
            (torch.int64, torch.int64),
            (shape, shape),
            high=int(backbone_inputs["vocab_size"]),
        )
    if "in_channels" in backbone_inputs:
        size = (preprocessing.get("image") or {}).get("image_size")
        if size is None:
            raise UserError(
                "cannot export an image model whose checkpoint does not store its image size "
                "(the DataModule's state_dict has no image.image_size)"
            )
        channels = int(backbone_inputs["in_channels"])
        return InputSpec(("images",), (torch.float32,), (("batch", channels, size, size),))
    if "in_features" in backbone_inputs:
        features = int(backbone_inputs["in_features"])
        return InputSpec(("features",), (torch.float32,), (("batch", features),))
    raise UserError(
        f"cannot tell this model's inputs from its backbone inputs {dict(backbone_inputs)}: "
        "export knows in_features (tabular), in_channels (images) and vocab_size (text)"
    )


class ProbabilitiesAndDecisions(nn.Module):
    """A trained classifier as ``inputs -> (probabilities [batch, L], decisions [batch, L])``.

    ``probabilities = sigmoid(logits)``; ``decisions = shift_to_threshold(logits, thresholds) >=
    0.5``, the rule of the test metrics and of ``sigmoidf1-predict`` (``predict_proba``):
    ``sigmoid(logits) >= thresholds`` label by label, with the checkpoint's thresholds. Inputs are
    positional, in the order of ``spec.names``. It holds the classifier's backbone, head and
    thresholds, not the LightningModule (whose trainer-bound attributes tracing cannot read).
    """

    def __init__(self, model: MultilabelClassifier, spec: InputSpec) -> None:
        super().__init__()
        self.backbone = model.backbone
        self.head = model.head
        self.register_buffer("thresholds", model.thresholds.detach().clone())
        self.names = spec.names
        self.as_dict = spec.as_dict
        self.eval()

    def forward(self, *inputs: Tensor) -> tuple[Tensor, Tensor]:
        batch = dict(zip(self.names, inputs, strict=True)) if self.as_dict else inputs[0]
        logits = self.head(self.backbone(batch)).float()  # = MultilabelClassifier.forward
        return torch.sigmoid(logits), shift_to_threshold(logits, self.thresholds) >= 0.5


@contextmanager
def quiet_exporter() -> Any:
    """Silence the ONNX optimiser's informational log lines (constant folding, deduplication)."""
    loggers = [logging.getLogger(name) for name in ("onnxscript", "onnx_ir")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def sizes_of_one_not_special() -> Any:
    """``torch.export`` assumes that a dynamic size traced at >= 2 stays >= 2 and bakes that into
    guards (the embedding bag's offsets then refuse a batch of one). Size-oblivious tracing keeps
    1 valid: the (experimental) option the torch.export tutorial gives against 0/1
    specialisation. Its caveat, broadcasting decided as for sizes >= 2, does not arise in these
    models; the tests run batches of one in every format."""
    from torch.fx.experimental import _config

    if hasattr(_config, "backed_size_oblivious"):
        return _config.patch(backed_size_oblivious=True)
    return nullcontext()


@contextmanager
def torchscript_deprecation_silenced() -> Any:
    """Recent torch warns on every ``torch.jit`` call that TorchScript is deprecated; ``export``
    says it once in the log instead. Tracer warnings are silenced too (see below)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.", category=FutureWarning)
        # the embedding bag compares its inputs' sizes in Python: equal at any size here
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        yield


def _needs_onnx() -> None:
    for module in ("onnx", "onnxscript", "onnxruntime"):
        try:
            __import__(module)
        except ImportError:
            raise UserError(
                f"format=onnx needs the {module} package: pip install 'sigmoidf1[export]' "
                "(or use format=torchscript or format=exported_program)"
            ) from None


def export_model(
    wrapper: ProbabilitiesAndDecisions,
    spec: InputSpec,
    fmt: str,
    path: str | Path,
    opset_version: int | None = None,
) -> Path:
    """Write ``wrapper`` to ``path`` in format ``fmt`` (see the module docstring); return it.

    ONNX goes through ``torch.export`` first (dynamic batch and token dimensions), then
    ``torch.onnx.export`` of that program, saved as one file (weights inside: models up to 2 GB).
    """
    if fmt not in FORMATS:
        raise ConfigError(f"format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    path = Path(path)
    example = spec.random(EXAMPLE_BATCH_SIZE)
    with torch.no_grad():
        if fmt == "torchscript":
            with torchscript_deprecation_silenced():
                traced = torch.jit.trace(wrapper, example, check_trace=False)
                torch.jit.save(traced, str(path))
            return path
        with sizes_of_one_not_special():
            program = torch.export.export(wrapper, example, dynamic_shapes=(spec.dynamic_shapes(),))
        if fmt == "exported_program":
            buffer = io.BytesIO()  # torch.export.save wants a name ending in .pt2, or a buffer
            torch.export.save(program, buffer)
            path.write_bytes(buffer.getvalue())
            return path
        _needs_onnx()
        with quiet_exporter():
            onnx_program = torch.onnx.export(
                program,
                example,
                input_names=list(spec.names),
                output_names=list(OUTPUT_NAMES),
                opset_version=opset_version,
                dynamo=True,
                verbose=False,
            )
            onnx_program.save(str(path), external_data=False)
    return path


def load_exported(path: str | Path, fmt: str) -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    """A function ``(*inputs as tensors) -> (probabilities, decisions)`` as numpy arrays, running
    the exported file: onnxruntime (CPU) for ONNX, torch for the other formats."""
    path = str(path)
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        names = [node.name for node in session.get_inputs()]

        def run_onnx(*inputs: Tensor) -> tuple[np.ndarray, np.ndarray]:
            feed = {name: x.numpy() for name, x in zip(names, inputs, strict=True)}
            probabilities, decisions = session.run(list(OUTPUT_NAMES), feed)
            return probabilities, decisions

        return run_onnx
    if fmt == "torchscript":
        with torchscript_deprecation_silenced():
            module = torch.jit.load(path)
    else:
        module = torch.export.load(io.BytesIO(Path(path).read_bytes())).module()

    def run_torch(*inputs: Tensor) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            probabilities, decisions = module(*inputs)
        return probabilities.numpy(), decisions.numpy()

    return run_torch


def compare(
    wrapper: ProbabilitiesAndDecisions,
    exported: Callable[..., tuple[np.ndarray, np.ndarray]],
    batches: Sequence[tuple[Tensor, ...]],
) -> dict[str, Any]:
    """Run the PyTorch model and the exported one on ``batches``: ``{"max_abs_difference": the
    largest |probability difference|, "decisions_identical": bool, "rows": rows compared}``."""
    largest, identical, rows = 0.0, True, 0
    for inputs in batches:
        with torch.no_grad():
            probabilities, decisions = wrapper(*inputs)
        got_probabilities, got_decisions = exported(*inputs)
        largest = max(largest, float(np.abs(got_probabilities - probabilities.numpy()).max()))
        identical = identical and bool(np.array_equal(got_decisions, decisions.numpy()))
        rows += len(probabilities)
    return {"max_abs_difference": largest, "decisions_identical": identical, "rows": rows}


def default_output(ckpt_path: str | Path, fmt: str) -> Path:
    """``<checkpoint dir>/<checkpoint stem>`` + the format's suffix."""
    return Path(ckpt_path).with_suffix(FORMATS[fmt])


def metadata_path(output: str | Path) -> Path:
    """The JSON beside a model file: ``<model file name>.json``."""
    output = Path(output)
    return output.with_name(output.name + ".json")


def export(cfg: DictConfig) -> Path:
    """Export ``cfg.ckpt_path`` to ``cfg.format``; return the model file's path."""
    apply_extras(cfg)
    fmt = str(cfg.format)
    if fmt not in FORMATS:
        raise ConfigError(f"format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    output = Path(cfg.output) if cfg.get("output") else default_output(cfg.ckpt_path, fmt)
    if output.resolve() == Path(cfg.ckpt_path).resolve():
        raise ConfigError(f"output={output} is the checkpoint itself: name another file")
    if fmt == "onnx":
        _needs_onnx()
    if fmt == "torchscript":
        log.warning(
            "TorchScript is deprecated in recent torch; format=exported_program replaces it"
        )
    model, datamodule = load_trained(cfg.ckpt_path, cfg.get("data"), cfg.get("trusted_targets"))
    preprocessing = datamodule.state_dict()
    spec = input_spec(model.hparams.backbone_inputs, preprocessing)
    wrapper = ProbabilitiesAndDecisions(model, spec)

    log.info(f"Exporting {cfg.ckpt_path} to {fmt}: inputs {', '.join(spec.names)}")
    with atomic_path(output) as partial:
        export_model(wrapper, spec, fmt, partial, cfg.get("opset_version"))
        check = None
        if cfg.check:
            batches = [spec.random(n, seed=n) for n in CHECK_BATCH_SIZES]
            check = compare(wrapper, load_exported(partial, fmt), batches)
            runtime = "onnxruntime" if fmt == "onnx" else "torch"
            log.info(
                f"Checked with {runtime} on {check['rows']} random rows (batch sizes "
                f"{', '.join(map(str, CHECK_BATCH_SIZES))}): max abs difference of the "
                f"probabilities {check['max_abs_difference']:.3g}, decisions "
                f"{'identical' if check['decisions_identical'] else 'DIFFERENT'}"
            )
            if (
                check["max_abs_difference"] > float(cfg.check_tolerance)
                or not check["decisions_identical"]
            ):
                raise UserError(
                    f"the exported model does not reproduce the PyTorch model (max abs difference "
                    f"{check['max_abs_difference']:.3g} > check_tolerance={cfg.check_tolerance} "
                    "or different decisions); nothing was written"
                )

    metadata = {
        "format": fmt,
        "model": output.name,
        "checkpoint": str(Path(cfg.ckpt_path).resolve()),
        "inputs": spec.describe(),
        "outputs": [
            {
                "name": "probabilities",
                "dtype": "float32",
                "shape": ["batch", len(model.label_names)],
            },
            {"name": "decisions", "dtype": "bool", "shape": ["batch", len(model.label_names)]},
        ],
        "label_names": list(model.label_names),
        "thresholds": model.thresholds.tolist(),
        "data": OmegaConf.select(OmegaConf.create(model.hparams.run_config), "data._target_"),
        "preprocessing": preprocessing,
        "check": check,
    }
    atomic_write_text(metadata_path(output), json.dumps(metadata, indent=1) + "\n")
    log.info(f"Wrote {output} and {metadata_path(output).name}")
    log.info(f"Run directory: {cfg.paths.output_dir}")
    return output
