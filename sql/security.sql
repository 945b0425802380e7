-- Security automation: the audit log, the PII registry, the rule engine and its default rules,
-- the compliance report. Everything is in booking_admin (not for PUBLIC) except the audit entry
-- point of trusted back ends, booking.log_security_event (not for PUBLIC either: see
-- booking_admin.grant_api_roles in finalize.sql).

-- The audit trail. No foreign keys: it must outlive the tenants and users it mentions.
-- Partitioned by month (sql/partitions.sql): its retention drops whole months.
CREATE TABLE booking_admin.security_audit_log (
    id                      uuid NOT NULL DEFAULT gen_random_uuid(),
    tenant_id               uuid,
    user_id                 uuid,
    db_user                 text,
    action                  text NOT NULL CHECK (length(action) BETWEEN 1 AND 255),
    resource_type           text NOT NULL CHECK (length(resource_type) BETWEEN 1 AND 255),
    resource_id             text,
    ip_address              inet,
    user_agent              text,
    request_id              text,
    success                 boolean NOT NULL,
    failure_reason          text,
    sensitive_data_accessed boolean NOT NULL DEFAULT false,
    mfa                     boolean,
    created_at              timestamptz NOT NULL DEFAULT booking.clock_now()
) PARTITION BY RANGE (created_at);
-- The key and the indexes are the partitions' (sql/partitions.sql), each month's copied from
-- the default partition's.
CREATE TABLE booking_admin.security_audit_log_default PARTITION OF booking_admin.security_audit_log (
    CONSTRAINT security_audit_log_pkey PRIMARY KEY (id)
) DEFAULT;
CREATE INDEX security_audit_log_created_idx ON booking_admin.security_audit_log_default (created_at);
CREATE INDEX security_audit_log_failures_idx ON booking_admin.security_audit_log_default (action, created_at) WHERE NOT success;
CREATE INDEX security_audit_log_tenant_idx ON booking_admin.security_audit_log_default (tenant_id, created_at);
COMMENT ON TABLE booking_admin.security_audit_log IS
    'Append-only audit trail. Context columns left NULL on insert are filled from the request (request.jwt.claims, request.headers) or the session. mfa: NULL without JWT claims.';
COMMENT ON COLUMN booking_admin.security_audit_log.db_user IS 'The database role the session acted as (outside SECURITY DEFINER functions).';

-- Whoever inserts, the context comes from the request, so a direct INSERT is as good as
-- booking.log_security_event.
CREATE FUNCTION booking.security_audit_fill() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    ctx jsonb := booking.request_context();
BEGIN
    NEW.user_id    := coalesce(NEW.user_id, (ctx->>'user_id')::uuid);
    NEW.db_user    := coalesce(NEW.db_user, ctx->>'db_user');
    NEW.tenant_id  := coalesce(NEW.tenant_id, (ctx->>'tenant_id')::uuid);
    NEW.ip_address := coalesce(NEW.ip_address, (ctx->>'ip_address')::inet);
    NEW.user_agent := coalesce(NEW.user_agent, ctx->>'user_agent');
    NEW.request_id := coalesce(NEW.request_id, ctx->>'request_id');
    NEW.mfa        := coalesce(NEW.mfa, (ctx->>'mfa')::boolean);
    RETURN NEW;
END $$;
CREATE TRIGGER security_audit_fill BEFORE INSERT ON booking_admin.security_audit_log
    FOR EACH ROW EXECUTE FUNCTION booking.security_audit_fill();

-- A trail that can be edited proves nothing: no role, the owner included, updates, deletes or
-- truncates it while this trigger is enabled (retention needs a superuser to disable it).
CREATE FUNCTION booking.security_audit_append_only() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RAISE EXCEPTION 'security_audit_log is append-only: % is not allowed', TG_OP USING ERRCODE = '42501';
END $$;
CREATE TRIGGER security_audit_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON booking_admin.security_audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION booking.security_audit_append_only();
-- A statement on a partition alone does not fire the table's statement triggers: each partition
-- carries the guard too (partition-maintenance gives it to the partitions it creates). Dropping
-- a partition past retention is the one way rows leave.
SELECT booking_admin.prepare_partition('booking_admin.security_audit_log', 'booking_admin.security_audit_log_default');

-- What trusted back ends call (service_role, operators): untrusted callers could forge failed
-- logins or other tenants' entries, so it is not executable by PUBLIC. The extension's own kinds
-- of entries cannot be forged through it either.
CREATE FUNCTION booking.log_security_event(
    p_action text, p_resource_type text, p_resource_id text DEFAULT NULL, p_success boolean DEFAULT true,
    p_failure_reason text DEFAULT NULL, p_sensitive_data_accessed boolean DEFAULT false, p_tenant_id uuid DEFAULT NULL)
RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
BEGIN
    IF p_resource_type = 'booking_admin_function' OR p_action LIKE 'booking.%' THEN
        RAISE EXCEPTION 'audit entries of resource type "booking_admin_function" and actions "booking.*" are written by booking_engine itself'
            USING ERRCODE = '42501';
    END IF;
    RETURN booking.audit_event(p_action, p_resource_type, p_resource_id, p_success, p_failure_reason,
                               p_sensitive_data_accessed, p_tenant_id);
