"""``sigmoidf1-export``: the exported file reproduces the PyTorch probabilities and decisions.

Two levels: the wrapping and export functions on small untrained models of each backbone (MLP, CNN,
embedding bag) in each format, and the real CLI on trained checkpoints (Yeast, and a text model),
checked with onnxruntime on the data's own test inputs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from sigmoidf1.checkpoints import load_trained
from sigmoidf1.exporting import (
    FORMATS,
    InputSpec,
    ProbabilitiesAndDecisions,
    compare,
    export_model,
    input_spec,
    load_exported,
    metadata_path,
)
from sigmoidf1.module import MultilabelClassifier
from sigmoidf1.utils.errors import UserError
from tests.conftest import QUIET, REPO_ROOT, once_per_session, run_cli, train_text_model
from tests.data_fixtures import (
    image_rows,
    text_rows,
    tiny_bert_fixture,  # noqa: F401  (fixture `tiny_bert`)
    write_text_file,
)

TOLERANCE = 1e-5  # largest |probability difference| accepted (float32 kernels differ in order)
NUM_LABELS = 5


def needs_runtime(fmt: str) -> None:
    if fmt == "onnx":
        for module in ("onnx", "onnxscript", "onnxruntime"):
            pytest.importorskip(module, reason="format=onnx needs sigmoidf1[export]")


# --- the functions, on untrained models of each backbone ------------------------------------------
BACKBONES = {
    "mlp": (
        {"_target_": "sigmoidf1.backbones.MLP", "_partial_": True, "hidden_sizes": [16]},
        {"in_features": 10},
        {},
    ),
    "cnn": (
        {"_target_": "sigmoidf1.backbones.CNN", "_partial_": True, "channels": [8, 16]},
        {"in_channels": 3},
        {"image": {"image_size": 24, "channels": 3}},
    ),
    "embedding_bag": (
        {"_target_": "sigmoidf1.backbones.EmbeddingBag", "_partial_": True, "embed_dim": 8},
        {"vocab_size": 40, "padding_idx": 0},
        {},
    ),
}


def small_classifier(backbone: str) -> tuple[MultilabelClassifier, InputSpec]:
    """An untrained classifier with per-label thresholds that differ (0.2 .. 0.8)."""
    config, inputs, preprocessing = BACKBONES[backbone]
    torch.manual_seed(0)
    model = MultilabelClassifier(
        backbone=config,
        label_names=[f"l{i}" for i in range(NUM_LABELS)],
        backbone_inputs=inputs,
    )
    with torch.no_grad():
        model.thresholds.copy_(torch.linspace(0.2, 0.8, NUM_LABELS))
        model.head.weight.mul_(20)  # spread the probabilities over (0, 1), across the thresholds
    return model.eval(), input_spec(inputs, preprocessing)


def test_input_spec_follows_the_data_facts():
    assert input_spec({"in_features": 103}, {}).describe() == [
        {"name": "features", "dtype": "float32", "shape": ["batch", 103]}
    ]
    image = input_spec({"in_channels": 1}, {"image": {"image_size": 56}})
    assert image.shapes == (("batch", 1, 56, 56),)
    text = input_spec({"vocab_size": 40, "padding_idx": 0}, {})
    assert text.names == ("input_ids", "attention_mask") and text.high == 40
    ids, mask = text.random(4, tokens=5)
    assert ids.shape == mask.shape == (4, 5) and ids.max() < 40 and bool(mask[:, 0].all())
    with pytest.raises(UserError, match="image size"):
        input_spec({"in_channels": 3}, {})
    with pytest.raises(UserError, match="in_features .tabular., in_channels"):
        input_spec({"something": 1}, {})


def test_wrapper_matches_the_classifier():
    """Probabilities are sigmoid(logits); decisions are predict_proba(logits) >= 0.5, the rule of
    the test metrics and of sigmoidf1-predict, i.e. probability >= the label's threshold."""
    model, spec = small_classifier("mlp")
    (features,) = spec.random(64)
    with torch.no_grad():
        probabilities, decisions = ProbabilitiesAndDecisions(model, spec)(features)
        logits = model(features)
    torch.testing.assert_close(probabilities, torch.sigmoid(logits))
    assert torch.equal(decisions, model.predict_proba(logits) >= 0.5)
    thresholds = model.thresholds
    clear = (probabilities - thresholds).abs() > 1e-6
    assert torch.equal(decisions[clear], (probabilities >= thresholds)[clear])
    assert 0 < decisions.sum() < decisions.numel()
    # the thresholds matter: the same probabilities at 0.5 decide differently
    assert not torch.equal(decisions, probabilities >= 0.5)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_exported_model_reproduces_pytorch(backbone, fmt, tmp_path):
    """Each backbone in each format: the file, run by onnxruntime or torch, gives the PyTorch
    probabilities within 1e-5 and the same decisions, at batch sizes other than the traced one
    (and, for text, other numbers of tokens)."""
    needs_runtime(fmt)
    model, spec = small_classifier(backbone)
    wrapper = ProbabilitiesAndDecisions(model, spec)
    path = export_model(wrapper, spec, fmt, tmp_path / f"model{FORMATS[fmt]}")
    batches = [spec.random(1, seed=1, tokens=3), spec.random(7, seed=2, tokens=20)]
    check = compare(wrapper, load_exported(path, fmt), batches)
    assert check["rows"] == 8
    assert check["max_abs_difference"] <= TOLERANCE
    assert check["decisions_identical"]


