
-- The stored model: a Random Cut Forest as a value (anomaly.rcf), trained
-- by an aggregate and used by scoring functions.

CREATE TYPE rcf;

CREATE FUNCTION rcf_in(cstring) RETURNS rcf
AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION rcf_out(rcf) RETURNS cstring
AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION rcf_recv(internal) RETURNS rcf
AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION rcf_send(rcf) RETURNS bytea
AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE TYPE rcf (
	INPUT = rcf_in,
	OUTPUT = rcf_out,
	RECEIVE = rcf_recv,
	SEND = rcf_send,
	INTERNALLENGTH = VARIABLE,
	ALIGNMENT = int4,
	STORAGE = extended
);
COMMENT ON TYPE rcf IS 'a Random Cut Forest model: parameters, samplers, trees and shingle, ready to continue';

-- rcf_train(point ORDER BY ...) with KDA's parameters as optional trailing
-- arguments, in random_cut_forest's order.  Aggregates take no named or
-- default arguments, hence one aggregate per arity.
CREATE FUNCTION rcf_train_transfn(internal, double precision[])
RETURNS internal AS 'MODULE_PATHNAME' LANGUAGE C PARALLEL SAFE;
CREATE FUNCTION rcf_train_transfn(internal, double precision[], integer)
RETURNS internal AS 'MODULE_PATHNAME' LANGUAGE C PARALLEL SAFE;
CREATE FUNCTION rcf_train_transfn(internal, double precision[], integer, integer)
RETURNS internal AS 'MODULE_PATHNAME' LANGUAGE C PARALLEL SAFE;
CREATE FUNCTION rcf_train_transfn(internal, double precision[], integer, integer, bigint)
RETURNS internal AS 'MODULE_PATHNAME' LANGUAGE C PARALLEL SAFE;
CREATE FUNCTION rcf_train_transfn(internal, double precision[], integer, integer, bigint, integer)
RETURNS internal AS 'MODULE_PATHNAME' LANGUAGE C PARALLEL SAFE;
CREATE FUNCTION rcf_train_transfn(internal, double precision[], integer, integer, bigint, integer, bigint)
RETURNS internal AS 'MODULE_PATHNAME' LANGUAGE C PARALLEL SAFE;
CREATE FUNCTION rcf_train_transfn(internal, double precision[], integer, integer, bigint, integer, bigint, text)
RETURNS internal AS 'MODULE_PATHNAME' LANGUAGE C PARALLEL SAFE;
CREATE FUNCTION rcf_train_transfn(internal, double precision[], integer, integer, bigint, integer, bigint, text, double precision)
RETURNS internal AS 'MODULE_PATHNAME' LANGUAGE C PARALLEL SAFE;
CREATE FUNCTION rcf_train_transfn(internal, double precision[], integer, integer, bigint, integer, bigint, text, double precision, double precision[])
RETURNS internal AS 'MODULE_PATHNAME' LANGUAGE C PARALLEL SAFE;
CREATE FUNCTION rcf_train_finalfn(internal)
RETURNS rcf AS 'MODULE_PATHNAME' LANGUAGE C PARALLEL SAFE;
-- Support functions of rcf_train only (the aggregate checks its owner's
-- right to call them, not the caller's).
REVOKE EXECUTE ON FUNCTION rcf_train_transfn(internal, double precision[]),
	rcf_train_transfn(internal, double precision[], integer),
	rcf_train_transfn(internal, double precision[], integer, integer),
	rcf_train_transfn(internal, double precision[], integer, integer, bigint),
	rcf_train_transfn(internal, double precision[], integer, integer, bigint, integer),
	rcf_train_transfn(internal, double precision[], integer, integer, bigint, integer, bigint),
	rcf_train_transfn(internal, double precision[], integer, integer, bigint, integer, bigint, text),
	rcf_train_transfn(internal, double precision[], integer, integer, bigint, integer, bigint, text, double precision),
	rcf_train_transfn(internal, double precision[], integer, integer, bigint, integer, bigint, text, double precision, double precision[]),
	rcf_train_finalfn(internal) FROM PUBLIC;

CREATE AGGREGATE rcf_train(point double precision[]) (
	SFUNC = rcf_train_transfn, STYPE = internal,
	FINALFUNC = rcf_train_finalfn, FINALFUNC_MODIFY = READ_ONLY);
CREATE AGGREGATE rcf_train(point double precision[], number_of_trees integer) (
	SFUNC = rcf_train_transfn, STYPE = internal,
	FINALFUNC = rcf_train_finalfn, FINALFUNC_MODIFY = READ_ONLY);
CREATE AGGREGATE rcf_train(point double precision[], number_of_trees integer,
						   sub_sample_size integer) (
	SFUNC = rcf_train_transfn, STYPE = internal,
	FINALFUNC = rcf_train_finalfn, FINALFUNC_MODIFY = READ_ONLY);
CREATE AGGREGATE rcf_train(point double precision[], number_of_trees integer,
						   sub_sample_size integer, time_decay bigint) (
	SFUNC = rcf_train_transfn, STYPE = internal,
	FINALFUNC = rcf_train_finalfn, FINALFUNC_MODIFY = READ_ONLY);
CREATE AGGREGATE rcf_train(point double precision[], number_of_trees integer,
						   sub_sample_size integer, time_decay bigint,
						   shingle_size integer) (
	SFUNC = rcf_train_transfn, STYPE = internal,
	FINALFUNC = rcf_train_finalfn, FINALFUNC_MODIFY = READ_ONLY);
CREATE AGGREGATE rcf_train(point double precision[], number_of_trees integer,
						   sub_sample_size integer, time_decay bigint,
						   shingle_size integer, seed bigint) (
	SFUNC = rcf_train_transfn, STYPE = internal,
	FINALFUNC = rcf_train_finalfn, FINALFUNC_MODIFY = READ_ONLY);
-- With a transform (detect()'s transform, transform_decay, transform_weights).
CREATE AGGREGATE rcf_train(point double precision[], number_of_trees integer,
						   sub_sample_size integer, time_decay bigint,
						   shingle_size integer, seed bigint, transform text) (
	SFUNC = rcf_train_transfn, STYPE = internal,
	FINALFUNC = rcf_train_finalfn, FINALFUNC_MODIFY = READ_ONLY);
CREATE AGGREGATE rcf_train(point double precision[], number_of_trees integer,
						   sub_sample_size integer, time_decay bigint,
						   shingle_size integer, seed bigint, transform text,
						   transform_decay double precision) (
	SFUNC = rcf_train_transfn, STYPE = internal,
	FINALFUNC = rcf_train_finalfn, FINALFUNC_MODIFY = READ_ONLY);
CREATE AGGREGATE rcf_train(point double precision[], number_of_trees integer,
						   sub_sample_size integer, time_decay bigint,
						   shingle_size integer, seed bigint, transform text,
						   transform_decay double precision,
						   transform_weights double precision[]) (
	SFUNC = rcf_train_transfn, STYPE = internal,
	FINALFUNC = rcf_train_finalfn, FINALFUNC_MODIFY = READ_ONLY);

COMMENT ON AGGREGATE rcf_train(double precision[], integer, integer, bigint, integer, bigint, text)
IS 'trains a model on points whose features are transformed first (none, weighted, subtract_ma, difference, normalize, normalize_difference)';
COMMENT ON AGGREGATE rcf_train(double precision[], integer, integer, bigint, integer, bigint, text, double precision)
IS 'trains a model with a transform and the decay of its running statistics';
COMMENT ON AGGREGATE rcf_train(double precision[], integer, integer, bigint, integer, bigint, text, double precision, double precision[])
IS 'trains a model with a transform, its decay and per-feature weights';

CREATE FUNCTION rcf_score(model rcf, point double precision[])
RETURNS double precision
AS 'MODULE_PATHNAME', 'rcf_score_model' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION rcf_score(rcf, double precision[])
IS 'anomaly score of a point against a stored model, without learning it';

CREATE FUNCTION rcf_explain(model rcf, point double precision[],
							feature_names text[] DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'rcf_explain_model' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION rcf_explain(rcf, double precision[], text[])
IS 'KDA-style explanation of a point''s score against a stored model';

CREATE FUNCTION rcf_update(model rcf, point double precision[])
RETURNS rcf
AS 'MODULE_PATHNAME', 'rcf_update_model' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION rcf_update(rcf, double precision[])
IS 'the model after learning a point, or each row of a two-dimensional array in order';

CREATE FUNCTION rcf_info(model rcf)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'rcf_info_model' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION rcf_info(rcf)
IS 'parameters, dimensions, updates seen and sizes of a stored model';

CREATE FUNCTION rcf_detect(model rcf, point double precision[],
						   feature_names text[] DEFAULT NULL)
RETURNS detection
AS 'MODULE_PATHNAME', 'rcf_detect_model' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION rcf_set_grading(
	model rcf,
	z_factor double precision DEFAULT 3,
	score_floor double precision DEFAULT 0.8,
	ignore_near_expected_above double precision DEFAULT 0,
	ignore_near_expected_below double precision DEFAULT 0,
	ignore_near_expected_above_ratio double precision DEFAULT 0,
	ignore_near_expected_below_ratio double precision DEFAULT 0,
	suppress integer DEFAULT 100,
	score_horizon double precision DEFAULT 3000,
	cusum_drift double precision DEFAULT 2,
	cusum_threshold double precision DEFAULT 12)
RETURNS rcf
AS 'MODULE_PATHNAME', 'rcf_set_grading_model' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION rcf_set_grading(rcf, double precision, double precision, double precision,
	double precision, double precision, double precision, integer, double precision,
	double precision, double precision)
IS 'the model with other grading parameters (detect()''s), keeping its forest and score statistics';

COMMENT ON FUNCTION rcf_detect(rcf, double precision[], text[])
IS 'graded detection of a point against a stored model and its grader state, without learning it';
