"""Edge models: ONNX models fed by feature windows over the gateway's tags.

``manifest`` (the YAML beside each ``.onnx``), ``windows`` (ring buffers and
aggregations), ``runtime`` (tuned sessions, validation), ``engine`` (triggers,
batched inference, output tags, alarms), ``lifecycle`` (folder loading, hot swap,
watch). ``train_reference`` builds the reference models (the ``train`` extra).
See ``edge_models/README.md``.
"""
