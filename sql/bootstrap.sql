-- What operators call lives apart from what applications call; nothing in it is for PUBLIC.
CREATE SCHEMA booking_admin;
REVOKE ALL ON SCHEMA booking_admin FROM PUBLIC;