END $$;
REVOKE ALL ON FUNCTION booking.audit_event(text, text, text, boolean, text, boolean, uuid) FROM PUBLIC;

-- PII columns. operator_set lists the fields an operator chose (insert or update outside a
-- scan); scans never overwrite those.
CREATE TABLE booking_admin.pii_data_registry (
    table_name        text NOT NULL,
    column_name       text NOT NULL,
    data_type         text NOT NULL,
    encryption_method text,
    retention_days    integer CHECK (retention_days > 0),
    compliance_level  text NOT NULL CHECK (compliance_level IN ('public', 'internal', 'confidential', 'restricted')),
    last_scan_at      timestamptz DEFAULT now(),
    operator_set      text[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (table_name, column_name)
);
COMMENT ON TABLE booking_admin.pii_data_registry IS
    'Columns holding personal data: found by booking_admin.scan_pii() or entered by an operator. table_name is schema-qualified and quoted as format(''%I.%I'') writes it.';

CREATE FUNCTION booking.pii_registry_track_operator() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF current_setting('booking_admin.pii_scan', true) IS DISTINCT FROM 'on' THEN
        NEW.operator_set := ARRAY(
            SELECT DISTINCT f FROM unnest(coalesce(NEW.operator_set, '{}') || ARRAY[
                CASE WHEN TG_OP = 'INSERT' OR NEW.data_type IS DISTINCT FROM OLD.data_type THEN 'data_type' END,
                CASE WHEN (TG_OP = 'INSERT' AND NEW.encryption_method IS NOT NULL)
                       OR (TG_OP = 'UPDATE' AND NEW.encryption_method IS DISTINCT FROM OLD.encryption_method) THEN 'encryption_method' END,
                CASE WHEN TG_OP = 'INSERT' OR NEW.compliance_level IS DISTINCT FROM OLD.compliance_level THEN 'compliance_level' END]) f
            WHERE f IS NOT NULL ORDER BY f);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER pii_registry_track_operator BEFORE INSERT OR UPDATE ON booking_admin.pii_data_registry
    FOR EACH ROW EXECUTE FUNCTION booking.pii_registry_track_operator();

-- The scan's write: new columns inserted, known ones refreshed except where an operator chose.
CREATE FUNCTION booking_admin.record_pii_columns(p_found jsonb) RETURNS bigint
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_new bigint;
BEGIN
    PERFORM set_config('booking_admin.pii_scan', 'on', true);
    WITH up AS (
        INSERT INTO booking_admin.pii_data_registry AS r
            (table_name, column_name, data_type, compliance_level, encryption_method, last_scan_at)
        SELECT f.table_name, f.column_name, f.data_type, f.compliance_level, f.encryption_method, booking.clock_now()
        FROM jsonb_to_recordset(p_found) AS f(table_name text, column_name text, data_type text,
                                             compliance_level text, encryption_method text)
        ON CONFLICT (table_name, column_name) DO UPDATE SET
            data_type = CASE WHEN 'data_type' = ANY (r.operator_set) THEN r.data_type ELSE EXCLUDED.data_type END,
            compliance_level = CASE WHEN 'compliance_level' = ANY (r.operator_set) THEN r.compliance_level ELSE EXCLUDED.compliance_level END,
            encryption_method = CASE WHEN 'encryption_method' = ANY (r.operator_set) THEN r.encryption_method ELSE EXCLUDED.encryption_method END,
            last_scan_at = EXCLUDED.last_scan_at
        RETURNING (xmax = 0) AS inserted)
    SELECT count(*) FILTER (WHERE inserted) INTO v_new FROM up;
    PERFORM set_config('booking_admin.pii_scan', '', true);
    RETURN v_new;
END $$;

-- The registry with each column's current type; bytea and recorded encryption count as encrypted.
CREATE FUNCTION booking_admin.get_pii_registry()
RETURNS TABLE (table_name text, column_name text, data_type text, column_type text, encryption_method text,
               is_encrypted boolean, retention_days integer, compliance_level text, last_scan_at timestamptz,
               operator_set text[])
LANGUAGE sql STABLE SET search_path = pg_catalog, booking, pg_temp AS $$
    SELECT r.table_name, r.column_name, r.data_type, format_type(a.atttypid, a.atttypmod),
           coalesce(r.encryption_method, CASE WHEN a.atttypid = 'bytea'::regtype THEN 'bytea' END),
           r.encryption_method IS NOT NULL OR a.atttypid IS NOT DISTINCT FROM 'bytea'::regtype,
           r.retention_days, r.compliance_level, r.last_scan_at, r.operator_set
    FROM booking_admin.pii_data_registry r
    LEFT JOIN pg_catalog.pg_attribute a
           ON a.attrelid = to_regclass(r.table_name) AND a.attname = r.column_name AND NOT a.attisdropped
    ORDER BY r.table_name, r.column_name
$$;

CREATE TABLE booking_admin.security_rules (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    rule_name        text NOT NULL UNIQUE,
    rule_type        text NOT NULL,
    severity         text NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'critical')),
    condition_sql    text NOT NULL CHECK (booking.is_single_select(condition_sql)),
    remediation_text text NOT NULL,
    -- What may be done about a violation (see booking_admin.security_remediations): proposed as
    -- a dry run when the violation is found, carried out when an operator approves it.
    remediation_action   text CHECK (remediation_action IN ('block_client', 'delete_expired_pii', 'revoke_grant')),
    remediation_settings jsonb NOT NULL DEFAULT '{}',
    is_active        boolean NOT NULL DEFAULT true,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER security_rules_touch BEFORE UPDATE ON booking_admin.security_rules
    FOR EACH ROW EXECUTE FUNCTION booking.touch_updated_at();
