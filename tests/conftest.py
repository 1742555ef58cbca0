"""Fixtures: tiny random models (GPT-2 and Llama/grouped-query layouts) and the real embedded
model, each built once per session. No downloads: the tiny tokenizer is trained here."""

from __future__ import annotations

import copy

import pytest
import torch

TINY_VOCAB = 300
CORPUS = (
    "The earth revolves around the sun. The moon revolves around the earth. "
    "Attention heads copy tokens; induction heads complete repeated patterns. "
    "<script>alert('x')</script> \"quotes\" and new\nlines 0123456789 "
) * 4


def pytest_addoption(parser):
    parser.addoption("--device", default="cpu", help="torch device for model tests (cpu, cuda)")


REAL_MODEL_FIXTURES = {"smollm", "smollm_hf", "gemma", "gemma_hf"}


def pytest_collection_modifyitems(config, items):
    """A test that takes an embedded model's fixture is a real-model test, marked or not, so
    `-m "not real_model"` runs exactly the tests that need no model weights."""
    for item in items:
        if REAL_MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.real_model)


@pytest.fixture(scope="session")
def device(request) -> str:
    dev = request.config.getoption("--device")
    if dev.startswith("cuda") and not torch.cuda.is_available():
        pytest.exit("--device cuda was given but no CUDA GPU is available", returncode=2)
    return dev


@pytest.fixture(autouse=True)
def _seed_everything():
    """Every test starts from the same global RNG state (the library never uses it)."""
    torch.manual_seed(0)


@pytest.fixture
def unchecked():
    """For tests that pass ill-typed values on purpose to reach interp's own validation: the
    suite's runtime type checker (tests/typecheck.py) would refuse them first."""
    import jaxtyping

    jaxtyping.config.update("jaxtyping_disable", True)
    yield
    jaxtyping.config.update("jaxtyping_disable", False)


def _tiny_tokenizer(with_bos: bool, directory):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_VOCAB,
        special_tokens=["<|endoftext|>", "<s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([CORPUS], trainer)
    if with_bos:
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))]
        )
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="<|endoftext|>")
    # Saved and reloaded so that it has a name_or_path, as TransformerLens expects.
    fast.save_pretrained(directory)
    return AutoTokenizer.from_pretrained(directory)


def _tiny_gpt2(tokenizer):
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=96,
        n_embd=32,
        n_layer=2,
        n_head=4,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    cfg.architectures = ["GPT2LMHeadModel"]
    torch.manual_seed(1)
    return GPT2LMHeadModel(cfg)


