"""trl_ext.qlora: 4-bit NF4 LoRA policies, and the reference TRL's DPOTrainer computes from them (CPU, tiny Llama)."""

from __future__ import annotations

import pytest
import torch

bnb = pytest.importorskip("bitsandbytes", reason="4-bit loading needs bitsandbytes (extra `quantization`)")

from tests.helpers import build_char_tokenizer  # noqa: E402
from datasets import Dataset  # noqa: E402
from peft import LoraConfig, PeftModel, get_peft_model  # noqa: E402
from trl import DPOConfig, DPOTrainer, ModelConfig  # noqa: E402
from trl.trainer.utils import use_adapter  # noqa: E402

from trl_ext.peft_utils import (  # noqa: E402
    add_frozen_reference_adapter,
    bnb_4bit_config,
    default_compute_dtype,
    is_4bit,
    load_policy,
    lora_config,
    trainable_parameter_names,
)

LINEAR_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
N_LAYERS = 2


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory):
    """A 2-layer, hidden-64 random LlamaForCausalLM with the char tokenizer (83 tokens), saved to disk.

    bitsandbytes quantises in blocks of 64 values; with hidden 64 / intermediate 128 / one KV head of 32 every weight
    holds a whole number of blocks. The embedding and LM head (vocab 83) are not quantised.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tok = build_char_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=N_LAYERS, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=256, pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id, tie_word_embeddings=False,
        initializer_range=0.2,  # larger than the 0.02 default so logits, and an adapter's effect on them, are not ~0
    )
    path = tmp_path_factory.mktemp("tiny_llama_causal")
    LlamaForCausalLM(config).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def sft_adapter_dir(tiny_llama_dir, tmp_path_factory):
    """A LoRA "SFT" adapter on the tiny base whose B matrices are non-zero, so it clearly differs from the base."""
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32)
    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    model = get_peft_model(base, config)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.5)
    path = tmp_path_factory.mktemp("sft_adapter")
    model.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tokenizer():
    return build_char_tokenizer()


@pytest.fixture(scope="session")
def preference_dataset():
    rows = [
        {"prompt": "Q: 2+2?", "chosen": " 4.", "rejected": " five!"},
        {"prompt": "Q: sky?", "chosen": " blue.", "rejected": " green"},
        {"prompt": "Q: 3*3?", "chosen": " 9.", "rejected": " ten"},
        {"prompt": "Q: hi?", "chosen": " hello.", "rejected": " no"},
    ]
    return Dataset.from_list(rows)


def qlora_args(path: str | None, **overrides) -> ModelConfig:
    kwargs = dict(model_name_or_path=path, load_in_4bit=True, use_peft=True, lora_r=4, lora_alpha=8, lora_dropout=0.0)
    kwargs.update(overrides)
    return ModelConfig(**kwargs)


def dpo_trainer(model, peft_config, tokenizer, dataset, tmp_path) -> DPOTrainer:
    args = DPOConfig(
        output_dir=str(tmp_path / "dpo"), bf16=False, report_to=[], max_steps=2, per_device_train_batch_size=2,
        learning_rate=5e-3, logging_steps=1, save_strategy="no", disable_tqdm=True, seed=0,
    )
    return DPOTrainer(model, args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config)


def collated_batch(trainer: DPOTrainer) -> dict[str, torch.Tensor]:
    """The first training batch as the trainer sees it: [chosen..., rejected...] rows, on the trainer's device."""
    rows = [trainer.train_dataset[i] for i in range(2)]
    return trainer._prepare_inputs(trainer.data_collator(rows))


def ref_logps(trainer: DPOTrainer, batch) -> torch.Tensor:
    """The reference log-probs exactly as DPOTrainer computes them (its own reference path)."""
    trainer.model.eval()
    chosen, rejected = trainer.compute_ref_log_probs(trainer.model, batch)
    return torch.cat([chosen, rejected]).float().cpu()


