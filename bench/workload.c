/*
 * Tight loops for the tracer benchmark (bench/bench_tracer.py).  C, so that the
 * workload itself is cheap and the tracer's share of each iteration is visible.
 *
 *   workload fork N          N x (fork, child _exit, waitpid)
 *   workload forkexec N      N x (fork, exec /bin/true, waitpid)
 *   workload unshare N       N x unshare(CLONE_NEWUTS), back to back in one process
 *   workload forkunshare N   N x (fork, child unshare(CLONE_NEWUTS) and _exit, waitpid):
 *                            what namespace-making tools do, one namespace per process
 *   workload setns N         N x setns() back and forth between the caller's uts namespace
 *                            and another one (a child holds it): every call changes the uts
 *   workload getppid N       N x getppid(): a system call nsgraph does not trace
 *   workload setns-rate RATE SECONDS
 *                            setns(-1, CLONE_NEWNET) (fails with EBADF: a namespace
 *                            event that costs the kernel almost nothing) at RATE
 *                            calls per second for SECONDS; prints calls made
 *   workload unshare-rate RATE SECONDS
 *                            unshare(CLONE_NEWUTS) back to back, paced at RATE per second
 *   workload switch-rate RATE SECONDS
 *                            like setns-rate, but each call really moves the caller
 *                            between two uts namespaces (work for the graph, not a failure)
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
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

/* A child in a new uts namespace, paused; *fd is opened on that namespace. */
static pid_t uts_holder(int *fd)
{
	int ready[2];
	char path[64], c;
	if (pipe(ready) != 0)
		return -1;
	pid_t pid = fork();
	if (pid == 0) {
		close(ready[0]);
		if (unshare(CLONE_NEWUTS) != 0)
			_exit(1);
		if (write(ready[1], "x", 1) != 1)
			_exit(1);
		pause();
		_exit(0);
	}
	close(ready[1]);
	if (pid < 0 || read(ready[0], &c, 1) != 1)
		return -1;
	close(ready[0]);
	snprintf(path, sizeof(path), "/proc/%d/ns/uts", (int)pid);
	*fd = open(path, O_RDONLY);
	return *fd < 0 ? -1 : pid;
}

/* Calls step(i) at `rate` per second for `seconds`; returns the calls made. */
static long paced(double rate, double seconds, int (*step)(long))
{
	double start = now(), end = start + seconds;
	long calls = 0;
	for (;;) {
		double t = now();
		if (t >= end)
			break;
		long due = (long)((t - start) * rate);
		/* Catch up in small batches; sleep a little when ahead. */
		if (calls >= due) {
			struct timespec pause_for = {0, 50000};
			nanosleep(&pause_for, NULL);
			continue;
		}
		for (int i = 0; i < 64 && calls < due; i++, calls++)
			step(calls);
	}
	return calls;
}

static int switch_fds[2];

static int failing_setns(long i)
{
	(void)i;
	return setns(-1, CLONE_NEWNET);
}

static int new_uts(long i)
{
	(void)i;
	return unshare(CLONE_NEWUTS);
}

static int switching_setns(long i)
{
	return setns(switch_fds[i & 1], CLONE_NEWUTS);
}

/* Opens both uts namespaces for switching_setns; returns the holder's pid. */
static pid_t setup_switch(void)
{
	switch_fds[0] = open("/proc/self/ns/uts", O_RDONLY);
	pid_t holder = uts_holder(&switch_fds[1]);
	if (switch_fds[0] < 0 || holder < 0) {
		perror("setting up two uts namespaces");
		exit(1);
	}
	return holder;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s fork|forkexec|unshare|forkunshare|setns|getppid N | setns-rate|unshare-rate|switch-rate RATE SECONDS\n", argv[0]);
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
	if (strcmp(mode, "setns-rate") == 0 && argc > 3) {
		printf("%ld\n", paced(atof(argv[2]), atof(argv[3]), failing_setns));
		return 0;
	}
	if (strcmp(mode, "unshare-rate") == 0 && argc > 3) {
		printf("%ld\n", paced(atof(argv[2]), atof(argv[3]), new_uts));
		return 0;
	}
	if (strcmp(mode, "switch-rate") == 0 && argc > 3) {
		pid_t holder = setup_switch();
		long calls = paced(atof(argv[2]), atof(argv[3]), switching_setns);
		kill(holder, SIGKILL);
		waitpid(holder, NULL, 0);
		printf("%ld\n", calls);
		return 0;
	}
	long n = atol(argv[2]);
	if (strcmp(mode, "getppid") == 0) {
		for (long i = 0; i < n; i++)
			getppid();
		return 0;
	}
	if (strcmp(mode, "setns") == 0) {
		pid_t holder = setup_switch();
		for (long i = 0; i < n; i++) {
			if (switching_setns(i) != 0) {
				perror("setns");
				return 1;
			}
		}
		kill(holder, SIGKILL);
		waitpid(holder, NULL, 0);
		return 0;
	}
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
