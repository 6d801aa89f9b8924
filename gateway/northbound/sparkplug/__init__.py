"""Sparkplug B 3.0 Edge Node contract (payload schema in proto/sparkplug_b.proto).

- :mod:`.decode`: topics and payloads back to Python (shared with readers and tests)
- :mod:`.contract`: topics, births, deaths and data payloads
- :mod:`.datatypes`: our tag types and qualities as Sparkplug DataTypes and codes
- :mod:`.wire`: seq and is_historical set at send time
- :mod:`.bdseq`: the persisted birth/death sequence
- :mod:`.link`: the MQTT link with a fresh NDEATH will per CONNECT
- :mod:`.commands`: NCMD/DCMD as command writes
- :mod:`.edge_node`: the publisher (sessions, STATE, rebirth, device births and deaths)
- :mod:`.build`: wiring into the gateway
"""
