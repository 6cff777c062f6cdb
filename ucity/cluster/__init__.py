"""Scale-out on NATS JetStream (DESIGN §2, docs/operations.md): ucity in several processes.

Used when `bus.url` names a NATS server. The API process (`ucity serve`) and any process receiving
device measures put them on a durable stream, partitioned by entity id, and answer the device once
JetStream has stored them; `ucity worker` processes share the partitions through leases, commit the
measures (idempotent history), run rules and alarms on what they commit, and acknowledge a message
only once all of it is durable. Changes the API process commits itself (NGSI-LD writes,
provisioning) go onto an event stream, so that rules see them in the worker owning the entity.

    partitions.py  entity -> partition, partition -> worker (rendezvous hashing); pure
    messages.py    the wire form of device writes and entity changes; pure
    jetstream.py   the connection: streams, per-partition consumers, the lease bucket
    producer.py    the API side: measures onto the stream, committed changes onto the event stream
    worker.py      the worker side: leases, consumption, commit, acknowledgement
    live.py        live alarm events relayed between processes over plain NATS (the dashboards' SSE)
    registry_sync.py  provisioning changes told between processes; periodic re-read of the device registry
"""
