#!/usr/bin/perl
#
# received.pl - the alert notifications a stand-in received, from its log
# (test/servers/*.py write one JSON object per line), as CSV:
#
#   demo/received.pl webhook|sns LOG
#
#   receiver,received_at,status,zone,ts,score,grade,direction,latency_ms
#
# received_at is the epoch time the stand-in got the request; ts is the
# source row's time (its primary key, in the payload's source_key) in UTC,
# 'YYYY-MM-DD HH:MM'; direction is HIGH or LOW from the explanation;
# latency_ms runs from the commit of the row that raised the alert to the
# stand-in's receipt.  Only
# notifications of alert rules count: for SNS, those it published (their
# signature verified).  A last line still being written is skipped.

use strict;
use warnings;
use JSON::PP;
use File::Basename qw(dirname);
use lib dirname(__FILE__);
use Epoch;

my ($receiver, $log) = @ARGV;
die "usage: $0 webhook|sns LOG\n"
  unless defined $log && ($receiver eq 'webhook' || $receiver eq 'sns');
exit 0 unless -e $log;

# The same as UTC text, to the minute.
sub utc_minute
{
	my $t = epoch(@_);
	return '' unless defined $t;
	my @g = gmtime(int($t));
	return sprintf('%04d-%02d-%02d %02d:%02d', $g[5] + 1900, $g[4] + 1, $g[3], $g[2], $g[1]);
}

open(my $fh, '<', $log) or die "$log: $!\n";
while (my $line = <$fh>)
{
	next unless $line =~ /\n$/;
	my $e = eval { decode_json($line) } or next;
	my $p;
	if ($receiver eq 'webhook')
	{
		$p = $e->{body};
	}
	else
	{
		next unless ($e->{outcome} // '') eq 'published';
		$p = eval { decode_json($e->{message}) };
	}
	next unless ref $p eq 'HASH' && ($p->{source} // '') eq 'rule';
	my $zone = ref $p->{key} eq 'HASH' ? $p->{key}{partition_key} // '' : '';
	my $ts = ref $p->{source_key} eq 'HASH' ? utc_minute($p->{source_key}{ts}) : '';
	my $dir = '';
	if (ref $p->{explanation} eq 'HASH')
	{
		for my $f (values %{ $p->{explanation} })
		{
			$dir = $f->{DIRECTION} if ref $f eq 'HASH' && defined $f->{DIRECTION};
		}
	}
	my $commit = epoch($p->{commit_time});
	printf "%s,%.3f,%s,%s,%s,%s,%s,%s,%s\n", $receiver, $e->{t} // 0, $p->{status} // '',
	  $zone, $ts, defined $p->{score} ? sprintf('%.4f', $p->{score}) : '',
	  defined $p->{grade} ? sprintf('%.4f', $p->{grade}) : '', $dir,
	  defined $commit && $e->{t} ? sprintf('%.0f', 1000 * ($e->{t} - $commit)) : '';
}
close $fh;
