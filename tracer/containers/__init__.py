"""Containers: cgroup paths, container records, the Docker catalog and client, attribution of events."""
