//! orch Database on MongoDB (mongodb 3.x): conditional updates, unique job keys, index-only engine queries.
