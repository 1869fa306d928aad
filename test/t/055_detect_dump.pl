# Detectors survive pg_dump and pg_restore.  A detector that has scored
# rows (its models partly stored, partly in the journal) is dumped in the
# custom format and restored
#
#  - into another database of the same cluster, while the original goes on
#    running: the copy gets a slot of its own when anomaly.process() first
#    runs it, never touches the original's, and dropping it leaves the
#    original's slot alone; a paused copy is adopted by resume_detector;
#    process() in a transaction that already wrote skips it with a warning
#    (the slot cannot be made there) and leaves it active; while a
#    pg_restore session is connected it waits, with a note saying so;
#  - into a new cluster whose WAL positions are far behind the old one's,
#    with the background worker running during the restore: the restored
#    detector waits for pg_restore to finish, then gets a new slot and
#    scores the rows committed from then on.
#
# In both, the old scores are restored, the detector status says what
# happened, and the new rows' scores equal random_cut_forest over the old
# rows then the new ones per key: the models continued where they were.
# The source table had a dropped column, so its attribute numbers change
# through the dump.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::RealBin/..";
use DetectTest;
use IPC::Run;

my $conf = q{
shared_preload_libraries = 'anomaly'
anomaly.detector_naptime = 20
anomaly.detector_checkpoint_rows = 1000000
anomaly.detector_checkpoint_timeout = '1h'
max_worker_processes = 16
fsync = off
log_min_messages = warning
};

my $old = PostgreSQL::Test::Cluster->new('dump_old');
$old->init(allows_streaming => 'logical');
$old->append_conf('postgresql.conf', $conf . "anomaly.detector_database = 'postgres'\n");
$old->start;

# Rows for keys 1..5 in transactions of 40; `phase` tells when a row was
# written (1: before the dump).
sub insert_rows
{
	my ($node, $db, $phase, $txns) = @_;
	my $sql = '';
	for my $t (1 .. $txns)
	{
		$sql .= "INSERT INTO src (k, v, phase) SELECT 1 + (g + $t) % 5, "
		  . "sin(g * 0.3 + $t) * 3 + (g % 7) * 0.1, $phase FROM generate_series(1, 40) g;\n";
	}
	$node->safe_psql($db, $sql);
}

$old->safe_psql('postgres', q{
	CREATE EXTENSION anomaly;
	CREATE ROLE alice LOGIN IN ROLE anomaly_admin;
	-- WAL, so that the new cluster's positions are far behind these.
	CREATE TABLE filler AS SELECT g, repeat('x', 300) AS t FROM generate_series(1, 60000) g;
	DROP TABLE filler;
	CREATE TABLE src (junk int, id bigserial PRIMARY KEY, k int NOT NULL, v float8 NOT NULL,
		phase int NOT NULL);
	ALTER TABLE src DROP COLUMN junk;
	GRANT SELECT ON src TO alice;
	SET ROLE alice;
	SELECT anomaly.create_detector('mig', 'src', ARRAY['v'], partition_by => 'k',
		options => '{"number_of_trees": 20, "sub_sample_size": 32, "shingle_size": 2, "seed": 11}');
});
# The first round stores the models; the later ones add to the journal.
insert_rows($old, 'postgres', 1, 25);
$old->poll_query_until('postgres', q{
	SELECT count(*) = 1000 FROM anomaly.scores WHERE detector = 'mig'}, 't');
insert_rows($old, 'postgres', 1, 100);
ok($old->poll_query_until('postgres', q{
	SELECT count(*) = 5000 FROM anomaly.scores WHERE detector = 'mig'}, 't'),
	'the old detector scored the first rows');
my ($stored, $journal, $old_last) = split /\|/, $old->safe_psql('postgres', q{
	SELECT (SELECT count(*) FROM anomaly.detector_forests),
		(SELECT count(*) FROM anomaly.detector_journal), last_commit_lsn
	FROM anomaly.detectors WHERE name = 'mig'});
cmp_ok($stored, '>', 0, "models were stored ($stored)");
cmp_ok($journal, '>', 0, "the journal had points since the last checkpoint ($journal entries)");
note "last commit LSN at the dump: $old_last";

my $dump = $PostgreSQL::Test::Utils::tmp_check . '/detectors.dump';
$old->command_ok(
	[ 'pg_dump', '--format', 'custom', '--file', $dump, $old->connstr('postgres') ],
	'pg_dump --format custom');

