-- KDA's HOTSPOTS over a window: each row's HOTSPOTS_RESULT, the dense
-- regions among the last window_size rows of its partition, fed in the
-- window's ORDER BY order; the frame is ignored.  KDA's four parameters,
-- with KDA's ranges and, as in KDA, no defaults.

CREATE OR REPLACE FUNCTION hotspots(
	point double precision[],
	window_size integer,
	scan_radius double precision,
	minimum_number_of_points_in_a_hotspot integer)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'hotspots_window'
LANGUAGE C WINDOW IMMUTABLE PARALLEL SAFE;

CREATE OR REPLACE FUNCTION hotspots(
	point record,
	window_size integer,
	scan_radius double precision,
	minimum_number_of_points_in_a_hotspot integer)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'hotspots_window'
LANGUAGE C WINDOW IMMUTABLE PARALLEL SAFE;

COMMENT ON FUNCTION hotspots(double precision[], integer, double precision, integer)
IS 'KDA HOTSPOTS: dense regions among the last window_size points of the window partition, as HOTSPOTS_RESULT jsonb';
COMMENT ON FUNCTION hotspots(record, integer, double precision, integer)
IS 'KDA HOTSPOTS over the numeric columns of a row';
