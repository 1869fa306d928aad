-- Demo data: taxi rides per 10 minutes in three zones over four weeks, with
-- daily and weekly seasonality, noise, and injected anomalies of three kinds.
-- Deterministic: the same data on every run.
--
-- taxi_rides(from, to) generates the counts of [from, to); the ad hoc part
-- of the demo stores all four weeks in "rides" at once, the streaming part
-- calls it again slice by slice (demo/stream.sql).

CREATE TABLE rides (
	ts timestamptz NOT NULL,
	zone text NOT NULL,
	rides integer NOT NULL,
	PRIMARY KEY (zone, ts)
);

CREATE TABLE injected (
	zone text,
	starts timestamptz,
	ends timestamptz,
	kind text
);

INSERT INTO injected VALUES
	('airport',  '2026-03-19 18:00+00', '2026-03-19 18:30+00', 'spike'),
	('downtown', '2026-03-22 02:00+00', '2026-03-22 05:00+00', 'outage'),
	('harbor',   '2026-03-24 12:00+00', '2026-03-28 23:50+00', 'level shift'),
	('airport',  '2026-03-26 07:00+00', '2026-03-26 07:20+00', 'dip');

-- The time zone is pinned: the noise hashes ts as text and the weekend is
-- a day of the week, both of which depend on it.
CREATE FUNCTION taxi_rides(from_ts timestamptz, to_ts timestamptz)
RETURNS TABLE (ts timestamptz, zone text, rides integer)
LANGUAGE sql STABLE
SET TimeZone = 'UTC'
AS $$
SELECT ts, zone,
	   greatest(0, round(
		   base
		   * (1 + 0.6 * sin(2 * pi() * (extract(epoch FROM ts) / 86400.0 - 0.3)))
		   * (CASE WHEN extract(isodow FROM ts) >= 6 THEN 0.75 ELSE 1.0 END)
		   + 6 * (((hashtext(zone || ts::text) & 65535) / 65536.0) - 0.5)
		   + CASE
				 WHEN zone = 'airport' AND ts >= '2026-03-19 18:00+00' AND ts < '2026-03-19 18:30+00' THEN 90
				 WHEN zone = 'downtown' AND ts >= '2026-03-22 02:00+00' AND ts < '2026-03-22 05:00+00' THEN -1000
				 WHEN zone = 'harbor' AND ts >= '2026-03-24 12:00+00' THEN 0.5 * base
				 WHEN zone = 'airport' AND ts >= '2026-03-26 07:00+00' AND ts < '2026-03-26 07:20+00' THEN -0.9 * base
				 ELSE 0 END))::integer
FROM generate_series(date_bin('10 minutes', from_ts, '2026-01-01'), to_ts, '10 minutes') ts,
	 (VALUES ('airport', 60.0), ('downtown', 40.0), ('harbor', 25.0)) z(zone, base)
WHERE ts >= from_ts AND ts < to_ts
ORDER BY ts, zone
$$;

INSERT INTO rides SELECT * FROM taxi_rides('2026-03-01 00:00+00', '2026-03-29 00:00+00');
