"""Architecture-aware adapters: each family's LoRA and IA3 targets and head, on tiny models.

Every family is built at the same tiny size (hidden 32, 2 layers, 2 heads, feed-forward 64,
3 classes) so that the expected trainable counts can be derived by hand:

- LoRA r=8 on a d_in -> d_out projection trains 8 * (d_in + d_out) weights: 512 for 32 -> 32.
- IA3 trains one vector per target: d_out for attention (key, value), d_in for feed-forward
  outputs (scaled on their input): 32 for key/value, 64 for a 64 -> 32 feed-forward output.
- Heads: classifier Linear(32, 3) = 99; a dense 32 -> 32 (pooler, pre_classifier, RoBERTa's
  classifier.dense) = 1,056; decoders' score Linear(32, 3, bias=False) = 96.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers as tf

from peftbench.config import ModelConfig, load_config
from peftbench.errors import PeftbenchError
from peftbench.methods import MethodContext, get_method
from peftbench.methods.targets import FAMILIES, describe_adapted
from peftbench.models import (
    ARCHITECTURES_DIR,
    build_random_model,
    count_parameters,
    load_architecture,
)
from peftbench.plan import describe_plan

H, FFN, LABELS = 32, 64, 3
LORA_32 = 8 * (32 + 32)  # one rank-8 LoRA pair on a 32 -> 32 projection
CLASSIFIER = H * LABELS + LABELS  # 99
DENSE = H * H + H  # 1,056
SCORE = H * LABELS  # 96, no bias
ENCODER = {"hidden_size": H, "num_hidden_layers": 2, "num_attention_heads": 2}
ENCODER |= {"intermediate_size": FFN, "vocab_size": 100, "max_position_embeddings": 64}
DECODER = {**ENCODER, "num_key_value_heads": 2, "pad_token_id": None}

# family -> (config, LoRA trainable, IA3 trainable), derived by hand (module docstring).
CASES = {
    # query + value per layer; classifier + pooler.  IA3: key, value (32 each), attention
    # output.dense (32 -> 32, scaled as feed-forward: 32) and output.dense (64 -> 32: 64).
    "bert": (tf.BertConfig(**ENCODER), 2 * 2 * LORA_32 + CLASSIFIER + DENSE, 2 * 160 + 1155),
    "roberta": (tf.RobertaConfig(**ENCODER), 2 * 2 * LORA_32 + 1155, 2 * 160 + 1155),
    "xlm-roberta": (tf.XLMRobertaConfig(**ENCODER), 2 * 2 * LORA_32 + 1155, 2 * 160 + 1155),
    "electra": (
        tf.ElectraConfig(embedding_size=H, **ENCODER),
        2 * 2 * LORA_32 + 1155,
        2 * 160 + 1155,
    ),
    # ALBERT shares one layer between all its layers: one query, one value.
    "albert": (
        tf.AlbertConfig(embedding_size=16, **ENCODER),
        2 * LORA_32 + CLASSIFIER + DENSE,
        (32 + 32 + 64) + 1155,
    ),
    # q_lin + v_lin; pre_classifier + classifier. IA3: k_lin, v_lin, lin2 (64 -> 32).
    "distilbert": (
        tf.DistilBertConfig(
            dim=H, n_layers=2, n_heads=2, hidden_dim=FFN, vocab_size=100, max_position_embeddings=64
        ),
        2 * 2 * LORA_32 + DENSE + CLASSIFIER,
        2 * 128 + 1155,
    ),
    "deberta-v2": (tf.DebertaV2Config(**ENCODER), 2 * 2 * LORA_32 + 1155, 2 * 160 + 1155),
    # Wqkv (32 -> 96): 8 * (32 + 96) = 1,024 per layer; head (dense 1,024 without bias + norm
    # 32 without bias) + classifier 99. IA3: Wqkv (96) + mlp.Wo (64 -> 32: 64).
    "modernbert": (
        tf.ModernBertConfig(
            **ENCODER,
            global_attn_every_n_layers=1,
            pad_token_id=0,
            eos_token_id=1,
            bos_token_id=2,
            cls_token_id=2,
            sep_token_id=1,
        ),
        2 * 1024 + 1155,
        2 * 160 + 1155,
    ),
    # c_attn (32 -> 96): 1,024 per layer; score. IA3: c_attn (96) + mlp.c_proj (128 -> 32: 128).
    "gpt2": (
        tf.GPT2Config(
            n_embd=H,
            n_layer=2,
            n_head=2,
            vocab_size=100,
            n_positions=64,
            bos_token_id=0,
            eos_token_id=0,
        ),
        2 * 1024 + SCORE,
        2 * (96 + 128) + SCORE,
    ),
    # q_proj + v_proj; score. IA3: k_proj, v_proj (32 each), down_proj (64 -> 32: 64).
    "llama": (tf.LlamaConfig(**DECODER, eos_token_id=2), 2 * 2 * LORA_32 + SCORE, 2 * 128 + SCORE),
    "qwen2": (tf.Qwen2Config(**DECODER, eos_token_id=2), 2 * 2 * LORA_32 + SCORE, 2 * 128 + SCORE),
    "mistral": (
        tf.MistralConfig(**DECODER, eos_token_id=2),
        2 * 2 * LORA_32 + SCORE,
        2 * 128 + SCORE,
    ),
    "gemma": (
        tf.GemmaConfig(**DECODER, head_dim=16, eos_token_id=2),
        2 * 2 * LORA_32 + SCORE,
        2 * 128 + SCORE,
    ),
}


def test_every_family_has_a_case() -> None:
    assert set(CASES) == set(FAMILIES)


def _tiny(tmp_path: Path, config) -> torch.nn.Module:
    """The family's tiny model, through peftbench's own architecture loading (pad token)."""
    config.save_pretrained(tmp_path / "arch")
    architecture = load_architecture(ModelConfig(name=str(tmp_path / "arch"), init="random"), 3)
    torch.manual_seed(0)
    return build_random_model(architecture, "eager")


def _train_steps(model: torch.nn.Module, steps: int = 3) -> list[float]:
    """A few AdamW steps on a padded random batch; returns the losses."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(3, 100, (4, 12), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    pad = model.config.pad_token_id if model.config.pad_token_id is not None else 0
    input_ids[0, 8:], attention_mask[0, 8:] = pad, 0  # one padded row (last-token pooling)
    labels = torch.tensor([0, 1, 2, 1])
    losses = []
    for _ in range(steps):
        output = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
        output.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(output.loss.item())
    return losses


