"""Sparkplug B 3.0 Edge Node contract (payload schema in proto/sparkplug_b.proto)."""
