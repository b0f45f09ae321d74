"""The server's model side on every kind of data: tabular (test_serve.py), text with a word
vocabulary, text with a Hugging Face tokenizer, text through a frozen encoder, and images.

A batch of requests of different lengths goes through the model together (``ConcatDataset`` of the
requests, padded per batch by the DataModule's collate function); each row must get the scores it
gets when sent alone, and the labels ``sigmoidf1-predict`` writes for it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import QUIET, run_cli
from tests.data_fixtures import (
    image_rows,
    text_rows,
    tiny_bert_fixture,  # noqa: F401  (fixture `tiny_bert`)
    write_text_file,
)

pytest.importorskip("litserve")

from sigmoidf1.serving import ClassifierAPI, PredictRequest  # noqa: E402

pytestmark = pytest.mark.slow

TEXTS = [
    "sports",
    "politics science sportsword the a filler3 music",
    "musicword",
    "science the a politicsword politics",
    "a",
]


def train(root: Path, *overrides: str) -> Path:
    run_cli(
        "train",
        *QUIET,
        "trainer.max_epochs=1",
        "data.batch_size=8",
        f"hydra.run.dir={root / 'run'}",
        *overrides,
        cwd=root,
    )
    return root / "run" / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module", params=["words", "tokenizer", "frozen_encoder", "images"])
def kind(request, tmp_path_factory) -> tuple[Path, list[dict]]:
    """``(checkpoint, rows to predict)`` of a small model of each kind."""
    root = tmp_path_factory.mktemp(request.param)
    if request.param == "images":
        data = write_text_file(root / "images.csv", image_rows(root, 30))
        checkpoint = train(
            root, "data=csv_image", f"data.path={data}", "data.image_size=16", "data.num_workers=0"
        )
        return checkpoint, [{"image": str(root / "images" / f"{i}.png")} for i in range(5)]
    data = write_text_file(root / "texts.jsonl", text_rows(48))
    overrides = ["data=csv_text", f"data.path={data}"]
    if request.param != "words":
        bert = request.getfixturevalue("tiny_bert")
        if request.param == "tokenizer":
            overrides += ["model/backbone=transformer", f"model.backbone.model_name_or_path={bert}"]
        else:
            overrides += [
                "encoder=frozen",
                f"data.tokenizer={bert}",
                "+data.frozen_encoder.encoder={_target_: sigmoidf1.backbones.TransformerBackbone,"
                f" _partial_: true, model_name_or_path: '{bert}', pooling: mean, freeze: true}}",
            ]
    return train(root, *overrides), [{"text": text} for text in TEXTS]


def test_batched_requests_of_any_length_get_what_each_row_gets_alone(kind, tmp_path):
    checkpoint, rows = kind
    api = ClassifierAPI(str(checkpoint), batch_size=3, decimals=None, max_batch_size=4)
    api.setup("cpu")
    requests = [rows[:2], rows[2:3], rows[3:]]  # several rows per request, several requests
    batched = api.predict([api.decode_request(PredictRequest(inputs=r)) for r in requests])
    together = [prediction for answer in batched for prediction in answer]
    alone = [api.predict([api.decode_request(PredictRequest(inputs=[row]))])[0][0] for row in rows]
    assert len(together) == len(rows)
    for joined, single in zip(together, alone, strict=True):
        assert joined["labels"] == single["labels"]
        assert joined["scores"] == pytest.approx(single["scores"], abs=1e-5)

    inputs = tmp_path / "inputs.jsonl"
    inputs.write_text("".join(json.dumps(row) + "\n" for row in rows))
    output = tmp_path / "predictions.jsonl"
    run_cli(
        "predict",
        f"ckpt_path={checkpoint}",
        f"input={inputs}",
        f"output={output}",
        "extras.print_config=false",
        cwd=tmp_path,
    )
    predicted = [json.loads(line) for line in output.read_text().splitlines()]
    assert [p["labels"] for p in predicted] == [p["labels"] for p in together]
