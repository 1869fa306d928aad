# A third hostile-role review: the surfaces the first two covered least
# (alert templates, stagger windows, detector options, scale-out functions,
# the sender's peers).
#
# Blocks marked "finding" are attacks that succeeded before their fix
# (session 9); the others confirm behaviour that was found sound, so that a
# change that breaks it fails here.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use HostileTest;

my $node = new_hostile_node('hostile_review3');

# A database without a detector worker: rounds run by process(), in the
# session of its caller, whose memory the server's log can report.
$node->safe_psql('postgres', q{CREATE DATABASE wdb;});
$node->safe_psql('wdb', q{
	CREATE EXTENSION anomaly;
	CREATE SCHEMA s_adm AUTHORIZATION adm;
	CREATE SCHEMA s_adm2 AUTHORIZATION adm2;
	CREATE SCHEMA s_own AUTHORIZATION owner1;
});

# The largest resident size (kB) that log_statement_stats reported for a
# statement matching $re in the log written since $offset.
sub max_rss_kb
{
	my ($offset, $re) = @_;
	my $log = substr(slurp_file($node->logfile), $offset);
	my $kb;
	while ($log =~ /(\d+) kB max resident size\n(?:.*\n)*?.*STATEMENT:\s+([^\n]*)/g)
	{
		my ($k, $stmt) = ($1, $2);
		$kb = $k if $stmt =~ $re && (!defined $kb || $k > $kb);
	}
	return $kb;
}

# -------------------------------------------------------------------------
# Finding: an alert template's placeholders each wrote their value out in
# full, and kept it until the statement ended, even once the rendered text
# was at its 256 kB limit: a rule's body template of 16 kB holds about
# 1,000 {{explanation}}, and a detector whose feature name (an option, of
# any length) is 1 MB long has 1 MB explanations, so each notification
# cost the round 1 GB (a 10 MB name, 10 GB), in the process() caller's
# backend or the superuser's detector worker.  Each value's text is now
# freed once appended, and nothing is looked up once the text is full.
{
	my $label = 'an alert template naming a large value many times';
	# directly: 300 placeholders of a 1 MB object took 600 MB
	is($node->safe_psql('postgres', q{
		SELECT length(anomaly._render_template(repeat('{{key}}', 300),
				jsonb_build_object('key', jsonb_build_object('p', repeat('x', 1000000)))))
			|| '|' || ((SELECT sum(total_bytes) FROM pg_backend_memory_contexts) < 64 * 1048576)}),
		'262144|true', "$label: the text is cut at 256 kB and the backend holds under 64 MB");
	is($node->safe_psql('postgres', q{
		SELECT anomaly._render_template('a{{key.p}}b{{n}}c{{o}}d{{t}}e{{none}}f',
			'{"key": {"p": "v"}, "n": 1.5, "o": {"x": [1, 2]}, "t": true, "none": null}')}),
		'avb1.5c{"x": [1, 2]}dtrueef', "$label: values are rendered as before");

	# through a rule: adm's detector with a 1 MB feature name
	as_role_ok($node, 'adm', q{
CREATE TABLE s_adm.tpl (id bigserial PRIMARY KEY, v float8);
SELECT anomaly.create_detector('det_tpl', 's_adm.tpl', ARRAY['v'],
	options => jsonb_build_object('number_of_trees', 5, 'sub_sample_size', 16, 'shingle_size', 1,
		'with_explanation', true, 'feature_names', jsonb_build_array(repeat('f', 1000000))));
SELECT anomaly.create_destination('e_tpl', 'email',
	'{"url": "smtp://127.0.0.1:9", "from": "a@example.com", "to": ["b@example.com"]}');
SELECT anomaly.create_alert_rule('r_tpl', 'det_tpl', 'e_tpl', min_score => 0,
	group_by => '{source_key}', body_template => repeat('{{explanation}}', 400));
INSERT INTO s_adm.tpl (v) SELECT g FROM generate_series(1, 30) g;
}, "$label: adm's rule renders {{explanation}} 400 times", db => 'wdb');
	$node->safe_psql('postgres', q{
ALTER ROLE adm IN DATABASE wdb SET log_statement_stats = on;
ALTER ROLE adm IN DATABASE wdb SET log_min_messages = log;});
	my $offset = -s $node->logfile;
	as_role_ok($node, 'adm', q{SELECT anomaly.process('det_tpl');},
		"$label: a round as adm", db => 'wdb', timeout => '300s');
	$node->safe_psql('postgres', q{
ALTER ROLE adm IN DATABASE wdb RESET log_statement_stats;
ALTER ROLE adm IN DATABASE wdb RESET log_min_messages;});
	is($node->safe_psql('wdb', q{
		SELECT count(*) || '|' || max(length(payload ->> 'message'))
		FROM anomaly.outbox WHERE destination = 'e_tpl'}),
		'30|262144', "$label: the notifications are queued, their messages cut at 256 kB");
	my $kb = max_rss_kb($offset, qr/anomaly\.process\('det_tpl'\)/);
	ok(defined $kb && $kb < 200 * 1024,
		"$label: the round's backend stayed under 200 MB (400 MB before)")
	  or diag('max resident size: ' . ($kb // 'not logged') . ' kB');
	assert_no_superuser($node, $label);
	assert_alive($node, $label);
}

done_testing();
