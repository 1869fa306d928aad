# Epoch.pm - timestamps to epoch seconds, as the demo's stand-ins log them
# and jsonb writes a timestamptz (ISO 8601 with an offset, or PostgreSQL's
# text form); shared by demo/received.pl and its TAP test, 070_demo.

package Epoch;

use strict;
use warnings;

use Exporter 'import';
use Time::Local qw(timegm);

our @EXPORT = qw(epoch);

# epoch($s): the epoch seconds of timestamp $s, undef when it is none.
sub epoch
{
	my ($s) = @_;
	return undef unless defined $s;
	my ($y, $mo, $d, $h, $mi, $sec, $frac, $sign, $oh, $om) =
	  $s =~ /^(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(\.\d+)?(?:([+-])(\d\d)(?::?(\d\d))?|Z)?$/
	  or return undef;
	my $t = timegm($sec, $mi, $h, $d, $mo - 1, $y) + ($frac // 0);
	$t -= ($sign eq '+' ? 1 : -1) * ($oh * 3600 + ($om // 0) * 60) if defined $sign;
	return $t;
}

1;
