# What runs as whom, with the background worker (whose session is the
# bootstrap superuser): a detector owner's feature function that plants a
# search_path for the rest of the session and an operator =(int8, int8)
# that makes its owner superuser when a superuser uses it; a destination
# table of another role whose triggers do the same.  The workers keep
# scoring, every planted function runs as the detector's owner, nobody
# becomes superuser.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use FindBin;
use lib "$FindBin::RealBin/..";
use DetectTest;

my $node = detector_node('detect_owner');

sub sq { return $node->safe_psql('postgres', $_[0]); }

sub as_role
{
	my ($role, $sql) = @_;
	return $node->safe_psql('postgres', $sql, extra_params => [ '-U', $role ]);
}

# planted_operator($role, $what): the SQL, run as $role, of an operator =
# on int8 in the role's schema that records its call as $what and, should
# it run as a superuser, makes $role one.
sub planted_operator
{
	my ($role, $what) = @_;
	return qq{
	CREATE FUNCTION s_$role.eq(a int8, b int8) RETURNS bool LANGUAGE plpgsql AS \$\$
	BEGIN
		PERFORM public.record('$what');
		PERFORM public.escalate('$role');
		RETURN a OPERATOR(pg_catalog.=) b;
	END \$\$;
	CREATE OPERATOR s_$role.= (LEFTARG = int8, RIGHTARG = int8, FUNCTION = s_$role.eq);};
}

my $escalated = q{SELECT count(*) FROM pg_roles WHERE rolname IN ('adm', 'owner1') AND rolsuper};

sq(q{
	CREATE EXTENSION anomaly;
	CREATE ROLE adm LOGIN;
	CREATE ROLE owner1 LOGIN;
	GRANT anomaly_admin TO adm;
	CREATE SCHEMA s_adm AUTHORIZATION adm;
	CREATE SCHEMA s_owner1 AUTHORIZATION owner1;
	CREATE TABLE seen (what text, who name, super bool);
	GRANT INSERT ON seen TO PUBLIC;
	CREATE FUNCTION record(what text) RETURNS void LANGUAGE sql AS $$
		INSERT INTO public.seen
		SELECT what, current_user, rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user
	$$;
	-- makes role a superuser when the caller is one
	CREATE FUNCTION escalate(role name) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
			EXECUTE pg_catalog.format('ALTER ROLE %I SUPERUSER', role);
		END IF;
	END $$;
	CREATE TABLE src (id int8 PRIMARY KEY, v int8);
	GRANT SELECT ON src TO adm;
});

# The detector owner's planted search_path and operator.
as_role('adm', q{
	CREATE FUNCTION s_adm.leak(v int8) RETURNS float8 LANGUAGE plpgsql AS $$
	BEGIN
		PERFORM public.record('feature');
		PERFORM pg_catalog.set_config('search_path', 's_adm, pg_catalog', false);
		RETURN v;
	END $$;
} . planted_operator('adm', 'adm operator'));

# owner1's destination table, with triggers planting owner1's operator.
as_role('owner1', planted_operator('owner1', 'owner1 operator') . q{
	CREATE TABLE s_owner1.dest (anomaly_score float8, source_key jsonb);
	GRANT USAGE ON SCHEMA s_owner1 TO adm;
	GRANT INSERT ON s_owner1.dest TO adm;
	CREATE FUNCTION s_owner1.plant() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		PERFORM public.record(TG_WHEN || ' trigger');
		PERFORM pg_catalog.set_config('search_path', 's_owner1, pg_catalog', false);
		RETURN NEW;
	END $$;
	CREATE TRIGGER plant BEFORE INSERT ON s_owner1.dest
		FOR EACH ROW EXECUTE FUNCTION s_owner1.plant();
	CREATE TRIGGER later AFTER INSERT ON s_owner1.dest
		FOR EACH ROW EXECUTE FUNCTION s_owner1.plant();
});

as_role('adm', q{
	SELECT anomaly.create_detector('leaky', 'public.src', ARRAY['s_adm.leak(v)'],
		options => '{"number_of_trees": 5, "sub_sample_size": 10}');
	SELECT anomaly.create_detector('dest', 'public.src', ARRAY['v'],
		options => '{"number_of_trees": 5, "sub_sample_size": 10, "destination": "s_owner1.dest"}');
});

# Several rounds each, so that the worker's later SQL would meet what an
# earlier round planted.
for my $batch (0 .. 3)
{
	my $lo = $batch * 5 + 1;
	my $hi = $lo + 4;
	sq(qq{INSERT INTO src SELECT g, g FROM generate_series($lo, $hi) g});
	ok( $node->poll_query_until('postgres',
			qq{SELECT count(*) FROM anomaly.detectors WHERE rows_scored = $hi}, '2'),
		"the workers scored batch $batch in both detectors");
}
is(sq(q{SELECT string_agg(name || ':' || state, ',' ORDER BY name) FROM anomaly.detectors}),
	'dest:active,leaky:active', 'both detectors are active');
is(sq(q{SELECT count(*) FROM s_owner1.dest}), '20', 'every score reached the destination');
is(sq(q{SELECT string_agg(DISTINCT what || ':' || who, ',' ORDER BY what || ':' || who)
	FROM seen}),
	'AFTER trigger:adm,BEFORE trigger:adm,feature:adm',
	"every planted function ran as the detector's owner, and no planted operator ran");
is(sq(q{SELECT count(*) FROM seen WHERE super}), '0', 'none of it as a superuser');
is(sq($escalated), '0', 'no role became superuser');

$node->stop;
done_testing();