COMMENT ON COLUMN booking_admin.security_rules.condition_sql IS
    'One SELECT; every row is a violation and its columns its details. Return an "object" column naming the offending object (one open violation per rule and object) and optionally "tenant_id".';

CREATE TABLE booking_admin.security_violations (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    rule_id           uuid NOT NULL REFERENCES booking_admin.security_rules (id) ON DELETE CASCADE,
    tenant_id         uuid,
    object_key        text NOT NULL,
    violation_details jsonb NOT NULL,
    severity          text NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'critical')),
    status            text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'acknowledged', 'resolved')),
    detected_at       timestamptz NOT NULL,
    resolved_at       timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'resolved') = (resolved_at IS NOT NULL))
);
CREATE UNIQUE INDEX security_violations_one_open_idx
    ON booking_admin.security_violations (rule_id, object_key) WHERE status <> 'resolved';
CREATE INDEX security_violations_open_idx ON booking_admin.security_violations (severity, detected_at) WHERE status <> 'resolved';
-- The foreign key's side: deleting a rule finds its resolved violations too.
CREATE INDEX security_violations_rule_idx ON booking_admin.security_violations (rule_id);

SELECT pg_catalog.pg_extension_config_dump('booking_admin.security_audit_log', '');
SELECT pg_catalog.pg_extension_config_dump('booking_admin.security_audit_log_default', '');
SELECT pg_catalog.pg_extension_config_dump('booking_admin.pii_data_registry', '');
SELECT pg_catalog.pg_extension_config_dump('booking_admin.security_rules', '');
SELECT pg_catalog.pg_extension_config_dump('booking_admin.security_violations', '');

-- Registered tables with rows older than their retention (by their created_at column).
CREATE FUNCTION booking_admin.retention_overdue()
RETURNS TABLE (table_name text, retention_days integer, overdue_rows bigint)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT to_regclass(p.table_name) AS rel, p.table_name, min(p.retention_days) AS days
        FROM booking_admin.pii_data_registry p
        WHERE p.retention_days IS NOT NULL
          AND EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                      WHERE a.attrelid = to_regclass(p.table_name) AND a.attname = 'created_at' AND NOT a.attisdropped)
        GROUP BY p.table_name
    LOOP
        EXECUTE format('SELECT count(*) FROM %s WHERE created_at < $1', r.rel)
            INTO overdue_rows USING booking.clock_now() - make_interval(days => r.days);
        IF overdue_rows > 0 THEN
            table_name := r.table_name;
            retention_days := r.days;
            RETURN NEXT;
        END IF;
    END LOOP;
END $$;

