-- Time-partitioned history (sql/partitions.sql): the partitioned tables and their settings,
-- rows of months without a partition waiting in the default partition, the maintenance that
-- moves them into partitions of their own, creates the partitions ahead and drops the ones past
-- retention (a DROP, never a DELETE), the freeze calendar holding the strong-lock parts back,
-- and callers seeing one table. The clock is fixed far ahead of the real one, so the partitions
-- made are the same every run.
SET booking_engine.now = '2031-03-15 12:00+00';
SET timezone = 'UTC';
SET datestyle = 'ISO';
SELECT parent_table, partition_key, partition_interval, premake, retention, keep_while IS NOT NULL AS keeps_some
FROM booking_admin.partitioned_tables ORDER BY 1;
-- Each is a partitioned table with (until the first maintenance) only its default partition.
-- The table has no index of its own (pg_dump could not restore partitions of an extension's
-- table that had): the default partition carries the key and the indexes.
SELECT t.parent_table, c.relkind,
       (SELECT count(*) FROM pg_index x WHERE x.indrelid = c.oid) AS own_indexes,
       (SELECT string_agg(p.partition_name, ', ') FROM booking_admin.partitions(t.parent_table) p) AS partitions,
       (SELECT pg_get_constraintdef(k.oid) FROM pg_constraint k
        WHERE k.conrelid = to_regclass(t.parent_table || '_default') AND k.contype = 'p') AS default_primary_key,
       (SELECT count(*) FROM pg_index x WHERE x.indrelid = to_regclass(t.parent_table || '_default')) AS default_indexes
FROM booking_admin.partitioned_tables t
JOIN pg_class c ON c.oid = t.parent_table::regclass
ORDER BY 1;
-- No foreign key points at them: dropping a partition stays O(1).
SELECT count(*) AS foreign_keys_to_partitioned_history
FROM pg_constraint k JOIN booking_admin.partitioned_tables t ON k.confrelid = t.parent_table::regclass
WHERE k.contype = 'f';

-- An event and two audit entries of months no partition covers yet land in the default
-- partitions.
SELECT regress.salon();
INSERT INTO booking.events (tenant_id, event_type, created_at) VALUES
    ('10000000-0000-0000-0000-000000000001', 'booking.created', '2031-01-20 10:00+00');
INSERT INTO booking_admin.security_audit_log (action, resource_type, success, created_at) VALUES
    ('partition_test', 'tenant', true, '2030-11-05 09:00+00'),
    ('partition_test', 'tenant', true, '2031-02-10 09:00+00');
SELECT tableoid::regclass AS partition, event_type FROM booking.events;
SELECT tableoid::regclass AS partition, created_at FROM booking_admin.security_audit_log WHERE action = 'partition_test' ORDER BY 2;

-- Maintenance: the oldest month waiting in each default partition gets its partition (with
-- its rows), then the two nearest missing intervals from the current one on are created (a run
-- does a bounded amount of work: the first runs after an install spread it).
SELECT t ->> 'table' AS "table", t -> 'created' AS created, t -> 'moved_rows' AS moved_rows, t -> 'dropped' AS dropped
FROM jsonb_array_elements(booking_admin.maintain_partitions() -> 'tables') t
WHERE t ->> 'table' IN ('booking.events', 'booking_admin.security_audit_log', 'booking_admin.deliveries')
ORDER BY 1;
-- A second run moves the audit log's next waiting month and makes the rest of the `premake`
-- months ahead; a third has nothing left to do.
SELECT t -> 'created' AS created, t -> 'moved_rows' AS moved_rows
FROM jsonb_array_elements(booking_admin.maintain_partitions('booking_admin.security_audit_log') -> 'tables') t;
SELECT t -> 'created' AS created, t -> 'moved_rows' AS moved_rows
FROM jsonb_array_elements(booking_admin.maintain_partitions('booking_admin.security_audit_log') -> 'tables') t;
SELECT tableoid::regclass AS partition, created_at FROM booking_admin.security_audit_log WHERE action = 'partition_test' ORDER BY 2;
SELECT tableoid::regclass AS partition, event_type FROM booking.events;
SELECT partition_name, range_from, range_to FROM booking_admin.partitions('booking.events');
-- Each partition gets the default partition's key and indexes, named after it.
SELECT i.indexrelid::regclass AS index, pg_get_indexdef(i.indexrelid) ~ '^CREATE UNIQUE' AS is_unique,
       EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.contype = 'p') AS is_key
FROM pg_index i WHERE i.indrelid = 'booking.events_p20310101'::regclass ORDER BY 1;
-- A key violation inside a partition is refused as it was on the table.
SELECT regress.sqlstate_of($$INSERT INTO booking.events (id, tenant_id, event_type, created_at)
    SELECT id, tenant_id, event_type, created_at FROM booking.events WHERE event_type = 'booking.created'$$);
-- The job history and the health history are partitioned by day.
SELECT partition_name, range_from, range_to FROM booking_admin.partitions('booking_admin.job_history') LIMIT 3;

-- Callers see one table: new rows go to their partition, reads and the writer's idempotent
-- insert work through the table, and the audit log stays append-only on every partition.
SELECT booking.emit_event('10000000-0000-0000-0000-000000000001', 'booking.cancelled') IS NOT NULL AS emitted;
SELECT count(*) AS events, count(DISTINCT tableoid) AS partitions FROM booking.events;
SELECT regress.sqlstate_of($$DELETE FROM booking_admin.security_audit_log_p20301101$$);
SELECT regress.sqlstate_of($$TRUNCATE booking_admin.security_audit_log_p20301101$$);
SELECT regress.sqlstate_of($$UPDATE booking_admin.security_audit_log_default SET action = 'x'$$);
-- Partitions of the booking schema have row-level security like the table.
SELECT c.relname, c.relrowsecurity FROM pg_class c
WHERE c.relnamespace = 'booking'::regnamespace AND c.relkind = 'r' AND c.relispartition AND NOT c.relrowsecurity;

