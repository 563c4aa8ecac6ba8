"""Reading the host: /proc, nsfs ioctls, namespace pins and fd holders, and full snapshots."""
