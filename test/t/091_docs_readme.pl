# The SQL of README.md runs as written: every ```sql block, in order, in one
# database of a cluster configured as README says (anomaly preloaded,
# wal_level = logical), each statement succeeding.  The output shown in the
# README's comments is checked where it is exact (the tour's anomalies).
#
# The blocks of docs/*.md are TAP 093's (test/DocTest.pm).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use FindBin;
use lib "$FindBin::RealBin/..";
use DetectTest;

my $src = $ENV{ANOMALY_SRC} // '..';
open(my $fh, '<', "$src/README.md") or die "README.md: $!";
my $readme = do { local $/; <$fh> };
close $fh;

my @blocks = $readme =~ /^```sql\n(.*?)^```$/msg;
ok(@blocks >= 2, 'README.md has its SQL blocks (' . scalar(@blocks) . ')');

my $node = logical_node('readme',
	shared_preload_libraries => "'anomaly'",
	'anomaly.detector_database' => "'postgres'",
	'anomaly.sender_database' => "'postgres'");

my $i = 0;
foreach my $block (@blocks)
{
	$i++;
	my ($rc, $out, $err) = ('', '', '');
	$rc = $node->psql('postgres', $block,
		stdout => \$out, stderr => \$err, on_error_stop => 1,
		extra_params => [ '-A' ]);
	is($rc, 0, "README.md SQL block $i runs as written")
	  or diag("stderr: $err");
	unlike($err, qr/ERROR/, "README.md SQL block $i raises no error");
	if ($i == 1)
	{
		# The tour: the spike at t = 700 in zone a scores highest, and is the
		# one anomaly graded detection reports.
		like($out, qr/^a\|700\|60\|/m, 'the tour finds the spike at t = 700 in zone a');
		like($out, qr/^a\|700\|60\|0\.9\d\d\|\{20(?:\.\d+)?\}$/m,
			'graded detection reports it with its grade and expected value');
	}
}

$node->stop;
done_testing();