# --- the CLI on trained checkpoints ---------------------------------------------------------------
@pytest.fixture(scope="session")
def yeast_checkpoint(tmp_path_factory) -> Path:
    """A Yeast model (2 epochs) whose thresholds were then set to 0.05 .. 0.95 label by label."""

    def build(root: Path) -> None:
        run_cli("train", *QUIET, "trainer.max_epochs=2", f"hydra.run.dir={root / 'run'}", cwd=root)
        checkpoint = torch.load(root / "run" / "checkpoints" / "last.ckpt", weights_only=True)
        checkpoint["state_dict"]["thresholds"] = torch.linspace(0.05, 0.95, 14)
        torch.save(checkpoint, root / "tuned.ckpt")

    return once_per_session(tmp_path_factory, "export_yeast", build) / "tuned.ckpt"


def export_cli(workdir: Path, checkpoint: Path, *overrides: str):
    return run_cli("export", f"ckpt_path={checkpoint}", *overrides, cwd=workdir)


def reference(model: MultilabelClassifier, inputs) -> tuple[np.ndarray, np.ndarray]:
    """What sigmoidf1-predict computes: probabilities and thresholded decisions."""
    with torch.no_grad():
        logits = model(inputs)
    return torch.sigmoid(logits).numpy(), (model.predict_proba(logits) >= 0.5).numpy()


