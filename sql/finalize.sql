-- Runs after every other object exists. Operators' functions are not for PUBLIC: grant
-- EXECUTE (or membership in a role that has it) to the operators who need them.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA booking_admin FROM PUBLIC;
