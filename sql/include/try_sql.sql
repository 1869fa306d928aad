-- try_sql(q): runs statement q and returns its SQLSTATE ('00000' when it
-- succeeds), message, detail and hint, so that a test can show an error
-- and go on.  Included with \i by the tests that show errors this way.
CREATE OR REPLACE FUNCTION try_sql(q text, OUT state text, OUT message text, OUT detail text, OUT hint text)
LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
	state := '00000';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT,
		detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
END;
$$;