@pytest.mark.slow
def test_yeast_onnx_reproduces_the_checkpoint_on_the_test_split(yeast_checkpoint, workdir):
    needs_runtime("onnx")
    import onnxruntime

    checkpoint = workdir / "model.ckpt"
    checkpoint.write_bytes(yeast_checkpoint.read_bytes())
    result = export_cli(workdir, checkpoint)  # format=onnx by default
    output = checkpoint.with_suffix(".onnx")  # next to the checkpoint
    log = result.stdout + result.stderr
    assert f"Wrote {output}" in log and "decisions identical" in log

    metadata = json.loads(metadata_path(output).read_text())
    model, datamodule = load_trained(checkpoint)
    assert metadata["format"] == "onnx" and metadata["model"] == "model.onnx"
    assert metadata["label_names"] == model.label_names
    assert metadata["thresholds"] == pytest.approx(torch.linspace(0.05, 0.95, 14).tolist())
    assert metadata["inputs"] == [{"name": "features", "dtype": "float32", "shape": ["batch", 103]}]
    assert [o["name"] for o in metadata["outputs"]] == ["probabilities", "decisions"]
    assert metadata["preprocessing"] == datamodule.state_dict()  # mean, std, feature names
    assert metadata["check"]["decisions_identical"]
    assert metadata["check"]["max_abs_difference"] <= TOLERANCE

    datamodule.setup("test")
    features = datamodule.test_set.tensors[0]  # standardised with the stored statistics
    session = onnxruntime.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    probabilities, decisions = session.run(None, {"features": features.numpy()})
    expected_probabilities, expected_decisions = reference(model, features)
    difference = float(np.abs(probabilities - expected_probabilities).max())
    print(f"Yeast test split ({len(features)} rows): max abs difference {difference:.3g}")
    assert difference <= TOLERANCE
    assert np.array_equal(decisions, expected_decisions)
    assert 0 < decisions.sum() < decisions.size
    # batch sizes other than the whole split, one row included
    for rows in (features[:1], features[1:6]):
        assert np.array_equal(
            session.run(None, {"features": rows.numpy()})[1], reference(model, rows)[1]
        )


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["torchscript", "exported_program"])
def test_yeast_round_trips_in_torch_formats(fmt, yeast_checkpoint, workdir):
    output = workdir / "exported" / f"yeast{FORMATS[fmt]}"
    export_cli(workdir, yeast_checkpoint, f"format={fmt}", f"output={output}")
    assert json.loads(metadata_path(output).read_text())["format"] == fmt
    model, datamodule = load_trained(yeast_checkpoint)
    datamodule.setup("test")
    features = datamodule.test_set.tensors[0]
    probabilities, decisions = load_exported(output, fmt)(features)
    expected_probabilities, expected_decisions = reference(model, features)
    assert float(np.abs(probabilities - expected_probabilities).max()) <= TOLERANCE
    assert np.array_equal(decisions, expected_decisions)


@pytest.mark.slow
def test_text_model_onnx_reproduces_predict_inputs(workdir):
    """An embedding-bag model on csv_text: onnxruntime on the padded token batches that
    predict_dataset and predict_loader build from a file of new texts."""
    needs_runtime("onnx")
    train = write_text_file(workdir / "texts.csv", text_rows(80))
    checkpoint = train_text_model(workdir, train)
    export_cli(workdir, checkpoint, "format=onnx")
    output = checkpoint.with_suffix(".onnx")
    metadata = json.loads(metadata_path(output).read_text())
    assert [i["name"] for i in metadata["inputs"]] == ["input_ids", "attention_mask"]
    assert metadata["inputs"][0]["shape"] == ["batch", "tokens"]
    assert metadata["preprocessing"]["text_encoder"]  # the vocabulary, to tokenise new texts

    new_texts = write_text_file(workdir / "new.jsonl", text_rows(23, seed=5))
    model, datamodule = load_trained(checkpoint)
    loader = datamodule.predict_loader(datamodule.predict_dataset(str(new_texts)), batch_size=5)
    run = load_exported(output, "onnx")
    lengths, largest = set(), 0.0
    for batch in loader:
        ids, mask = batch["input_ids"], batch["attention_mask"]
        lengths.add(ids.shape[1])
        probabilities, decisions = run(ids, mask)
        expected_probabilities, expected_decisions = reference(model, batch)
        largest = max(largest, float(np.abs(probabilities - expected_probabilities).max()))
        assert np.array_equal(decisions, expected_decisions)
    print(f"text model ({len(loader.dataset)} texts): max abs difference {largest:.3g}")
    assert largest <= TOLERANCE
    assert len(lengths) > 1  # batches of different token counts went through one file


def test_export_refuses_an_unknown_format_and_a_missing_checkpoint(workdir, cli):
    (workdir / "model.ckpt").touch()  # the options are checked before the file is read
    result = cli("export", f"ckpt_path={workdir / 'model.ckpt'}", "format=tflite")
    assert result.returncode == 2
    assert "format must be one of onnx, torchscript, exported_program; got 'tflite'" in (
        result.stderr
    )
    result = cli(
        "export", f"ckpt_path={workdir / 'model.ckpt'}", f"output={workdir / 'model.ckpt'}"
    )
    assert result.returncode == 2 and "is the checkpoint itself" in result.stderr
    missing = workdir / "nope.ckpt"
    result = cli("export", f"ckpt_path={missing}")
    assert result.returncode == 1 and f"ckpt_path not found: {missing}" in result.stderr