-- The five seed rules and the database lints; existing rules (an operator may have changed
-- them) are left alone. Returns how many were added.
CREATE FUNCTION booking_admin.init_default_security_rules() RETURNS integer
LANGUAGE sql VOLATILE SET search_path = pg_catalog, booking, pg_temp AS $$
    WITH ins AS (
        INSERT INTO booking_admin.security_rules (rule_name, rule_type, severity, condition_sql, remediation_text,
                                                  remediation_action, remediation_settings)
        VALUES
        ('unencrypted_pii', 'data_protection', 'high',
         $r$SELECT r.table_name || '.' || r.column_name AS object, r.table_name, r.column_name, r.data_type, r.compliance_level
            FROM booking_admin.get_pii_registry() r
            WHERE NOT r.is_encrypted AND r.compliance_level IN ('confidential', 'restricted')$r$,
         'Encrypt the column (pgcrypto or bytea ciphertext) or lower its compliance level if it is not personal data.',
         NULL, '{}'),
        ('excessive_failed_logins', 'authentication', 'medium',
         $r$SELECT k.object, k.kind, k.value, count(*) AS failures, max(a.created_at) AS last_failure
            FROM booking_admin.security_audit_log a
            CROSS JOIN LATERAL (VALUES ('ip:' || host(a.ip_address), 'ip', host(a.ip_address)),
                                       ('user:' || a.resource_id, 'user', a.resource_id)) k (object, kind, value)
            WHERE a.action = 'login' AND NOT a.success AND k.value IS NOT NULL
              AND a.created_at > booking.clock_now() - interval '15 minutes' AND a.created_at <= booking.clock_now()
            GROUP BY k.object, k.kind, k.value HAVING count(*) >= 5$r$,
         'Block the IP address or lock the account for a while, and check whether the attempts come from an attack.',
         'block_client', '{"block_for": "1 hour"}'),
        ('privileged_action_without_mfa', 'access_control', 'critical',
         $r$SELECT a.id::text AS object, a.id AS audit_id, a.tenant_id, a.user_id, a.db_user, a.resource_id AS function, a.created_at
            FROM booking_admin.security_audit_log a
            WHERE a.resource_type = 'booking_admin_function' AND a.mfa = false
              AND a.created_at > booking.clock_now() - interval '24 hours'$r$,
         'Require a second factor (aal2) for operators before granting them booking_admin functions.',
         NULL, '{}'),
        ('data_retention_violation', 'data_retention', 'medium',
         $r$SELECT o.table_name AS object, o.retention_days, o.overdue_rows FROM booking_admin.retention_overdue() o$r$,
         'Archive or delete the rows older than the registry''s retention_days.',
         'delete_expired_pii', '{}'),
        ('off_hours_sensitive_access', 'monitoring', 'medium',
         $r$SELECT a.id::text AS object, a.id AS audit_id, a.tenant_id, a.user_id, a.db_user, a.action, a.resource_type,
                   a.resource_id, a.created_at, t.timezone
            FROM booking_admin.security_audit_log a JOIN booking.tenants t ON t.id = a.tenant_id
            WHERE a.sensitive_data_accessed AND a.created_at > booking.clock_now() - interval '7 days'
              AND NOT booking.is_within_opening_hours(t.opening_hours, a.created_at AT TIME ZONE t.timezone)$r$,
         'Review the business reason for reading personal data outside opening hours.',
         NULL, '{}'),
        ('lint_rls_disabled', 'lint', 'high',
         $r$SELECT format('%I.%I', n.nspname, c.relname) AS object, n.nspname AS schema, c.relname AS table_name
            FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'p') AND NOT c.relrowsecurity
              AND n.nspname = ANY (string_to_array(replace(current_setting('booking_engine.exposed_schemas'), ' ', ''), ','))$r$,
         'ALTER TABLE ... ENABLE ROW LEVEL SECURITY and add policies, or stop exposing the schema.',
         NULL, '{}'),
        ('lint_security_definer_search_path', 'lint', 'high',
         $r$SELECT format('%I.%I(%s)', n.nspname, p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid)) AS object,
                   n.nspname AS schema, p.proname AS function
            FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
            WHERE p.prosecdef AND n.nspname NOT IN ('pg_catalog', 'information_schema')
              AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search\_path=%')$r$,
         'ALTER FUNCTION ... SET search_path = pg_catalog, <schema>, pg_temp.',
         NULL, '{}'),
        ('lint_public_execute_on_admin', 'lint', 'critical',
         $r$SELECT format('%I.%I(%s)', n.nspname, p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid)) AS object,
                   p.proname AS function, 'FUNCTION' AS object_type, 'EXECUTE' AS privilege, 'PUBLIC' AS grantee
            FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
            WHERE n.nspname = 'booking_admin' AND pg_catalog.has_function_privilege('public', p.oid, 'EXECUTE')$r$,
         'REVOKE EXECUTE ON FUNCTION ... FROM PUBLIC and grant it to operator roles only.',
         'revoke_grant', '{}')
        ON CONFLICT (rule_name) DO NOTHING
        RETURNING 1)
    SELECT count(*)::integer FROM ins
$$;

-- The security report in one document (compliance, violations, audit, rules).
CREATE FUNCTION booking_admin.compliance_report() RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, booking, pg_temp AS $$
    WITH reg AS (SELECT * FROM booking_admin.get_pii_registry()),
         open AS (SELECT v.*, r.rule_name FROM booking_admin.security_violations v
                  JOIN booking_admin.security_rules r ON r.id = v.rule_id WHERE v.status <> 'resolved')
    SELECT jsonb_build_object(
        'generated_at', booking.clock_now(),
        'pii_summary', jsonb_build_object(
            'columns', (SELECT count(*) FROM reg),
            'by_compliance_level', (SELECT jsonb_object_agg(l, (SELECT count(*) FROM reg WHERE reg.compliance_level = l))
                                    FROM unnest(ARRAY['public', 'internal', 'confidential', 'restricted']) l),
            'last_scan_at', (SELECT max(last_scan_at) FROM reg)),
        'encryption_coverage_pct', (SELECT CASE WHEN count(*) = 0 THEN 100
                                                ELSE round(100.0 * count(*) FILTER (WHERE is_encrypted) / count(*), 1) END
                                    FROM reg),
        'open_violations', jsonb_build_object(
            'total', (SELECT count(*) FROM open),
            'by_severity', (SELECT jsonb_object_agg(s, (SELECT count(*) FROM open WHERE open.severity = s))
                            FROM unnest(ARRAY['low', 'medium', 'high', 'critical']) s)),
        'oldest_unresolved_violation', (SELECT jsonb_build_object('id', o.id, 'rule', o.rule_name, 'severity', o.severity,
                                                                  'object', o.object_key, 'detected_at', o.detected_at)
                                        FROM open o ORDER BY o.detected_at, o.id LIMIT 1),
        'audit', (SELECT jsonb_build_object(
                      'last_24h', count(*) FILTER (WHERE a.created_at > booking.clock_now() - interval '24 hours' AND a.created_at <= booking.clock_now()),
                      'failures_last_24h', count(*) FILTER (WHERE NOT a.success AND a.created_at > booking.clock_now() - interval '24 hours' AND a.created_at <= booking.clock_now()),
                      'last_30d', count(*) FILTER (WHERE a.created_at > booking.clock_now() - interval '30 days' AND a.created_at <= booking.clock_now()),
                      'total', count(*))
                  FROM booking_admin.security_audit_log a),
        'rules', (SELECT jsonb_build_object('active', count(*) FILTER (WHERE is_active), 'total', count(*))
                  FROM booking_admin.security_rules))