@torch.no_grad()
def seq_logps(model, batch) -> torch.Tensor:
    """Summed completion log-probs, computed independently of TRL (plain logits, log-softmax, gather)."""
    model.eval()
    device = next(p for p in model.parameters() if p.dtype.is_floating_point).device
    ids = batch["input_ids"].to(device)
    logits = model(input_ids=ids, attention_mask=batch["attention_mask"].to(device)).logits.float()
    token_logps = logits[:, :-1].log_softmax(-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    return (token_logps * batch["completion_mask"][:, 1:].to(device)).sum(-1).cpu()


def quantized_weights(model) -> dict[str, torch.Tensor]:
    # As raw bytes: packed 4-bit values stored in a float dtype can read as NaN, which never compares equal.
    return {
        name: module.weight.data.view(torch.uint8).clone()
        for name, module in model.named_modules()
        if isinstance(module, bnb.nn.Linear4bit)
    }


def lora_params(model, adapter: str) -> dict[str, torch.Tensor]:
    return {n: p.detach().float().clone() for n, p in model.named_parameters() if f".{adapter}." in n and "lora_" in n}


# --------------------------------------------------------------------------------------------------- configs


def test_bnb_4bit_config_defaults_and_model_config_fields():
    config = bnb_4bit_config()
    assert config.load_in_4bit and not config.load_in_8bit
    assert config.bnb_4bit_quant_type == "nf4"
    assert config.bnb_4bit_use_double_quant is True
    assert config.bnb_4bit_compute_dtype == default_compute_dtype()
    if not torch.cuda.is_available():
        from trl_ext.peft_utils import auto_dtype

        assert default_compute_dtype() == auto_dtype()[0]  # documented CPU choice: the hardware's native dtype
    # ModelConfig's default dtype "float32" is not read as a request for fp32 compute ...
    assert bnb_4bit_config(ModelConfig()).bnb_4bit_compute_dtype == default_compute_dtype()
    # ... but half-precision dtypes, the quant type and storage are honoured, and compute_dtype wins.
    honoured = bnb_4bit_config(ModelConfig(dtype="float16", bnb_4bit_quant_type="fp4", bnb_4bit_quant_storage="uint8"))
    assert honoured.bnb_4bit_compute_dtype == torch.float16
    assert honoured.bnb_4bit_quant_type == "fp4"
    assert honoured.bnb_4bit_quant_storage == torch.uint8
    # unset: the 4-bit values are stored in the compute dtype (floating, so ZeRO-3 and FSDP can shard them)
    assert config.bnb_4bit_quant_storage == default_compute_dtype()
    assert bnb_4bit_config(ModelConfig(dtype="float16")).bnb_4bit_quant_storage == torch.float16
    assert bnb_4bit_config(ModelConfig(dtype="bfloat16"), compute_dtype=torch.float32).bnb_4bit_compute_dtype == (
        torch.float32
    )
    assert bnb_4bit_config(double_quant=False).bnb_4bit_use_double_quant is False
    with pytest.raises(ValueError, match="'int3'"):
        bnb_4bit_config(compute_dtype="int3")


def test_lora_config_from_model_config():
    config = lora_config(ModelConfig(lora_r=8, lora_alpha=16, lora_dropout=0.1, use_rslora=True))
    assert isinstance(config, LoraConfig)
    assert config.target_modules == "all-linear"  # not peft's q_proj/v_proj default
    assert (config.r, config.lora_alpha, config.lora_dropout, config.use_rslora) == (8, 16, 0.1, True)
    assert config.task_type == "CAUSAL_LM"
    explicit = lora_config(
        ModelConfig(
            lora_target_modules=["q_proj", "v_proj"], lora_modules_to_save=["lm_head"], lora_task_type="SEQ_CLS"
        )
    )
    assert set(explicit.target_modules) == {"q_proj", "v_proj"}
    assert explicit.modules_to_save == ["lm_head"]
    assert explicit.task_type == "SEQ_CLS"
    assert lora_config(ModelConfig(), task_type="SEQ_CLS").task_type == "SEQ_CLS"
    with pytest.raises(ValueError, match="lora_r.*0"):
        lora_config(ModelConfig(lora_r=0))


# --------------------------------------------------------------------------------------------------- loading


def test_load_policy_4bit_nf4_double_quant_lora_all_linear(tiny_llama_dir):
    model, peft_config = load_policy(qlora_args(tiny_llama_dir))

    assert is_4bit(model) and model.is_loaded_in_4bit
    for layer in model.model.layers:
        for name in LINEAR_NAMES:
            module = getattr(layer.self_attn, name, None) or getattr(layer.mlp, name)
            assert isinstance(module, bnb.nn.Linear4bit), name
            state = module.weight.quant_state
            assert state.quant_type == "nf4"
            assert state.nested  # double quantisation: the absmax constants are themselves 8-bit quantised
            assert module.compute_dtype == default_compute_dtype()
            # packed 4-bit values stored in the compute dtype: floating tensors that ZeRO-3 / FSDP can shard
            assert module.weight.dtype == default_compute_dtype() and module.weight.quant_storage == module.weight.dtype
    assert not isinstance(model.lm_head, bnb.nn.Linear4bit)  # transformers keeps the output head in full precision
    # Base frozen; embeddings, head and norms in the compute dtype (no fp32 upcast); checkpointing on.
    assert trainable_parameter_names(model) == []
    assert {p.dtype for p in model.parameters()} == {default_compute_dtype()}
    assert model.is_activation_checkpointing
    assert model.config.use_cache is False

    assert isinstance(peft_config, LoraConfig)
    assert peft_config.target_modules == "all-linear"
    assert (peft_config.r, peft_config.lora_alpha) == (4, 8)
    wrapped = get_peft_model(model, peft_config)
    adapted = {name.split(".")[-1] for name, module in wrapped.named_modules() if hasattr(module, "lora_A")}
    assert adapted == set(LINEAR_NAMES)  # every linear layer of the blocks, the head excluded
    assert len(trainable_parameter_names(wrapped)) == N_LAYERS * len(LINEAR_NAMES) * 2


def test_eval_forward_keeps_4bit_layout_trainable(tiny_llama_dir):
    """bitsandbytes' CPU inference repack (AVX512-BF16 CPUs) must not kick in on a training policy."""
    model, peft_config = load_policy(qlora_args(tiny_llama_dir))
    before = quantized_weights(model)
    model.eval()
    with torch.no_grad():
        model(input_ids=torch.tensor([[2, 5, 6, 7]], device=model.device))
    after = quantized_weights(model)
    assert all(torch.equal(before[n], after[n]) for n in before)
    assert all(m.weight.quant_state.nested for m in model.modules() if isinstance(m, bnb.nn.Linear4bit))


def test_upcast_norms_and_embeddings_is_opt_in(tiny_llama_dir):
    """peft's fp32 upcast of the unquantised parameters only when asked for, and only for a quantised base."""
    model, _ = load_policy(qlora_args(tiny_llama_dir), upcast_norms_and_embeddings=True)
    four_bit = [m.weight for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert four_bit and all(w.dtype == default_compute_dtype() for w in four_bit)  # packed weights untouched
    others = [p for p in model.parameters() if all(p is not w for w in four_bit)]
    assert others and all(p.dtype == torch.float32 for p in others)  # embeddings, head, norms upcast
    assert trainable_parameter_names(model) == []
    with pytest.raises(ValueError, match="upcast_norms_and_embeddings=True applies to a quantised base"):
        load_policy(ModelConfig(model_name_or_path=tiny_llama_dir, use_peft=True), upcast_norms_and_embeddings=True)


def test_4bit_unquantised_parameters_follow_the_compute_dtype_not_model_config_dtype(tiny_llama_dir):
    """ModelConfig's default dtype "float32" with a bf16 compute dtype: the embeddings still load in bf16 (an fp32
    embedding would make the residual stream fp32); a `dtype` passed to from_pretrained wins."""
    compute = default_compute_dtype()
    model, _ = load_policy(qlora_args(tiny_llama_dir, dtype="float32"))
    assert model.get_input_embeddings().weight.dtype == compute
    model, _ = load_policy(qlora_args(tiny_llama_dir), dtype=torch.float32)
    assert model.get_input_embeddings().weight.dtype == torch.float32


def test_no_device_map_under_zero3_or_fsdp(monkeypatch):
    """On a GPU the 4-bit base goes to this rank's device, except under ZeRO-3 / FSDP (transformers refuses a device
    map under ZeRO-3; the engine places the weights)."""
    from trl_ext import peft_utils

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for name in ("ACCELERATE_USE_DEEPSPEED", "ACCELERATE_DEEPSPEED_ZERO_STAGE", "ACCELERATE_USE_FSDP"):
        monkeypatch.delenv(name, raising=False)
    assert peft_utils.sharding_engine() is None and peft_utils._kbit_device_map() == {"": 0}
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "2")
    assert peft_utils.sharding_engine() is None and peft_utils._kbit_device_map() == {"": 0}  # ZeRO-2: a copy per rank
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "3")
    assert peft_utils.sharding_engine() == "DeepSpeed ZeRO-3" and peft_utils._kbit_device_map() is None
    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED")
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    assert peft_utils.sharding_engine() == "FSDP" and peft_utils._kbit_device_map() is None


