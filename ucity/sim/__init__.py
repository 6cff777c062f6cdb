"""The city simulator: a seeded Guro-gu-like district that drives ucity through its public APIs.

geo.py (district geometry), model.py (the city's records), city.py (configuration and the seeded
builder), signals.py (pure value-at-t generators), devices.py (IoT Agent device profiles, reads,
schedules), entities.py (static NGSI-LD entities), iota.py (IoT Agent JSON payloads),
scenarios.py (switchable incidents), client.py (HTTP/MQTT I/O), runner.py (provision + stream
in simulated time), display.py (rich progress), commands.py and demo.py (`ucity simulate`,
`ucity demo`). docs/simulator.md is the user's guide.
"""
