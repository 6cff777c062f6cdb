"""Ids made in bulk are proper random UUIDs (version 4, RFC 4122 variant), all different."""

from __future__ import annotations

import uuid

from ucity.core.ids import uuid4_texts
from ucity.ngsild.subscriptions import notification_id
from ucity.store.sqlite import new_instance_ids


def test_uuid4_texts_are_canonical_version_4_uuids() -> None:
    texts = uuid4_texts(1000)
    assert len(set(texts)) == 1000
    for text in texts:
        parsed = uuid.UUID(text)
        assert str(parsed) == text  # canonical form: lower-case hex, 8-4-4-4-12
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
    assert uuid4_texts(0) == [] and uuid4_texts(-1) == []


def test_instance_and_notification_ids_use_them() -> None:
    instances = new_instance_ids(3)
    assert len(set(instances)) == 3
    assert all(i.startswith("urn:ngsi-ld:Instance:") and uuid.UUID(i.rsplit(":", 1)[1]).version == 4 for i in instances)
    notifications = {notification_id() for _ in range(300)}  # more than one batch of the pool
    assert len(notifications) == 300
    assert all(n.startswith("urn:ngsi-ld:Notification:") and uuid.UUID(n.rsplit(":", 1)[1]).version == 4
               for n in notifications)
