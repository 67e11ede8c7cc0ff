"""Training: losses, the shared step, backbone / SyncNet / personalization drivers."""