# The scores of `db` against random_cut_forest over every row per key: the
# rows before the dump in their commit order there, then the new ones in
# theirs.  Returns "compared|different|rows without a score|rows with two".
sub compare_scores
{
	my ($node, $db) = @_;
	my @diff = window_diff($node, db => $db,
		detector => 'mig', rows => 'src', key => 'k', point => 'ARRAY[v]',
		params => q{20, 32, 100000, 2, 11, transform => 'normalize', transform_decay => 0.0001}, order => 'phase, commit_lsn, id');
	return join('|', @diff, $node->safe_psql($db, q{
		SELECT (SELECT count(*) FROM src s WHERE NOT EXISTS (SELECT 1 FROM anomaly.scores c
				WHERE c.detector = 'mig' AND (c.source_key->>'id')::bigint = s.id))
			|| '|' || (SELECT count(*) - count(DISTINCT source_key) FROM anomaly.scores
					   WHERE detector = 'mig')}));
}

# pg_restore names its sessions "pg_restore" (the guard against adopting a
# detector mid-restore looks for it); the test framework's PGAPPNAME would
# override that default, so the connection string says it again.
my $as_pg_restore = ' application_name=pg_restore';

# --- Another database of the same cluster, beside the original ------------

$old->safe_psql('postgres', 'CREATE DATABASE copy');
$old->command_ok([ 'pg_restore', '--dbname', $old->connstr('copy') . $as_pg_restore, $dump ],
	'pg_restore into another database of the same cluster');
my $copy_oid = $old->safe_psql('postgres', q{SELECT oid FROM pg_database WHERE datname = 'copy'});
my $orig_slot = $old->safe_psql('postgres', q{SELECT slot_name FROM anomaly.detectors});
is($old->safe_psql('copy', q{
	SELECT slot_name || '|' || (slot_active IS NULL)::int || '|' || (worker_pid IS NULL)::int
	FROM anomaly.detector_status}),
	"$orig_slot|1|1", 'before adoption the status does not show the original\'s slot as the copy\'s');
is($old->safe_psql('copy', q{
	SELECT count(*) || '|' || (SELECT count(*) FROM anomaly.detector_forests)
	FROM anomaly.scores WHERE detector = 'mig'}),
	"5000|$stored", 'the scores and models were restored');

# A restored detector paused, then resumed: resume_detector adopts it.
$old->safe_psql('copy', q{SELECT anomaly.pause_detector('mig')});
is($old->safe_psql('copy', q{SELECT count(*) FROM anomaly.detector_status WHERE note IS NOT NULL}),
	'0', 'pausing does not adopt');
$old->safe_psql('copy', q{SELECT anomaly.resume_detector('mig')});
# The workers of this cluster serve only the database "postgres"
# (anomaly.detector_database): process() runs the copy, as pg_cron would,
# and detector_status says no worker will (state 'waiting', first in note).
$old->safe_psql('copy', 'SELECT anomaly.process()');
is($old->safe_psql('copy', q{
	SELECT slot_name || '|' || state || '|' || (last_error IS NULL)::int || '|'
		|| (note LIKE 'no worker: anomaly.detector_database does not name this database; restored from a dump; adopted on %')::int
	FROM anomaly.detector_status}),
	"anomaly_${copy_oid}_1|waiting|1|1", 'the copy has its own slot and a note saying why');
insert_rows($old, 'copy', 2, 50);
insert_rows($old, 'postgres', 2, 10);
$old->safe_psql('copy', 'SELECT anomaly.process()');
is(compare_scores($old, 'copy'), '7000|0|0|0',
	'the copy scored its new rows once each, continuing the restored models');

ok($old->poll_query_until('postgres', q{
	SELECT count(*) = 5400 FROM anomaly.scores WHERE detector = 'mig'}, 't'),
	'the original went on scoring its own rows');
is($old->safe_psql('postgres', q{
	SELECT slot_name || '|' || state || '|' || (last_error IS NULL)::int || '|'
		|| (note IS NULL)::int || '|' || (worker_pid IS NOT NULL)::int
	FROM anomaly.detector_status}),
	"$orig_slot|active|1|1|1", 'the original keeps its slot and worker');
is(compare_scores($old, 'postgres'), '5400|0|0|0', 'the original\'s scores are unchanged');

$old->safe_psql('copy', q{SELECT anomaly.drop_detector('mig')});
is($old->safe_psql('postgres', qq{
	SELECT count(*) FROM pg_replication_slots WHERE slot_name = '$orig_slot'}),
	'1', 'dropping the copy left the original\'s slot');
is($old->safe_psql('postgres', qq{
	SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'anomaly_${copy_oid}_1'}),
	'0', 'and dropped the copy\'s');

# process() in a transaction that has written cannot create the slot: the
# detector is skipped with a warning, stays active, and the next process()
# in a transaction of its own adopts it.  The row committed before that is
# not scored.
$old->safe_psql('postgres', 'CREATE DATABASE copy2');
$old->command_ok([ 'pg_restore', '--dbname', $old->connstr('copy2') . $as_pg_restore, $dump ],
	'pg_restore into a third database');
# While a pg_restore session is connected, the detector waits, and says so.
my ($fake_out, $fake_err) = ('', '');
my $fake = IPC::Run::start(
	[ 'psql', '-X', '-d', $old->connstr('copy2') . ' application_name=pg_restore',
	  '-c', 'SELECT pg_sleep(120)' ],
	'>', \$fake_out, '2>', \$fake_err);
