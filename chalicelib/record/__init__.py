"""The record in PostgreSQL: named SQL, the store, deliveries, migrations."""
