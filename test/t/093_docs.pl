# The SQL of docs/*.md runs as written (issue 18: docs tested): each
# document's ```sql blocks, in order, in one database of a cluster
# configured as that document says, each block succeeding, and the output a
# document shows compared with what psql prints (test/DocTest.pm says how;
# README.md's blocks are TAP 091's).  Blocks marked illustrative are
# counted, not run; the last line says how many ran.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";
use File::Spec;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use DocTest;

my $src = $ENV{ANOMALY_SRC} // File::Spec->catdir($FindBin::RealBin, '..', '..');

# Each document with the postgresql.conf it describes.
my %conf = (
	# the window functions and stored models need nothing; the cluster is
	# the same as the others' so that nothing depends on its absence
	'sql-reference.md' => qq{
shared_preload_libraries = 'anomaly'
},
	# "Settings the server needs" for detectors with the background worker,
	# and pg_cron in the database its section names
	'detectors.md' => qq{
shared_preload_libraries = 'anomaly,pg_cron'
anomaly.detector_database = 'postgres'
cron.database_name = 'postgres'
},
	'operations.md' => qq{
shared_preload_libraries = 'anomaly,pg_cron'
anomaly.detector_database = 'postgres'
anomaly.sender_database = 'postgres'
cron.database_name = 'postgres'
},
	# the quick start's postgresql.conf (the credential's value made up)
	'alerts.md' => qq{
shared_preload_libraries = 'anomaly'
anomaly.sender_database = 'postgres'
anomaly.credentials = 'hook_secret=doc-test-not-a-secret'
anomaly.credential_bindings = 'hook_secret=https://alerts.example.com/'
},
	# step 5: wal_level = logical; step 6 as "without the background
	# worker" (no preload), so that process() does the rounds and nothing
	# is sent to the example SNS topic
	'kda-migration.md' => qq{
shared_preload_libraries = ''
},
);

my ($total, $run, $compared, $illustrative) = (0, 0, 0, 0);
for my $doc (sort keys %conf)
{
	my $file = "$src/docs/$doc";
	ok(-r $file, "docs/$doc is there");
	(my $name = $doc) =~ s/\W/_/g;
	my $node = PostgreSQL::Test::Cluster->new("doc_$name");
	$node->init(allows_streaming => 'logical');
	$node->append_conf('postgresql.conf', $conf{$doc});
	$node->start;
	my @r = run_doc_blocks($node, 'postgres', $file, "docs/$doc");
	note sprintf('docs/%s: %d blocks, %d run, %d outputs compared, %d illustrative', $doc, @r);
	$total += $r[0];
	$run += $r[1];
	$compared += $r[2];
	$illustrative += $r[3];
	$node->stop;
}

# Every block is run or says why not.
is($run + $illustrative, $total, "every block of docs/*.md is run or marked illustrative");
diag(sprintf('docs/*.md: %d SQL blocks, %d run (%d outputs compared), %d illustrative',
	$total, $run, $compared, $illustrative));
done_testing();
