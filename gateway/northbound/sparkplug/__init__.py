"""Sparkplug B 3.0 Edge Node contract (payload schema in proto/sparkplug_b.proto).

- :mod:`.decode`: topics and payloads back to Python (shared with readers and tests)
- :mod:`.payloads`: topics, births, deaths and data payloads
- :mod:`.datatypes`: our tag types and qualities as Sparkplug DataTypes and codes
- :mod:`.wire`: seq and is_historical set at send time
- :mod:`.bdseq`: the persisted birth/death sequence
- :mod:`.commands`: NCMD/DCMD as command writes
- :mod:`.edge_node`: the contract plugged into the publisher (sessions, STATE, seq,
  historical data, rebirth, device births and deaths, the NDEATH will per CONNECT)
- :mod:`.build`: wiring into the gateway
"""