$old->poll_query_until('copy2', q{
	SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = 'pg_restore'})
  or die 'the stand-in pg_restore session did not connect';
my ($rc3, $out3, $err3) = $old->psql('copy2', 'SELECT anomaly.process()');
like($err3, qr/detector "mig" was restored from a dump and waits for pg_restore to finish/,
	'process() waits while pg_restore is connected');
like($old->safe_psql('copy2', q{
	SELECT state || '|' || slot_name || '|' || note FROM anomaly.detector_status}),
	qr/^waiting\|\Q$orig_slot\E\|no worker: anomaly\.detector_database does not name this database; restored from a dump; waits for pg_restore \(PID \d+\) to disconnect/,
	'the note says it waits for pg_restore, no slot was made');
$old->safe_psql('copy2', q{
	SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'pg_restore'});
$fake->finish;
$old->poll_query_until('copy2', q{
	SELECT count(*) = 0 FROM pg_stat_activity WHERE application_name = 'pg_restore'});

my ($rc2, $out2, $err2) = $old->psql('copy2', q{
	BEGIN;
	INSERT INTO src (k, v, phase) VALUES (1, 0, 2);
	SELECT anomaly.process();
	COMMIT;});
like($err2, qr/restored from a dump and needs a replication slot in this database/,
	'process() in a transaction that wrote warns that the slot cannot be made there');
is($old->safe_psql('copy2', q{SELECT state FROM anomaly.detector_status}), 'waiting',
	'the detector stays active (waiting: only process() runs it in this database)');
$old->safe_psql('copy2', 'SELECT anomaly.process()');
insert_rows($old, 'copy2', 2, 5);
$old->safe_psql('copy2', 'SELECT anomaly.process()');
is($old->safe_psql('copy2', q{
	SELECT count(*) || '|' || count(*) FILTER (WHERE s.phase = 2)
	FROM anomaly.scores c JOIN src s ON s.id = (c.source_key->>'id')::bigint
	WHERE c.detector = 'mig'}),
	'5200|200', 'adopted by the next process(): the row committed before is not scored, later ones are');
$old->safe_psql('copy2', q{SELECT anomaly.drop_detector('mig')});

# --- A new cluster, worker running during the restore ----------------------

my $new = PostgreSQL::Test::Cluster->new('dump_new');
$new->init(allows_streaming => 'logical');
$new->append_conf('postgresql.conf', $conf . "anomaly.detector_database = 'migrated'\n");
$new->start;
$new->safe_psql('postgres', q{CREATE DATABASE migrated; CREATE ROLE alice LOGIN});
$new->restart;
my $new_lsn = $new->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
ok($new->safe_psql('postgres', qq{SELECT '$new_lsn'::pg_lsn < '$old_last'::pg_lsn}) eq 't',
	"the new cluster's WAL ($new_lsn) is behind the dumped progress ($old_last)");

# Roles come first (pg_dumpall --globals-only); anomaly_admin is the
# extension's.
$new->command_ok([ 'pg_restore', '--dbname', $new->connstr('migrated') . $as_pg_restore, $dump ],
	'pg_restore into a new cluster, with the detector worker running');
ok($new->poll_query_until('migrated', q{
	SELECT note LIKE 'restored from a dump; adopted on %' FROM anomaly.detector_status}, 't'),
	'the worker adopted the restored detector');
is($new->safe_psql('migrated', q{
	SELECT count(*) FROM anomaly.scores WHERE detector = 'mig'}),
	'5000', 'the restored rows were not scored again');
insert_rows($new, 'migrated', 2, 60);
ok($new->poll_query_until('migrated', q{
	SELECT count(*) = 7400 FROM anomaly.scores WHERE detector = 'mig'}, 't'),
	'the restored detector scores new rows');
my $migrated_oid = $new->safe_psql('postgres', q{SELECT oid FROM pg_database WHERE datname = 'migrated'});
is($new->safe_psql('migrated', q{
	SELECT slot_name || '|' || owner || '|' || state || '|' || (last_error IS NULL)::int || '|'
		|| (worker_pid IS NOT NULL)::int || '|' || slot_wal_status
	FROM anomaly.detector_status}),
	"anomaly_${migrated_oid}_1|alice|active|1|1|reserved",
	'it runs with its worker and a new slot, its owner kept, no error');
is(compare_scores($new, 'migrated'), '7400|0|0|0',
	'its scores continue the restored models, once per row');

my $log = slurp_file($new->logfile);
like($log, qr/detector "mig" was restored from a dump: it now reads replication slot/,
	'the adoption is logged');
unlike($log, qr/detector "mig".*(does not exist|invalid)/, 'no error about its slot');

$new->stop;
$old->stop;
done_testing();