$$;

-- Remediations ----------------------------------------------------------------------------------

-- What may be done about a violation, one row per action: proposed (a dry run says what it
-- would do) when a rule naming an action finds a violation, carried out only when an operator
-- approves it, undone where that is possible. Every step is audited (security_audit_log,
-- resource type 'security_remediation').
--   block_client        the rate limiter refuses the identifier (an address or user id, the
--                       violation's kind and value) in every bucket until expires_at
--                       (settings.block_for, default 1 hour); reverted by unblocking
--   delete_expired_pii  deletes the rows of a registered table older than the PII registry's
--                       retention_days (by created_at); cannot be undone
--   revoke_grant        REVOKE privilege ON object_type object FROM grantee (the violation's
--                       columns of those names); reverted by granting it again
CREATE TABLE booking_admin.security_remediations (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    violation_id uuid REFERENCES booking_admin.security_violations (id) ON DELETE SET NULL,
    rule_name    text NOT NULL,
    tenant_id    uuid,
    action       text NOT NULL CHECK (action IN ('block_client', 'delete_expired_pii', 'revoke_grant')),
    -- The violation's details when it was proposed, and what the action resolved them to.
    details      jsonb NOT NULL,
    target       jsonb NOT NULL,
    plan         text NOT NULL,
    dry_run      jsonb NOT NULL,
    status       text NOT NULL DEFAULT 'proposed'
                 CHECK (status IN ('proposed', 'applied', 'failed', 'rejected', 'reverted', 'expired')),
    proposed_at  timestamptz NOT NULL DEFAULT booking.clock_now(),
    decided_by   text,
    decided_at   timestamptz,
    note         text,
    applied_at   timestamptz,
    expires_at   timestamptz,
    result       jsonb,
    reverted_by  text,
    reverted_at  timestamptz
);
-- One proposal per violation and action.
CREATE UNIQUE INDEX security_remediations_violation_idx ON booking_admin.security_remediations (violation_id, action);
CREATE INDEX security_remediations_open_idx ON booking_admin.security_remediations (status, expires_at)
    WHERE status IN ('proposed', 'applied');
SELECT pg_catalog.pg_extension_config_dump('booking_admin.security_remediations', '');

-- What an action would do to a violation's details, now: {target, plan, dry_run}, or raises
-- 22023 when the details do not name what the action needs. The dry run reads, never writes.
CREATE FUNCTION booking_admin.remediation_plan(p_action text, p_details jsonb, p_settings jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_identifier text;
    v_kind text;
    v_for interval;
    v_table regclass;
    v_days integer;
    v_rows bigint;
    v_type text;
    v_object text;
    v_privilege text;
    v_grantee text;
    v_has boolean;
BEGIN
    IF p_action = 'block_client' THEN
        v_kind := coalesce(p_details ->> 'kind', CASE WHEN p_details ? 'ip_address' THEN 'ip' WHEN p_details ? 'user_id' THEN 'user' END);
        v_identifier := coalesce(p_details ->> 'value', p_details ->> 'ip_address', p_details ->> 'user_id');
        IF v_identifier IS NULL OR v_kind NOT IN ('ip', 'user') THEN
            RAISE EXCEPTION 'block_client needs the violation''s kind (ip or user) and value, or an ip_address or user_id'
                USING ERRCODE = '22023';
        END IF;
        -- Checked as an interval, kept as written (a plan reads the same whatever IntervalStyle).
        v_for := coalesce(p_settings ->> 'block_for', '1 hour')::interval;
        RETURN jsonb_build_object(
            'target', jsonb_build_object('kind', v_kind, 'identifier', v_identifier,
                                         'block_for', coalesce(p_settings ->> 'block_for', '1 hour')),
            'plan', format('block %s %s in the rate limiter for %s', v_kind, v_identifier,
                           coalesce(p_settings ->> 'block_for', '1 hour')),
            'dry_run', jsonb_build_object('blocked_now', booking_admin.client_blocked_until(v_identifier) IS NOT NULL));
    ELSIF p_action = 'delete_expired_pii' THEN
        -- The table and its retention from the registry as it is now, not from the finding.
        SELECT to_regclass(r.table_name), min(r.retention_days) INTO v_table, v_days
        FROM booking_admin.pii_data_registry r
        WHERE r.table_name = p_details ->> 'object' AND r.retention_days IS NOT NULL
        GROUP BY r.table_name;
        IF v_table IS NULL OR NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = v_table AND a.attname = 'created_at'
                                                                         AND NOT a.attisdropped) THEN
            RAISE EXCEPTION 'delete_expired_pii needs a table of the PII registry with a retention and a created_at column, not %',
                coalesce(quote_literal(p_details ->> 'object'), 'NULL') USING ERRCODE = '22023';
        END IF;
        EXECUTE format('SELECT count(*) FROM %s WHERE created_at < $1', v_table)
            INTO v_rows USING booking.clock_now() - make_interval(days => v_days);
        RETURN jsonb_build_object(
            'target', jsonb_build_object('table', v_table::text, 'retention_days', v_days),
            'plan', format('DELETE FROM %s WHERE created_at < now() - %s days (the registry''s retention); it cannot be undone',
                           v_table, v_days),
            'dry_run', jsonb_build_object('rows', v_rows));
    ELSIF p_action = 'revoke_grant' THEN
        v_type := upper(p_details ->> 'object_type');
        v_object := p_details ->> 'object';
        v_privilege := upper(p_details ->> 'privilege');
        v_grantee := p_details ->> 'grantee';
        IF v_type NOT IN ('FUNCTION', 'TABLE', 'SCHEMA', 'SEQUENCE') OR v_object IS NULL OR v_grantee IS NULL
           OR v_privilege NOT IN ('EXECUTE', 'SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER',
                                  'USAGE', 'CREATE', 'ALL') THEN
            RAISE EXCEPTION 'revoke_grant needs the violation''s object_type (function, table, schema, sequence), object, privilege and grantee'
                USING ERRCODE = '22023';
        END IF;
        -- The object and grantee resolved (and quoted) by the catalog: the finding's text is not run.
        v_object := CASE v_type WHEN 'FUNCTION' THEN to_regprocedure(v_object)::text
                                WHEN 'SCHEMA' THEN to_regnamespace(v_object)::text
                                ELSE to_regclass(v_object)::text END;
        v_grantee := CASE WHEN upper(v_grantee) = 'PUBLIC' THEN 'PUBLIC' ELSE to_regrole(v_grantee)::text END;
        IF v_object IS NULL OR v_grantee IS NULL THEN
            RAISE EXCEPTION 'revoke_grant: % % or grantee % does not exist', lower(v_type), p_details ->> 'object',
                p_details ->> 'grantee' USING ERRCODE = '22023';
        END IF;
        v_has := CASE WHEN v_privilege = 'ALL' THEN NULL
                      WHEN v_type = 'FUNCTION' THEN has_function_privilege(CASE v_grantee WHEN 'PUBLIC' THEN 'public' ELSE v_grantee END,
                                                                           v_object::regprocedure, v_privilege)
                      WHEN v_type = 'SCHEMA' THEN has_schema_privilege(CASE v_grantee WHEN 'PUBLIC' THEN 'public' ELSE v_grantee END,
                                                                       v_object, v_privilege)
                      WHEN v_type = 'SEQUENCE' THEN has_sequence_privilege(CASE v_grantee WHEN 'PUBLIC' THEN 'public' ELSE v_grantee END,
                                                                           v_object, v_privilege)
                      ELSE has_table_privilege(CASE v_grantee WHEN 'PUBLIC' THEN 'public' ELSE v_grantee END, v_object, v_privilege) END;
        RETURN jsonb_build_object(
            'target', jsonb_build_object('object_type', v_type, 'object', v_object, 'privilege', v_privilege, 'grantee', v_grantee),
            'plan', format('REVOKE %s ON %s %s FROM %s', v_privilege, v_type, v_object, v_grantee),
            'dry_run', jsonb_build_object('granted_now', v_has,
                                          'revert', format('GRANT %s ON %s %s TO %s', v_privilege, v_type, v_object, v_grantee)));
    END IF;
    RAISE EXCEPTION 'unknown remediation action %', coalesce(quote_literal(p_action), 'NULL') USING ERRCODE = '22023';
END $$;

-- A proposal for every open violation of a rule that names an action and has none yet; a
-- violation whose details do not fit the action gets a 'failed' row saying why. Called at the
-- end of every rule evaluation. Returns how many were proposed.
CREATE FUNCTION booking_admin.propose_remediations() RETURNS integer
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r record;
    v_plan jsonb;
    n integer := 0;
BEGIN
    FOR r IN
        SELECT v.id, v.tenant_id, v.violation_details, s.rule_name, s.remediation_action, s.remediation_settings
        FROM booking_admin.security_violations v
        JOIN booking_admin.security_rules s ON s.id = v.rule_id
        WHERE v.status <> 'resolved' AND s.remediation_action IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM booking_admin.security_remediations m
                          WHERE m.violation_id = v.id AND m.action = s.remediation_action)
    LOOP
        BEGIN
            v_plan := booking_admin.remediation_plan(r.remediation_action, r.violation_details, r.remediation_settings);
            INSERT INTO booking_admin.security_remediations (violation_id, rule_name, tenant_id, action, details, target, plan,
                                                            dry_run)
            VALUES (r.id, r.rule_name, r.tenant_id, r.remediation_action, r.violation_details, v_plan -> 'target',
                    v_plan ->> 'plan', v_plan -> 'dry_run');
            n := n + 1;
        EXCEPTION WHEN invalid_parameter_value THEN
            INSERT INTO booking_admin.security_remediations (violation_id, rule_name, tenant_id, action, details, target, plan,
                                                            dry_run, status, result)
            VALUES (r.id, r.rule_name, r.tenant_id, r.remediation_action, r.violation_details, '{}', 'none: ' || SQLERRM, '{}',
                    'failed', jsonb_build_object('error', SQLERRM, 'sqlstate', SQLSTATE));
        END;
    END LOOP;
    RETURN n;
