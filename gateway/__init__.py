"""chenxing-edge gateway: the agent that reads devices and publishes telemetry."""

__version__ = "0.1.0"