def test_8bit_under_a_sharding_engine_is_refused_by_name(monkeypatch, tiny_llama_dir):
    """int8 weights cannot be sharded: a named refusal saying what to use, before anything is loaded."""
    from trl_ext.peft_utils import UnsupportedEngineError

    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    with pytest.raises(UnsupportedEngineError, match=r"load_in_8bit=True under FSDP.*load_in_4bit=True"):
        load_policy(qlora_args(tiny_llama_dir, load_in_4bit=False, load_in_8bit=True))
    model, _ = load_policy(qlora_args(tiny_llama_dir))  # 4-bit under FSDP loads (no device map on the CPU anyway)
    assert is_4bit(model)


def test_qlora_policy_holds_under_half_the_bytes_of_bf16_lora_at_smollm2_shape(tmp_path, monkeypatch):
    """Parameters + buffers of the policy as a trainer holds it (base + r=16 LoRA on all linear layers), 4-bit vs
    bf16, on a random-weight model of SmolLM2-135M's shape (tied 49k x 576 embedding): <= 0.5x. With peft's fp32
    upcast of the tied embedding it was 0.65x."""
    from benchmarks.measure import held_bytes_by_kind
    from benchmarks.shapes import build_model

    monkeypatch.setenv("TRL_EXT_BENCH_CACHE", str(tmp_path))
    built = build_model("smollm2-135m", "causal_lm", torch.bfloat16)
    held = {}
    for quantized in (False, True):
        args = ModelConfig(model_name_or_path=built.path, load_in_4bit=quantized, use_peft=True, dtype="bfloat16",
                           lora_r=16, lora_alpha=32)
        model, peft_config = load_policy(args, activation_checkpointing=False)
        held[quantized] = held_bytes_by_kind(get_peft_model(model, peft_config))
        del model
    bf16, qlora = held[False], held[True]
    # The only float32 bytes in either policy are the LoRA adapters peft creates (the same in both).
    assert qlora["float32"] == bf16["float32"] > 0
    assert set(qlora) == {"4bit", "quant_state", "bfloat16", "float32"}
    assert qlora["bfloat16"] == built.n_params * 2 - sum(
        m.in_features * m.out_features * 2 for m in model_linears(built.path))  # embedding + norms only
    ratio = sum(qlora.values()) / sum(bf16.values())
    assert ratio <= 0.5, (ratio, qlora, bf16)


