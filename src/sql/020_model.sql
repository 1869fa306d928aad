-- The type's I/O functions: PostgreSQL calls them without checking
-- EXECUTE (casts from text, COPY, the binary protocol); nobody needs to
-- call them by name.
REVOKE EXECUTE ON FUNCTION _rcf_in(cstring), _rcf_out(rcf), _rcf_recv(internal), _rcf_send(rcf) FROM PUBLIC;
COMMENT ON FUNCTION _rcf_in(cstring) IS 'internal: input function of anomaly.rcf (base64 text)';
COMMENT ON FUNCTION _rcf_out(rcf) IS 'internal: output function of anomaly.rcf (base64 text)';
COMMENT ON FUNCTION _rcf_recv(internal) IS 'internal: binary input function of anomaly.rcf';
COMMENT ON FUNCTION _rcf_send(rcf) IS 'internal: binary output function of anomaly.rcf';
COMMENT ON TYPE rcf IS 'a Random Cut Forest model: parameters, samplers, trees and shingle, ready to continue';

-- rcf_train(point ORDER BY ...) with KDA's parameters as optional trailing
-- arguments, in random_cut_forest's order.  Aggregates take no named or
-- default arguments, hence one aggregate per arity.
CREATE OR REPLACE FUNCTION _rcf_train_transfn(internal, double precision[])
RETURNS internal AS 'MODULE_PATHNAME', 'rcf_train_transfn' LANGUAGE C PARALLEL SAFE;
CREATE OR REPLACE FUNCTION _rcf_train_transfn(internal, double precision[], integer)
RETURNS internal AS 'MODULE_PATHNAME', 'rcf_train_transfn' LANGUAGE C PARALLEL SAFE;
CREATE OR REPLACE FUNCTION _rcf_train_transfn(internal, double precision[], integer, integer)
RETURNS internal AS 'MODULE_PATHNAME', 'rcf_train_transfn' LANGUAGE C PARALLEL SAFE;
CREATE OR REPLACE FUNCTION _rcf_train_transfn(internal, double precision[], integer, integer, bigint)
RETURNS internal AS 'MODULE_PATHNAME', 'rcf_train_transfn' LANGUAGE C PARALLEL SAFE;
CREATE OR REPLACE FUNCTION _rcf_train_transfn(internal, double precision[], integer, integer, bigint, integer)
RETURNS internal AS 'MODULE_PATHNAME', 'rcf_train_transfn' LANGUAGE C PARALLEL SAFE;
CREATE OR REPLACE FUNCTION _rcf_train_transfn(internal, double precision[], integer, integer, bigint, integer, bigint)
RETURNS internal AS 'MODULE_PATHNAME', 'rcf_train_transfn' LANGUAGE C PARALLEL SAFE;
CREATE OR REPLACE FUNCTION _rcf_train_transfn(internal, double precision[], integer, integer, bigint, integer, bigint, text)
RETURNS internal AS 'MODULE_PATHNAME', 'rcf_train_transfn' LANGUAGE C PARALLEL SAFE;
CREATE OR REPLACE FUNCTION _rcf_train_transfn(internal, double precision[], integer, integer, bigint, integer, bigint, text, double precision)
RETURNS internal AS 'MODULE_PATHNAME', 'rcf_train_transfn' LANGUAGE C PARALLEL SAFE;
CREATE OR REPLACE FUNCTION _rcf_train_transfn(internal, double precision[], integer, integer, bigint, integer, bigint, text, double precision, double precision[])
RETURNS internal AS 'MODULE_PATHNAME', 'rcf_train_transfn' LANGUAGE C PARALLEL SAFE;
CREATE OR REPLACE FUNCTION _rcf_train_finalfn(internal)
RETURNS rcf AS 'MODULE_PATHNAME', 'rcf_train_finalfn' LANGUAGE C PARALLEL SAFE;
-- Support functions of rcf_train only (the aggregate checks its owner's
-- right to call them, not the caller's).
REVOKE EXECUTE ON FUNCTION _rcf_train_transfn(internal, double precision[]),
	_rcf_train_transfn(internal, double precision[], integer),
	_rcf_train_transfn(internal, double precision[], integer, integer),
	_rcf_train_transfn(internal, double precision[], integer, integer, bigint),
	_rcf_train_transfn(internal, double precision[], integer, integer, bigint, integer),
	_rcf_train_transfn(internal, double precision[], integer, integer, bigint, integer, bigint),
	_rcf_train_transfn(internal, double precision[], integer, integer, bigint, integer, bigint, text),
	_rcf_train_transfn(internal, double precision[], integer, integer, bigint, integer, bigint, text, double precision),
	_rcf_train_transfn(internal, double precision[], integer, integer, bigint, integer, bigint, text, double precision, double precision[]),
	_rcf_train_finalfn(internal) FROM PUBLIC;

CREATE OR REPLACE AGGREGATE rcf_train(point double precision[]) (
	SFUNC = _rcf_train_transfn, STYPE = internal,
	FINALFUNC = _rcf_train_finalfn, FINALFUNC_MODIFY = READ_ONLY);
CREATE OR REPLACE AGGREGATE rcf_train(point double precision[], number_of_trees integer) (
	SFUNC = _rcf_train_transfn, STYPE = internal,
	FINALFUNC = _rcf_train_finalfn, FINALFUNC_MODIFY = READ_ONLY);
CREATE OR REPLACE AGGREGATE rcf_train(point double precision[], number_of_trees integer,
						   sub_sample_size integer) (
	SFUNC = _rcf_train_transfn, STYPE = internal,
	FINALFUNC = _rcf_train_finalfn, FINALFUNC_MODIFY = READ_ONLY);
CREATE OR REPLACE AGGREGATE rcf_train(point double precision[], number_of_trees integer,
						   sub_sample_size integer, time_decay bigint) (
	SFUNC = _rcf_train_transfn, STYPE = internal,
	FINALFUNC = _rcf_train_finalfn, FINALFUNC_MODIFY = READ_ONLY);
CREATE OR REPLACE AGGREGATE rcf_train(point double precision[], number_of_trees integer,
						   sub_sample_size integer, time_decay bigint,
						   shingle_size integer) (
	SFUNC = _rcf_train_transfn, STYPE = internal,
	FINALFUNC = _rcf_train_finalfn, FINALFUNC_MODIFY = READ_ONLY);
CREATE OR REPLACE AGGREGATE rcf_train(point double precision[], number_of_trees integer,
						   sub_sample_size integer, time_decay bigint,
						   shingle_size integer, seed bigint) (
	SFUNC = _rcf_train_transfn, STYPE = internal,
	FINALFUNC = _rcf_train_finalfn, FINALFUNC_MODIFY = READ_ONLY);
-- With a transform (detect()'s transform, transform_decay, transform_weights).
CREATE OR REPLACE AGGREGATE rcf_train(point double precision[], number_of_trees integer,
						   sub_sample_size integer, time_decay bigint,
						   shingle_size integer, seed bigint, transform text) (
	SFUNC = _rcf_train_transfn, STYPE = internal,
	FINALFUNC = _rcf_train_finalfn, FINALFUNC_MODIFY = READ_ONLY);
CREATE OR REPLACE AGGREGATE rcf_train(point double precision[], number_of_trees integer,
						   sub_sample_size integer, time_decay bigint,
						   shingle_size integer, seed bigint, transform text,
						   transform_decay double precision) (
	SFUNC = _rcf_train_transfn, STYPE = internal,
	FINALFUNC = _rcf_train_finalfn, FINALFUNC_MODIFY = READ_ONLY);
CREATE OR REPLACE AGGREGATE rcf_train(point double precision[], number_of_trees integer,
						   sub_sample_size integer, time_decay bigint,
						   shingle_size integer, seed bigint, transform text,
						   transform_decay double precision,
						   transform_weights double precision[]) (
	SFUNC = _rcf_train_transfn, STYPE = internal,
	FINALFUNC = _rcf_train_finalfn, FINALFUNC_MODIFY = READ_ONLY);

COMMENT ON AGGREGATE rcf_train(double precision[], integer, integer, bigint, integer, bigint, text)
IS 'trains a model on points whose features are transformed first (none, weighted, subtract_ma, difference, normalize, normalize_difference)';
COMMENT ON AGGREGATE rcf_train(double precision[], integer, integer, bigint, integer, bigint, text, double precision)
IS 'trains a model with a transform and the decay of its running statistics';
COMMENT ON AGGREGATE rcf_train(double precision[], integer, integer, bigint, integer, bigint, text, double precision, double precision[])
IS 'trains a model with a transform, its decay and per-feature weights';
COMMENT ON AGGREGATE rcf_train(double precision[]) IS 'trains a model (anomaly.rcf) on the points in ORDER BY order';
COMMENT ON AGGREGATE rcf_train(double precision[], integer) IS 'trains a model (anomaly.rcf) on the points in ORDER BY order: number_of_trees';
COMMENT ON AGGREGATE rcf_train(double precision[], integer, integer) IS 'trains a model (anomaly.rcf) on the points in ORDER BY order: number_of_trees, sub_sample_size';
COMMENT ON AGGREGATE rcf_train(double precision[], integer, integer, bigint) IS 'trains a model (anomaly.rcf) on the points in ORDER BY order: number_of_trees, sub_sample_size, time_decay';
COMMENT ON AGGREGATE rcf_train(double precision[], integer, integer, bigint, integer) IS 'trains a model (anomaly.rcf) on the points in ORDER BY order: number_of_trees, sub_sample_size, time_decay, shingle_size';
COMMENT ON AGGREGATE rcf_train(double precision[], integer, integer, bigint, integer, bigint) IS 'trains a model (anomaly.rcf) on the points in ORDER BY order: number_of_trees, sub_sample_size, time_decay, shingle_size, seed';
COMMENT ON FUNCTION _rcf_train_transfn(internal, double precision[]) IS 'internal: transition function of rcf_train';
COMMENT ON FUNCTION _rcf_train_transfn(internal, double precision[], integer) IS 'internal: transition function of rcf_train';
COMMENT ON FUNCTION _rcf_train_transfn(internal, double precision[], integer, integer) IS 'internal: transition function of rcf_train';
COMMENT ON FUNCTION _rcf_train_transfn(internal, double precision[], integer, integer, bigint) IS 'internal: transition function of rcf_train';
COMMENT ON FUNCTION _rcf_train_transfn(internal, double precision[], integer, integer, bigint, integer) IS 'internal: transition function of rcf_train';
COMMENT ON FUNCTION _rcf_train_transfn(internal, double precision[], integer, integer, bigint, integer, bigint) IS 'internal: transition function of rcf_train';
COMMENT ON FUNCTION _rcf_train_finalfn(internal) IS 'internal: final function of rcf_train';
COMMENT ON FUNCTION _rcf_train_transfn(internal, double precision[], integer, integer, bigint, integer, bigint, text) IS 'internal: transition function of rcf_train';
COMMENT ON FUNCTION _rcf_train_transfn(internal, double precision[], integer, integer, bigint, integer, bigint, text, double precision) IS 'internal: transition function of rcf_train';
COMMENT ON FUNCTION _rcf_train_transfn(internal, double precision[], integer, integer, bigint, integer, bigint, text, double precision, double precision[]) IS 'internal: transition function of rcf_train';

CREATE OR REPLACE FUNCTION rcf_score(model rcf, point double precision[])
RETURNS double precision
AS 'MODULE_PATHNAME', 'rcf_score_model' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION rcf_score(rcf, double precision[])
IS 'anomaly score of a point against a stored model, without learning it';

CREATE OR REPLACE FUNCTION rcf_explain(model rcf, point double precision[],
							feature_names text[] DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'rcf_explain_model' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION rcf_explain(rcf, double precision[], text[])
IS 'KDA-style explanation of a point''s score against a stored model';

CREATE OR REPLACE FUNCTION rcf_update(model rcf, point double precision[])
RETURNS rcf
AS 'MODULE_PATHNAME', 'rcf_update_model' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION rcf_update(rcf, double precision[])
IS 'the model after learning a point, or each row of a two-dimensional array in order';

CREATE OR REPLACE FUNCTION rcf_info(model rcf)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'rcf_info_model' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION rcf_info(rcf)
IS 'parameters, dimensions, updates seen and sizes of a stored model';

CREATE OR REPLACE FUNCTION rcf_detect(model rcf, point double precision[],
						   feature_names text[] DEFAULT NULL)
RETURNS detection
AS 'MODULE_PATHNAME', 'rcf_detect_model' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE OR REPLACE FUNCTION rcf_set_grading(
	model rcf,
	z_factor double precision DEFAULT 4,
	score_floor double precision DEFAULT 0.8,
	ignore_near_expected_above double precision DEFAULT 0,
	ignore_near_expected_below double precision DEFAULT 0,
	ignore_near_expected_above_ratio double precision DEFAULT 0,
	ignore_near_expected_below_ratio double precision DEFAULT 0,
	suppress integer DEFAULT 100,
	score_horizon double precision DEFAULT 3000,
	cusum_drift double precision DEFAULT 2,
	cusum_threshold double precision DEFAULT 0)
RETURNS rcf
AS 'MODULE_PATHNAME', 'rcf_set_grading_model' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION rcf_set_grading(rcf, double precision, double precision, double precision,
	double precision, double precision, double precision, integer, double precision,
	double precision, double precision)
IS 'the model with other grading parameters (detect()''s), keeping its forest and score statistics';

CREATE OR REPLACE FUNCTION rcf_set_box_cache(model rcf, fraction double precision)
RETURNS rcf
AS 'MODULE_PATHNAME', 'rcf_set_box_cache_model' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION rcf_set_box_cache(rcf, double precision)
IS 'the model keeping that fraction (0 to 1) of its forest''s bounding boxes: less memory, more time per point, the same scores';

COMMENT ON FUNCTION rcf_detect(rcf, double precision[], text[])
IS 'graded detection of a point against a stored model and its grader state, without learning it';
