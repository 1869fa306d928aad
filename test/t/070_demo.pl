
# The demo (demo/run.sh, behind make demo), run non-interactively against the
# extension already installed: it must finish in bounded time, and the
# stand-ins it started must have received, through the whole pipeline
# (rows committed, a detector that grades, an alert rule, the sender
# worker), an alert for each injected anomaly soon after its start, both as
# a webhook and as an SNS Publish whose signature the stand-in verified, and
# few others; the detector must agree with detect(); the pictures must have
# been written.
#
# ANOMALY_DEMO_TIMEOUT bounds the run (seconds, default 400).

use strict;
use warnings;

use FindBin;
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

use lib "$FindBin::RealBin/../servers";
use AlertTest qw(read_jsonl);
use lib "$FindBin::RealBin/../../demo";
use Epoch;

my $src = $ENV{ANOMALY_SRC} // "$FindBin::RealBin/../..";
my $timeout = $ENV{ANOMALY_DEMO_TIMEOUT} // 400;
my $window = 6 * 3600;    # an alert counts for an anomaly up to 6 hours after its start
my $max_other = 2;        # alerts allowed away from every injected anomaly, per receiver

my $dir = PostgreSQL::Test::Utils::tempdir();
my $out = "$dir/out";

# --- run it ----------------------------------------------------------------------

my ($stdout, $stderr) = ('', '');
my $t0 = time();
my $ok = eval {
	local $ENV{ANOMALY_DEMO_INSTALL} = '0';
	local $ENV{ANOMALY_DEMO_OUT} = $out;
	local $ENV{ANOMALY_DEMO_KEEP} = '0';
	IPC::Run::run([ 'bash', "$src/demo/run.sh" ], '<', \undef, '>', \$stdout, '2>', \$stderr,
		IPC::Run::timeout($timeout));
};
my $err = $@;
my $secs = time() - $t0;
open(my $fh, '>', "$dir/demo.out") or die;
print $fh $stdout;
close $fh;
note "demo output (also in $dir/demo.out):\n$stdout";
ok($ok, sprintf('demo/run.sh succeeded, in %.0f s', $secs))
  or diag("exit: " . ($err || $? >> 8) . "\nstderr:\n$stderr\nlast output:\n"
	  . join("\n", grep { defined } (split /\n/, $stdout)[-40 .. -1]));
cmp_ok($secs, '<', $timeout, "and within ${timeout}s");

like($stdout, qr/^  Mar 28 Sat\s+rows inserted\s+12096\s+scored\s+12096\b/m,
	'progress shown per day, every row committed and scored by the detector');
like($stdout, qr/scores and grades agree with anomaly\.detect\(\) over the same rows in commit order: t\b/,
	"the detector's scores and grades equal detect()'s over the same rows");

# --- what was injected, what was received -----------------------------------------

my @injected;
if (open(my $ih, '<', "$out/injected.csv"))
{
	<$ih>;    # header
	while (my $line = <$ih>)
	{
		chomp $line;
		my ($zone, $starts, $ends, $kind) = split /,/, $line;
		push @injected, { zone => $zone, starts => epoch($starts), kind => $kind, at => $starts };
	}
	close $ih;
}
cmp_ok(scalar(@injected), '>=', 3, 'the demo injected anomalies (' . scalar(@injected) . ')');
my %kinds = map { $_->{kind} => 1 } @injected;
cmp_ok(scalar(keys %kinds), '>=', 3, 'of several kinds: ' . join(', ', sort keys %kinds));

my @sns_log = read_jsonl("$out/sns.jsonl");
my @webhook_log = read_jsonl("$out/webhook.jsonl");
my %received = (
	webhook => [ map { $_->{body} } @webhook_log ],
	sns => [
		map { eval { decode_json($_->{message}) } // {} }
		grep { ($_->{outcome} // '') eq 'published' } @sns_log
	]);
ok(@sns_log > 0 && !grep({ ($_->{outcome} // '') ne 'published' } @sns_log),
	'every request to the SNS stand-in was published (SigV4 signature verified, SNS rules kept)')
  or diag(explain([ map { $_->{outcome} } @sns_log ]));

for my $r (qw(webhook sns))
{
	my @alerts = grep {
		ref $_ eq 'HASH' && ($_->{source} // '') eq 'rule' && ($_->{status} // '') eq 'firing'
	} @{ $received{$r} };
	my %matched;
	my @other;
	for my $al (@alerts)
	{
		my $zone = $al->{key}{partition_key} // '';
		my $ts = epoch($al->{source_key}{ts});
		my @hits = grep {
			$_->{zone} eq $zone && defined $ts && $ts >= $_->{starts} && $ts < $_->{starts} + $window
		} @injected;
		$matched{"$_->{zone} $_->{at}"}++ for @hits;
		push @other, "$zone $al->{source_key}{ts} score $al->{score}" unless @hits;
	}
	for my $i (@injected)
	{
		ok($matched{"$i->{zone} $i->{at}"},
			"$r: an alert for the $i->{kind} in $i->{zone} at $i->{at} (within 6 hours)");
	}
	cmp_ok(scalar(@other), '<=', $max_other,
		"$r: at most $max_other other alerts (" . scalar(@other) . ")")
	  or diag(join("\n", @other));
	ok(!grep({
				!defined $_->{score} || !defined $_->{grade} || $_->{grade} <= 0
				  || !$_->{detector} || !defined $_->{source_key}{ts}
			} @alerts),
		"$r: every alert names its detector, its source row, its score and a grade above 0");
}
is(scalar(@{ $received{webhook} }), scalar(@{ $received{sns} }),
	'the webhook and SNS received the same number of notifications');

# --- pictures and results ---------------------------------------------------------

my @zones = sort keys %{ { map { $_->{zone} => 1 } @injected } };
opendir(my $dh, $out) or die "$out: $!";
my @stream_pngs = grep { /\.stream\.png$/ } readdir($dh);
closedir $dh;
cmp_ok(scalar(@stream_pngs), '>=', scalar(@zones), 'one streamed picture per zone at least');
for my $zone (@zones)
{
	for my $png ("$zone.png", "$zone.stream.png")
	{
		my $data = '';
		if (open(my $ph, '<:raw', "$out/$png"))
		{
			local $/;
			$data = <$ph>;
			close $ph;
		}
		ok(length($data) > 10000 && substr($data, 0, 8) eq "\x89PNG\r\n\x1a\n",
			"picture $png written (" . length($data) . " bytes)");
	}
}
for my $csv (qw(detections.csv stream_scores.csv received_alerts.csv))
{
	ok(-s "$out/$csv", "results $csv written");
}
like($stdout, qr/^Pictures .*\n.*\Q$out\E\/\w+\.png/m, 'the demo says where the pictures are');

done_testing();
