
-- The stored model: a Random Cut Forest as a value (anomaly.rcf), trained
-- by an aggregate and used by scoring functions.

CREATE TYPE rcf;

CREATE FUNCTION _rcf_in(cstring) RETURNS rcf
AS 'MODULE_PATHNAME', 'rcf_in' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION _rcf_out(rcf) RETURNS cstring
AS 'MODULE_PATHNAME', 'rcf_out' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION _rcf_recv(internal) RETURNS rcf
AS 'MODULE_PATHNAME', 'rcf_recv' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION _rcf_send(rcf) RETURNS bytea
AS 'MODULE_PATHNAME', 'rcf_send' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE TYPE rcf (
	INPUT = _rcf_in,
	OUTPUT = _rcf_out,
	RECEIVE = _rcf_recv,
	SEND = _rcf_send,
	INTERNALLENGTH = VARIABLE,
	ALIGNMENT = int4,
	STORAGE = extended
);