def model_linears(path: str) -> list[torch.nn.Linear]:
    """The decoder blocks' linear layers of the model saved at `path` (what 4-bit loading quantises), on the meta
    device."""
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path))
    return [m for name, m in model.named_modules() if isinstance(m, torch.nn.Linear) and "lm_head" not in name]


def test_load_policy_without_quantization(tiny_llama_dir):
    # No use_peft: the plain model for full fine-tuning.
    model, peft_config = load_policy(ModelConfig(model_name_or_path=tiny_llama_dir), activation_checkpointing=False)
    assert peft_config is None
    assert not is_4bit(model) and not isinstance(model, PeftModel)
    assert len(trainable_parameter_names(model)) == len(list(model.parameters()))
    assert not model.is_activation_checkpointing
    # use_peft on a full-precision base: checkpointing on, LoRA on all linear layers, weights left as loaded.
    model, peft_config = load_policy(ModelConfig(model_name_or_path=tiny_llama_dir, use_peft=True, lora_r=2))
    assert not is_4bit(model) and model.is_activation_checkpointing and model.config.use_cache is False
    assert isinstance(peft_config, LoraConfig) and peft_config.target_modules == "all-linear" and peft_config.r == 2


# --------------------------------------------------------------------------------------------------- DPO, new adapter


