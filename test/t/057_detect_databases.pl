# Every database served (issue 18): on a preloaded cluster with no
# anomaly.detector_database, a detector in each of three databases is
# scored by a worker without configuration; a database without the
# extension gets no worker; a plain DROP DATABASE of a served database
# completes; the restriction setting limits service to the database it
# names, and the others' detectors say so (state 'waiting', a note, a
# NOTICE from create_detector); a cluster without the preload says so too;
# wal_level below logical gets an error with a hint; a create_detector
# that waits for a running transaction says so first and lock_timeout ends
# the wait.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

# polls $sql on $db until it returns $want (or the time runs out)
sub wait_for
{
	my ($node, $db, $sql, $want, $secs) = @_;
	my $got = '';
	for (1 .. ($secs // 60) * 10)
	{
		$got = $node->safe_psql($db, $sql);
		return $got if $got eq $want;
		select(undef, undef, undef, 0.1);
	}
	return $got;
}

my $node = PostgreSQL::Test::Cluster->new('databases');
$node->init(allows_streaming => 'logical');
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'anomaly'
anomaly.detector_naptime = 20
max_worker_processes = 16
lc_messages = 'C'
});
$node->start;

my @dbs = ('app1', 'app2', 'app3');
for my $db (@dbs)
{
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	my ($rc, $out, $err) = $node->psql($db, q{
		CREATE EXTENSION anomaly;
		CREATE TABLE t (id int8 PRIMARY KEY, v float8);
		SELECT anomaly.create_detector('d', 't', ARRAY['v'],
			options => '{"number_of_trees": 10, "sub_sample_size": 32}');
	});
	is($rc, 0, "$db: extension and detector created");
	unlike($err, qr/no background worker/, "$db: create_detector has no NOTICE: a worker will serve it");
}
$node->safe_psql('postgres', 'CREATE DATABASE plain');

for my $db (@dbs)
{
	$node->safe_psql($db, q{INSERT INTO t SELECT i, i % 7 FROM generate_series(1, 200) i});
}
for my $db (@dbs)
{
	is(wait_for($node, $db, q{SELECT count(*) FROM anomaly.scores WHERE detector = 'd'}, '200'),
		'200', "$db: 200 rows scored by a worker, without configuration");
	is($node->safe_psql($db, q{SELECT state || '|' || coalesce(note, '') || '|' || (worker_pid IS NOT NULL)::text
		FROM anomaly.detector_status}), 'active||true', "$db: active, no note, a worker holds the slot");
}
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_stat_activity
	WHERE backend_type = 'anomaly scheduler' AND datname LIKE 'app_'}), '3',
	'one scheduler per database with the extension');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_stat_activity
	WHERE backend_type = 'anomaly launcher' AND datname IS NULL}), '1',
	'one launcher, connected to no database');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_stat_activity
	WHERE datname IN ('plain', 'postgres') AND backend_type LIKE 'anomaly%'}), '0',
	'databases without the extension: no worker stays');

# --- DROP DATABASE of a served database --------------------------------------

my $t0 = time;
my ($rc, $out, $err) = $node->psql('postgres', 'DROP DATABASE app3', timeout => 60);
is($rc, 0, 'a plain DROP DATABASE of a served database completes') or diag($err);
cmp_ok(time - $t0, '<', 20, 'and without waiting for its timeout');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_replication_slots WHERE database = 'app3'}),
	'0', 'its slot went with it');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_replication_origin WHERE roname LIKE 'anomaly%'}),
	'2', 'and its replication origin (the other two databases keep theirs)');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'anomaly scheduler'}),
	'2', 'the other two schedulers run on');
# ALTER DATABASE ... RENAME needs the database alone as well
($rc, $out, $err) = $node->psql('postgres', 'ALTER DATABASE app2 RENAME TO app2b', timeout => 60);
is($rc, 0, 'ALTER DATABASE ... RENAME of a served database completes') or diag($err);
$node->safe_psql('app2b', q{INSERT INTO t SELECT i, i % 7 FROM generate_series(201, 300) i});
is(wait_for($node, 'app2b', q{SELECT count(*) FROM anomaly.scores WHERE detector = 'd'}, '300'),
	'300', 'the renamed database is served again');

