"""Configuration: YAML file -> validated, typed config models.

Entry points: :func:`gateway.config.loader.load_config` and
:class:`gateway.config.models.GatewayConfig`. This package init stays empty so
that drivers can import the shared tag/device models without a cycle.
"""
