-- Score every zone with graded detection and its defaults: the forest sees
-- the last 8 readings (shingle), normalized, graded with z_factor 4 (the
-- defaults the validation protocol chose, bench/README.md).
CREATE TABLE detections AS
SELECT ts, zone, rides, (d).*
FROM (SELECT ts, zone, rides,
			 anomaly.detect(ARRAY[rides::float8], feature_names => ARRAY['rides'])
				 OVER (PARTITION BY zone ORDER BY ts) AS d
	  FROM rides) s;

\echo
\echo '== Injected anomalies, and the first alert raised for each =='
SELECT i.zone, i.kind, to_char(i.starts, 'Mon DD HH24:MI') AS injected_at,
	   to_char(min(d.ts), 'Mon DD HH24:MI') AS first_alert,
	   round(extract(epoch FROM min(d.ts) - i.starts) / 60) AS minutes_later
FROM injected i
LEFT JOIN detections d
	   ON d.zone = i.zone AND d.is_anomaly AND d.ts >= i.starts AND d.ts <= i.starts + interval '3 hours'
GROUP BY i.zone, i.kind, i.starts ORDER BY i.starts;

\echo
\echo '== Every alert (is_anomaly), strongest first =='
SELECT to_char(ts, 'Mon DD HH24:MI') AS at, zone, rides, round(anomaly_score::numeric, 2) AS score,
	   round(anomaly_grade::numeric, 2) AS grade, round(expected[1]::numeric) AS expected,
	   explanation -> 'rides' ->> 'DIRECTION' AS direction,
	   EXISTS (SELECT 1 FROM injected i WHERE i.zone = d.zone AND d.ts >= i.starts
			   AND d.ts <= i.starts + interval '3 hours') AS injected
FROM detections d WHERE is_anomaly ORDER BY anomaly_grade DESC;

\echo
\echo '== The KDA way: RANDOM_CUT_FOREST scores, top 5 per zone =='
SELECT zone, to_char(ts, 'Mon DD HH24:MI') AS at, rides, round(score::numeric, 2) AS anomaly_score
FROM (SELECT zone, ts, rides, score, row_number() OVER (PARTITION BY zone ORDER BY score DESC) AS r
	  FROM (SELECT zone, ts, rides, anomaly.random_cut_forest(ARRAY[rides::float8], shingle_size => 8)
								  OVER (PARTITION BY zone ORDER BY ts) AS score
			FROM rides) s) t
WHERE r <= 5 ORDER BY zone, r;
