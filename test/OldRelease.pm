
# OldRelease.pm - earlier releases' files for the upgrade tests
# (test/t/090_upgrade.pl, test/t/094_upgrade_live.pl), and a private copy of
# the PostgreSQL installation to install them in.
#
# The tree keeps no earlier release's install script: each is built from
# git history by test/old_release.sh (from the release's commit), once by
# test/run_all.sh into ANOMALY_OLD_RELEASES, else here.  Without git or the
# history a test that needs them skips, saying why.
#
# Each later release adds its version to @RELEASES (and its commit to
# test/old_release.sh).

package OldRelease;

use strict;
use warnings;

use Exporter 'import';
use File::Basename qw(dirname);
use File::Copy qw(copy);
use File::Path qw(make_path);
use FindBin;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;

our @EXPORT = qw(@RELEASES old_release private_installation install_package pg_dir);

our @RELEASES = ('0.1.0');

my $src = $ENV{ANOMALY_SRC} // dirname($INC{'OldRelease.pm'}) . '/..';
my $pg_config = $ENV{PG_CONFIG} // 'pg_config';

# A directory of the PostgreSQL the tests run: pg_dir('sharedir') and the
# like.
sub pg_dir
{
	my ($which) = @_;
	my $d = `$pg_config --$which`;
	chomp $d;
	return $d;
}

# old_release($version, sql_only => 1): the directory holding the files of
# release $version as its package shipped them (anomaly.so, anomaly.control,
# anomaly--$version.sql; with sql_only, the library may be missing).  Skips
# the whole test when they cannot be built here.
sub old_release
{
	my ($v, %opt) = @_;
	my $need = $opt{sql_only} ? "anomaly--$v.sql" : 'anomaly.so';
	my $dir = ($ENV{ANOMALY_OLD_RELEASES} // '') . "/$v";
	return $dir if -f "$dir/$need";

	my $out = PostgreSQL::Test::Utils::tempdir();
	my ($stdout, $stderr);
	my @cmd = ('bash', "$src/test/old_release.sh", ($opt{sql_only} ? ('--sql-only') : ()), $v, $out);
	if (!IPC::Run::run(\@cmd, '>', \$stdout, '2>', \$stderr))
	{
		my $why = (split /\n/, $stderr)[-1] // 'no output';
		plan skip_all => "the files of release $v cannot be built here: $why"
		  if ($? >> 8) == 2;
		BAIL_OUT("building release $v failed: $stderr");
	}
	return "$out/$v";
}

# A private copy of the installation, at the same relative places so that
# its binaries find their share directory (PostgreSQL locates it relative to
# the executable): its own extension directory and library directory, where
# the packages are installed (and replaced while the server runs); the rest
# of the library directory is linked.  Holds no file of anomaly's.  Returns
# the install path for PostgreSQL::Test::Cluster (the parent of bin), the
# library directory and the extension directory.
sub private_installation
{
	my ($root) = @_;
	my ($bindir, $pkglibdir, $sharedir) = map { pg_dir($_) } qw(bindir pkglibdir sharedir);
	# the longest common directory prefix of the three
	my @parts = map { [ split m{/}, $_ ] } ($bindir, $pkglibdir, $sharedir);
	my $n = 0;
	while (1)
	{
		my $p = $parts[0][$n];
		last if !defined $p || grep { !defined $_->[$n] || $_->[$n] ne $p } @parts;
		$n++;
	}
	my $prefix = join('/', @{ $parts[0] }[ 0 .. $n - 1 ]);
	my %to = map { $_ => $root . substr($_, length($prefix)) } ($bindir, $pkglibdir, $sharedir);

	make_path(dirname($to{$bindir}), dirname($to{$sharedir}), $to{$pkglibdir});
	system('cp', '-a', $bindir, $to{$bindir}) == 0 or die "copying $bindir failed";
	system('cp', '-a', $sharedir, $to{$sharedir}) == 0 or die "copying $sharedir failed";
	unlink glob("$to{$sharedir}/extension/anomaly*");
	opendir(my $dh, $pkglibdir) or die "$pkglibdir: $!";
	foreach my $e (readdir $dh)
	{
		# anomaly's library and bitcode are the package's; jit is off
		next if $e =~ /^(\.|\.\.|anomaly\.so|bitcode)$/;
		symlink("$pkglibdir/$e", "$to{$pkglibdir}/$e") or die "symlink $e: $!";
	}
	closedir $dh;
	return ($to{$bindir} =~ s{/bin$}{}r, $to{$pkglibdir}, "$to{$sharedir}/extension");
}

# Installs a package's files as a package manager does under a running
# server: each written beside its place, then renamed over it (the server's
# processes keep the library they mapped).
sub install_package
{
	my ($libdir, $extdir, @files) = @_;
	foreach my $f (@files)
	{
		my $to = ($f =~ /\.so$/ ? $libdir : $extdir) . '/' . (split m{/}, $f)[-1];
		copy($f, "$to.new") or die "copy $f: $!";
		rename("$to.new", $to) or die "rename $to: $!";
	}
}

1;
