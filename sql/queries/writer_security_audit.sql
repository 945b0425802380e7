-- Writer sink: security audit entries (a jsonb array of rows). Idempotent: an entry written
-- again after a writer crashed between its commit and freeing the slot is skipped by its id.
INSERT INTO booking_admin.security_audit_log
SELECT * FROM jsonb_populate_recordset(NULL::booking_admin.security_audit_log, $1)
ON CONFLICT (id, created_at) DO NOTHING
