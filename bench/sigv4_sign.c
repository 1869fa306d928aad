/*
 * sigv4_sign.c
 *	  Signing speed of the SigV4 signer (src/alert/sigv4.c) on an SNS
 *	  Publish request with a session token, as the sender signs one per
 *	  delivery.
 *
 *	  bench/sigv4_sign [N]     N signatures (default 200000)
 *
 * Prints one JSON line: signatures and microseconds per signature.
 */
#include "postgres_fe.h"

#include "alert/sigv4.h"
#include "bench_util.h"

int
main(int argc, char **argv)
{
	const char *body = "Action=Publish&TopicArn=arn%3Aaws%3Asns%3Aus-east-1%3A123456789012%3Aops"
		"&Message=%7B%22version%22%3A1%2C%22detector%22%3A%22live%22%2C%22score%22%3A3.2%7D"
		"&Subject=anomaly&Version=2010-03-31";
	SigV4Pair	headers[] = {
		{"Host", "sns.us-east-1.amazonaws.com"},
		{"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"}
	};
	SigV4Request req = {"POST", "/", NULL, headers, 2, body, strlen(body)};
	SigV4Credentials cred = {"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
	"IQoJb3JpZ2luX2VjEXAMPLETOKEN"};
	long		n = argc > 1 ? atol(argv[1]) : 200000;
	double		t0 = now_us();

	for (long i = 0; i < n; i++)
	{
		SigV4Result res;

		if (sigv4_sign(&req, &cred, "us-east-1", "sns", "20261202T020000Z", 0, &res) != SIGV4_OK)
		{
			fprintf(stderr, "signing failed\n");
			return 1;
		}
		sigv4_result_free(&res);
	}
	printf("{\"bench\": \"sigv4_sign\", \"signatures\": %ld, \"us_per_signature\": %.2f}\n",
		   n, (now_us() - t0) / n);
	return 0;
}
