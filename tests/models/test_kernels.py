"""The oneDNN unembedding (`interp.models.kernels`) against a plain `nn.Linear`."""

import pytest
import torch
from torch import nn

from interp.models.kernels import UnembeddingLinear, onednn_linear


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("shape", [(7, 32), (1, 1, 32), (2, 5, 32)])
def test_unembedding_linear_equals_nn_linear(bias, shape):
    plain = nn.Linear(32, 300, bias=bias)
    fast = UnembeddingLinear.wrapping(plain)
    assert fast.weight is plain.weight and fast.bias is plain.bias  # shared, not copied
    if onednn_linear() is not None:
        assert type(fast) is UnembeddingLinear
    x = torch.randn(*shape)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), plain(x), atol=1e-5, rtol=1e-5)
        # another dtype runs as a plain nn.Linear, exactly
        low = fast.to(torch.bfloat16)
        xb = x.to(torch.bfloat16)
        assert torch.equal(low(xb), nn.functional.linear(xb, low.weight, low.bias))


def test_the_direct_engines_head_shares_the_models_weights(tiny):
    from interp.models.engine import direct_engine

    engine, _ = direct_engine(tiny)
    head = engine.hf.get_output_embeddings()
    if onednn_linear() is not None:
        assert type(head) is UnembeddingLinear
    original = tiny.bridge.original_model.get_output_embeddings()
    assert head.weight.data_ptr() == original.weight.data_ptr()


def test_only_a_plain_linear_is_wrapped():
    class Custom(nn.Linear):
        pass

    custom = Custom(4, 3)
    assert UnembeddingLinear.wrapping(custom) is custom
