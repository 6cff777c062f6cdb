"""Devices in: FIWARE IoT Agent JSON over HTTP and MQTT, the device registry, device health.

model.py (data), decode.py (pure: measures -> NGSI-LD instances), schema.py (provisioning input and
wire form), registry.py (groups and devices, persisted), writer.py (the one write path),
service.py (the platform component tying them together), http.py (handlers), errors.py (provisioning
errors with the IoT Agent's `name` and `message`), mqtt.py (the MQTT client), health.py (online/offline
on the platform clock), stats.py (counters). docs/devices.md is the user's guide.
"""

from __future__ import annotations

from ucity.ingest.health import DeviceStatusChanged

__all__ = ["DeviceStatusChanged"]