# --- frozen encoders: the encoder is exported with the head -------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "exported_program"])
def test_frozen_encoder_run_exports_encoder_and_head(fmt, tiny_bert, tmp_path_factory, workdir):
    """A csv_text run on a frozen (tiny) BERT's features: the exported model takes token ids, not
    the head's features, and reproduces sigmoidf1-predict, which encodes new texts then applies
    the head."""
    needs_runtime(fmt)
    checkpoint = frozen_encoder_checkpoint(tmp_path_factory, tiny_bert)
    output = workdir / f"model{FORMATS[fmt]}"
    result = export_cli(workdir, checkpoint, f"format={fmt}", f"output={output}")
    assert "the frozen encoder included" in result.stdout + result.stderr
    metadata = json.loads(metadata_path(output).read_text())
    assert [i["name"] for i in metadata["inputs"]] == ["input_ids", "attention_mask"]
    # the shorter of data.max_length (256, the tokenizer's cut) and the BERT's 128 positions
    assert metadata["inputs"][0]["max_tokens"] == 128
    assert metadata["frozen_encoder"]["target"].endswith(".TransformerBackbone")
    assert metadata["preprocessing"]["text_encoder"]["kind"] == "pretrained"

    new_texts = write_text_file(workdir / "new.jsonl", text_rows(23, seed=5))
    model, datamodule = load_trained(checkpoint)
    dataset = datamodule.predict_dataset(str(new_texts))
    # what sigmoidf1-predict computes: the texts encoded by the frozen encoder, then the head
    expected = [reference(model, features) for features in datamodule.predict_loader(dataset, 5)]
    raw = torch.utils.data.DataLoader(dataset, batch_size=5, collate_fn=datamodule.collate_fn)
    run = load_exported(output, fmt)
    largest = 0.0
    for batch, (expected_probabilities, expected_decisions) in zip(raw, expected, strict=True):
        probabilities, decisions = run(batch["input_ids"], batch["attention_mask"])
        largest = max(largest, float(np.abs(probabilities - expected_probabilities).max()))
        assert np.array_equal(decisions, expected_decisions)
    print(f"frozen tiny BERT + head ({fmt}): max abs difference {largest:.3g}")
    assert largest <= TOLERANCE


def frozen_encoder_checkpoint(tmp_path_factory, bert: Path) -> Path:
    def build(root: Path) -> None:
        data = write_text_file(root / "texts.jsonl", text_rows(48))
        run_cli(
            "train",
            *QUIET,
            "data=csv_text",
            f"data.path={data}",
            "data.batch_size=8",
            "trainer.max_epochs=1",
            "encoder=frozen",
            f"data.tokenizer={bert}",
            "+data.frozen_encoder.encoder={_target_: sigmoidf1.backbones.TransformerBackbone,"
            f" _partial_: true, model_name_or_path: '{bert}', pooling: mean, freeze: true}}",
            f"hydra.run.dir={root / 'run'}",
            cwd=root,
        )

    root = once_per_session(tmp_path_factory, "export_frozen_encoder", build)
    return root / "run" / "checkpoints" / "last.ckpt"


