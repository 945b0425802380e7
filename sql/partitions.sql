-- Time-partitioned history: the tables that only grow (the events outbox, the audit log,
-- deliveries and their attempts, finished jobs, the health history) are partitioned by time
-- with PostgreSQL's declarative partitioning, so that keeping them small is dropping a
-- partition (O(1), no DELETE, no bloat) and a query over a recent window reads recent
-- partitions only.
--
-- Each feature declares its tables in booking_admin.partitioned_tables at the end of its own
-- file. A table is created with a DEFAULT partition (part of the extension, so it exists from
-- the first row on); the scheduler's partition-maintenance operation then
--   1. moves rows that landed in the default partition into partitions of their own,
--   2. creates the partitions of the next `premake` intervals ahead,
--   3. drops the partitions that lie wholly past `retention` (DROP TABLE: O(1)),
-- like pg_partman's run_maintenance. The partitions it creates are ordinary tables of the
-- database (not of the extension): pg_dump keeps them with their rows.
--
-- Callers see the same table, columns and functions. The keys and indexes are the partitions',
-- not the tables': the default partition carries them under the names the tables had before
-- they were partitioned, and create_partition copies them onto each new partition. So a key
-- need not include the partition key (PostgreSQL requires it only of a partitioned table's own
-- keys), and pg_dump's copy restores: indexes of a partitioned table that belongs to the
-- extension would be cloned onto every partition as it is attached, before pg_dump creates
-- the partition's own. Nothing references these tables with a foreign key (a referenced
-- partition could not be dropped in O(1)), and ON CONFLICT names no columns on them (there is
-- no key of the table to name; DO NOTHING alone checks the partition's).

CREATE TABLE booking_admin.partitioned_tables (
    parent_table       text PRIMARY KEY,
    partition_key      text NOT NULL,
    partition_interval text NOT NULL CHECK (partition_interval IN ('day', 'week', 'month')),
    -- Intervals created ahead of the current one.
    premake            integer NOT NULL DEFAULT 3 CHECK (premake BETWEEN 1 AND 366),
    -- Partitions whose whole range is older than this are dropped; NULL keeps everything.
    retention          interval CHECK (retention > interval '0'),
    -- A row meeting this condition keeps its partition past retention (set by the feature that
    -- owns the table, e.g. deliveries still to be sent); NULL: none does.
    keep_while         text,
    description        text NOT NULL,
    last_run_at        timestamptz,
    last_result        jsonb
);
COMMENT ON TABLE booking_admin.partitioned_tables IS
    'Tables partitioned by time and their maintenance: partition_interval, premake (intervals created ahead), retention (NULL: keep). Change them with booking_admin.configure_partitions.';
CREATE TRIGGER partitioned_tables_restore BEFORE INSERT ON booking_admin.partitioned_tables
    FOR EACH ROW EXECUTE FUNCTION booking.update_seed_instead('parent_table');
SELECT pg_catalog.pg_extension_config_dump('booking_admin.partitioned_tables', '');

-- The interval holding p_at: [lower, upper), in UTC (weeks start on Monday).
CREATE FUNCTION booking_admin.partition_bounds(p_interval text, p_at timestamptz, OUT lower timestamptz, OUT upper timestamptz)
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT date_trunc(p_interval, p_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
           (date_trunc(p_interval, p_at AT TIME ZONE 'UTC') + ('1 ' || p_interval)::interval) AT TIME ZONE 'UTC'
$$;

-- Whether Citus manages a table (distributed or reference): its partitions are then created
-- and dropped through the coordinator only. Through EXECUTE: Citus's catalog exists only where
-- Citus is installed.
CREATE FUNCTION booking_admin.is_citus_table(p_table regclass) RETURNS boolean
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v boolean;
BEGIN
    IF to_regclass('pg_catalog.pg_dist_partition') IS NULL THEN
        RETURN false;
    END IF;
    EXECUTE 'SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition WHERE logicalrelid = $1)' INTO v USING p_table;
    RETURN v;
END $$;

-- Every partition of the partitioned tables (or of one), oldest first, the default last.
CREATE FUNCTION booking_admin.partitions(p_table text DEFAULT NULL)
RETURNS TABLE (parent_table text, partition_name text, range_from timestamptz, range_to timestamptz,
               is_default boolean, row_estimate bigint, total_bytes bigint)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT t.parent_table, c.oid::regclass::text, b.lower, b.upper, b.lower IS NULL AND b.upper IS NULL,
           greatest(c.reltuples, 0)::bigint, pg_total_relation_size(c.oid)
    FROM booking_admin.partitioned_tables t
    JOIN pg_inherits i ON i.inhparent = to_regclass(t.parent_table)
    JOIN pg_class c ON c.oid = i.inhrelid
    CROSS JOIN LATERAL (SELECT regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \((.+)\) TO \((.+)\)') AS m) x
    CROSS JOIN LATERAL (
        SELECT CASE x.m[1] WHEN 'MINVALUE' THEN '-infinity' ELSE trim(x.m[1], '''') END::timestamptz AS lower,
               CASE x.m[2] WHEN 'MAXVALUE' THEN 'infinity' ELSE trim(x.m[2], '''') END::timestamptz AS upper) b
    WHERE p_table IS NULL OR t.parent_table = p_table
    ORDER BY t.parent_table, b.lower IS NULL, b.lower
$$;

-- What a partition needs besides what ATTACH gives it (row triggers, foreign keys, checks): the
-- default partition's keys and indexes, named after the partition (events_pkey of
-- booking.events_default becomes events_p20260101_pkey of booking.events_p20260101), the
-- parent's statement-level TRUNCATE guards (a TRUNCATE of the partition alone would not fire
-- the parent's) and its row-level security switch.
CREATE FUNCTION booking_admin.prepare_partition(p_parent regclass, p_partition regclass) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t record;
    v_parent_name name := (SELECT relname FROM pg_class WHERE oid = p_parent);
    v_name name := (SELECT relname FROM pg_class WHERE oid = p_partition);
BEGIN
    FOR t IN
        SELECT x.indexrelid, k.oid AS constraint_oid, i.relname,
               left(v_name || CASE WHEN starts_with(i.relname, v_parent_name || '_')
                                   THEN substr(i.relname, length(v_parent_name) + 1) ELSE '_' || i.relname END, 63) AS new_name
        FROM pg_inherits h
        JOIN pg_class d ON d.oid = h.inhrelid AND pg_get_expr(d.relpartbound, d.oid) = 'DEFAULT'
        JOIN pg_index x ON x.indrelid = d.oid
        JOIN pg_class i ON i.oid = x.indexrelid
        LEFT JOIN pg_constraint k ON k.conindid = x.indexrelid AND k.conrelid = d.oid AND k.contype IN ('p', 'u', 'x')
        WHERE h.inhparent = p_parent AND d.oid <> p_partition
        ORDER BY i.relname
    LOOP
        CONTINUE WHEN EXISTS (SELECT 1 FROM pg_class c WHERE c.relname = t.new_name AND c.relnamespace =
                                  (SELECT relnamespace FROM pg_class WHERE oid = p_partition));
        IF t.constraint_oid IS NOT NULL THEN
            EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I %s', p_partition, t.new_name,
                           pg_get_constraintdef(t.constraint_oid));
        ELSE
            EXECUTE regexp_replace(pg_get_indexdef(t.indexrelid), ' INDEX \S+ ON \S+ ',
                                   format(' INDEX %I ON %s ', t.new_name, p_partition));
        END IF;
    END LOOP;
    FOR t IN
        SELECT g.tgname, pg_get_triggerdef(g.oid) AS def
        FROM pg_trigger g
        WHERE g.tgrelid = p_parent AND NOT g.tgisinternal AND g.tgtype & 1 = 0 AND g.tgtype & 32 <> 0
          AND NOT EXISTS (SELECT 1 FROM pg_trigger o WHERE o.tgrelid = p_partition AND o.tgname = g.tgname)
    LOOP
        EXECUTE replace(t.def, ' ON ' || p_parent::text || ' ', ' ON ' || p_partition::text || ' ');
    END LOOP;
    IF (SELECT relrowsecurity FROM pg_class WHERE oid = p_parent) THEN
        EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', p_partition);
    END IF;
END $$;

-- One partition [p_lower, p_upper) of a table, with the rows of that range the default
-- partition holds: created beside the table, filled, then attached (ATTACH takes a SHARE UPDATE
-- EXCLUSIVE lock on the table, so reads and writes go on). A range rows may be written to right
-- now (the current interval, or a past one) is attached with the table's writes held back for
-- the moment: a writer that had planned with the partitions as they were would route such a row
-- to the default partition, which ATTACH has just made refuse it. Returns its name.
CREATE FUNCTION booking_admin.create_partition(p_parent regclass, p_key text, p_lower timestamptz, p_upper timestamptz)
RETURNS text
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_schema name;
    v_name text;
    v_default regclass;
    v_columns text;
    v_part regclass;
    v_rows boolean := false;
    v_guards name[];
BEGIN
    SELECT n.nspname, c.relname || '_p' || to_char(p_lower AT TIME ZONE 'UTC', 'YYYYMMDD')
    INTO v_schema, v_name
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = p_parent;
    SELECT i.inhrelid::regclass INTO v_default
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = p_parent AND pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT';
    EXECUTE format('CREATE TABLE %I.%I (LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMMENTS)',
                   v_schema, v_name, p_parent);
    v_part := format('%I.%I', v_schema, v_name)::regclass;
    IF v_default IS NOT NULL AND p_lower < now() + interval '1 hour' THEN
        EXECUTE format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', p_parent);
    END IF;
    IF v_default IS NOT NULL THEN
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s WHERE %I >= $1 AND %I < $2)', v_default, p_key, p_key)
            INTO v_rows USING p_lower, p_upper;
    END IF;
    IF v_rows THEN
        -- No row of the range may reach the default partition between the copy and the delete.
        EXECUTE format('LOCK TABLE %s IN EXCLUSIVE MODE', v_default);
        SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO v_columns
        FROM pg_attribute a WHERE a.attrelid = p_parent AND a.attnum > 0 AND NOT a.attisdropped;
        EXECUTE format('INSERT INTO %s (%s) SELECT %s FROM %s WHERE %I >= $1 AND %I < $2',
                       v_part, v_columns, v_columns, v_default, p_key, p_key) USING p_lower, p_upper;
        -- The rows move, none is removed: the guards against removing rows (the audit log's
        -- append-only trigger) stand aside for this one statement.
        SELECT array_agg(g.tgname) INTO v_guards FROM pg_trigger g
        WHERE g.tgrelid = v_default AND NOT g.tgisinternal AND g.tgtype & 1 = 0 AND g.tgtype & 32 <> 0 AND g.tgenabled <> 'D';
        FOR i IN 1..coalesce(cardinality(v_guards), 0) LOOP
            EXECUTE format('ALTER TABLE %s DISABLE TRIGGER %I', v_default, v_guards[i]);
        END LOOP;
        EXECUTE format('DELETE FROM %s WHERE %I >= $1 AND %I < $2', v_default, p_key, p_key) USING p_lower, p_upper;
        FOR i IN 1..coalesce(cardinality(v_guards), 0) LOOP
            EXECUTE format('ALTER TABLE %s ENABLE TRIGGER %I', v_default, v_guards[i]);
        END LOOP;
    END IF;
    EXECUTE format('ALTER TABLE %s ATTACH PARTITION %s FOR VALUES FROM (%L) TO (%L)', p_parent, v_part, p_lower, p_upper);
    PERFORM booking_admin.prepare_partition(p_parent, v_part);
    RETURN v_part::text;
END $$;

-- One maintenance pass (see the top of this file) over every partitioned table or one of
-- them. Inside a freeze window (booking_admin.freeze_state) only the partitions ahead are
-- created: moving rows out of the default partition and dropping partitions take strong locks
-- and wait for the window's end. Each table is maintained in a subtransaction of its own, so
-- one failure (a lock not granted within deadlock_timeout + 1 s) leaves the others done; the
-- next run retries.
-- Returns {"tables": [{table, created, moved_rows, dropped, deferred_until, error}], ...}; on a
-- Citus coordinator also {"workers": [...]}, the same pass run on every worker for the tables
-- that are local to each node (their audit log).
CREATE FUNCTION booking_admin.maintain_partitions(p_table text DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    cfg booking_admin.partitioned_tables;
    v_parent regclass;
    v_default regclass;
    v_freeze jsonb := booking_admin.freeze_state(NULL);
    v_frozen boolean := (v_freeze ->> 'frozen')::boolean;
    v_now timestamptz := greatest(now(), booking.clock_now());
    v_citus boolean := to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL;
    v_coordinator boolean := false;
    v_lock_timeout text := current_setting('lock_timeout');
    v_report jsonb := '[]';
    v_one jsonb;
    v_created text[];
    v_dropped text[];
    v_moved bigint;
    v_oldest timestamptz;
    v_range record;
    v_part record;
    v_keep boolean;
    v_workers jsonb;
BEGIN
    IF NOT booking.caller_is_operator() THEN
        RAISE EXCEPTION 'only operators maintain partitions' USING ERRCODE = '42501';
    END IF;
    IF p_table IS NOT NULL AND NOT EXISTS (SELECT 1 FROM booking_admin.partitioned_tables t WHERE t.parent_table = p_table) THEN
        RAISE EXCEPTION 'booking_admin.partitioned_tables has no table %', quote_literal(p_table) USING ERRCODE = '22023',
            HINT = 'One of: ' || (SELECT string_agg(parent_table, ', ' ORDER BY parent_table) FROM booking_admin.partitioned_tables);
    END IF;
    IF v_citus THEN
        EXECUTE 'SELECT citus_is_coordinator()' INTO v_coordinator;
        -- Citus's propagated DDL and data moves on a distributed table, one connection per node.
        PERFORM set_config('citus.multi_shard_modify_mode', 'sequential', true);
    END IF;
    -- Never queue for long behind another transaction while holding what was locked so far; but
    -- a second longer than deadlock_timeout, after which a waiting lock cancels an autovacuum
    -- that holds it (a fresh partition's first analyze would otherwise win every time).
    PERFORM set_config('lock_timeout',
                       (extract(epoch FROM current_setting('deadlock_timeout')::interval) * 1000 + 1000)::bigint::text, true);
    FOR cfg IN SELECT * FROM booking_admin.partitioned_tables t WHERE p_table IS NULL OR t.parent_table = p_table
               ORDER BY t.parent_table LOOP
        v_parent := to_regclass(cfg.parent_table);
        IF v_parent IS NULL OR (SELECT relkind FROM pg_class WHERE oid = v_parent) <> 'p' THEN
            CONTINUE;
        END IF;
        -- On a Citus worker, the tables Citus manages (or will, once distribute_tables has run:
        -- booking_admin.citus_layout) are partitioned by the coordinator only; a partition made
        -- here beforehand would stop Citus from creating the distributed one of that name.
        IF v_citus AND NOT v_coordinator
           AND (booking_admin.is_citus_table(v_parent)
                OR EXISTS (SELECT 1 FROM booking_admin.citus_layout() l
                           WHERE l.kind IN ('distributed', 'reference') AND l.object = cfg.parent_table)) THEN
            CONTINUE;
        END IF;
        v_created := '{}';
        v_dropped := '{}';
        v_moved := 0;
        BEGIN
            SELECT i.inhrelid::regclass INTO v_default
            FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = v_parent AND pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT';
            -- 1. The oldest interval of rows waiting in the default partition (one interval per
            -- run: a large upgraded table is spread over the next runs, each a short lock).
            IF v_default IS NOT NULL AND NOT v_frozen THEN
                EXECUTE format('SELECT min(%I) FROM %s', cfg.partition_key, v_default) INTO v_oldest;
                IF v_oldest IS NOT NULL THEN
                    SELECT * INTO v_range FROM booking_admin.partition_bounds(cfg.partition_interval, v_oldest);
                    EXECUTE format('SELECT count(*) FROM %s WHERE %I >= $1 AND %I < $2', v_default, cfg.partition_key,
                                   cfg.partition_key) INTO v_moved USING v_range.lower, v_range.upper;
                    v_created := v_created || booking_admin.create_partition(v_parent, cfg.partition_key, v_range.lower,
                                                                             v_range.upper);
                END IF;
            END IF;
            -- 2. The current interval and `premake` ahead, where no partition covers them yet
            -- (and, inside a freeze window, where the default partition holds none of their rows):
            -- the two nearest missing ones per run (the current one first), so that the first runs
            -- after an install spread their work, and their locks, over several short runs.
            FOR v_range IN
                SELECT b.lower, b.upper
                FROM generate_series(0, cfg.premake) k
                CROSS JOIN LATERAL booking_admin.partition_bounds(cfg.partition_interval,
                                                                  v_now + k * ('1 ' || cfg.partition_interval)::interval) b
                WHERE NOT EXISTS (SELECT 1 FROM booking_admin.partitions(cfg.parent_table) p
                                  WHERE NOT p.is_default AND p.range_from < b.upper AND p.range_to > b.lower)
                ORDER BY b.lower
                LIMIT 2
            LOOP
                IF v_frozen AND v_default IS NOT NULL THEN
                    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s WHERE %I >= $1 AND %I < $2)', v_default,
                                   cfg.partition_key, cfg.partition_key) INTO v_keep USING v_range.lower, v_range.upper;
                    CONTINUE WHEN v_keep;
                END IF;
                v_created := v_created || booking_admin.create_partition(v_parent, cfg.partition_key, v_range.lower,
                                                                         v_range.upper);
            END LOOP;
            -- 3. Retention: whole partitions past it, unless a row still needs them.
            IF cfg.retention IS NOT NULL AND NOT v_frozen THEN
                FOR v_part IN
                    SELECT p.partition_name FROM booking_admin.partitions(cfg.parent_table) p
                    WHERE NOT p.is_default AND p.range_to <= booking.clock_now() - cfg.retention
                LOOP
                    v_keep := false;
                    IF cfg.keep_while IS NOT NULL THEN
                        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s WHERE %s)', v_part.partition_name, cfg.keep_while)
                            INTO v_keep;
                    END IF;
                    CONTINUE WHEN v_keep;
                    EXECUTE format('DROP TABLE %s', v_part.partition_name);
                    v_dropped := v_dropped || v_part.partition_name;
                END LOOP;
            END IF;
            v_one := jsonb_build_object('table', cfg.parent_table, 'created', to_jsonb(v_created), 'moved_rows', v_moved,
                                        'dropped', to_jsonb(v_dropped));
        EXCEPTION WHEN OTHERS THEN
            v_one := jsonb_build_object('table', cfg.parent_table, 'error', SQLERRM, 'sqlstate', SQLSTATE);
        END;
        IF v_frozen THEN
            v_one := v_one || jsonb_build_object('deferred_until', v_freeze -> 'until');
        END IF;
        UPDATE booking_admin.partitioned_tables t SET last_run_at = clock_timestamp(), last_result = v_one
        WHERE t.parent_table = cfg.parent_table;
        v_report := v_report || v_one;
    END LOOP;
    PERFORM set_config('lock_timeout', v_lock_timeout, true);
    IF v_coordinator AND p_table IS NULL THEN
        -- The coordinator's scheduler is the cluster's: the workers' own tables (their audit
        -- log, written where a call runs) are maintained from here.
        EXECUTE $q$SELECT coalesce(jsonb_agg(jsonb_build_object('node', nodename || ':' || nodeport, 'success', success,
                                                              'result', result)), '[]')
                   FROM run_command_on_workers('SELECT booking_admin.maintain_partitions()')$q$ INTO v_workers;
        RETURN jsonb_build_object('tables', v_report, 'workers', v_workers);
    END IF;
    RETURN jsonb_build_object('tables', v_report);
