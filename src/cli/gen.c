/* gen.c — `sluice gen` writes the synthetic reference data set, and
 * `sluice keygen` creates a pseudonymisation key file. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int cli_gen(int argc, char **argv)
{
    static const struct option opts[] = {
        {"out", required_argument, 0, 'o'},
        {"events", required_argument, 0, 'e'},
        {"subscribers", required_argument, 0, 's'},
        {"cells", required_argument, 0, 'c'},
        {"areas", required_argument, 0, 'a'},
        {"seed", required_argument, 0, 'r'},
        {"parts", required_argument, 0, 'p'},
        {"set", required_argument, 0, 'S'},
        {"help", no_argument, 0, 'h'},
        {"kafka", required_argument, 0, 'K'},
        {"topic", required_argument, 0, 'T'},
        {"per-message", required_argument, 0, 'M'},
        {0, 0, 0, 0}};
    static const char *const names[] = {['e'] = "events", ['s'] = "subscribers",
                                        ['c'] = "cells", ['a'] = "areas",
                                        ['r'] = "seed", ['p'] = "parts"};
    const char *dir = "data", *kafka = NULL, *topic = NULL, *per_msg = "100";
    const char *kv[64];
    char *owned[32];
    int nkv = 0, nown = 0, c, rc = 0;
    optind = 1;
    while (!rc && (c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'h') { cli_help(stdout, "gen"); rc = -1; break; }
        if (c == '?') { rc = 2; break; }
        if (c == 'o') { dir = optarg; continue; }
        if (c == 'K') { kafka = optarg; continue; }
        if (c == 'T') { topic = optarg; continue; }
        if (c == 'M') { per_msg = optarg; continue; }
        if (nkv >= 60 || nown >= 30) { fputs("sluice gen: too many options\n", stderr); rc = 2; break; }
        if (c == 'S') {
            char *eq = strchr(optarg, '=');
            if (!eq) {
                fprintf(stderr, "sluice gen: --set needs KEY=VALUE, got '%s'\n", optarg);
                rc = 2;
                break;
            }
            char *k = owned[nown++] = strndup(optarg, (size_t)(eq - optarg));
            kv[nkv++] = k;
            kv[nkv++] = eq + 1;
        } else {
            kv[nkv++] = names[c];
            kv[nkv++] = optarg;
        }
    }
    kv[nkv] = NULL;
    if (!rc && optind != argc) {
        fprintf(stderr, "sluice gen: unexpected argument '%s'\n", argv[optind]);
        rc = 2;
    }
    if (!rc && !kafka != !topic) {
        fputs("sluice gen: --kafka and --topic go together\n", stderr);
        rc = 2;
    }
    char err[1024] = "";
    if (!rc && (rc = sl_gen_write(dir, kv, err, sizeof err)) != 0) {
        fprintf(stderr, "sluice gen: %s\n", err[0] ? err : sl_strerror(rc));
        rc = 1;
    }
    for (int i = 0; i < nown; i++) free(owned[i]); /* on every path */
    if (rc) return rc < 0 ? 0 : rc;
    fprintf(stderr, "sluice gen: wrote %s/events/, %s/subscribers.csv, %s/cells.csv\n",
            dir, dir, dir);
    if (kafka) {
        if (gen_to_kafka(dir, kafka, topic, per_msg, err, sizeof err) != 0) {
            fprintf(stderr, "sluice gen: %s\n", err);
            return 1;
        }
        fprintf(stderr, "sluice gen: produced the events into %s on %s\n", topic, kafka);
    }
    return 0;
}

int cli_keygen(int argc, char **argv)
{
    const char *path = NULL, *id = "k1";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help")) {
            cli_help(stdout, "keygen");
            return 0;
        }
        if (!strcmp(argv[i], "--id") && i + 1 < argc) id = argv[++i];
        else if (!path && argv[i][0] != '-') path = argv[i];
        else {
            fprintf(stderr, "sluice keygen: unexpected argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (!path) {
        fputs("sluice keygen: name the key file to create\n", stderr);
        return 2;
    }
    char err[512] = "";
    if (sl_keyring_create(path, id, err, sizeof err)) {
        fprintf(stderr, "sluice %s\n", err);
        return 1;
    }
    return 0;
}
