"""The brain-side reader: a separate deployable, run next to the industrial brain.

It subscribes to the gateways' telemetry (JSON contract v1 and Sparkplug B), checks
sequences, asks for rebirths, and writes points to an InfluxDB v2 write API. Several
readers in one MQTT 5 shared-subscription group split the load. See README.md in this
folder; the command is ``chenxing-ingest``.

- :mod:`.cli`: the command
- :mod:`.config`: its options (YAML file and command line)
- :mod:`.reader`: the MQTT connection, the write queue and the InfluxDB writer
- :mod:`.json_messages`, :mod:`.sparkplug_messages`: the two contracts into points
- :mod:`.points`: line-protocol points in the gateway sink's layout
- :mod:`.sequences`: loss and duplicate detection
- :mod:`.counters`: what it counts
"""
