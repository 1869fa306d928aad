
# Poll.pm - bounded waiting, shared by the TAP helper modules.
#
# Nothing sleeps and hopes: a wait polls a condition until it holds or a
# bound passes.

package Poll;

use strict;
use warnings;

use Exporter 'import';
use Time::HiRes qw(sleep time);

our @EXPORT = qw(wait_until);

# wait_until(SECONDS, CODE): calls CODE every 0.1 s until it returns true or
# SECONDS pass; returns its last value.
sub wait_until
{
	my ($secs, $code) = @_;
	my $end = time() + $secs;
	my $r;
	while (1)
	{
		$r = $code->();
		return $r if $r || time() > $end;
		sleep(0.1);
	}
}

1;