# A database that installs the extension later is served at once.
$node->safe_psql('plain', q{
	CREATE EXTENSION anomaly;
	CREATE TABLE t (id int8 PRIMARY KEY, v float8);
	SELECT anomaly.create_detector('d', 't', ARRAY['v'],
		options => '{"number_of_trees": 10, "sub_sample_size": 32}');
	INSERT INTO t SELECT i, i FROM generate_series(1, 50) i;
});
is(wait_for($node, 'plain', q{SELECT count(*) FROM anomaly.scores}, '50', 30), '50',
	'a database that installs the extension later is served');

# Each database with destinations gets its own alert sender.
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'anomaly alert sender'}),
	'0', 'no sender where there are no destinations');
for my $db ('app1', 'plain')
{
	$node->safe_psql($db, q{
		SELECT anomaly.create_destination('n', 'notify', '{"channel": "c"}');
		SELECT anomaly.send_alert('n', 'hello', '{}');
	});
}
for my $db ('app1', 'plain')
{
	is(wait_for($node, $db, q{SELECT sent || '|' || coalesce(note, '') FROM anomaly.delivery_status}, '1|', 30),
		'1|', "$db: its alert was delivered by its own sender, no note");
}
is($node->safe_psql('postgres', q{SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_stat_activity
	WHERE backend_type = 'anomaly alert sender'}), 'app1,plain', 'one sender per database with destinations');

# --- the restriction -----------------------------------------------------------

$node->append_conf('postgresql.conf', "anomaly.detector_database = 'app1'\n");
$node->reload;
is(wait_for($node, 'app2b', q{SELECT state || '|' || note FROM anomaly.detector_status},
		'waiting|no worker: anomaly.detector_database does not name this database'),
	'waiting|no worker: anomaly.detector_database does not name this database',
	'excluded database: state waiting, and the note says why');
($rc, $out, $err) = $node->psql('app2b', q{
	CREATE TABLE t2 (id int8 PRIMARY KEY, v float8);
	SELECT anomaly.create_detector('d2', 't2', ARRAY['v']);
});
like($err, qr/NOTICE:  no background worker will score detector "d2": anomaly.detector_database does not name this database\nHINT:  Add this database to anomaly.detector_database/,
	'create_detector in an excluded database: a NOTICE with the fix');
$node->safe_psql('app1', q{INSERT INTO t SELECT i, i % 7 FROM generate_series(201, 250) i});
is(wait_for($node, 'app1', q{SELECT count(*) FROM anomaly.scores WHERE detector = 'd'}, '250'),
	'250', 'the named database is still served');
$node->safe_psql('app2b', q{INSERT INTO t SELECT i, i % 7 FROM generate_series(301, 320) i});
sleep 2;
is($node->safe_psql('app2b', q{SELECT count(*) FROM anomaly.scores WHERE detector = 'd'}),
	'300', 'the excluded database is not');
is($node->safe_psql('app2b', q{SELECT anomaly.process('d')}), '20',
	'its rows wait for process()');

# --- what create_detector says: a running transaction, lock_timeout ----------

my ($bout, $berr) = ('', '');
my $bg = IPC::Run::start(
	[ 'psql', '-X', '-d', $node->connstr('app1'), '-c',
	  'BEGIN; INSERT INTO t VALUES (100000, 1); SELECT pg_sleep(30); ROLLBACK' ],
	'>', \$bout, '2>', \$berr);
is(wait_for($node, 'app1', q{SELECT count(*) FROM pg_stat_activity
	WHERE backend_xid IS NOT NULL AND query LIKE 'BEGIN; INSERT%'}, '1'), '1',
	'a transaction with an xid runs');
($rc, $out, $err) = $node->psql('app1', q{
	SET lock_timeout = '1s';
	SELECT anomaly.create_detector('d3', 't', ARRAY['v']);
}, timeout => 60);
like($err, qr/NOTICE:  waiting for \d+ running transactions? to end before the detector's slot can start/,
	'create_detector says it waits for a running transaction');
