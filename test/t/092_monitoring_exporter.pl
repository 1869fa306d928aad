# monitoring/queries.yaml with the real prometheus-postgres-exporter (Debian's
# package; 0.11.1 in Debian 12): the exporter runs on loopback against a
# throwaway cluster with a detector, destinations (one delivering, one
# failing into the dead letters, one disabled with a queue) and an alert
# rule; /metrics is scraped over HTTP and each anomaly_* metric is checked
# against the views it comes from, then again after more rows are scored.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";
use File::Spec;
use HTTP::Tiny;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

use DetectTest;
use HostileTest qw(wait_until wait_detector);

# The exporter: Debian's binary, or one named by ANOMALY_PG_EXPORTER.
my $exporter = $ENV{ANOMALY_PG_EXPORTER};
if (!$exporter)
{
	for my $dir (split /:/, ($ENV{PATH} // '') . ':/usr/bin:/usr/sbin')
	{
		my $f = "$dir/prometheus-postgres-exporter";
		if (-x $f) { $exporter = $f; last; }
	}
}
plan skip_all => 'prometheus-postgres-exporter is not installed (Debian package prometheus-postgres-exporter; test/deps.sh installs it)'
  unless $exporter && -x $exporter;

my $src = $ENV{ANOMALY_SRC} // File::Spec->catdir($FindBin::RealBin, '..', '..');
my $queries = File::Spec->rel2abs("$src/monitoring/queries.yaml");
ok(-r $queries, "monitoring/queries.yaml is there ($queries)");

my $node = logical_node('exporter',
	shared_preload_libraries => "'anomaly'",
	'anomaly.detector_database' => "'postgres'",
	'anomaly.sender_database' => "'postgres'",
	'anomaly.detector_naptime' => "'100ms'",
	'anomaly.sender_naptime' => "'100ms'",
	'anomaly.allowed_destination_hosts' => "'127.0.0.1'",
	'anomaly.max_attempts' => 1);

# A detector whose features fail on one row (division by zero: v = 13), a
# destination that delivers (notify), one that cannot (a closed port: dead
# letters), one disabled with a notification waiting, and a rule.
my $closed = PostgreSQL::Test::Cluster::get_free_port();
$node->safe_psql('postgres', qq{
CREATE EXTENSION anomaly;
CREATE TABLE src (id bigserial PRIMARY KEY, zone text, v float8);
SELECT anomaly.create_detector('mon', 'src', ARRAY['v', '1 / (v - 13)'], partition_by => 'zone',
	options => '{"number_of_trees": 5, "sub_sample_size": 16}');
SELECT anomaly.create_destination('mon-ok', 'notify', '{"channel": "mon"}');
SELECT anomaly.create_destination('mon-dead', 'webhook', '{"url": "http://127.0.0.1:$closed/"}');
SELECT anomaly.create_destination('mon-off', 'notify', '{"channel": "off"}');
SELECT anomaly.alter_destination('mon-off', enabled => false);
SELECT anomaly.create_alert_rule('mon-rule', 'mon', 'mon-ok', min_score => 0, group_by => '{partition_key}');
SELECT anomaly.send_alert('mon-dead', 'to nowhere');
SELECT anomaly.send_alert('mon-off', 'waiting');
SELECT anomaly.send_alert('mon-off', 'waiting too');
});
$node->safe_psql('postgres', q{
INSERT INTO src (zone, v) SELECT CASE WHEN g % 2 = 0 THEN 'a' ELSE 'b' END, g FROM generate_series(1, 40) g});
like(wait_detector($node, 'mon', 40), qr/^active\|39\|1\|0\|/, 'the detector scored 39 rows, one failed');
ok(wait_until(60, sub {
	$node->safe_psql('postgres', q{
		SELECT (SELECT count(*) FROM anomaly.dead_letters WHERE destination = 'mon-dead') = 1
		   AND NOT EXISTS (SELECT 1 FROM anomaly.outbox WHERE destination IN ('mon-ok', 'mon-dead'))}) eq 't' }),
	'deliveries settled: mon-ok delivered, mon-dead in the dead letters');

# The exporter on a free loopback port, as the cluster's superuser over its
# socket (monitoring/README.md: what a less privileged role sees).
my $port = PostgreSQL::Test::Cluster::get_free_port();
my $dsn = sprintf('host=%s port=%d user=%s dbname=postgres sslmode=disable',
	$node->host, $node->port, scalar(getpwuid($<)));
my ($in, $out, $err) = ('', '', '');
my $h;
{
	local $ENV{DATA_SOURCE_NAME} = $dsn;
	$h = IPC::Run::start(
		[ $exporter, "--extend.query-path=$queries", "--web.listen-address=127.0.0.1:$port" ],
		\$in, \$out, \$err);
}
my $http = HTTP::Tiny->new(timeout => 10);
my $url = "http://127.0.0.1:$port/metrics";

# Scrapes /metrics: { 'name{label="v",...}' => value } for the anomaly_
# metrics (labels sorted, server label left out), plus the exporter's own.
sub scrape
{
	my $res = $http->get($url);
	return undef unless $res->{success};
	my %m;
	for my $line (split /\n/, $res->{content})
	{
		next if $line =~ /^#/;
		next unless $line =~ /^(anomaly_\w+|pg_exporter_\w+|pg_up)(?:\{(.*)\})?\s+(\S+)$/;
		my ($name, $labels, $value) = ($1, $2 // '', $3);
		my %l = $labels =~ /(\w+)="((?:[^"\\]|\\.)*)"/g;
		delete $l{server};
		my $key = $name . '{' . join(',', map { "$_=$l{$_}" } sort keys %l) . '}';
		$m{$key} = $value;
	}
	return \%m;
}

