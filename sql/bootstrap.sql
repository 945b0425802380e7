-- What operators call lives apart from what applications call; nothing in it is for PUBLIC.
CREATE SCHEMA booking_admin;
REVOKE ALL ON SCHEMA booking_admin FROM PUBLIC;

-- The privileged implementations behind the application functions (pg_graphql's model:
-- graphql_public.graphql calls graphql.resolve). Schema `booking`, the one PostgREST exposes,
-- holds only SECURITY INVOKER entry points (sql/api.sql); the SECURITY DEFINER functions they
-- call live here, where no API exposes them. The entry points run as their caller, so the
-- callers of the entry points need USAGE here and EXECUTE on exactly those implementations
-- (finalize.sql), nothing else.
CREATE SCHEMA booking_internal;
REVOKE ALL ON SCHEMA booking_internal FROM PUBLIC;
GRANT USAGE ON SCHEMA booking_internal TO PUBLIC;