def test_dpo_fresh_adapter_reference_is_the_4bit_base(tiny_llama_dir, tokenizer, preference_dataset, tmp_path):
    model, peft_config = load_policy(qlora_args(tiny_llama_dir))
    base_model, _ = load_policy(qlora_args(tiny_llama_dir))  # an independent copy of the same 4-bit base
    trainer = dpo_trainer(model, peft_config, tokenizer, preference_dataset, tmp_path)

    assert trainer.ref_model is None  # one copy of the base: the reference is the policy with its adapter disabled
    policy = trainer.model
    assert isinstance(policy, PeftModel) and is_4bit(policy)
    trainable = trainable_parameter_names(policy)
    assert trainable and all(".lora_A.default." in n or ".lora_B.default." in n for n in trainable)
    assert len(trainable) == N_LAYERS * len(LINEAR_NAMES) * 2

    batch = collated_batch(trainer)
    base_logps = seq_logps(base_model, batch)
    torch.testing.assert_close(ref_logps(trainer, batch), base_logps, atol=1e-3, rtol=1e-4)
    with policy.disable_adapter():
        torch.testing.assert_close(seq_logps(policy, batch), base_logps, atol=1e-3, rtol=1e-4)

    weights_before = quantized_weights(policy)
    lora_before = lora_params(policy, "default")
    trainer.train()
    assert trainer.state.global_step == 2

    # The base stayed 4-bit (same NF4 bytes, double quant intact); only LoRA parameters moved.
    weights_after = quantized_weights(policy)
    assert weights_after.keys() == weights_before.keys() and len(weights_after) == N_LAYERS * len(LINEAR_NAMES)
    assert all(torch.equal(weights_before[n], weights_after[n]) for n in weights_before)
    assert all(m.weight.quant_state.nested for m in policy.modules() if isinstance(m, bnb.nn.Linear4bit))
    assert trainable_parameter_names(policy) == trainable
    lora_after = lora_params(policy, "default")
    changed = [n for n in lora_before if not torch.equal(lora_before[n], lora_after[n])]
    assert all(n in changed for n in lora_before if "lora_B" in n)
    assert any("lora_A" in n for n in changed)

    # The reference is still exactly the base, while the policy has moved away from it.
    torch.testing.assert_close(ref_logps(trainer, batch), base_logps, atol=1e-3, rtol=1e-4)
    assert (seq_logps(policy, batch) - base_logps).abs().max() > 1e-3


# --------------------------------------------------------------------------------------------------- DPO, SFT adapter