my $m;
ok(wait_until(30, sub { $m = scrape(); $m && exists $m->{'anomaly_detector_rows_scored{datname=postgres,detector=mon}'} }),
	"the exporter serves anomaly metrics on $url")
  or diag("exporter stderr: $err");
is($m->{'pg_up{}'}, '1', 'the exporter reaches the database (pg_up 1)');
my @load_errors = grep { /^pg_exporter_user_queries_load_error/ && $m->{$_} ne '0' } keys %$m;
is(scalar(@load_errors), 0, 'queries.yaml loads without error') or diag(join(', ', @load_errors));
is($m->{'pg_exporter_last_scrape_error{}'}, '0', 'the last scrape ran every query without error');

# Every metric queries.yaml declares is exported.
open(my $qf, '<', $queries) or die "$queries: $!";
my $yaml = do { local $/; <$qf> };
close $qf;
my ($cur, @declared);
for my $line (split /\n/, $yaml)
{
	$cur = $1 if $line =~ /^(\w+):\s*$/;
	push @declared, [ $cur, $1 ] if $line =~ /^\s+- (\w+):\s*$/;
}
my %labels;
for my $d (@declared)
{
	my ($q, $col) = @$d;
	my ($usage) = $yaml =~ /^\Q$q\E:.*?^\s+- \Q$col\E:\s*\n\s+usage: "(\w+)"/ms;
	$labels{$q}{$col} = 1 if $usage eq 'LABEL';
}
for my $d (@declared)
{
	my ($q, $col) = @$d;
	next if $labels{$q}{$col};
	ok((grep { /^\Q${q}_$col\E\{/ } keys %$m), "metric ${q}_$col is exported");
}

# Values against the views.
sub metric
{
	my ($name, %l) = @_;
	$l{datname} //= 'postgres';
	return $m->{ $name . '{' . join(',', map { "$_=$l{$_}" } sort keys %l) . '}' };
}

# same_as_view($label, $prefix, \%labels, $from, @columns): each column
# (a name, or [name, expression]) of the one row of $from equals the metric
# ${prefix}_name with %labels; returns the row as name => value.
sub same_as_view
{
	my ($label, $prefix, $labels, $from, @columns) = @_;
	my @names = map { ref $_ ? $_->[0] : $_ } @columns;
	my @exprs = map { ref $_ ? $_->[1] : $_ } @columns;
	my %row;
	@row{@names} = split /\|/,
	  $node->safe_psql('postgres', 'SELECT ' . join(', ', @exprs) . " FROM $from");
	is(metric("${prefix}_$_", %$labels), $row{$_}, "$label: $_ = $row{$_}") for @names;
	return %row;
}

sub check_detector
{
	my ($label) = @_;
	my %d = (detector => 'mon');
	my %row = same_as_view($label, 'anomaly_detector', \%d,
		q{anomaly.detector_status WHERE name = 'mon'},
		[ active => q{(state = 'active')::int} ], [ paused => q{(state = 'paused')::int} ],
		[ failed => q{(state = 'failed')::int} ], 'rows_scored', 'rows_filtered', 'rows_failed',
		[ slot_active => 'coalesce(slot_active, false)::int' ],
		[ pending_rows => 'coalesce(pending_rows, 0)' ]);
	like(metric('anomaly_detector_lag_bytes', %d), qr/^\d+(\.\d+)?(e\+\d+)?$/, "$label: lag_bytes is a number of bytes");
	like(metric('anomaly_detector_retained_bytes', %d), qr/^\d+(\.\d+)?(e\+\d+)?$/, "$label: retained_bytes is a number of bytes");
	like(metric('anomaly_detector_pending_bytes', %d), qr/^\d+(\.\d+)?(e\+\d+)?$/, "$label: pending_bytes is a number of bytes");
	my $fails = $node->safe_psql('postgres', q{SELECT count(*) FROM anomaly.detector_failures WHERE detector = 'mon'});
	is(metric('anomaly_detector_failures_rows', %d), $fails, "$label: detector_failures rows = $fails");
	return $row{rows_scored};
}

my $scored = check_detector('detector');
is($scored, '39', 'detector: 39 rows scored');

for my $dest ('mon-ok', 'mon-dead', 'mon-off')
{
	my $from = "anomaly.delivery_status WHERE destination = '$dest'";
	my $kind = $node->safe_psql('postgres', "SELECT kind FROM $from");
	same_as_view("delivery $dest", 'anomaly_delivery', { destination => $dest, kind => $kind },
		$from, [ enabled => 'enabled::int' ], qw(queued retrying sent retried dead dead_letters));
}
is(metric('anomaly_delivery_queued', destination => 'mon-off', kind => 'notify'), '2',
	'delivery: the disabled destination has its two notifications queued');
cmp_ok(metric('anomaly_delivery_oldest_age_seconds', destination => 'mon-off', kind => 'notify'), '>', 0,
	'delivery: and their age');
is(metric('anomaly_delivery_dead_letters', destination => 'mon-dead', kind => 'webhook'), '1',
	'delivery: the failing destination has its dead letter');

sub check_episodes
{
	my ($label) = @_;
	for my $status ('pending', 'firing', 'resolved')
	{
		my $n = $node->safe_psql('postgres', qq{
			SELECT count(*) FROM anomaly.alerts WHERE rule = 'mon-rule' AND status = '$status'});
		is(metric('anomaly_alert_episodes_episodes', rule => 'mon-rule', detector => 'mon',
				severity => 'warning', status => $status),
			$n, "$label: $status episodes = $n");
	}
}
check_episodes('alert episodes');
my $firing = $node->safe_psql('postgres', q{SELECT count(*) FROM anomaly.alerts WHERE status = 'firing'});
cmp_ok($firing, '>', 0, "alert episodes: some are firing ($firing: min_score 0, one per zone)");

# More rows: the next scrape follows (the exporter caches nothing here).
$node->safe_psql('postgres', q{
INSERT INTO src (zone, v) SELECT 'c', g FROM generate_series(41, 60) g});
like(wait_detector($node, 'mon', 60), qr/^active\|59\|1\|0\|/, 'the detector scored 20 rows more');
ok(wait_until(30, sub { $m = scrape(); $m && (metric('anomaly_detector_rows_scored', detector => 'mon') // '') eq '59' }),
	'after more rows: the scrape shows 59 rows scored');
check_detector('after more rows');
check_episodes('after more rows');

# Paused: the state metrics follow.
$node->safe_psql('postgres', q{SELECT anomaly.pause_detector('mon')});
ok(wait_until(30, sub { $m = scrape(); $m && (metric('anomaly_detector_paused', detector => 'mon') // '') eq '1' }),
	'paused: anomaly_detector_paused is 1');
is(metric('anomaly_detector_active', detector => 'mon'), '0', 'paused: anomaly_detector_active is 0');

# The Grafana dashboard beside it asks only for metrics the file declares.
{
	require JSON::PP;
	open(my $df, '<', "$src/monitoring/grafana-dashboard.json") or die "grafana-dashboard.json: $!";
	my $dash = JSON::PP::decode_json(do { local $/; <$df> });
	close $df;
	my %declared = map { ("$_->[0]_$_->[1]" => 1) } grep { !$labels{ $_->[0] }{ $_->[1] } } @declared;
	my @exprs = map { $_->{expr} } map { @{ $_->{targets} // [] } } @{ $dash->{panels} };
	ok(@exprs >= 10, 'the dashboard has its queries (' . scalar(@exprs) . ')');
	my @unknown = grep { !$declared{$_} } map { /\b(anomaly_\w+)/g } @exprs;
	is(join(', ', @unknown), '', 'the dashboard uses only metrics of queries.yaml');
}

$h->kill_kill;
$node->stop;
done_testing();
