-- Loaded by scripts/test.sh into each fresh regress database before its golden file runs.
CREATE SCHEMA regress;
-- The golden files also call these as roles they create.
GRANT USAGE ON SCHEMA regress TO PUBLIC;

-- Runs a statement and tells how it ended: 'ok', or its SQLSTATE and message (ids that change
-- from run to run masked). Catches cancellations too, so statement timeouts can be shown.
CREATE FUNCTION regress.sqlstate_of(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN others OR query_canceled THEN
    RETURN SQLSTATE || ': ' || regexp_replace(SQLERRM, '[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}', '<id>', 'g');
END $$;

-- Waits (up to 10 s) until the audit flusher has written entries matching a condition.
CREATE FUNCTION regress.await_audit(cond text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    found boolean;
BEGIN
    FOR i IN 1..200 LOOP
        EXECUTE 'SELECT EXISTS (SELECT 1 FROM booking_admin.security_audit_log WHERE ' || cond || ')' INTO found;
        IF found THEN RETURN true; END IF;
        PERFORM pg_sleep(0.05);
    END LOOP;
    RETURN false;
END $$;