-- Retention: with the clock 13 months ahead, the months wholly past 365 days are dropped
-- (DROP TABLE: the rows go with the partition, no DELETE runs); the default partition and the
-- months inside retention stay.
SET booking_engine.now = '2032-04-15 00:00+00';
SELECT t -> 'dropped' AS dropped
FROM jsonb_array_elements(booking_admin.maintain_partitions('booking_admin.security_audit_log') -> 'tables') t;
SELECT tableoid::regclass AS partition, created_at FROM booking_admin.security_audit_log WHERE action = 'partition_test' ORDER BY 2;
SELECT partition_name FROM booking_admin.partitions('booking_admin.security_audit_log');
-- A delivery still to be sent keeps its week past retention (keep_while); once it is
-- delivered the week goes.
INSERT INTO booking_admin.delivery_endpoints (id, channel, url, event_types)
VALUES ('e0000000-0000-0000-0000-0000000000e1', 'webhook', 'https://hooks.example/x', '{booking.created}');
INSERT INTO booking_admin.deliveries (endpoint_id, message_id, event_type, payload, event_created_at, created_at, status)
VALUES ('e0000000-0000-0000-0000-0000000000e1', 'msg_1', 'booking.created', '{}', '2031-03-17 10:00+00', '2031-03-17 10:00+00', 'pending');
SELECT tableoid::regclass AS partition FROM booking_admin.deliveries;
SELECT t -> 'dropped' AS dropped
FROM jsonb_array_elements(booking_admin.maintain_partitions('booking_admin.deliveries') -> 'tables') t;
UPDATE booking_admin.deliveries SET status = 'delivered';
SELECT t -> 'dropped' AS dropped
FROM jsonb_array_elements(booking_admin.maintain_partitions('booking_admin.deliveries') -> 'tables') t;
SELECT count(*) AS deliveries_left FROM booking_admin.deliveries;

-- Inside a freeze window only partitions ahead are created: moving rows out of a default
-- partition and dropping partitions wait for the window's end.
SELECT booking_admin.add_freeze_window('release weekend', p_starts_at => '2032-04-14', p_ends_at => '2032-04-16') IS NOT NULL AS frozen;
INSERT INTO booking_admin.security_audit_log (action, resource_type, success, created_at) VALUES
    ('partition_test', 'tenant', true, '2029-06-01 09:00+00');
SELECT t -> 'created' AS created, t -> 'moved_rows' AS moved_rows, t -> 'dropped' AS dropped, t ->> 'deferred_until' AS deferred_until
FROM jsonb_array_elements(booking_admin.maintain_partitions('booking_admin.security_audit_log') -> 'tables') t;
DELETE FROM booking_admin.freeze_windows;

-- Settings: retention, premake; the interval only while no partition but the default exists.
SELECT retention, premake FROM booking_admin.configure_partitions('booking_admin.job_history', p_retention => '3 days', p_premake => 2);
SELECT retention FROM booking_admin.configure_partitions('booking_admin.job_history', p_keep_forever => true);
SELECT regress.sqlstate_of($$SELECT booking_admin.configure_partitions('booking_admin.job_history', p_interval => 'month')$$);
SELECT regress.sqlstate_of($$SELECT booking_admin.configure_partitions('booking_admin.job_history', p_premake => 0)$$);
SELECT regress.sqlstate_of($$SELECT booking_admin.configure_partitions('booking.appointments')$$);
SELECT regress.sqlstate_of($$SELECT booking_admin.maintain_partitions('booking.appointments')$$);
-- Only operators maintain partitions (even one given EXECUTE by mistake).
CREATE ROLE partition_stranger;
GRANT USAGE ON SCHEMA booking_admin TO partition_stranger;
GRANT EXECUTE ON FUNCTION booking_admin.maintain_partitions(text) TO partition_stranger;
SET SESSION AUTHORIZATION partition_stranger;
SELECT regress.sqlstate_of($$SELECT booking_admin.maintain_partitions()$$);
RESET SESSION AUTHORIZATION;
REVOKE ALL ON FUNCTION booking_admin.maintain_partitions(text) FROM partition_stranger;
REVOKE ALL ON SCHEMA booking_admin FROM partition_stranger;
DROP ROLE partition_stranger;

-- Finished jobs move out of the queue into the job history (archive-jobs), which job_stats
-- and admin_sql_status read too.
SELECT booking_admin.enqueue_job('archived', 'x') IS NOT NULL AS enqueued;
UPDATE booking_admin.jobs SET status = 'completed', started_at = now() - interval '2 hours',
    completed_at = now() - interval '2 hours' + interval '2 seconds'
WHERE name = 'archived';
SELECT booking_admin.op_archive_jobs('{"archive_after_minutes": 0}') AS archived;
SELECT count(*) AS in_queue FROM booking_admin.jobs WHERE name = 'archived';
SELECT name, status, tableoid::regclass AS partition FROM booking_admin.job_history;
SELECT booking_admin.job_stats() -> 'by_status' -> 'completed' AS completed, booking_admin.job_stats() -> 'avg_duration_ms' AS avg_ms;