@pytest.mark.parametrize("family", sorted(CASES))
@pytest.mark.parametrize("method_name", ["lora", "ia3"])
def test_lora_and_ia3_train_every_family_with_hand_derived_counts(
    tmp_path: Path, family: str, method_name: str
) -> None:
    config, lora_count, ia3_count = CASES[family]
    model = _tiny(tmp_path, config.__class__.from_dict(config.to_dict()))
    assert model.config.model_type == family
    assert model.config.pad_token_id is not None  # decoders get one (their end-of-text id)
    method = get_method(method_name)
    adapted = method.apply(model, method.params_class(), MethodContext(total_steps=3))
    trainable, _ = count_parameters(adapted)
    assert trainable == (lora_count if method_name == "lora" else ia3_count)
    before = {n: p.detach().clone() for n, p in adapted.named_parameters() if p.requires_grad}
    losses = _train_steps(adapted)
    assert all(torch.isfinite(torch.tensor(losses)))
    changed = [
        n for n, p in adapted.named_parameters() if p.requires_grad and not p.equal(before[n])
    ]
    assert any("lora_" in n or "ia3_" in n for n in changed)  # the adapter learns
    assert any("modules_to_save" in n for n in changed)  # and so does the head


def test_decoders_pool_the_last_real_token_of_right_padded_rows(tmp_path: Path) -> None:
    config = CASES["llama"][0]
    model = _tiny(tmp_path, config.__class__.from_dict(config.to_dict())).eval()
    pad = model.config.pad_token_id
    ids = torch.tensor([[5, 6, 7, 8]])
    padded = torch.tensor([[5, 6, 7, 8, pad, pad]])
    with torch.no_grad():
        alone = model(input_ids=ids).logits
        batch = model(input_ids=padded, attention_mask=torch.tensor([[1, 1, 1, 1, 0, 0]])).logits
    torch.testing.assert_close(alone, batch, rtol=1e-4, atol=1e-5)


