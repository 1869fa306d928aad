# The stock-ticker port of docs/kda-migration.md, end to end with the
# background workers and a mail server: KDA's windowed pump (one-minute
# tumbling windows per ticker, avg/range/count) as a windowed detector
# seeded from an hour of history, its destination table, and the
# postprocessor Lambda's e-mail as an alert rule with templates, sent
# through libcurl's SMTP to a local sink (test/servers/smtp_sink.py).  The
# one minute that scores above 2 (AMZN's 10:06, 4.38 as the guide shows)
# arrives as one e-mail whose subject and body say the ticker, the window
# and the score; no other minute raises one; the late tick is kept.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../servers";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

use AlertTest;

my $smtp = start_server('smtp_sink.py');

my $node = new_alert_node('window_email',
	"anomaly.detector_database = 'postgres'",
	"anomaly.detector_naptime = 50",
	"anomaly.request_timeout = '3s'");

sub sq { return $node->safe_psql('postgres', $_[0]); }

# The guide's tables, history, detector and seed.
sq(q{
CREATE TABLE stock_ticker (
    id            bigserial PRIMARY KEY,
    ticker_symbol varchar(4) NOT NULL,
    sector        varchar(16),
    change        real,
    price         real,
    event_time    timestamptz NOT NULL
);
INSERT INTO stock_ticker (ticker_symbol, sector, change, price, event_time)
SELECT t, s, round((sin(g / 7.0 + base) / 2)::numeric, 2),
       base + 2 * sin(g / 40.0 + base) + ((g * 7919 + base * 13) % 100) / 100.0,
       timestamptz '2025-06-02 09:00:00+00' + g * interval '5 seconds'
FROM generate_series(0, 719) g,
     (VALUES ('AMZN', 'TECHNOLOGY', 180), ('XOM', 'ENERGY', 110), ('JPM', 'FINANCIAL', 200)) v(t, s, base)
ORDER BY g, t;
CREATE TABLE destination_sql_stream_1min (
    partition_key       text,
    ROWTIME             timestamptz,
    avg_price           double precision,
    price_range         double precision,
    ticks               double precision,
    ANOMALY_SCORE       double precision,
    ANOMALY_EXPLANATION jsonb
);
CREATE TABLE late_ticks (LIKE stock_ticker);
SELECT anomaly.create_detector('ticker_1min', 'stock_ticker',
    ARRAY['avg(price)', 'max(price) - min(price)', 'count(*)'],
    partition_by => 'ticker_symbol',
    options => '{"window": "1 minute", "time_column": "event_time", "allowed_lateness": "10 seconds",
                 "late_rows": "public.late_ticks", "destination": "public.destination_sql_stream_1min",
                 "feature_names": ["avg_price", "price_range", "ticks"], "with_explanation": true,
                 "number_of_trees": 50, "sub_sample_size": 32, "shingle_size": 1, "transform": "none"}');
});
is(sq(q{
SELECT string_agg(ticker_symbol || '=' || anomaly.seed_detector('ticker_1min', ticker_symbol, model), ',' ORDER BY ticker_symbol)
FROM (SELECT ticker_symbol,
             anomaly.rcf_train(ARRAY[avg_price, price_range, ticks], 50, 32, 100000, 1, 42
                               ORDER BY window_start) AS model
      FROM (SELECT ticker_symbol,
                   date_bin('1 minute', event_time, timestamptz '2000-01-01 00:00:00+00') AS window_start,
                   avg(price ORDER BY id) AS avg_price, max(price) - min(price) AS price_range,
                   count(*)::float8 AS ticks
            FROM stock_ticker GROUP BY 1, 2) w
      GROUP BY ticker_symbol) m}), 'AMZN=60,JPM=60,XOM=60', 'each ticker seeded with its 60 minutes');

# The Lambda: an e-mail destination and a rule with templates.
sq(qq{
SELECT anomaly.create_destination('desk', 'email',
    '{"url": "$smtp->{url}", "from": "anomaly\@example.com", "to": ["desk\@example.com"]}');
SELECT anomaly.create_alert_rule('ticker-minute', detector => 'ticker_1min', destination => 'desk',
    min_score => 2, send_resolved => false, group_by => '{partition_key}',
    subject_template => '{{partition_key}}: unusual minute ending {{source_key.window_end}}',
    body_template => E'{{partition_key}} from {{source_key.window_start}} to {{source_key.window_end}} '
                     '({{source_key.rows}} ticks) scored {{score}}.\\nExplanation: {{explanation}}');
});

# Ten more minutes, AMZN's jump at 10:06, a late XOM tick; the worker scores.
sq(q{
INSERT INTO stock_ticker (ticker_symbol, sector, change, price, event_time)
SELECT t, s, round((sin(g / 7.0 + base) / 2)::numeric, 2),
       base + 2 * sin(g / 40.0 + base) + ((g * 7919 + base * 13) % 100) / 100.0
           + CASE WHEN t = 'AMZN' AND g BETWEEN 792 AND 797 THEN 12 ELSE 0 END,
       timestamptz '2025-06-02 09:00:00+00' + g * interval '5 seconds'
FROM generate_series(720, 839) g,
     (VALUES ('AMZN', 'TECHNOLOGY', 180), ('XOM', 'ENERGY', 110), ('JPM', 'FINANCIAL', 200)) v(t, s, base)
ORDER BY g, t;
});
sq(q{INSERT INTO stock_ticker (ticker_symbol, sector, change, price, event_time)
	VALUES ('XOM', 'ENERGY', 0.1, 110.5, timestamptz '2025-06-02 10:02:30+00')});

ok($node->poll_query_until('postgres', q{
	SELECT (windows->>'late_rows')::int = 1 FROM anomaly.detector_status WHERE name = 'ticker_1min'}, 't'),
	'the worker scored the ticks and counted the late one');
is(sq(q{SELECT count(*), count(*) FILTER (WHERE ANOMALY_SCORE > 2) FROM destination_sql_stream_1min}),
	'27|1', 'the destination has the 27 windows of 10:00 to 10:08, one above 2');
is(sq(q{SELECT partition_key, ROWTIME, round(avg_price::numeric, 2), round(price_range::numeric, 2), ticks,
	round(ANOMALY_SCORE::numeric, 2), ANOMALY_EXPLANATION ? 'price_range'
	FROM destination_sql_stream_1min WHERE ANOMALY_SCORE > 2}),
	'AMZN|2025-06-02 10:07:00+00|184.71|12.79|12|4.38|t', "the guide's row, with its explanation");
is(sq(q{SELECT ticker_symbol || ' ' || price FROM late_ticks}), 'XOM 110.5', 'the late tick is kept');

ok(wait_for(60, sub { scalar(read_jsonl($smtp->{log})) >= 1
	  && sq(q{SELECT count(*) FROM anomaly.outbox}) == 0 }), 'the e-mail left the outbox');
my @mails = read_jsonl($smtp->{log});
is(scalar(@mails), 1, 'one e-mail: one minute scored above 2');
is($mails[0]{subject}, 'AMZN: unusual minute ending 2025-06-02T10:07:00+00:00', 'the subject from the template');
like($mails[0]{body},
	qr/^AMZN from 2025-06-02T10:06:00\+00:00 to 2025-06-02T10:07:00\+00:00 \(12 ticks\) scored 4\.38\d*\.\r?\nExplanation: \{.*"price_range"/s,
	'the body from the template: ticker, window, ticks, score, explanation');
is_deeply($mails[0]{rcpt_tos}, [ 'desk@example.com' ], 'to the desk');

$node->stop;
done_testing();