def _tiny_llama(tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=96,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    cfg.architectures = ["LlamaForCausalLM"]
    torch.manual_seed(2)
    model = LlamaForCausalLM(cfg)
    # Random init leaves logits nearly uniform; a larger unembedding gives the sampler
    # distributions with some shape, so tests can tell tokens apart.
    with torch.no_grad():
        model.lm_head.weight.mul_(20)
    return model


def _tiny_gemma(tokenizer):
    """Gemma 3's layout: one KV head, QK-norm, post-attention and post-MLP norms (`1 + w`),
    scaled embeddings, and sliding-window layers (window 4) around a full-attention one."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    cfg = Gemma3TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=8,
        query_pre_attn_scalar=8,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"],
        sliding_window=4,
        max_position_embeddings=96,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
    )
    cfg.architectures = ["Gemma3ForCausalLM"]
    torch.manual_seed(3)
    model = Gemma3ForCausalLM(cfg)
    with torch.no_grad():
        # Gemma initialises its norms' weights to 0 (a gain of 1): random gains make every
        # norm matter, the post-attention norms in particular
        for name, param in model.named_parameters():
            if "norm" in name:
                param.uniform_(-0.5, 1.5)
        model.lm_head.weight.mul_(20)  # tied to the embedding: logits with some shape
    return model


# Parameter counts pin the fixtures: a changed config cannot silently weaken the tests.
TINY_PARAMS = {"gpt2": 38_144, "llama": 37_792, "gemma": 36_176}


def build_tiny(kind: str, directory, device: str = "cpu"):
    from interp.models.wrap import from_hf

    tokenizer = _tiny_tokenizer(kind != "gpt2", directory)
    hf = {"gpt2": _tiny_gpt2, "llama": _tiny_llama, "gemma": _tiny_gemma}[kind](tokenizer)
    n_params = sum(p.numel() for p in hf.parameters())
    assert n_params == TINY_PARAMS[kind], f"tiny {kind} has {n_params} parameters"
    # An untouched copy, eager attention, before the bridge wraps the model's modules in place:
    # the independent Hugging Face reference the tests compare against.
    reference = copy.deepcopy(hf).to(device).eval()
    reference.set_attn_implementation("eager")
    model = from_hf(f"tiny-{kind}", hf, tokenizer, device=device)
    model.extra["reference"] = reference
    return model


def hf_logits(hf, ids, hooks=(), pre=()):
    """Logits `[pos, vocab]` of a plain Hugging Face forward over `ids` (`[pos]`), with the
    forward hooks and forward pre-hooks `(module, fn)` registered for this forward alone."""
    handles = [module.register_forward_hook(fn) for module, fn in hooks]
    handles += [module.register_forward_pre_hook(fn) for module, fn in pre]
    try:
        with torch.no_grad():
            return hf(ids[None]).logits[0]
    finally:
        for handle in handles:
            handle.remove()


def rel_err_per_position(a, b):
    """The largest relative error of any position: [pos, ...] -> [pos, features]."""
    a, b = a.flatten(1), b.flatten(1)
    return ((a - b).norm(dim=-1) / b.norm(dim=-1).clamp_min(1e-6)).max().item()


def assert_records_one_full_run(model, trace, rel: float) -> None:
    """Every hook the KV-cached recording kept against one full `run_with_cache` of the same
    tokens: patterns within 1e-5 absolute, the rest within `rel` relative per position
    (residuals reach thousands in magnitude)."""
    from interp.models import hooks as H

    names = set(trace.hook_names)
    with torch.no_grad():
        _, full = model.bridge.run_with_cache(
            trace.token_ids[None].to(model.device), names_filter=lambda n: n in names
        )
    for name in trace.hook_names:
        got, want = trace.activations[name], full[name][0].cpu()
        assert got.shape == want.shape, name
        if H.is_query_key(name):
            assert (got - want).abs().max() <= 1e-5, name
        else:
            assert rel_err_per_position(got, want) <= rel, name


def reference(model):
    """The plain Hugging Face model with the same weights (tiny: a pre-bridge copy)."""
    return model.extra["reference"]


@pytest.fixture(scope="session", params=["gpt2", "llama"])
def tiny(request, device, tmp_path_factory):
    """A tiny random model of each attention layout (multi-head GPT-2, grouped-query Llama)."""
    return build_tiny(request.param, tmp_path_factory.mktemp(f"tok-{request.param}"), device)


@pytest.fixture(scope="session")
def tiny_llama(device, tmp_path_factory):
    return build_tiny("llama", tmp_path_factory.mktemp("tok-llama"), device)


@pytest.fixture(scope="session")
def tiny_gemma(device, tmp_path_factory):
    """Gemma 3's layout, tiny and random (post-attention norms, sliding windows)."""
    return build_tiny("gemma", tmp_path_factory.mktemp("tok-gemma"), device)


def _plain_hf(name, model):
    """An independent plain Hugging Face copy of a cached embedded model, eager attention."""
    from transformers import AutoModelForCausalLM

    from interp.models import cache_root

    hf = AutoModelForCausalLM.from_pretrained(
        str(cache_root() / "models" / name), dtype=torch.float32, attn_implementation="eager"
    )
    return hf.to(model.device).eval()


@pytest.fixture(scope="session")
def gemma(device):
    """The embedded Gemma 3 270M (its packages installed by `make test`)."""
    from interp.models import load_model

    return load_model("gemma3-270m", device=device)


@pytest.fixture(scope="session")
def gemma_hf(gemma):
    return _plain_hf("gemma3-270m", gemma)


@pytest.fixture(scope="session")
def smollm(device):
    """The embedded SmolLM2-135M-Instruct (converted and cached on first use)."""
    from interp.models import load_model

    return load_model("smollm2-135m", device=device)


@pytest.fixture(scope="session")
def smollm_hf(smollm):
    """An independent plain Hugging Face copy of the same weights, eager attention."""
    return _plain_hf("smollm2-135m", smollm)


# ---- Ray (tests/executors): a worker loads its model by name or folder, never from memory ----


def save_tiny(directory):
    """The tiny grouped-query Llama and its tokenizer, saved as a model folder."""
    tokenizer = _tiny_tokenizer(True, directory)
    _tiny_llama(tokenizer).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("tiny-llama-folder"))


@pytest.fixture(scope="session")
def folder_model(tiny_folder):
    """The tiny Llama loaded from its folder, as a Ray worker loads it."""
    from interp.models import load_model

    return load_model(str(tiny_folder))


@pytest.fixture(scope="module", params=["local", "two-nodes"])
def ray_cluster(request):
    """(executor, nodes): a local cluster as `interp.Ray()` starts it, or two simulated nodes
    of one CPU each (`ray.cluster_utils.Cluster`) that this process joined itself."""
    import ray
    from ray.cluster_utils import Cluster

    from interp import Ray

    if request.param == "local":
        with Ray(workers=2, chunk_rows=2) as executor:
            yield executor, 1
        assert not ray.is_initialized()  # the cluster interp started is shut down
        return
    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    nodes.add_node(num_cpus=1)
    ray.init(address=nodes.address, logging_level="ERROR", log_to_driver=False)
    nodes.wait_for_nodes()
    try:
        with Ray(workers=2, chunk_rows=2) as executor:
            yield executor, 2
        assert ray.is_initialized()  # a cluster this process joined itself stays joined
    finally:
        ray.shutdown()
        nodes.shutdown()


def spread(executor, nodes=None):
    """The last run went through at least two chunks in two worker processes (on every node)."""
    record = executor.record()
    assert record["kind"] == "ray" and record["chunks"] >= 2 and record["processes"] >= 2
    assert nodes is None or record["nodes"] == nodes