like($err, qr/ERROR:  canceling statement due to lock timeout/, 'lock_timeout ends the wait');
like($err, qr/CONTEXT:  creating logical replication slot "anomaly_\d+_\d+" for a detector/,
	'and the error says what waited');
$bg->kill_kill;
$node->safe_psql('app1', q{SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'BEGIN; INSERT%'});
is($node->safe_psql('app1', q{SELECT count(*) FROM pg_replication_slots s
	WHERE s.database = current_database()
	  AND NOT EXISTS (SELECT FROM anomaly.detectors d WHERE d.slot_name = s.slot_name)}),
	'0', 'no slot left behind by the timed-out creation');

$node->stop;

# --- no free worker slot ---------------------------------------------------------

# max_worker_processes = 3: PostgreSQL's logical replication launcher, ours,
# and the database's scheduler; nothing left for a detector worker.
my $tight = PostgreSQL::Test::Cluster->new('tight');
$tight->init(allows_streaming => 'logical');
$tight->append_conf('postgresql.conf', q{
shared_preload_libraries = 'anomaly'
max_worker_processes = 3
lc_messages = 'C'
});
$tight->start;
$tight->safe_psql('postgres', q{
	CREATE EXTENSION anomaly;
	CREATE TABLE t (id int8 PRIMARY KEY, v float8);
	SELECT anomaly.create_detector('d', 't', ARRAY['v']);
});
is(wait_for($tight, 'postgres', q{SELECT state || '|' || note FROM anomaly.detector_status},
		'waiting|no worker: no free background worker slot (max_worker_processes = 3)', 30),
	'waiting|no worker: no free background worker slot (max_worker_processes = 3)',
	'no free worker slot: state waiting, and the note says so');
($rc, $out, $err) = $tight->psql('postgres', q{
	CREATE TABLE t2 (id int8 PRIMARY KEY, v float8);
	SELECT anomaly.create_detector('d2', 't2', ARRAY['v']);
});
like($err, qr/NOTICE:  no background worker will score detector "d2": no free background worker slot \(max_worker_processes = 3\)\nHINT:  Raise max_worker_processes/,
	'and create_detector says so with the fix');
$tight->stop;

# --- a cluster without the preload, and wal_level = replica -------------------

my $bare = PostgreSQL::Test::Cluster->new('bare');
$bare->init(allows_streaming => 'logical');
$bare->append_conf('postgresql.conf', "lc_messages = 'C'\n");
$bare->start;
($rc, $out, $err) = $bare->psql('postgres', q{
	CREATE EXTENSION anomaly;
	CREATE TABLE t (id int8 PRIMARY KEY, v float8);
	SELECT anomaly.create_detector('d', 't', ARRAY['v']);
});
like($err, qr/NOTICE:  no background worker will score detector "d": anomaly is not in shared_preload_libraries\nHINT:  Add anomaly to shared_preload_libraries and restart the server, or call anomaly.process\(\) periodically/,
	'without the preload: a NOTICE with the fix');
is($bare->safe_psql('postgres', q{SELECT state || '|' || note FROM anomaly.detector_status}),
	'waiting|no worker: anomaly is not in shared_preload_libraries',
	'without the preload: state waiting, and the note says why');
$bare->safe_psql('postgres', q{SELECT anomaly.create_destination('n', 'notify', '{"channel": "c"}')});
is($bare->safe_psql('postgres', q{SELECT note FROM anomaly.delivery_status}),
	'no worker: anomaly is not in shared_preload_libraries', 'delivery_status says it too');
# (a server with a logical slot refuses to start with wal_level = replica)
$bare->safe_psql('postgres', q{SELECT anomaly.drop_detector('d')});
$bare->stop;
$bare->append_conf('postgresql.conf', "wal_level = replica\n");
$bare->start;
($rc, $out, $err) = $bare->psql('postgres', q{SELECT anomaly.create_detector('d2', 't', ARRAY['v'])});
like($err, qr/ERROR:  detectors need wal_level = logical\nDETAIL:  wal_level is "replica"; .*\nHINT:  Set wal_level = logical in postgresql.conf and restart the server/,
	'wal_level = replica: an error that says what to set');
$bare->stop;

done_testing();