END $$;

-- One remediation, locked, in one of the given states, or the documented error: 42501 for a
-- caller who is not an operator, P0002 for an unknown id, 55000 for one in another state.
CREATE FUNCTION booking_admin.remediation_in(p_id uuid, p_states text[]) RETURNS booking_admin.security_remediations
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v booking_admin.security_remediations;
BEGIN
    IF NOT booking.caller_is_operator() THEN
        RAISE EXCEPTION 'only operators decide remediations' USING ERRCODE = '42501';
    END IF;
    SELECT * INTO v FROM booking_admin.security_remediations m WHERE m.id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no remediation %', coalesce(p_id::text, 'NULL') USING ERRCODE = 'P0002';
    END IF;
    IF NOT v.status = ANY (p_states) THEN
        RAISE EXCEPTION 'remediation % is %, not %', p_id, v.status, array_to_string(p_states, ' or ') USING ERRCODE = '55000';
    END IF;
    RETURN v;
END $$;

-- The dry run again, as things are now: what approving would do (nothing is changed; audited).
CREATE FUNCTION booking_admin.preview_remediation(p_id uuid) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v booking_admin.security_remediations :=
        booking_admin.remediation_in(p_id, ARRAY['proposed', 'applied', 'failed', 'rejected', 'reverted', 'expired']);
    v_plan jsonb;
