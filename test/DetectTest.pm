
# DetectTest.pm - helpers of the detector TAP tests (test/t/05*_detect_*.pl).

package DetectTest;

use strict;
use warnings;

use Exporter 'import';

our @EXPORT = qw(window_diff detector_node);

use PostgreSQL::Test::Cluster;

# window_diff($node, %opt): compares the scores of a detector with what the
# window functions give over the same rows, per partition key in commit
# order, as the detector must.  Options:
#   detector  the detector's name
#   rows      a relation (or parenthesised query) of the source rows, with
#             an id column that is the detector's source key
#   key       the partition key column of rows
#   point     the point expression over rows' columns
#   params    random_cut_forest's (and detect()'s) positional parameters
#             after the point
#   grade_params  detect()'s, when they differ (grader parameters)
#   order     the order within a key (default 'commit_lsn, id')
#   grades    also compare grades, decisions and expected values with
#             detect()
#   db        the database (default postgres)
# Returns (rows compared, scores that differ, and with grades: rows whose
# grading differs, rows graded above 0, rows with expected values).
sub window_diff
{
	my ($node, %opt) = @_;
	my $order = $opt{order} // 'commit_lsn, id';
	my $window = "OVER (PARTITION BY $opt{key} ORDER BY $order)";
	my $sql = qq{
	WITH j AS (
		SELECT r.*, c.commit_lsn, c.anomaly_score, c.anomaly_grade, c.is_anomaly,
			c.expected AS expected_values
		FROM $opt{rows} r
		JOIN anomaly.scores c ON c.detector = '$opt{detector}'
			AND (c.source_key->>'id')::bigint = r.id),
	w AS (
		SELECT anomaly_score, anomaly_grade, is_anomaly, expected_values,
			anomaly.random_cut_forest($opt{point}, $opt{params}) $window AS expected};
	$sql .= qq{,
			anomaly.detect($opt{point}, @{[ $opt{grade_params} // $opt{params} ]}) $window AS d} if $opt{grades};
	$sql .= q{
		FROM j)
	SELECT count(*), count(*) FILTER (WHERE anomaly_score IS DISTINCT FROM expected)};
	$sql .= q{,
		count(*) FILTER (WHERE anomaly_grade IS DISTINCT FROM (d).anomaly_grade
			OR is_anomaly IS DISTINCT FROM (d).is_anomaly
			OR expected_values IS DISTINCT FROM (d).expected),
		count(*) FILTER (WHERE anomaly_grade > 0), count(expected_values)} if $opt{grades};
	$sql .= q{ FROM w};
	return split /\|/, $node->safe_psql($opt{db} // 'postgres', $sql);
}

# detector_node($name, %settings): a started cluster for logical decoding
# with anomaly preloaded and the detector workers in database postgres,
# polling every 20 ms, up to 16 worker processes, warnings only in the log;
# %settings (name => value, as written in postgresql.conf) add to these or
# replace them.
sub detector_node
{
	my ($name, %settings) = @_;
	my %conf = (
		shared_preload_libraries => "'anomaly'",
		'anomaly.detector_database' => "'postgres'",
		'anomaly.detector_naptime' => 20,
		max_worker_processes => 16,
		log_min_messages => 'warning',
		%settings);
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(allows_streaming => 'logical');
	$node->append_conf('postgresql.conf',
		join('', map { "$_ = $conf{$_}\n" } sort keys %conf));
	$node->start;
	return $node;
}

1;
