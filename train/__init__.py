"""The runtime: network, partitioning, optimizer, trainer, decoding, checkpoint formats."""
