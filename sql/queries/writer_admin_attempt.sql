-- Writer sink: execute_admin_sql attempts (a jsonb array of admin_audit rows). Idempotent by id.
INSERT INTO booking_admin.admin_audit
SELECT * FROM jsonb_populate_recordset(NULL::booking_admin.admin_audit, $1)
ON CONFLICT (id) DO NOTHING
