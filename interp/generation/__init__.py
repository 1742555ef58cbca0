"""Generation: prompts and inputs in, sampled and recorded rows out (the batched KV-cached loop,
sampling, memory checks)."""
