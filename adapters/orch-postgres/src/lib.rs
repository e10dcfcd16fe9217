//! orch Database on PostgreSQL (sqlx, rustls): SKIP LOCKED claims, leases, fencing, versioned migrations.
