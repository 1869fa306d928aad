/*
 * threads.c
 *	  Runs the engine's share of a round on several threads.
 *
 * Scoring and learning a round's rows is pure engine work (src/rcf calls
 * nothing of PostgreSQL) on forests that do not depend on each other, one
 * per partition key.  A round's keys can therefore be spread over threads
 * of the backend, which is what lets a detector catch up a backlog with
 * more than one core.
 *
 * The rules that make this safe in a PostgreSQL backend:
 *	- a task function runs engine code only: no palloc, no elog, no
 *	  CHECK_FOR_INTERRUPTS, nothing that reads or writes backend state;
 *	- the backend's own thread takes tasks too and returns to PostgreSQL
 *	  only after every thread has been joined, so no thread outlives the
 *	  memory it works on and an error can never unwind past a running
 *	  thread;
 *	- the threads start with every signal blocked, so that PostgreSQL's
 *	  handlers (latches, interrupts) only ever run in the backend's thread.
 * If a thread cannot be started the remaining tasks simply run on fewer.
 */
#include "postgres.h"

#include <pthread.h>
#include <signal.h>

#include "port/atomics.h"

#include "detect/detect.h"

/* Tasks 0 .. ntasks - 1, taken in order by whichever thread is free. */
typedef struct TaskQueue
{
	DetectTaskFn fn;
	void	   *arg;
	int			ntasks;
	pg_atomic_uint32 next;
} TaskQueue;

/* Takes tasks until none is left.  Runs in every thread. */
static void
take_tasks(TaskQueue *q)
{
	for (;;)
	{
		uint32		t = pg_atomic_fetch_add_u32(&q->next, 1);

		if (t >= (uint32) q->ntasks)
			break;
		q->fn(q->arg, (int) t);
	}
}

/* Entry point of a helper thread. */
static void *
thread_main(void *arg)
{
	take_tasks((TaskQueue *) arg);
	return NULL;
}

/*
 * Runs fn(arg, t) for every t < ntasks on up to nthreads threads, the
 * calling one included; returns when all are done.  Returns the number of
 * threads that took part.
 */
int
detect_run_tasks(DetectTaskFn fn, void *arg, int ntasks, int nthreads)
{
	TaskQueue	q;
	pthread_t	helpers[DETECT_MAX_THREADS];
	int			started = 0;

	q.fn = fn;
	q.arg = arg;
	q.ntasks = ntasks;
	pg_atomic_init_u32(&q.next, 0);

	nthreads = Min(nthreads, ntasks);
	nthreads = Min(nthreads, DETECT_MAX_THREADS + 1);
	if (nthreads > 1)
	{
		sigset_t	all;
		sigset_t	saved;

		sigfillset(&all);
		if (pthread_sigmask(SIG_SETMASK, &all, &saved) == 0)
		{
			for (int i = 0; i < nthreads - 1; i++)
			{
				if (pthread_create(&helpers[started], NULL, thread_main, &q) != 0)
					break;
				started++;
			}
			pthread_sigmask(SIG_SETMASK, &saved, NULL);
		}
	}

	take_tasks(&q);
	for (int i = 0; i < started; i++)
		pthread_join(helpers[i], NULL);
	return started + 1;
}
