"""The Kafka worker: the core engine behind one aiokafka consumer-group member per process."""