def test_all_linear_targets_every_linear_layer_outside_the_head(tmp_path: Path) -> None:
    model = _tiny(tmp_path, tf.BertConfig(**ENCODER))
    method = get_method("lora")
    params = method.params_class(target_modules="all-linear")
    adapted = method.apply(model, params, MethodContext(total_steps=1))
    # Per layer: query, key, value, attention.output.dense (32 -> 32: 512 each), intermediate
    # (32 -> 64) and output (64 -> 32): 8 * 96 = 768 each. Head as before; pooler not adapted.
    per_layer = 4 * LORA_32 + 2 * 768
    assert count_parameters(adapted)[0] == 2 * per_layer + CLASSIFIER + DENSE
    summary = describe_adapted(adapted)
    assert summary.startswith("adapters on query x2, key x2, value x2, dense x6 (12 modules)")
    assert "trained in full: pooler, classifier" in summary


def test_an_unknown_architecture_lists_its_linear_modules(tmp_path: Path) -> None:
    model = _tiny(tmp_path, tf.MPNetConfig(**ENCODER))
    method = get_method("lora")
    with pytest.raises(PeftbenchError) as error:
        method.apply(model, method.params_class(), MethodContext(total_steps=1))
    message = str(error.value)
    assert "no default target modules for architecture 'mpnet'" in message
    assert "q x2, k x2, v x2, o x2" in message and "target_modules" in message
    named = method.apply(model, method.params_class(target_modules=["q", "v"]), MethodContext(1))
    assert describe_adapted(named).startswith("adapters on q x2, v x2")


def test_every_shipped_architecture_plans_offline(tmp_path: Path) -> None:
    # Hub ids, stored as <owner>/<name>.json
    shipped = [
        p.relative_to(ARCHITECTURES_DIR).with_suffix("").as_posix()
        for p in ARCHITECTURES_DIR.rglob("*.json")
    ]
    assert {"bert-base-uncased", "Qwen/Qwen2.5-0.5B", "microsoft/deberta-v3-base"} <= set(shipped)
    families = set()
    for name in shipped:
        families.add(load_architecture(ModelConfig(name=name, init="random"), 2).model_type)
    assert families == set(FAMILIES)
    config_file = tmp_path / "qwen.yaml"
    config_file.write_text(
        "name: qwen\nmodel: {name: Qwen/Qwen2.5-0.5B, init: random}\n"
        "data: {dataset: x, num_labels: 4}\nmethods: {lora: {}, ia3: {}}\n"
    )
    plan = describe_plan(load_config(config_file))
    # Qwen2.5-0.5B: 24 layers; q_proj 896 -> 896 and v_proj 896 -> 128 (2 KV heads of 64).
    lora = 24 * (8 * (896 + 896) + 8 * (896 + 128)) + 896 * 4
    assert f"| lora | lora | 0.0005 | {lora:,} |" in plan
    assert "- lora: adapters on q_proj x24, v_proj x24 (48 modules); trained in full: score" in plan
    assert "- ia3: adapters on k_proj x24, v_proj x24, down_proj x24 (72 modules)" in plan


@pytest.mark.parametrize("method_name", ["vera", "loha", "lokr", "adalora", "dora"])
def test_the_other_adapters_find_a_decoders_projections(tmp_path: Path, method_name: str) -> None:
    config = CASES["qwen2"][0]
    model = _tiny(tmp_path, config.__class__.from_dict(config.to_dict()))
    method = get_method(method_name)
    adapted = method.apply(model, method.params_class(), MethodContext(total_steps=10))
    summary = describe_adapted(adapted)
    assert summary.startswith("adapters on q_proj x2, v_proj x2 (4 modules)"), summary
    assert summary.endswith("trained in full: score")
