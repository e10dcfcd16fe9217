//! orch Queue on RabbitMQ (lapin): publisher confirms, manual acks, TTL delay tiers, dead-lettering, reconnect.
