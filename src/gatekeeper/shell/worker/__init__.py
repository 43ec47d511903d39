"""The Kafka worker: the core engine behind a Faust app."""