def test_dpo_sft_adapter_is_the_frozen_reference(
    tiny_llama_dir, sft_adapter_dir, tokenizer, preference_dataset, tmp_path
):
    model, peft_config = load_policy(qlora_args(tiny_llama_dir), adapter_path=sft_adapter_dir)
    assert peft_config is None  # the adapter is already there; TRL must not add a second one
    assert isinstance(model, PeftModel) and is_4bit(model)
    assert list(model.peft_config) == ["default"]
    assert all(".default." in n for n in trainable_parameter_names(model)) and trainable_parameter_names(model)

    sft_model, _ = load_policy(qlora_args(tiny_llama_dir), adapter_path=sft_adapter_dir)  # untouched copy
    base_model, _ = load_policy(qlora_args(tiny_llama_dir))

    trainer = dpo_trainer(model, peft_config, tokenizer, preference_dataset, tmp_path)
    policy = trainer.model
    assert trainer.ref_model is None
    # TRL 1.16 copies the loaded adapter into a frozen "ref" adapter and uses it as the reference (TRL #4723).
    assert set(policy.peft_config) == {"default", "ref"}
    assert policy.active_adapter == "default"
    assert not any(".ref." in n for n in trainable_parameter_names(policy))

    batch = collated_batch(trainer)
    sft_logps = seq_logps(sft_model, batch)
    base_logps = seq_logps(base_model, batch)
    gap = (sft_logps - base_logps).abs()
    assert gap.min() > 0.3 and gap.max() > 2.0  # the SFT adapter is far from the bare base on every sequence
    reference = ref_logps(trainer, batch)
    torch.testing.assert_close(reference, sft_logps, atol=1e-3, rtol=1e-4)
    assert (reference - base_logps).abs().min() > 0.3  # ... and the reference is the SFT adapter, not the bare base

    ref_before = lora_params(policy, "ref")
    default_before = lora_params(policy, "default")
    trainer.train()
    assert trainer.state.global_step == 2

    ref_after = lora_params(policy, "ref")
    assert all(torch.equal(ref_before[n], ref_after[n]) for n in ref_before)  # frozen
    default_after = lora_params(policy, "default")
    assert any(not torch.equal(default_before[n], default_after[n]) for n in default_before)  # trained
    torch.testing.assert_close(ref_logps(trainer, batch), sft_logps, atol=1e-3, rtol=1e-4)
    policy.set_adapter("default")
    assert (seq_logps(policy, batch) - sft_logps).abs().max() > 1e-3  # the policy moved, the reference did not


def test_add_frozen_reference_adapter(tiny_llama_dir, sft_adapter_dir):
    model, _ = load_policy(
        ModelConfig(model_name_or_path=tiny_llama_dir), adapter_path=sft_adapter_dir, activation_checkpointing=False
    )
    trainable = trainable_parameter_names(model)
    add_frozen_reference_adapter(model)
    assert model.active_adapter == "default"
    assert trainable_parameter_names(model) == trainable  # the copy is frozen, the trained adapter still trainable
    default, ref = lora_params(model, "default"), lora_params(model, "ref")
    assert len(ref) == len(default) > 0
    assert all(torch.equal(default[n], ref[n.replace(".default.", ".ref.")]) for n in default)

    ids = torch.tensor([[2, 5, 6, 7, 8]])
    model.eval()
    with torch.no_grad():
        trained = model(input_ids=ids).logits
        with use_adapter(model, "ref"):
            reference = model(input_ids=ids).logits
        with model.disable_adapter():
            bare = model(input_ids=ids).logits
    torch.testing.assert_close(reference, trained)
    assert (reference - bare).abs().max() > 1e-2
    with pytest.raises(ValueError, match="'ref'"):
        add_frozen_reference_adapter(model)
    with pytest.raises(ValueError, match="'nope'"):
        add_frozen_reference_adapter(model, "ref2", source="nope")
    with pytest.raises(TypeError, match="PeftModel"):
        add_frozen_reference_adapter(model.get_base_model())


# --------------------------------------------------------------------------------------------------- errors


def test_load_policy_errors(tiny_llama_dir, tmp_path):
    with pytest.raises(ValueError, match="load_in_4bit=True with use_peft=False"):
        load_policy(qlora_args(tiny_llama_dir, use_peft=False))
    with pytest.raises(ValueError, match="load_in_8bit=True with use_peft=False"):
        load_policy(qlora_args(tiny_llama_dir, use_peft=False, load_in_4bit=False, load_in_8bit=True))

    both = qlora_args(tiny_llama_dir)
    both.load_in_8bit = True  # ModelConfig.__post_init__ rejects it at construction, not after
    with pytest.raises(ValueError, match="load_in_4bit=True and load_in_8bit=True"):
        load_policy(both)

    missing = tmp_path / "no_such_adapter"
    with pytest.raises(FileNotFoundError, match="no_such_adapter.*does not exist"):
        load_policy(qlora_args(tiny_llama_dir), adapter_path=str(missing))
    not_adapter = tmp_path / "empty"
    not_adapter.mkdir()
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        load_policy(qlora_args(tiny_llama_dir), adapter_path=not_adapter)

    with pytest.raises(ValueError, match="model_name_or_path is None"):
        load_policy(qlora_args(None))
    with pytest.raises(TypeError, match="ModelConfig"):
        load_policy({"model_name_or_path": tiny_llama_dir})
