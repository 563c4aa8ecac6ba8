/*
 * Tight loops for the tracer benchmark (bench/bench_tracer.py).  C, so that the
 * workload itself is cheap and the tracer's share of each iteration is visible.
 *
 *   workload fork N          N x (fork, child _exit, waitpid)
 *   workload forkexec N      N x (fork, exec /bin/true, waitpid)
 *   workload unshare N       N x unshare(CLONE_NEWUTS), back to back in one process
 *   workload forkunshare N   N x (fork, child unshare(CLONE_NEWUTS) and _exit, waitpid):
 *                            what namespace-making tools do, one namespace per process
 *   workload setns-rate RATE SECONDS
 *                            setns(-1, CLONE_NEWNET) (fails with EBADF: a namespace
 *                            event that costs the kernel almost nothing) at RATE
 *                            calls per second for SECONDS; prints calls made
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s fork|forkexec|unshare|forkunshare N | setns-rate RATE SECONDS\n", argv[0]);
		return 2;
	}
	const char *mode = argv[1];
	if (strcmp(mode, "mix-rate") == 0 && argc >= 4) {
		double rate = atof(argv[2]), seconds = atof(argv[3]);
		double start = now(), end = start + seconds;
		long events = 0, forks = 0;
		while (now() < end) {
			long due = (long)((now() - start) * rate);
			if (events >= due) {
				struct timespec pause = {0, 200000};
				nanosleep(&pause, NULL);
				continue;
			}
			for (int i = 0; i < 12; i++)
				setns(-1, CLONE_NEWNET);
			for (int i = 0; i < 2; i++) {
				pid_t pid = fork();
				if (pid < 0) {
					perror("fork");
					return 1;
				}
				if (pid == 0)
					_exit(++forks % 64 == 0 && unshare(CLONE_NEWUTS) != 0);
				forks++;
				waitpid(pid, NULL, 0);
			}
			events += 16;
		}
		printf("%ld\n", events);
		return 0;
	}
	if (strcmp(mode, "setns-rate") == 0) {
		double rate = atof(argv[2]), seconds = atof(argv[3]);
		double start = now(), end = start + seconds;
		long calls = 0;
		for (;;) {
			double t = now();
			if (t >= end)
				break;
			long due = (long)((t - start) * rate);
			/* Catch up in small batches; sleep a little when ahead. */
			if (calls >= due) {
				struct timespec pause = {0, 50000};
				nanosleep(&pause, NULL);
				continue;
			}
			for (int i = 0; i < 64 && calls < due; i++, calls++)
				setns(-1, CLONE_NEWNET);
		}
		printf("%ld\n", calls);
		return 0;
	}
	long n = atol(argv[2]);
	for (long i = 0; i < n; i++) {
		if (strcmp(mode, "unshare") == 0) {
			if (unshare(CLONE_NEWUTS) != 0) {
				perror("unshare");
				return 1;
			}
			continue;
		}
		pid_t pid = fork();
		if (pid < 0) {
			perror("fork");
			return 1;
		}
		if (pid == 0) {
			if (strcmp(mode, "forkunshare") == 0)
				_exit(unshare(CLONE_NEWUTS) == 0 ? 0 : 1);
			if (strcmp(mode, "forkexec") == 0) {
				execl("/bin/true", "true", (char *)NULL);
				_exit(127);
			}
			_exit(0);
		}
		int status;
		waitpid(pid, &status, 0);
	}
	return 0;
}
