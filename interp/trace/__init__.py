"""The trace: a recorded run (`Trace`), a batch of them (`TraceSet`), their on-disk schema,
the activation cache, the components each layer writes and the answers a run is about."""
