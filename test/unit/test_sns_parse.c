/*
 * test_sns_parse.c
 *	  Reading SNS Publish responses (src/alert/sns_parse.c): the success
 *	  test, the Code and Message of error documents as the stand-in
 *	  (test/servers/sns_standin.py) and SNS write them, and the edge cases
 *	  the fuzz target checks (first element, tags that only start alike,
 *	  no closing tag, an empty element).
 */
#include <stdlib.h>

#include "alert/sns_parse.h"
#include "unit.h"

/* Checks the text of one element: want, or NULL for none. */
static void
check(const char *xml, const char *tag, const char *want, const char *what)
{
	UNIT_FINDS(sns_xml_element, xml, tag, want, "%s: %s<%s>", what, want ? "" : "no ", tag);
}

int
main(void)
{
	const char *publish =
		"<PublishResponse xmlns=\"http://sns.amazonaws.com/doc/2010-03-31/\">"
		"<PublishResult><MessageId>5f1b6e2a-8c3d-4e9f-a0b1-c2d3e4f5a6b7</MessageId>"
		"</PublishResult><ResponseMetadata><RequestId>3c7a9e1d</RequestId>"
		"</ResponseMetadata></PublishResponse>";
	const char *error =
		"<ErrorResponse xmlns=\"http://sns.amazonaws.com/doc/2010-03-31/\"><Error>"
		"<Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded &amp; &lt;more&gt;"
		"</Message></Error><RequestId>0b8e3c4f</RequestId></ErrorResponse>";

	UNIT_OK(sns_publish_succeeded(publish), "a PublishResponse with a MessageId is a success");
	UNIT_OK(!sns_publish_succeeded("<PublishResponse><Publish"), "the stand-in's malformed body is not");
	UNIT_OK(!sns_publish_succeeded(error), "an ErrorResponse is not");
	UNIT_OK(!sns_publish_succeeded("<MessageId>x</MessageId>"), "a MessageId alone is not");
	UNIT_OK(!sns_publish_succeeded(""), "an empty body is not");

	check(publish, "MessageId", "5f1b6e2a-8c3d-4e9f-a0b1-c2d3e4f5a6b7", "publish");
	check(publish, "Code", NULL, "publish");
	check(error, "Code", "Throttling", "error");
	/* Entities are left as they are: the text is only shown. */
	check(error, "Message", "Rate exceeded &amp; &lt;more&gt;", "error");
	check(error, "RequestId", "0b8e3c4f", "error");
	check("Service Unavailable", "Code", NULL, "not XML");

	/* The first element; a tag that only starts alike is another tag. */
	check("<Code>a</Code><Code>b</Code>", "Code", "a", "two elements");
	check("<CodeX>a</CodeX><Code>b</Code>", "Code", "b", "longer tag first");
	check("</Code><Code>b</Code>", "Code", "b", "closing tag first");
	check("<Code>a</CodeX></Code>", "Code", "a</CodeX>", "closing of a longer tag inside");
	check("<Code>a", "Code", NULL, "no closing tag");
	check("<Code></Code>", "Code", "", "empty element");
	check("<Code>", "Code", NULL, "opening tag at the end");
	check("<Code attr=\"1\">a</Code>", "Code", NULL, "attributes are not read");

	UNIT_OK(sns_transient_code("Throttling"), "Throttling is retried");
	UNIT_OK(sns_transient_code("InternalError"), "InternalError is retried");
	UNIT_OK(sns_transient_code("ExpiredToken"), "ExpiredToken is retried");
	UNIT_OK(!sns_transient_code("InvalidParameter"), "InvalidParameter is not");
	UNIT_OK(!sns_transient_code("AuthorizationError"), "AuthorizationError is not");
	UNIT_OK(!sns_transient_code("throttling"), "codes are case-sensitive");
	UNIT_OK(!sns_transient_code(""), "an empty code is not");
	return unit_done();
}
