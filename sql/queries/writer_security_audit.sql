-- Writer sink: security audit entries (a jsonb array of rows). Idempotent: an entry written
-- again after a writer crashed between its commit and freeing the slot is skipped by its id (the
-- key of the partition it goes to: the table itself has none, see sql/partitions.sql).
INSERT INTO booking_admin.security_audit_log
SELECT * FROM jsonb_populate_recordset(NULL::booking_admin.security_audit_log, $1)
ON CONFLICT DO NOTHING
