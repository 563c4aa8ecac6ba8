"""The fleet: an agent on every host streams its graph's journal to NATS JetStream,
and one dashboard keeps a replica of every node's graph.

    agent:  kernel -> collector -> NamespaceGraph --journal--> outbox.Outbox --> publisher (NATS thread)
    wire:   nsgraph.<node>.events | .checkpoints | .status   (one JetStream stream, NSGRAPH)
    central: consumer (NATS thread, one durable consumer per node) -> replica.NodeReplica (one graph per node)
             -> fleet.Fleet (health, overview, search) -> webapp/fleet.py

Modules: subjects (names and limits), wire (the versioned encoding), outbox (bounded
buffering and the drop policy), natsconn (TLS and connection options), publisher and
agent (the node side), replica, health, fleet, consumer and history (the central side),
streams (the stream's definition), pki and serverconf (`nsgraph fleet init`).
docs/fleet.md documents subjects, encoding and consumers.
"""
