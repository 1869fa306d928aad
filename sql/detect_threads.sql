-- Detectors score a round's partition keys on anomaly.detector_threads
-- threads, in waves of forests that fit anomaly.detector_memory_limit
-- together.  Two detectors on one table, one run on a single thread with
-- every forest in memory, the other on four threads with a memory limit
-- that splits every round into several waves (and stores and reloads
-- forests between them): every score row must be the same, bit for bit,
-- explanations, grades and expected values included.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS anomaly;
RESET client_min_messages;

CREATE TABLE thr_src (
	id bigserial PRIMARY KEY,
	k int NOT NULL,
	a float8 NOT NULL,
	b float8 NOT NULL
);

-- (Each in its own transaction: it creates a slot.)
SELECT anomaly.create_detector('thr_one', 'thr_src', ARRAY['a', 'b * 2'],
	partition_by => 'k',
	options => '{"number_of_trees": 20, "sub_sample_size": 32, "shingle_size": 3,
				 "with_explanation": true, "with_directionality": true, "seed": 7}');
SELECT anomaly.create_detector('thr_four', 'thr_src', ARRAY['a', 'b * 2'],
	partition_by => 'k',
	options => '{"number_of_trees": 20, "sub_sample_size": 32, "shingle_size": 3,
				 "with_explanation": true, "with_directionality": true, "seed": 7}');

-- 150 keys of forests of about 75 KB: 1MB holds about a dozen.  Three
-- rounds, the last with a level shift in some keys so that points fire.
CREATE FUNCTION thr_insert(r int) RETURNS void LANGUAGE sql AS $$
	INSERT INTO thr_src (k, a, b)
	SELECT g % 150,
		   sin(g / 7.0) + (g % 150) / 10.0 +
		   CASE WHEN r = 3 AND g % 150 < 20 AND g > 10000 THEN 30 ELSE 0 END,
		   cos(g / 5.0) * (1 + (g % 3))
	FROM generate_series((r - 1) * 4000 + 1, r * 4000) g
$$;

-- Each round: the rows, then each detector in its own transaction, thr_one
-- on one thread with every forest in memory, thr_four on four in 1MB.
SELECT format('SELECT thr_insert(%s)', r),
	'SET anomaly.detector_threads = 1', 'SET anomaly.detector_memory_limit = ''512MB''',
	'SELECT anomaly.process(''thr_one'')',
	'SET anomaly.detector_threads = 4', 'SET anomaly.detector_memory_limit = ''1MB''',
	'SELECT anomaly.process(''thr_four'')'
FROM generate_series(1, 3) r \gexec
RESET anomaly.detector_threads;
RESET anomaly.detector_memory_limit;

SELECT detector, count(*) AS scored, count(DISTINCT partition_key) AS keys,
	   count(*) FILTER (WHERE is_anomaly) > 0 AS some_fire,
	   count(explanation) = count(*) AS explained
FROM anomaly.scores WHERE detector LIKE 'thr_%' GROUP BY 1 ORDER BY 1;

-- Under its memory limit the second detector stored most of its forests.
SELECT count(*) >= 100 AS stored_forests
FROM anomaly.detectors d JOIN anomaly.detector_forests f ON f.detector_id = d.id
WHERE d.name = 'thr_four';

-- Row by row, the two detectors agree exactly.
SELECT count(*) AS compared,
	   count(*) FILTER (WHERE o.anomaly_score IS DISTINCT FROM f.anomaly_score
						OR o.anomaly_grade IS DISTINCT FROM f.anomaly_grade
						OR o.is_anomaly IS DISTINCT FROM f.is_anomaly
						OR o.expected IS DISTINCT FROM f.expected
						OR o.explanation IS DISTINCT FROM f.explanation
						OR o.features IS DISTINCT FROM f.features) AS differing
FROM anomaly.scores o
JOIN anomaly.scores f ON f.source_key = o.source_key AND f.detector = 'thr_four'
WHERE o.detector = 'thr_one';

SELECT anomaly.drop_detector('thr_one');
SELECT anomaly.drop_detector('thr_four');
DROP TABLE thr_src;
DROP FUNCTION thr_insert(int);
