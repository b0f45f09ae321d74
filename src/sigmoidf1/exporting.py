"""What ``sigmoidf1-export`` does (the entry point is ``sigmoidf1.export``).

The exported model maps the model's inputs to probabilities *and* decisions, with the per-label
thresholds of the checkpoint baked in::

    features [batch, F] float32                            (tabular: MLP)
    images [batch, C, S, S] float32                        (images: CNN, torchvision)
    input_ids, attention_mask [batch, tokens] int64        (text: embedding bag, transformer)
        -> probabilities [batch, L] float32 = sigmoid(logits)
           decisions     [batch, L] bool    = probabilities >= thresholds (label by label)

The batch size is dynamic (and the number of tokens for text, up to the ``max_length`` the
model was trained with); an image's size is the one the model was trained at. The inputs are what
the DataModule's ``predict_dataset`` yields: the preprocessing before them (feature
standardisation, vocabulary, image size and normalisation) is written beside the model as JSON
(``<model file>.json``), with the label names and thresholds.

A model trained on a frozen encoder's features (``encoder=minilm``, ``encoder=frozen`` ...) is
exported with its encoder: the checkpoint holds the head only, so the encoder is rebuilt from the
data config stored in it (``data.frozen_encoder``, which must load here: the MiniLM package, a
weights file ...), and the exported model takes the raw inputs (token ids, images) like a model
trained end to end, with the features rounded to the cache's ``dtype`` as in training.

A backbone that ``torch.export`` cannot trace (``format=onnx`` and ``exported_program`` go through
it) stops the export with one line naming the backbone, the reason and what to change, e.g.
Python control flow on tensor values, or a batch size fixed in the code.

Formats: ``onnx`` (``torch.onnx.export``, the dynamo exporter; needs ``sigmoidf1[export]``),
``torchscript`` (``torch.jit.trace``), ``exported_program`` (``torch.export``). The model file goes
next to the checkpoint (``<checkpoint stem>.onnx`` / ``.pt`` / ``.pt2``) unless ``output=`` names
it. With ``check=true`` (the default) the written file is loaded back and run (onnxruntime for
ONNX) on random inputs of two batch sizes; the largest difference from the PyTorch model's
probabilities is logged and stored in the JSON, and the decisions must be identical.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager, nullcontext, redirect_stderr
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from sigmoidf1.checkpoints import load_trained
from sigmoidf1.data.features import FrozenEncoder, describe_factory
from sigmoidf1.metrics import shift_to_threshold
from sigmoidf1.module import MultilabelClassifier
from sigmoidf1.utils.config import apply_extras
from sigmoidf1.utils.errors import ConfigError, DataError, UserError
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
    max_tokens: int | None = None  # the longest text (tokens) the model takes; None: unbounded

    @property
    def as_dict(self) -> bool:
        """Several inputs reach the backbone as one dict (text: input_ids, attention_mask)."""
        return len(self.names) > 1

    def dynamic_shapes(self) -> tuple[dict[int, Any], ...]:
        """``torch.export`` dynamic dimensions of each input, shared by name across inputs.
        The number of tokens is bounded by ``max_tokens`` (a transformer's position embeddings
        cover a bounded length: torch.export refuses an unbounded dimension there)."""
        dims = {
            "batch": torch.export.Dim("batch", min=1),
            "tokens": torch.export.Dim("tokens", min=1, max=self.max_tokens or torch.inf),
        }
        return tuple(
            {axis: dims[size] for axis, size in enumerate(shape) if isinstance(size, str)}
            for shape in self.shapes
        )

    def random(self, batch_size: int, seed: int = 0, tokens: int = 12) -> tuple[Tensor, ...]:
        """Random inputs of this spec; token rows keep at least their first token unmasked."""
        generator = torch.Generator().manual_seed(seed)
        sizes = {"batch": batch_size, "tokens": min(tokens, self.max_tokens or tokens)}
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
        """JSON description: name, dtype, shape (dynamic dimensions by name), and for token
        inputs ``max_tokens``."""
        described = []
        for name, dtype, shape in zip(self.names, self.dtypes, self.shapes, strict=True):
            entry = {"name": name, "dtype": str(dtype).removeprefix("torch."), "shape": list(shape)}
            if "tokens" in shape and self.max_tokens:
                entry["max_tokens"] = self.max_tokens
            described.append(entry)
        return described


def input_spec(backbone_inputs: Mapping[str, Any], preprocessing: Mapping[str, Any]) -> InputSpec:
    """The inputs of a model built from ``backbone_inputs`` (the DataModule's facts: which one it
    provides says the modality) and ``preprocessing`` (its ``state_dict``: the image size)."""
    if "vocab_size" in backbone_inputs:
        shape = ("batch", "tokens")
        max_tokens = (preprocessing.get("text_encoder") or {}).get("max_length")
        return InputSpec(
            ("input_ids", "attention_mask"),
            (torch.int64, torch.int64),
            (shape, shape),
            high=int(backbone_inputs["vocab_size"]),
            max_tokens=int(max_tokens) if max_tokens else None,
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

    ``encoder``: the frozen encoder whose features the model was trained on (``FrozenEncoder``);
    its output is rounded to ``feature_dtype`` (how the feature cache stores it) before the head,
    as in training and in ``sigmoidf1-predict``.
    """

    def __init__(
        self,
        model: MultilabelClassifier,
        spec: InputSpec,
        encoder: nn.Module | None = None,
        feature_dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.feature_dtype = feature_dtype
        self.backbone = model.backbone
        self.head = model.head
        self.register_buffer("thresholds", model.thresholds.detach().clone())
        self.names = spec.names
        self.as_dict = spec.as_dict
        self.eval()

    def forward(self, *inputs: Tensor) -> tuple[Tensor, Tensor]:
        batch = dict(zip(self.names, inputs, strict=True)) if self.as_dict else inputs[0]
        if self.encoder is not None:  # = FrozenEncoder.encode, then the cached split's items
            batch = self.encoder(batch).float().to(self.feature_dtype).float()
        logits = self.head(self.backbone(batch)).float()  # = MultilabelClassifier.forward
        return torch.sigmoid(logits), shift_to_threshold(logits, self.thresholds) >= 0.5

    def backbone_names(self) -> str:
        """The class names of the exported network's parts, for messages."""
        parts = [self.encoder, self.backbone] if self.encoder is not None else [self.backbone]
        return " + ".join(type(part).__name__ for part in parts)


@contextmanager
def quiet_exporter() -> Any:
    """Silence the exporters' log lines: the ONNX optimiser's (constant folding, deduplication),
    and torch.export's warnings with graph dumps before the errors that ``traced`` reports in one
    line."""
    names = ("onnxscript", "onnx_ir", "torch.fx", "torch._dynamo", "torch.export", "torch._export")
    loggers = [logging.getLogger(name) for name in names]
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


# Where torch.export's messages point at the user's code: `File "x.py", line 12, in forward` then
# the line itself.
_USER_CODE = re.compile(r'File "([^"]+)", line (\d+), in \w+\n[ \t]+(\S[^\n]*)')


def export_failure(error: Exception, backbone: str, fmt: str) -> UserError:
    """One line for a network ``torch.export`` could not trace: the backbone, the reason (with the
    line of the user's code when torch names it) and what to change."""
    text = str(error)
    where = ""
    if found := _USER_CODE.findall(text):
        file, line, code = found[-1]
        where = f" ({Path(file).name}:{line}: `{code.strip()}`)"
    if "data-dependent" in text:
        reason = "its forward takes a Python decision on a tensor's value"
        change = "compute both results and pick with torch.where, or use torch.cond"
    elif "Constraints violated" in text:
        found_dims = re.search(r"Constraints violated \(([^)]*)\)", text)
        dims = found_dims.group(1) if found_dims else "batch"
        if "specialized it to be a constant" in text:
            reason = f"its forward fixes a size that varies ({dims}) to a constant"
            change = "take sizes from the inputs (x.shape[0], reshape(-1, ...)), not from constants"
        else:
            reason = f"its forward works for some values only of a size that varies ({dims})"
            change = "bound the size where the network does (e.g. data.max_length for tokens)"
    else:
        first = next((line.strip() for line in text.splitlines() if line.strip()), "")
        reason = f"{type(error).__name__}: {first}"
        change = "see torch.export's documentation of supported code"
    return UserError(
        f"cannot export {backbone} with torch.export (format={fmt}): {reason}{where}. Change the "
        f"forward ({change}); format=torchscript traces instead, which keeps only the path and "
        "the sizes of its example inputs"
    )


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
                try:
                    traced = torch.jit.trace(wrapper, example, check_trace=False)
                except RuntimeError as error:
                    first = next((x.strip() for x in str(error).splitlines() if x.strip()), "")
                    raise UserError(
                        f"cannot export {wrapper.backbone_names()} with torch.jit.trace "
                        f"(format=torchscript): {first}; try format=exported_program or onnx"
                    ) from error
                torch.jit.save(traced, str(path))
            return path
        # torch.export prints the partial graph of a failed trace to stderr before raising: the
        # error becomes one line instead (its traceback still reaches the log file)
        with sizes_of_one_not_special(), quiet_exporter(), redirect_stderr(io.StringIO()):
            try:
                program = torch.export.export(
                    wrapper, example, dynamic_shapes=(spec.dynamic_shapes(),)
                )
            except Exception as error:  # whatever torch.export raises for the user's network
                raise export_failure(error, wrapper.backbone_names(), fmt) from error
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


def frozen_encoder_network(frozen: FrozenEncoder, datamodule: Any) -> nn.Module:
    """The frozen encoder of a checkpoint's data config, built for the data's raw inputs (the
    checkpoint holds the head only)."""
    try:
        return datamodule.frozen_encoder_network()
    except DataError:  # not the encoder of the training features
        raise
    except (ImportError, OSError, ValueError, TypeError) as error:
        target = describe_factory(frozen.factory)["target"]
        raise UserError(
            f"cannot rebuild the frozen encoder {target} named by the checkpoint's "
            f"data.frozen_encoder, which the exported model includes (the checkpoint holds only "
            f"the head on its features): {error}"
        ) from error


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
    frozen = getattr(datamodule, "frozen_encoder", None)
    encoder = frozen_encoder_network(frozen, datamodule) if frozen is not None else None
    # a frozen encoder takes the data's own inputs (the stored preprocessing describes them)
    inputs = datamodule.backbone_inputs if encoder is not None else model.hparams.backbone_inputs
    spec = input_spec(inputs, preprocessing)
    network_limit = getattr(encoder if encoder is not None else model.backbone, "max_tokens", None)
    if spec.max_tokens and network_limit:  # e.g. a transformer's position embeddings
        spec = dataclasses.replace(spec, max_tokens=min(spec.max_tokens, int(network_limit)))
    wrapper = ProbabilitiesAndDecisions(
        model, spec, encoder, frozen.dtype if frozen is not None else torch.float32
    )

    log.info(
        f"Exporting {cfg.ckpt_path} to {fmt} ({wrapper.backbone_names()}"
        + (", the frozen encoder included" if encoder is not None else "")
        + f"): inputs {', '.join(spec.names)}"
    )
    with atomic_path(output) as partial:
        export_model(wrapper, spec, fmt, partial, cfg.get("opset_version"))
        check = None
        if cfg.check:
            batches = [spec.random(n, seed=n) for n in CHECK_BATCH_SIZES]
            try:
                check = compare(wrapper, load_exported(partial, fmt), batches)
            except Exception as error:  # the written file fails on inputs of another size
                first = next((x.strip() for x in str(error).splitlines() if x.strip()), "")
                raise UserError(
                    f"the exported {wrapper.backbone_names()} fails on inputs other than the "
                    f"traced ones (batch sizes {', '.join(map(str, CHECK_BATCH_SIZES))}): "
                    f"{type(error).__name__}: {first}; nothing was written. Take sizes from the "
                    "inputs in the forward (x.shape[0], reshape(-1, ...)), or use "
                    "format=exported_program, which says where"
                ) from error
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
        # the frozen encoder inside the exported model (null: the model takes what the head takes)
        "frozen_encoder": describe_factory(frozen.factory) if encoder is not None else None,
        "preprocessing": preprocessing,
        "check": check,
    }
    atomic_write_text(metadata_path(output), json.dumps(metadata, indent=1) + "\n")
    log.info(f"Wrote {output} and {metadata_path(output).name}")
    log.info(f"Run directory: {cfg.paths.output_dir}")
    return output