# --- a backbone torch.export cannot trace: one line, what to change ----------------------------
# the CLI processes import tests.helpers.UnexportableBackbone
HELPERS_ENV = {"PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "src"), str(REPO_ROOT)])}
# the tests' own backbones and encoders are a package the user trusts, as a cloner's would be
TRUST_HELPERS = "trusted_targets=[tests.helpers]"


def unexportable_checkpoint(root: Path, fault: str) -> Path:
    run_cli(
        "train",
        *QUIET,
        "model.backbone._target_=tests.helpers.UnexportableBackbone",
        f"+model.backbone.fault={fault}",
        "~model.backbone.hidden_sizes",
        "~model.backbone.dropout",
        "~model.backbone.layer_norm",
        "trainer.max_epochs=1",
        "test=false",
        f"hydra.run.dir={root / fault}",
        cwd=root,
        env=HELPERS_ENV,
    )
    return root / fault / "checkpoints" / "last.ckpt"


@pytest.mark.slow
def test_unexportable_backbone_gets_one_line_and_what_to_change(workdir):
    branch = unexportable_checkpoint(workdir, "branch")
    size = unexportable_checkpoint(workdir, "size")
    cases = [
        (branch, "exported_program", "its forward takes a Python decision on a tensor's value"),
        (size, "exported_program", "its forward fixes a size that varies (batch) to a constant"),
        (size, "torchscript", "fails on inputs other than the traced ones"),
    ]
    for checkpoint, fmt, reason in cases:
        overrides = (f"ckpt_path={checkpoint}", f"format={fmt}", TRUST_HELPERS)
        result = run_cli("export", *overrides, cwd=workdir, check=False, env=HELPERS_ENV)
        errors = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 1, result.stderr
        assert len(errors) == 1 and errors[0].startswith("error: "), result.stderr
        assert "UnexportableBackbone" in errors[0] and reason in errors[0], errors[0]
        assert "Traceback" not in result.stdout + result.stderr
        assert not checkpoint.with_suffix(FORMATS[fmt]).exists()  # nothing half-written
    assert "helpers.py" in errors[0] or "format=exported_program" in errors[0]


def train_frozen_image_run(root: Path, data: Path, encoder: str) -> Path:
    run_cli(
        "train",
        *QUIET,
        "data=csv_image",
        f"data.path={data}",
        "data.image_size=16",
        "data.batch_size=8",
        "data.num_workers=0",
        "trainer.max_epochs=1",
        "encoder=frozen",
        f"+data.frozen_encoder.encoder={{{encoder}, _partial_: true}}",
        f"hydra.run.dir={root}",
        cwd=root.parent,
        env=HELPERS_ENV,
    )
    return root / "checkpoints" / "last.ckpt"


@pytest.mark.slow
def test_frozen_image_encoder_run_exports_images_in(workdir):
    """csv_image on a frozen image encoder's features: the exported model takes images at the
    training size and gives what sigmoidf1-predict gives for the same image files. An encoder
    that is not the one of training (random weights, drawn anew at each build) is refused."""
    needs_runtime("onnx")
    data = write_text_file(workdir / "images.csv", image_rows(workdir, 30))
    checkpoint = train_frozen_image_run(
        workdir / "seeded", data, "_target_: tests.helpers.SeededEncoder"
    )
    run_cli("export", f"ckpt_path={checkpoint}", "format=onnx", TRUST_HELPERS, cwd=workdir,
            env=HELPERS_ENV)  # fmt: skip
    output = checkpoint.with_suffix(".onnx")
    metadata = json.loads(metadata_path(output).read_text())
    assert metadata["inputs"] == [
        {"name": "images", "dtype": "float32", "shape": ["batch", 3, 16, 16]}
    ]
    assert metadata["frozen_encoder"]["target"] == "tests.helpers.SeededEncoder"

    model, datamodule = load_trained(checkpoint, trusted_targets=["tests.helpers"])
    dataset = datamodule.predict_dataset(str(data))  # the image files, preprocessed
    expected = [reference(model, features) for features in datamodule.predict_loader(dataset, 7)]
    run = load_exported(output, "onnx")
    images = torch.utils.data.DataLoader(dataset, batch_size=7)
    for batch, (expected_probabilities, expected_decisions) in zip(images, expected, strict=True):
        probabilities, decisions = run(batch)
        assert float(np.abs(probabilities - expected_probabilities).max()) <= TOLERANCE
        assert np.array_equal(decisions, expected_decisions)

    random = train_frozen_image_run(
        workdir / "random", data, "_target_: sigmoidf1.backbones.CNN, channels: [8, 16]"
    )
    overrides = (f"ckpt_path={random}", "format=onnx", TRUST_HELPERS)
    result = run_cli("export", *overrides, cwd=workdir, check=False, env=HELPERS_ENV)
    assert result.returncode == 1
    assert "is not the one the model was trained on" in result.stderr
    assert not random.with_suffix(".onnx").exists()
