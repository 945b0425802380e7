-- Runs after every other object exists.

-- Every table in the exposed schema has row-level security, including tables added later:
-- without a policy a table is readable only by its owner and through the extension's functions.
DO $$
DECLARE
    t regclass;
BEGIN
    FOR t IN SELECT c.oid FROM pg_class c WHERE c.relnamespace = 'booking'::regnamespace AND c.relkind = 'r' LOOP
        EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', t);
    END LOOP;
END $$;

-- Operators' functions are not for PUBLIC: grant EXECUTE (or membership in a role that has it)
-- to the operators who need them.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA booking_admin FROM PUBLIC;
