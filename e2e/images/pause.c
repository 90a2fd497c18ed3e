/* The pod sandbox ("pause") process: holds the pod's namespaces, reaps orphans, and exits on
 * SIGINT/SIGTERM. Same behaviour as Kubernetes' build/pause/linux/pause.c, written anew for the
 * e2e harness, built with gcc -static so the image needs nothing else. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_stop(int sig) {
  (void)sig;
  _exit(0);
}

static void on_child(int sig) {
  (void)sig;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "-v") == 0) {
    puts("pause (ferry e2e)");
    return 0;
  }
  if (getpid() != 1)
    fputs("warning: pause should be the first process\n", stderr);

  struct sigaction stop = {.sa_handler = on_stop};
  struct sigaction child = {.sa_handler = on_child, .sa_flags = SA_NOCLDSTOP};
  if (sigaction(SIGINT, &stop, NULL) < 0 || sigaction(SIGTERM, &stop, NULL) < 0 ||
      sigaction(SIGCHLD, &child, NULL) < 0) {
    perror("sigaction");
    return 1;
  }
  for (;;)
    pause();
}