END $$;

-- An operator's changes to one table's maintenance (NULL leaves a setting as it is; the
-- retention is removed with p_keep_forever). The interval can only change while the table has
-- no partition but its default one (partitions of two sizes could not be told apart).
CREATE FUNCTION booking_admin.configure_partitions(p_table text, p_retention interval DEFAULT NULL,
                                                   p_premake integer DEFAULT NULL, p_interval text DEFAULT NULL,
                                                   p_keep_forever boolean DEFAULT false)
RETURNS booking_admin.partitioned_tables
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v booking_admin.partitioned_tables;
BEGIN
    SELECT * INTO v FROM booking_admin.partitioned_tables t WHERE t.parent_table = p_table FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'booking_admin.partitioned_tables has no table %', coalesce(quote_literal(p_table), 'NULL')
            USING ERRCODE = 'P0002';
    END IF;
    IF p_retention <= interval '0' OR p_premake NOT BETWEEN 1 AND 366 OR p_interval NOT IN ('day', 'week', 'month') THEN
        RAISE EXCEPTION 'retention must be positive, premake between 1 and 366, the interval day, week or month'
            USING ERRCODE = '22023';
    END IF;
    IF p_interval IS DISTINCT FROM v.partition_interval AND p_interval IS NOT NULL
       AND EXISTS (SELECT 1 FROM booking_admin.partitions(p_table) p WHERE NOT p.is_default) THEN
        RAISE EXCEPTION '% already has partitions of a %: its interval cannot change', p_table, v.partition_interval
            USING ERRCODE = '55000';
    END IF;
    UPDATE booking_admin.partitioned_tables t
    SET retention = CASE WHEN p_keep_forever THEN NULL ELSE coalesce(p_retention, t.retention) END,
        premake = coalesce(p_premake, t.premake),
        partition_interval = coalesce(p_interval, t.partition_interval)
    WHERE t.parent_table = p_table
    RETURNING * INTO v;
    RETURN v;
END $$;
