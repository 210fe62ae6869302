/* savepoint.c — `sluice savepoint DIR`: signals the job that checkpoints
 * into DIR (its pid is in DIR/sluice.pid) to take a savepoint, waits until
 * the savepoint's manifest exists and prints its directory. */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

/* Highest N of a complete sp-N under dir, 0 if none. */
static unsigned long long newest_savepoint(const char *dir, char *name, size_t size)
{
    DIR *d = opendir(dir);
    unsigned long long best = 0;
    if (!d) return 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        unsigned long long n;
        char tail;
        if (sscanf(e->d_name, "sp-%llu%c", &n, &tail) != 1 || n <= best) continue;
        char mf[4096];
        snprintf(mf, sizeof mf, "%s/%s/MANIFEST", dir, e->d_name);
        if (access(mf, F_OK) != 0) continue;
        best = n;
        snprintf(name, size, "%s", e->d_name);
    }
    closedir(d);
    return best;
}

int cli_savepoint(int argc, char **argv)
{
    if (argc != 2 || !strcmp(argv[1], "--help")) {
        cli_help(argc == 2 ? stdout : stderr, "savepoint");
        return argc == 2 ? 0 : 2;
    }
    const char *dir = argv[1];
    char path[4096], name[256] = "";
    snprintf(path, sizeof path, "%s/sluice.pid", dir);
    FILE *f = fopen(path, "r");
    long pid = 0;
    if (!f || fscanf(f, "%ld", &pid) != 1 || pid <= 0) {
        fprintf(stderr, "sluice savepoint: no running job found: cannot read %s\n", path);
        if (f) fclose(f);
        return 1;
    }
    fclose(f);
    unsigned long long before = newest_savepoint(dir, name, sizeof name);
    if (kill((pid_t)pid, SIGUSR1) != 0) {
        fprintf(stderr, "sluice savepoint: cannot signal job %ld: %s\n", pid, strerror(errno));
        return 1;
    }
    for (int i = 0; i < 6000; i++) { /* up to 60 s */
        if (newest_savepoint(dir, name, sizeof name) > before) {
            printf("%s/%s\n", dir, name);
            return 0;
        }
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    fprintf(stderr, "sluice savepoint: no savepoint appeared in %s within 60 s\n", dir);
    return 1;
}
