"""The thin shell around the core: CLI, files, Kafka."""