BEGIN
    v_plan := booking_admin.remediation_plan(v.action, v.details, coalesce(
        (SELECT r.remediation_settings FROM booking_admin.security_rules r WHERE r.rule_name = v.rule_name), '{}'));
    PERFORM booking.audit_event('remediation.dry_run', 'security_remediation', p_id::text, true, NULL,
                                v.action = 'delete_expired_pii', v.tenant_id);
    RETURN jsonb_build_object('id', v.id, 'action', v.action, 'status', v.status) || v_plan;
END $$;

-- Carries out a proposed remediation: an operator's decision, run with the extension owner's
-- rights (what runs was found by a rule and resolved against the catalog, both the owner's;
-- the operator chooses only whether). Returns the remediation; a failure is recorded (status
-- failed, the error in result) and audited, not raised. Operators only (42501).
CREATE FUNCTION booking_admin.approve_remediation(p_id uuid, p_note text DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v booking_admin.security_remediations := booking_admin.remediation_in(p_id, ARRAY['proposed']);
    v_rows bigint;
    v_until timestamptz;
    v_error text;
    v_result jsonb;
BEGIN
    BEGIN
        IF v.action = 'block_client' THEN
            v_until := booking.clock_now() + (v.target ->> 'block_for')::interval;
            PERFORM booking_admin.block_client(v.target ->> 'identifier', v_until);
            v_result := jsonb_build_object('blocked_until', v_until);
        ELSIF v.action = 'delete_expired_pii' THEN
            EXECUTE format('DELETE FROM %s WHERE created_at < $1', (v.target ->> 'table')::regclass)
                USING booking.clock_now() - make_interval(days => (v.target ->> 'retention_days')::int);
            GET DIAGNOSTICS v_rows = ROW_COUNT;
            v_result := jsonb_build_object('deleted_rows', v_rows);
        ELSE
            EXECUTE v.plan;
            v_result := jsonb_build_object('revert', v.dry_run ->> 'revert');
        END IF;
    EXCEPTION WHEN OTHERS THEN
        v_error := SQLSTATE || ': ' || SQLERRM;
    END;
    UPDATE booking_admin.security_remediations m SET
        status = CASE WHEN v_error IS NULL THEN 'applied' ELSE 'failed' END,
        decided_by = session_user, decided_at = booking.clock_now(), note = p_note,
        applied_at = CASE WHEN v_error IS NULL THEN booking.clock_now() END, expires_at = v_until,
        result = coalesce(v_result, jsonb_build_object('error', v_error))
    WHERE m.id = p_id
    RETURNING * INTO v;
    PERFORM booking.audit_event('remediation.apply', 'security_remediation', p_id::text, v_error IS NULL, v_error,
                                v.action = 'delete_expired_pii', v.tenant_id);
    RETURN to_jsonb(v);
END $$;

CREATE FUNCTION booking_admin.reject_remediation(p_id uuid, p_note text DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v booking_admin.security_remediations := booking_admin.remediation_in(p_id, ARRAY['proposed']);
BEGIN
    UPDATE booking_admin.security_remediations m
    SET status = 'rejected', decided_by = session_user, decided_at = booking.clock_now(), note = p_note
    WHERE m.id = p_id RETURNING * INTO v;
    PERFORM booking.audit_event('remediation.reject', 'security_remediation', p_id::text, true, p_note, false, v.tenant_id);
    RETURN to_jsonb(v);
END $$;

-- Undoes an applied block (unblocked at once) or revoke (granted again). A deletion cannot be
-- undone: 55000.
CREATE FUNCTION booking_admin.revert_remediation(p_id uuid, p_note text DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v booking_admin.security_remediations := booking_admin.remediation_in(p_id, ARRAY['applied']);
BEGIN
    IF v.action = 'delete_expired_pii' THEN
        RAISE EXCEPTION 'remediation % deleted rows: it cannot be undone', p_id USING ERRCODE = '55000',
            HINT = 'Restore the rows from a backup if they are needed.';
    END IF;
    IF v.action = 'block_client' THEN
        PERFORM booking_admin.unblock_client(v.target ->> 'identifier');
    ELSE
        EXECUTE v.dry_run ->> 'revert';
    END IF;
    UPDATE booking_admin.security_remediations m
    SET status = 'reverted', reverted_by = session_user, reverted_at = booking.clock_now(),
        note = coalesce(p_note, m.note)
    WHERE m.id = p_id RETURNING * INTO v;
    PERFORM booking.audit_event('remediation.revert', 'security_remediation', p_id::text, true, p_note, false, v.tenant_id);
    RETURN to_jsonb(v);
END $$;

-- Applied blocks: the ones past their expiry become 'expired' (audited); the live ones are
-- handed to the rate limiter again (its memory does not survive a restart). Every minute.
CREATE FUNCTION booking_admin.op_client_blocks(p_settings jsonb) RETURNS integer
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r record;
    n integer := 0;
BEGIN
    FOR r IN
        UPDATE booking_admin.security_remediations m SET status = 'expired'
        WHERE m.action = 'block_client' AND m.status = 'applied' AND m.expires_at <= booking.clock_now()
        RETURNING m.id, m.tenant_id, m.target
    LOOP
        PERFORM booking_admin.unblock_client(r.target ->> 'identifier');
        PERFORM booking.audit_event('remediation.expire', 'security_remediation', r.id::text, true, NULL, false, r.tenant_id);
        n := n + 1;
    END LOOP;
    FOR r IN
        SELECT m.target ->> 'identifier' AS identifier, m.expires_at FROM booking_admin.security_remediations m
        WHERE m.action = 'block_client' AND m.status = 'applied'
    LOOP
        PERFORM booking_admin.block_client(r.identifier, r.expires_at);
        n := n + 1;
    END LOOP;
    RETURN n;
END $$;

INSERT INTO booking_admin.scheduler_job_info (job_name, description, function, settings, delay_ms, max_retries, timeout_ms) VALUES
    ('client-blocks', 'Expire remediation blocks and keep the live ones in the rate limiter', 'booking_admin.op_client_blocks',
     '{}', 60000, 3, 30000);

-- Scheduled operations of security (configure_scheduler_job changes or turns off either): rule
-- evaluation every hour and PII discovery every day.
CREATE FUNCTION booking_admin.op_evaluate_security_rules(p_settings jsonb) RETURNS integer
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
    SELECT (booking_admin.evaluate_security_rules() ->> 'violations_found')::int
$$;

CREATE FUNCTION booking_admin.op_scan_pii(p_settings jsonb) RETURNS integer
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
    SELECT (booking_admin.scan_pii(coalesce((p_settings ->> 'sample_rows')::int, 1000)) ->> 'pii_columns_found')::int
$$;

INSERT INTO booking_admin.scheduler_job_info (job_name, description, function, settings, delay_ms, max_retries, timeout_ms) VALUES
    ('security-evaluate', 'Evaluate the active security rules', 'booking_admin.op_evaluate_security_rules', '{}', 3600000, 3, 300000),
    ('pii-scan', 'Discover PII columns by name and sampled values', 'booking_admin.op_scan_pii', '{"sample_rows": 1000}', 86400000, 3, 600000);

-- Monthly partitions of the audit log, kept a year.
INSERT INTO booking_admin.partitioned_tables (parent_table, partition_key, partition_interval, premake, retention, description)
VALUES ('booking_admin.security_audit_log', 'created_at', 'month', 3, '365 days', 'The security audit trail');
