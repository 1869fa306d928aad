# DocTest: the SQL blocks of a Markdown document, run as written.
#
# A document's ```sql blocks run in order, in one database, each through
# psql (aligned output, no footer, ON_ERROR_STOP).  A plain ``` block that
# follows a SQL block (only blank lines between) and looks like psql's
# output (a line of dashes under a header, or "-[ RECORD") is the output the
# document shows: its lines must appear, in order and together, in what the
# block printed (trailing blanks and "(N rows)" lines aside).
#
# HTML comments right before a block (only blank lines between) steer it:
#
#   <!-- doc-test: illustrative: REASON -->   not run (counted as illustrative)
#   <!-- doc-test: output-varies: REASON -->  run; the output shown is not compared
#   <!-- doc-test: setup
#   SQL ...
#   -->                                       SQL run before the next block (what the
#                                             document assumes, e.g. the reader's table)
#
# Markers are invisible when the document is read rendered; the REASON says
# why to whoever edits it.
package DocTest;

use strict;
use warnings;

use Exporter 'import';
use IPC::Run;
use Test::More;

our @EXPORT = qw(doc_blocks doc_psql run_doc_blocks);

# doc_blocks(FILE): the blocks of FILE, each a hash: sql, line (of the
# fence), output (shown, or undef), mode ('run', 'illustrative',
# 'output-varies'), reason, setup (SQL or undef).
sub doc_blocks
{
	my ($file) = @_;
	open(my $fh, '<', $file) or die "$file: $!";
	my @lines = <$fh>;
	close $fh;
	chomp @lines;

	my @blocks;
	my @pending;				# markers seen since the last non-blank line
	my $i = 0;
	while ($i < @lines)
	{
		my $l = $lines[$i];
		if ($l =~ /^<!--\s*doc-test:\s*(illustrative|output-varies)\b:?\s*(.*?)\s*-->\s*$/)
		{
			push @pending, { mode => $1, reason => $2 };
			$i++;
			next;
		}
		if ($l =~ /^<!--\s*doc-test:\s*setup\s*$/)
		{
			my @sql;
			$i++;
			while ($i < @lines && $lines[$i] !~ /^-->\s*$/)
			{
				push @sql, $lines[$i];
				$i++;
			}
			$i++;
			push @pending, { setup => join("\n", @sql) . "\n" };
			next;
		}
		if ($l =~ /^```sql\s*$/)
		{
			my $start = $i + 1;
			my @sql;
			$i++;
			while ($i < @lines && $lines[$i] !~ /^```\s*$/)
			{
				push @sql, $lines[$i];
				$i++;
			}
			$i++;
			my %b = (sql => join("\n", @sql) . "\n", line => $start, mode => 'run', reason => '');
			for my $p (@pending)
			{
				if (exists $p->{setup})
				{
					$b{setup} = ($b{setup} // '') . $p->{setup};
				}
				else
				{
					$b{mode} = $p->{mode};
					$b{reason} = $p->{reason};
				}
			}
			@pending = ();

			# the output shown: the next plain block, if only blank lines
			# come between and it looks like psql's
			my $j = $i;
			$j++ while $j < @lines && $lines[$j] =~ /^\s*$/;
			if ($j < @lines && $lines[$j] =~ /^```\s*$/)
			{
				my @out;
				my $k = $j + 1;
				while ($k < @lines && $lines[$k] !~ /^```\s*$/)
				{
					push @out, $lines[$k];
					$k++;
				}
				if (grep { /^-[-+]*$/ || /^-\[ RECORD/ } @out)
				{
					$b{output} = \@out;
					$i = $k + 1;
				}
			}
			push @blocks, \%b;
			next;
		}
		@pending = () if $l !~ /^\s*$/;
		$i++;
	}
	return @blocks;
}

# Lines as compared: trailing blanks off, no "(N rows)", no empty lines.
sub _norm
{
	return grep { $_ ne '' && !/^\(\d+ rows?\)$/ } map { my $x = $_; $x =~ s/\s+$//; $x } @_;
}

# Whether the lines of $shown appear together, in order, in @$got.
sub _contains
{
	my ($got, $shown) = @_;
	return 1 unless @$shown;
	for my $s (0 .. @$got - @$shown)
	{
		my $ok = 1;
		for my $k (0 .. $#$shown)
		{
			if ($got->[ $s + $k ] ne $shown->[$k]) { $ok = 0; last; }
		}
		return 1 if $ok;
	}
	return 0;
}

# doc_psql(NODE, DB, SQL): (exit status, stdout, stderr) of psql running SQL
# as a reader's psql would print it: aligned, with headers, without the
# "(N rows)" footer; stops at the first error.
sub doc_psql
{
	my ($node, $db, $sql) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run(
		[ $node->installed_command('psql'), '-X', '-q', '-v', 'ON_ERROR_STOP=1',
		  '-P', 'footer=off', '-P', 'pager=off', '-d', $node->connstr($db), '-f', '-' ],
		'<', \$sql, '>', \$out, '2>', \$err, IPC::Run::timeout(300));
	return ($? >> 8, $out, $err);
}

# run_doc_blocks(NODE, DB, FILE, LABEL): runs FILE's blocks in DB of NODE as
# described above, one test per block run and one per output compared;
# returns (blocks, run, compared, illustrative).
sub run_doc_blocks
{
	my ($node, $db, $file, $label) = @_;
	my @blocks = doc_blocks($file);
	my ($run, $compared, $illustrative) = (0, 0, 0);
	for my $b (@blocks)
	{
		my $where = "$label line $b->{line}";
		if ($b->{mode} eq 'illustrative')
		{
			$illustrative++;
			note "$where: illustrative: $b->{reason}";
			next;
		}
		if (defined $b->{setup})
		{
			my ($rc, $out, $err) = doc_psql($node, $db, $b->{setup});
			is($rc, 0, "$where: the setup the document assumes runs") or diag($err);
		}
		my ($rc, $out, $err) = doc_psql($node, $db, $b->{sql});
		$run++;
		ok($rc == 0 && $err !~ /\bERROR\b/, "$where: runs as written")
		  or diag("stderr: $err");
		next unless $b->{output};
		if ($b->{mode} eq 'output-varies')
		{
			note "$where: output shown not compared: $b->{reason}";
			next;
		}
		$compared++;
		my @got = _norm(split /\n/, $out);
		my @shown = _norm(@{ $b->{output} });
		ok(_contains(\@got, \@shown), "$where: prints the output the document shows")
		  or diag("shown:\n" . join("\n", @shown) . "\nprinted:\n" . join("\n", @got));
	}
	return (scalar(@blocks), $run, $compared, $illustrative);
}

1;
