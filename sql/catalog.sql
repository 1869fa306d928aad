-- Catalog hygiene (issue 18): \df anomaly.* lists what users call, each
-- with a comment.  Internal helpers are prefixed with "_" and nobody but
-- the extension's owner may execute them; every other function, aggregate,
-- type, table, view and event trigger of the extension, and every setting,
-- has a description.  The objects come from pg_depend, so a new object
-- without a comment (or a new helper left executable) fails here.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS anomaly;
RESET client_min_messages;

CREATE TEMP VIEW ext_objects AS
SELECT d.classid, d.objid, pg_describe_object(d.classid, d.objid, 0) AS object
FROM pg_depend d
WHERE d.refclassid = 'pg_extension'::regclass
  AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'anomaly')
  AND d.deptype = 'e';

-- user-facing objects without a comment: none
SELECT o.object AS without_comment
FROM ext_objects o
LEFT JOIN pg_proc p ON o.classid = 'pg_proc'::regclass AND p.oid = o.objid
LEFT JOIN pg_type t ON o.classid = 'pg_type'::regclass AND t.oid = o.objid
LEFT JOIN pg_class c ON o.classid = 'pg_class'::regclass AND c.oid = o.objid
WHERE o.classid IN ('pg_proc'::regclass, 'pg_type'::regclass, 'pg_class'::regclass,
					'pg_event_trigger'::regclass)
  AND coalesce(p.proname, t.typname, c.relname, '') !~ '^_'
  AND coalesce(c.relkind, 'r') IN ('r', 'v', 'p')
  AND obj_description(o.objid, (SELECT relname FROM pg_class WHERE oid = o.classid)) IS NULL
ORDER BY 1;

-- internal helpers PUBLIC may execute: none
SELECT p.oid::regprocedure AS executable_by_public
FROM ext_objects o JOIN pg_proc p ON o.classid = 'pg_proc'::regclass AND p.oid = o.objid
WHERE p.proname ~ '^_' AND has_function_privilege('public', p.oid, 'EXECUTE')
ORDER BY 1;

-- functions that are not helpers but look like one (I/O, support, "internal"
-- arguments): none
SELECT p.oid::regprocedure AS unprefixed_helper
FROM ext_objects o JOIN pg_proc p ON o.classid = 'pg_proc'::regclass AND p.oid = o.objid
WHERE p.proname !~ '^_'
  AND (p.prorettype IN ('internal'::regtype, 'cstring'::regtype)
	   OR 'internal'::regtype = ANY (p.proargtypes::oid[])
	   OR EXISTS (SELECT 1 FROM pg_type t WHERE p.oid IN (t.typinput, t.typoutput, t.typreceive, t.typsend))
	   OR EXISTS (SELECT 1 FROM pg_aggregate a WHERE p.oid IN (a.aggtransfn, a.aggfinalfn)))
ORDER BY 1;

-- what \df anomaly.* lists for users: the functions without the prefix
SELECT p.proname AS user_function, count(*) AS overloads,
	   bool_and(has_function_privilege('public', p.oid, 'EXECUTE')) AS public
FROM ext_objects o JOIN pg_proc p ON o.classid = 'pg_proc'::regclass AND p.oid = o.objid
WHERE p.proname !~ '^_'
GROUP BY p.proname ORDER BY 1;

-- settings without a description: none
SELECT name AS setting_without_description FROM pg_settings
WHERE name LIKE 'anomaly.%' AND coalesce(short_desc, '') = ''
ORDER BY 1;
