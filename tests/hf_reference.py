"""Plain Hugging Face references the intervention tests compare with: a forward with a site's
value read and replaced by hand, and a continuation's log-probs."""

import torch

from interp.edits import applying


def blocks(hf):
    """The plain model's layer list (GPT-2: transformer.h, Llama: model.layers)."""
    return hf.transformer.h if hasattr(hf, "transformer") else hf.model.layers


def site_module(hf, site, layer):
    block = blocks(hf)[layer]
    attn = block.attn if hasattr(block, "attn") else block.self_attn
    return {
        "heads": attn.c_proj if hasattr(attn, "c_proj") else attn.o_proj,
        "resid": block,
        "attn-out": attn,
        "mlp-out": block.mlp,
    }[site]


def hf_run(hf, ids, site, layer, n_heads, edit=None):
    """Logits of a plain forward, and the site's value at every position ([pos, ...]);
    `edit(value) -> value` replaces it on the way."""
    seen = {}
    module = site_module(hf, site, layer)

    def take(x):
        if site == "heads":
            x = x.view(*x.shape[:2], n_heads, -1)
        seen["value"] = x[0].detach().clone()
        if edit is not None:
            x = edit(x.clone())
        return x.reshape(*x.shape[:2], -1) if site == "heads" else x

    if site in ("heads", "resid"):

        def pre(mod, args, kwargs):
            if args:
                return (take(args[0]), *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": take(kwargs["hidden_states"])}

        handle = module.register_forward_pre_hook(pre, with_kwargs=True)
    else:

        def post(mod, args, output):
            if isinstance(output, tuple):
                return (take(output[0]), *output[1:])
            return take(output)

        handle = module.register_forward_hook(post)
    try:
        with torch.no_grad():
            logits = hf(ids[None]).logits[0].float()
    finally:
        handle.remove()
    return logits, seen["value"]


def continuation_lp(trace, logits):
    p = trace.prompt_len
    lp = logits[p - 1 : -1].log_softmax(-1)
    return lp.gather(-1, trace.token_ids[p:, None])[:, 0]


def replacing(site, value, n, head):
    """A Hugging Face edit putting `value` at every position (of `head`, for the heads site)."""

    def edit(x):
        if site == "heads":
            x[0, :, head] = value[:, head].expand(n, -1)
        else:
            x[0] = value.expand(n, -1)
        return x

    return edit


def noised_embeddings(hf, noise, run, seed):
    """A hook `(module, fn)` adding `noise`'s default-scale noise to the HF embeddings, by hand:
    three standard deviations of the embeddings times the seeded draw at each position."""
    at = applying.positions_in(noise, run)
    scale = 3 * float(hf.get_input_embeddings().weight.detach().std())
    delta = torch.zeros(run.n_positions, hf.config.hidden_size)
    delta[at] = scale * applying.noise(seed, torch.tensor(at), (hf.config.hidden_size,))
    return hf.get_input_embeddings(), lambda m, a, out: out + delta[None]
